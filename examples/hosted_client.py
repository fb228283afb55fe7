"""Use a hosted claude-mcp (`credentials = "caller"`) with your own Anthropic API key.

CLAUDE_MCP_URL=https://claude-mcp.example.com/mcp ANTHROPIC_API_KEY=sk-ant-api03-… python examples/hosted_client.py
"""

import os

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main() -> None:
    url = os.environ.get("CLAUDE_MCP_URL", "http://127.0.0.1:8765/mcp")
    headers = {"X-Claude-Credential": os.environ["ANTHROPIC_API_KEY"]}  # pays for your runs; never stored
    async with (
        httpx2.AsyncClient(headers=headers, timeout=600) as http,
        Client(streamable_http_client(url, http_client=http)) as claude,
    ):
        first = await claude.call_tool("ask", {"prompt": "Remember the word kiwi."})
        session_id = (first.structured_content or {}).get("session_id")
        again = await claude.call_tool("ask", {"prompt": "Which word?", "session_id": session_id})
        print(again.content[0].text if again.content else again)  # only you can continue this conversation


anyio.run(main)
