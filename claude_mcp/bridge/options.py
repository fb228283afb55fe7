"""Resolved settings → `ClaudeAgentOptions`: a pure mapping, tested without a process.

`claude-agent-sdk` turns the options into CLI flags and sends the prompt over stdin
(stream-json), so a prompt never meets argv's size limits; the flags that may be large go to
files when they are (`cli_files`, as a process is launched).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from claude_agent_sdk import ClaudeAgentOptions, McpServerConfig, SessionStore
from claude_agent_sdk.types import SystemPromptCustom, SystemPromptPreset, ThinkingConfig

from ..config.policy import Policy, ResolvedSettings
from .client_tools import SERVER, ToolRelay

DEPTH_ENV = "CLAUDE_MCP_DEPTH"
"""Carried into every CLI we start, so a claude-mcp started by that CLI knows its depth."""
BUDGET_ENV = "CLAUDE_MCP_MAX_BUDGET_USD"
"""A run's budget, carried the same way: a claude-mcp below it may spend no more per call."""
CHAIN_ENV = "CLAUDE_MCP_CHAIN_ID"
"""A process's chain key, carried the same way: a claude-mcp below finds the chain of the process's
current turn by it (the store points it at each turn's chain; see `metering`)."""


def starts_servers(options: ClaudeAgentOptions) -> bool:
    """Whether a CLI started with these options may start MCP servers as its children (they get its
    environment: a claude-mcp among them is the next hop of a chain). Not when it loads only the
    servers given here and none of them is a stdio server."""
    if not options.strict_mcp_config or not isinstance(options.mcp_servers, dict):
        return True
    return any(server.get("type", "stdio") == "stdio" for server in options.mcp_servers.values())


@dataclass(frozen=True, slots=True)
class RunTarget:
    """Which conversation a run continues: a new one, a resumed one, or a fork of one."""

    resume: str | None = None
    fork: bool = False
    override_system_prompt: bool = False
    """On a resume, send this call's system prompt instead of the one recorded on the first turn."""


def build_options(
    settings: ResolvedSettings,
    policy: Policy,
    *,
    target: RunTarget = RunTarget(),
    child_depth: int = 1,
    stderr: Callable[[str], None] | None = None,
    session_store: SessionStore | None = None,
    client_tools: ToolRelay | None = None,
    chain_id: str | None = None,
) -> ClaudeAgentOptions:
    """Map one call's resolved settings and the server policy onto the SDK's options.

    With a `session_store`, the SDK mirrors every transcript line into it and resumes from it
    (so a conversation continues on any replica). With `client_tools`, the caller's own tools are
    given as an in-process MCP server, allowed without asking (their calls go to the caller). `chain_id`:
    the process's chain key (told to a claude-mcp it starts): its first turn's chain."""
    system_prompt, extra_args = _system_prompt(settings, target)
    env = _env(settings, policy, child_depth, chain_id)
    if settings.agents:
        # The CLI's own flag (not the SDK's initialize request) so that `--agent` can pick one.
        extra_args["agents"] = json.dumps({name: agent.cli_definition() for name, agent in settings.agents.items()})
    if settings.agent is not None:
        extra_args["agent"] = settings.agent
    mcp_servers = {name: cast(McpServerConfig, server.model_dump()) for name, server in settings.mcp_servers.items()}
    allowed_tools = list(settings.allowed_tools)
    if client_tools is not None:
        mcp_servers[SERVER] = client_tools.server()
        allowed_tools += client_tools.allowed()
    return ClaudeAgentOptions(
        cwd=settings.cwd,
        model=settings.model,
        fallback_model=settings.fallback_model,
        system_prompt=system_prompt,
        allowed_tools=allowed_tools,
        disallowed_tools=list(settings.disallowed_tools),
        permission_mode=settings.permission_mode,
        max_turns=settings.max_turns,
        max_budget_usd=settings.max_budget_usd,
        effort=settings.effort,
        thinking=cast(ThinkingConfig, settings.thinking.model_dump(exclude_none=True)) if settings.thinking else None,
        output_format=(
            {"type": "json_schema", "schema": settings.json_schema} if settings.json_schema is not None else None
        ),
        add_dirs=list(settings.add_dirs),
        tools=list(settings.tools) if settings.tools is not None else None,
        mcp_servers=mcp_servers,
        resume=target.resume,
        fork_session=target.fork,
        strict_mcp_config=not policy.inherit_mcp_config,
        setting_sources=list(policy.setting_sources) if policy.setting_sources is not None else None,
        cli_path=policy.cli_path,
        env=env,
        extra_args=extra_args,
        include_partial_messages=True,
        max_buffer_size=policy.input_limits.cli_buffer_bytes,  # a line of the CLI's may echo a prompt at the limit
        stderr=stderr,
        session_store=session_store,
    )


def _system_prompt(
    settings: ResolvedSettings, target: RunTarget
) -> tuple[SystemPromptCustom | SystemPromptPreset, dict[str, str | None]]:
    """The system prompt option, and the CLI flags it needs beside it."""
    system_prompt: SystemPromptCustom | SystemPromptPreset
    extra_args: dict[str, str | None] = {}
    if settings.system_prompt is not None:
        system_prompt = {"type": "custom", "prompt": settings.system_prompt}
        if settings.append_system_prompt:
            extra_args["append-system-prompt"] = settings.append_system_prompt
    elif settings.append_system_prompt:
        system_prompt = {"type": "preset", "preset": "claude_code", "append": settings.append_system_prompt}
    else:
        system_prompt = {"type": "preset", "preset": "claude_code"}
    if target.override_system_prompt:
        # The CLI re-sends the system prompt recorded on a conversation's first turn unless
        # told not to snapshot; the SDK reads `snapshot` from presets too.
        system_prompt["snapshot"] = False
    return system_prompt, extra_args


def _env(settings: ResolvedSettings, policy: Policy, child_depth: int, chain_id: str | None) -> dict[str, str]:
    """What the CLI's environment gets from us: the policy's `cli_env`, and what a claude-mcp
    started below it needs to know (its depth, its budget, its chain)."""
    env = {
        **policy.cli_env,
        # The CLI retries 401/429/5xx ten times over ~3 minutes by default; an MCP caller
        # needs the answer in seconds.
        "CLAUDE_CODE_MAX_RETRIES": str(policy.api_retries),
        DEPTH_ENV: str(child_depth),
    }
    if settings.max_budget_usd is not None:
        env[BUDGET_ENV] = str(settings.max_budget_usd)
    if chain_id is not None:
        env[CHAIN_ENV] = chain_id
    return env
