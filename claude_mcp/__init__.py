"""claude-mcp: Claude Code as MCP tools, and a small Python API to delegate to Claude."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("claude-mcp")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

from .bridge import ClaudeBridge, RunFailed
from .errors import (
    APIError,
    Busy,
    ClaudeMCPError,
    CLIFailed,
    CLINotFound,
    ConfigError,
    DepthExceeded,
    InvalidArguments,
    PolicyViolation,
    RunTimeout,
    SessionNotFound,
)
from .policy import Policy, ResolvedSettings
from .results import AskResult
from .settings import AskArgs, CallSettings

__all__ = [
    "APIError",
    "AskArgs",
    "AskResult",
    "Busy",
    "CLIFailed",
    "CLINotFound",
    "CallSettings",
    "ClaudeBridge",
    "ClaudeMCPError",
    "ConfigError",
    "DepthExceeded",
    "InvalidArguments",
    "Policy",
    "PolicyViolation",
    "ResolvedSettings",
    "RunFailed",
    "RunTimeout",
    "SessionNotFound",
    "__version__",
]
