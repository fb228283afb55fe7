"""What the operator and the caller may set, as validated, pure models: the per-call settings,
the server policy and its loading, agent and MCP-server specs, tenant specs. Imports nothing of
the package but `errors`."""
