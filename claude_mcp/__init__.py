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

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
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

# Imported when first used (PEP 562): `claude-mcp --help` and a client's spawn of the server do not pay
# for the whole package up front.
_HOMES = {
    "ClaudeBridge": ".bridge.claude",
    "AskResult": ".bridge.results",
    "RunFailed": ".bridge.results",
    "CallSettings": ".config.call_settings",
    "Policy": ".config.policy",
    "ResolvedSettings": ".config.policy",
    "AskArgs": ".mcp_surface.arguments",
    **dict.fromkeys(
        (
            "APIError",
            "Busy",
            "ClaudeMCPError",
            "CLIFailed",
            "CLINotFound",
            "ConfigError",
            "DepthExceeded",
            "InvalidArguments",
            "LimitReached",
            "PolicyViolation",
            "RunTimeout",
            "SessionNotFound",
            "TooLarge",
        ),
        ".errors",
    ),
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'claude_mcp' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_HOMES[name], __name__), name)
    globals()[name] = value
    return value


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
