"""The HTTP side and serving: the ASGI app (Streamable HTTP at `/mcp`, legacy SSE, `/healthz`),
authentication by bearer token, DNS-rebinding checks, and `serve` (stdio or HTTP, stopped by a
signal). May import every layer below it; nothing below imports it."""
