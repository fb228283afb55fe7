"""A tiny MCP server that the fake model can call through the CLI: `shout(text)`. Over stdio by
default; `--http PORT TOKEN` serves it over Streamable HTTP on loopback at `/mcp`, answering only
requests that carry `Authorization: Bearer TOKEN` (401 otherwise)."""

import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("echo")


@server.tool()
def shout(text: str) -> str:
    """Shout the text back."""
    return text.upper() + "!"


def serve_http(port: int, token: str) -> None:
    import uvicorn
    from starlette.types import Receive, Scope, Send

    app = server.streamable_http_app()

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or [])
        if scope["type"] == "http" and headers.get(b"authorization") != f"Bearer {token}".encode():
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"unauthorized"})
            return
        await app(scope, receive, send)

    uvicorn.run(guarded, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--http"]:
        serve_http(int(sys.argv[2]), sys.argv[3])
    else:
        server.run()
