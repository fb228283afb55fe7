"""A tiny MCP server (stdio) that the fake model can call through the CLI: `shout(text)`."""

from mcp.server.mcpserver import MCPServer

server = MCPServer("echo")


@server.tool()
def shout(text: str) -> str:
    """Shout the text back."""
    return text.upper() + "!"


if __name__ == "__main__":
    server.run()
