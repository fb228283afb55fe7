"""The MCP surface: the tools (each a `ToolSpec` with argument and result models and a handler),
the resources, progress reporting and the per-call context, published by `build_server` over
the SDK's low-level `Server`. Imports the bridge, state and config layers; never `web`.

Not named `mcp`, which would shadow the SDK."""
