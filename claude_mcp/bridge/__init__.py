"""Claude Code underneath: `ClaudeBridge` (the Python API every surface calls), the settings →
CLI options mapping, the CLI process and its process tree, warm processes and the spare,
turn-taking, run slots, jobs, the permission gate, results, and tenancy (a bridge per tenant).
Imports `state` and `config`; never the MCP surface or the web layer."""
