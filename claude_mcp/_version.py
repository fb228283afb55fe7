"""The installed package's version (a source tree that is not installed says 0.0.0)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("claude-mcp")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
