"""The package's version: the `version` in pyproject.toml, written here too because reading the
installed metadata (`importlib.metadata`) costs ~0.1–0.2 s at every start of `claude-mcp`
(an MCP client pays it at each launch); tests/test_first_run.py holds the two equal."""

__version__ = "0.1.0"
