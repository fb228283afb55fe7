"""Set-up and documentation commands: `claude-mcp doctor`, `claude-mcp config CLIENT` (client
registration), and the README's generated tool reference. May import every layer but `web`
and the command line."""
