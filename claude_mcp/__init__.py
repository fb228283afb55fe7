"""claude-mcp: Claude Code as MCP tools, and a small Python API to delegate to Claude.

    from claude_mcp import ClaudeBridge, Policy

    async with ClaudeBridge(Policy(roots=(project,))) as claude:
        first = await claude.ask("Remember the word kiwi")
        again = await claude.ask("Which word?", session_id=first.session_id)

The package is layered, data flowing one way (each layer imports only those below it):
`config` (what may be set) → `state` (what outlives a process) → `bridge` (Claude Code
underneath) → `mcp_surface` (tools and resources) → `web` (HTTP and serving) → `setup` and
`cli` (commands). This module is the public surface.
"""

from ._version import __version__
from .bridge.claude import ClaudeBridge
from .bridge.results import AskResult, RunFailed
from .config.call_settings import CallSettings
from .config.policy import Policy, ResolvedSettings
from .errors import (
    APIError,
    Busy,
    ClaudeMCPError,
    CLIFailed,
    CLINotFound,
    ConfigError,
    DepthExceeded,
    InvalidArguments,
    LimitReached,
    PolicyViolation,
    RunTimeout,
    SessionNotFound,
    TooLarge,
)
from .mcp_surface.arguments import AskArgs

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
    "LimitReached",
    "Policy",
    "PolicyViolation",
    "ResolvedSettings",
    "RunFailed",
    "RunTimeout",
    "SessionNotFound",
    "TooLarge",
    "__version__",
]
