"""Delegate to Claude from Python, without MCP: the same bridge the MCP tools use.

python examples/python_api.py
"""

import anyio

from claude_mcp import ClaudeBridge, ClaudeMCPError, Policy


async def main() -> None:
    async with ClaudeBridge(Policy.load()) as claude:
        try:
            first = await claude.ask("Remember the word kiwi.", model="haiku")
            print(first.result, first.session_id)
            again = await claude.ask("Which word did I ask you to remember?", session_id=first.session_id)
            print(again.result, f"${again.total_cost_usd}")
        except ClaudeMCPError as error:  # every failure says what to do about it
            print("failed:", error)


anyio.run(main)
