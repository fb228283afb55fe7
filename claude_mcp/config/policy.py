"""The server policy: defaults for every setting and ceilings that no call can exceed.

Loaded from a TOML file (`--config`) and command-line flags. `Policy.resolve` turns a call's
`CallSettings` into `ResolvedSettings` (concrete values, checked paths) or raises
`PolicyViolation` naming the setting and the limit. Nothing here starts a process. Long
because `Policy` is the one list of what an operator may set (the README's reference reads it).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigError, PolicyViolation
from .call_settings import CallSettings, Thinking
from .limits import JSON_SCHEMA_CEILING_KB, InputLimits
from .oauth import OAuthSettings
from .specs import AgentSpec, McpServer
from .suggest import did_you_mean
from .tenants import TenantSpec
from .types import Effort, PermissionMode

SettingSource = Literal["user", "project", "local"]
SAFE_PERMISSION_MODES: tuple[PermissionMode, ...] = ("default", "acceptEdits", "plan", "dontAsk", "auto")


class Policy(BaseModel):
    """What the operator allows. Every per-call setting is checked against it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    roots: tuple[Path, ...] = Field(
        default_factory=lambda: (Path.cwd(),),
        description="Directories Claude may work in (`cwd`, `add_dirs`). Default: where the server started.",
    )
    defaults: CallSettings = Field(
        default_factory=lambda: CallSettings(), description="Settings a call gets when it names none."
    )
    permission_modes: tuple[PermissionMode, ...] = Field(
        SAFE_PERMISSION_MODES, description="Permission modes a call may ask for (no `bypassPermissions` by default)."
    )
    max_turns: int | None = Field(100, ge=1, description="Most turns a call may ask for (and the default).")
    max_budget_usd: float | None = Field(None, gt=0, description="Most USD a call may spend (and the default).")
    default_timeout_s: float = Field(600, gt=0, description="Timeout of a call that sets none.")
    max_timeout_s: float = Field(3600, gt=0, description="Longest timeout a call may ask for.")
    allowed_tool_rules: tuple[str, ...] | None = Field(
        None, description="If set, the only `allowed_tools` entries a call may pass."
    )
    disallowed_tools: tuple[str, ...] = Field((), description="Tools denied on every call, whatever it asks.")
    api_retries: int = Field(2, ge=0, le=10, description="How often the CLI retries a failed API request.")
    stall_timeout_s: float = Field(
        90, gt=0, description="Stop a run when the model stream sends nothing for this long."
    )
    max_concurrent: int = Field(4, ge=1, description="Most CLI runs at once; further calls wait in a queue.")
    max_queued: int = Field(32, ge=0, description="Most calls waiting; beyond it a call fails fast as busy.")
    heartbeat_s: float = Field(5, gt=0, description="Send progress at least this often while a call runs.")
    max_warm: int = Field(4, ge=0, description="Most idle CLI processes kept alive for fast follow-ups (0: none).")
    max_warm_mb: float | None = Field(
        None,
        gt=0,
        description="Most memory (MiB, unique to the processes) the idle CLI processes may hold together; "
        "least recently used closed first (None: no limit but `max_warm`).",
    )
    warm_ttl_s: float = Field(600, gt=0, description="Close a warm process after this long unused.")
    spare_process: bool = Field(
        False,
        description="Keep CLIs pre-started for new conversations, so they skip the cold start (see `max_spares`).",
    )
    max_spares: int = Field(
        2,
        ge=1,
        description="With `spare_process`: most spares kept at once. One is kept while new conversations arrive; "
        "one more for each that found none ready in the last minute.",
    )
    spare_idle_s: float = Field(
        600,
        gt=0,
        description="With `spare_process`: keep no spare after this long without a new conversation (until the next).",
    )
    state_dir: Path | None = Field(
        None,
        description="Where the built-in SQLite store (`state.sqlite3`) lives; default: claude-mcp/ in the Claude "
        "config dir.",
    )
    state_url: str | None = Field(
        None,
        pattern=r"^(postgres(ql)?|sqlite)://",
        description="The shared store for several replicas: `postgresql://user:pass@host/db` (also --state-url or "
        "CLAUDE_MCP_STATE_URL). Unset: SQLite under state_dir. Never logged.",
    )
    job_lease_s: float = Field(
        15,
        ge=1,
        description="A running job's lease, renewed by its replica; a replica silent this long is taken for dead "
        "and its jobs end failed (resumable by session_id).",
    )
    agents: dict[str, AgentSpec] = Field(
        default_factory=dict, description="Named agents (`[agents.NAME]`): for `run_agent`, and as sub-agents."
    )
    mcp_servers: dict[str, McpServer] = Field(
        default_factory=dict, description="MCP servers given to Claude on every call (`[mcp_servers.NAME]`)."
    )
    mcp_server_types: tuple[Literal["stdio", "http", "sse"], ...] = Field(
        ("stdio", "http", "sse"),
        description="Kinds of per-call MCP servers a call may pass (stdio ones run a command on this machine).",
    )
    mcp_url_hosts: tuple[str, ...] | None = Field(
        None,
        description="If set, the only hosts a call's own URL MCP servers may point at (the MCP tools' `mcp_servers` of "
        "type `http`/`sse`, and the HTTP API's MCP connector, permitted where `http` is in `mcp_server_types`): a "
        "name, or `*.example.com` for its subdomains.",
    )
    mcp_private_addresses: bool = Field(
        False,
        description="Whether a call's own URL MCP servers (the MCP tools' and the HTTP API's) may point at loopback, "
        "private, link-local or other non-public addresses (a host name is resolved, and every address it has must be "
        "public).",
    )
    default_wait_s: float = Field(25, ge=0, description="How long `run_agent` waits before returning a job handle.")
    detach_after_s: float = Field(
        45,
        ge=0,
        description="A tool call from a client that sent no progress token (so nothing keeps its request alive) and "
        "does not take tasks returns after this long with the job its run goes on as (0: never).",
    )
    task_poll_interval_s: float = Field(
        0.5, gt=0, description="How often a Tasks-extension client is told to poll a task (`pollIntervalMs`)."
    )
    job_retention_s: float = Field(3600, gt=0, description="How long a finished job's result is kept.")
    max_jobs: int = Field(100, ge=1, description="Most jobs (running or kept) per client.")
    max_batch_requests: int = Field(
        10_000,
        ge=1,
        description="Most requests in one Message Batch, and in all of a client's batches still processing together "
        "(the API allows 100,000; each request here is a stored job, created while the POST waits).",
    )
    max_request_mb: float = Field(
        8,
        gt=0,
        description="Most MiB one request body to `/v1/messages`, `/v1/messages/count_tokens` or "
        "`/v1/chat/completions` may hold; a larger one is refused with 413 before the rest is read. A Claude Code "
        "run takes far less (its prompt and history go to one CLI), and a body's decoded form takes several times "
        "its size in memory, so 8 MiB bounds what one request can make the server hold. Server-wide.",
    )
    max_batch_mb: float = Field(
        64,
        gt=0,
        description="Most MiB the body of `POST /v1/messages/batches` may hold (the API's own limit is 256 MB); "
        "a larger one is refused with 413 before the rest is read. 64 MiB is ~6 KiB for each of 10,000 requests, "
        "and every request is stored. Server-wide.",
    )
    max_file_mb: float = Field(
        32,
        gt=0,
        description="Most MiB the body of `POST /v1/files` (one upload, multipart) may hold; a larger one is refused "
        "with 413 before the rest is read. An image given to a run holds at most 5 MB, a document 32 MB. Server-wide.",
    )
    files_quota_mb: float = Field(
        256,
        gt=0,
        description="Most MiB of uploaded files one namespace (a tenant, or a caller) keeps at once; past it an "
        "upload is refused until files are deleted or expire.",
    )
    file_ttl_s: float = Field(
        7 * 24 * 3600, gt=0, description="How long an uploaded file is kept (then it is gone, as if deleted)."
    )
    max_prompt_kb: float = Field(
        1024,
        gt=0,
        description="Most KiB (UTF-8) of one turn's prompt: an MCP tool's `prompt`; over HTTP the last user message, "
        "or a history this server holds no conversation for, carried into a new one with it. Larger is refused "
        "before any run starts (MCP error; HTTP 413). Server-wide (a tenant's policy may lower it, not raise it).",
    )
    max_system_prompt_kb: float = Field(
        256,
        gt=0,
        description="Most KiB of `system_prompt` and of `append_system_prompt`, each (over HTTP: `system`, or the "
        "system and developer messages). Server-wide, like `max_prompt_kb`.",
    )
    max_json_schema_kb: float = Field(
        64,
        gt=0,
        le=JSON_SCHEMA_CEILING_KB,
        description="Most KiB of a call's `json_schema` (as JSON, non-ASCII escaped): it goes to the CLI on its "
        f"command line, so at most {JSON_SCHEMA_CEILING_KB}. Server-wide, like `max_prompt_kb`.",
    )
    max_agents_kb: float = Field(
        512, gt=0, description="Most KiB of a call's own `agents`, their definitions together. Server-wide."
    )
    max_client_tools: int = Field(
        256, ge=1, description="Most tools one Messages API request may offer (`tools`). Server-wide."
    )
    max_client_tools_kb: float = Field(
        1024,
        gt=0,
        description="Most KiB of one Messages API request's `tools`, their definitions together. Server-wide.",
    )
    max_batches: int = Field(
        100,
        ge=1,
        description="Most Message Batches one tenant or caller keeps, processing or ended (each at most "
        "`max_batch_mb`): past it a new batch is refused until ended ones are deleted or expire.",
    )
    batch_retention_s: float = Field(
        29 * 86_400,
        ge=86_400,
        description="How long a Message Batch and its results are kept after its creation (the API's 29 days; at "
        "least the 24 hours a batch may run).",
    )
    max_conversations: int | None = Field(
        None, ge=1, description="Most conversations one tenant or caller may keep stored (unset: no limit)."
    )
    quota_usd_per_day: float | None = Field(
        None, gt=0, description="Most USD one tenant or caller may spend per UTC day (unset: no limit)."
    )
    quota_usd_per_month: float | None = Field(
        None, gt=0, description="Most USD one tenant or caller may spend per UTC calendar month (unset: no limit)."
    )
    quota_runs_per_minute: int | None = Field(
        None, ge=1, description="Most runs one tenant or caller may start per clock minute (unset: no limit)."
    )
    quota_tokens_per_day: int | None = Field(
        None,
        ge=1,
        description="Most tokens (input, output and cache writes) one tenant or caller may use per UTC day "
        "(unset: no limit).",
    )
    metering: bool = Field(
        True, description="Record what every run used (tokens, cost) in the store, for quotas and usage reports."
    )
    usage_admin_token_env: str | None = Field(
        None,
        description="Environment variable holding the operator's token for the usage and cost reports over HTTP "
        "(`/v1/organizations/…`) across all tenants and callers; anyone else sees only their own.",
    )
    credentials: Literal["server", "caller"] = Field(
        "server",
        description="Whose Claude credential a run uses: the server's own (`server`), or the one each HTTP request "
        "carries in `X-Claude-Credential` (`caller`; API keys only, see `caller_oauth_tokens`).",
    )
    caller_oauth_tokens: bool = Field(
        False,
        description="In `caller` mode, also accept Claude subscription tokens (`sk-ant-oat…`): only for a deployment "
        "that serves its owner's own apps, or one with Anthropic's approval.",
    )
    namespace_key_env: str = Field(
        "CLAUDE_MCP_NAMESPACE_KEY",
        description="Environment variable with the secret that keys callers' namespaces (the same on every replica).",
    )
    max_callers: int = Field(
        64, ge=1, description="In `caller` mode, most callers served at once (each holds its own warm processes)."
    )
    caller_idle_s: float = Field(
        900, gt=0, description="In `caller` mode, forget a caller's processes and credential after this long unused."
    )
    tenants: dict[str, TenantSpec] = Field(
        default_factory=dict, description="HTTP tenants by name, each with its own token and credential."
    )
    oauth: OAuthSettings | None = Field(
        None,
        description="`[oauth]`: the server as an OAuth 2.1 protected resource (MCP authorization): which bearer "
        "tokens are accepted, the authorization server that issues them, and how their claims map to tenants.",
    )
    api: bool = Field(
        True,
        description="Serve the Anthropic Messages API (`/v1/messages`, `/v1/models`) and OpenAI Chat Completions "
        "(`/v1/chat/completions`) next to `/mcp` over HTTP.",
    )
    allowed_hosts: tuple[str, ...] = Field(
        (), description="Host names (with port, `*` allowed) the HTTP transports answer to besides loopback."
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="Over HTTP, most connections (and requests in progress) at once; past it requests get a 503. "
        "A connection must send each request's headers within 10 s.",
    )
    max_mcp_sessions: int = Field(
        1000,
        ge=1,
        description="Over Streamable HTTP, most MCP sessions open at once; past it a new one is refused (503).",
    )
    mcp_session_idle_s: float = Field(
        1800, gt=0, description="Over Streamable HTTP, end an MCP session unused this long (its client starts anew)."
    )
    drain_grace_s: float = Field(
        10,
        ge=0,
        description="Over HTTP, how long the server may take to stop after SIGTERM: new calls are refused at once, "
        "running ones get all but the last ~2 s to finish, then are stopped (resumable by session_id). Set it to "
        "the platform's termination grace period (Cloud Run: 10 s).",
    )
    metrics_token_env: str | None = Field(
        None,
        description="Environment variable holding the operator's token for `/metrics` (`Authorization: Bearer …`); "
        "when set, only it opens `/metrics`. Unset: tenants' tokens do, or, without tenants, loopback only.",
    )
    permission_prompts: Literal["client", "deny"] | tuple[str, ...] = Field(
        "client",
        description="Tool uses that need approval: ask the person at the client (`client`), `deny` them, or "
        'approve those matching a list of rules (`["Bash(git *)", "Edit"]`) and deny the rest.',
    )
    permission_timeout_s: float = Field(60, gt=0, description="Deny a permission request unanswered this long.")
    client_tool_timeout_s: float = Field(
        300,
        gt=0,
        description="Over the Messages API, stop a run whose call of one of the client's own tools (`tools`) gets no "
        "`tool_result` this long.",
    )
    max_depth: int = Field(2, ge=0, description="How deep claude-mcp may call itself through Claude.")
    inherit_mcp_config: bool = Field(
        False, description="Let Claude load the user's and project's own MCP servers (off: only per-call ones)."
    )
    setting_sources: tuple[SettingSource, ...] | None = Field(
        None, description="Which Claude settings files to load; unset loads the CLI's defaults."
    )
    cli_path: str | None = Field(None, description="The `claude` executable; default: the SDK's bundled one.")
    cli_env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment for the CLI process (never logged)."
    )
    isolation: Literal["sandbox", "none"] | None = Field(
        None,
        description="Walls around each namespace's CLI processes: `sandbox` (bubblewrap: own PID, user and IPC "
        "namespaces, a read-only system, only the namespace's own config dir, home and workspace writable and "
        "nothing else of the server in view) or `none`. Unset: `sandbox` with tenants, with `credentials = "
        '"caller"` and when listening beyond loopback; `none` for one person\'s local server. In every mode a CLI '
        "gets an environment built from an allowlist, never the server's whole environment.",
    )
    isolation_none_acknowledged: bool = Field(
        False,
        description="Run a server for several users (tenants, callers, or beyond loopback) with `isolation = "
        "\"none\"`: each user's Claude then runs as the server's OS user and can read other users' files and "
        "processes. Refused unless this is set.",
    )
    workspace_root: Path | None = Field(
        None,
        description="Where each namespace (tenant or caller) gets its own workspace, created on first use, when "
        "its policy names no roots of its own; default: `workspaces` in the state directory.",
    )
    bwrap_path: str = Field("bwrap", description="The bubblewrap executable the sandbox uses.")
    sandbox_readable: tuple[Path, ...] = Field(
        (),
        description="More directories every sandbox may read (besides the system, the server's Python and the CLI).",
    )
    cli_env_passthrough: tuple[str, ...] = Field(
        (),
        description="Names of the server's environment variables passed to every CLI process besides the "
        "allowlist (PATH, locale, proxies and CA certificates; for one person's server also HOME, their login and "
        "Claude Code's own variables).",
    )

    @field_validator("roots")
    @classmethod
    def _absolute_roots(cls, roots: tuple[Path, ...]) -> tuple[Path, ...]:
        if not roots:
            raise ValueError("at least one root is needed")
        return tuple(Path(r).expanduser().resolve() for r in roots)

    @classmethod
    def load(cls, path: Path | None = None, **overrides: Any) -> Policy:
        """Read the TOML file (if any), apply flag overrides, and validate the whole."""
        data: dict[str, Any] = {}
        if path is not None:
            try:
                data = tomllib.loads(Path(path).read_text())
            except FileNotFoundError:
                raise ConfigError(f"config file not found: {path}") from None
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
            base = Path(path).resolve().parent
            if "roots" in data:
                data["roots"] = [base / Path(r).expanduser() for r in data["roots"]]
        data.update({k: v for k, v in overrides.items() if v is not None})
        if env_cli := os.environ.get("CLAUDE_MCP_CLI"):
            data.setdefault("cli_path", env_cli)
        if env_state := os.environ.get("CLAUDE_MCP_STATE_URL"):
            data.setdefault("state_url", env_state)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            where = f"config file {path}" if path else "settings"
            raise ConfigError(f"invalid {where}: {_format_errors(exc, cls)}") from None

    @property
    def input_limits(self) -> InputLimits:
        """How large a call's inputs may be (`max_prompt_kb` and the rest), in bytes."""
        return InputLimits(
            prompt_bytes=int(self.max_prompt_kb * 1024),
            system_prompt_bytes=int(self.max_system_prompt_kb * 1024),
            json_schema_bytes=int(self.max_json_schema_kb * 1024),
            agents_bytes=int(self.max_agents_kb * 1024),
            most_client_tools=self.max_client_tools,
            client_tools_bytes=int(self.max_client_tools_kb * 1024),
        )

    def resolve(self, call: CallSettings, prompt: str | None = None) -> ResolvedSettings:
        """Merge the call over the defaults and check every ceiling, and the sizes of the settings
        and of the `prompt` (if given). Raises `PolicyViolation` or `TooLarge`."""
        merged = call.over(self.defaults)
        limits = self.input_limits
        if prompt is not None:
            limits.prompt(prompt)
        limits.settings(merged.sized())
        permission_mode = merged.permission_mode or "default"
        if permission_mode not in self.permission_modes:
            raise PolicyViolation(
                "permission_mode",
                f"permission_mode {permission_mode!r} is not permitted by the server policy; "
                f"permitted: {', '.join(self.permission_modes)}",
            )
        max_turns = _capped("max_turns", merged.max_turns, self.max_turns)
        budget = _capped("max_budget_usd", merged.max_budget_usd, self.max_budget_usd)
        timeout_s = _capped("timeout_s", merged.timeout_s or self.default_timeout_s, self.max_timeout_s)
        allowed = tuple(merged.allowed_tools or ())
        if self.allowed_tool_rules is not None:
            refused = [rule for rule in allowed if rule not in self.allowed_tool_rules]
            if refused:
                raise PolicyViolation(
                    "allowed_tools",
                    f"allowed_tools {refused} exceed the server policy; permitted rules: "
                    f"{', '.join(self.allowed_tool_rules) or '(none)'}",
                )
        agents = self._agents(merged.agents or {}, permission_mode)
        mcp_servers = self._mcp_servers(merged.mcp_servers or {})
        cwd = self.check_path("cwd", merged.cwd) if merged.cwd else self.roots[0]
        add_dirs = tuple(self.check_path("add_dirs", d) for d in merged.add_dirs or ())
        return ResolvedSettings(
            cwd=cwd,
            model=merged.model,
            fallback_model=merged.fallback_model,
            system_prompt=merged.system_prompt,
            append_system_prompt=merged.append_system_prompt,
            allowed_tools=allowed,
            disallowed_tools=tuple(dict.fromkeys((*(merged.disallowed_tools or ()), *self.disallowed_tools))),
            permission_mode=permission_mode,
            max_turns=max_turns,
            max_budget_usd=budget,
            effort=merged.effort,
            thinking=merged.thinking,
            json_schema=merged.json_schema,
            add_dirs=add_dirs,
            timeout_s=float(timeout_s),
            tools=tuple(merged.tools) if merged.tools is not None else None,
            agents=agents,
            mcp_servers=mcp_servers,
        )

    def _agents(self, called: dict[str, AgentSpec], permission_mode: PermissionMode) -> dict[str, AgentSpec]:
        if clash := sorted(set(called) & set(self.agents)):
            raise PolicyViolation("agents", f"agents {clash} are defined by the server; pick other names")
        agents = {**self.agents, **called}
        for name, agent in called.items():
            if agent.permission_mode is not None and agent.permission_mode not in self.permission_modes:
                raise PolicyViolation(
                    "agents",
                    f"agent {name!r} asks for permission_mode {agent.permission_mode!r}, which the server policy "
                    f"does not permit; permitted: {', '.join(self.permission_modes)}",
                )
        return agents

    def _mcp_servers(self, called: dict[str, McpServer]) -> dict[str, McpServer]:
        if clash := sorted(set(called) & set(self.mcp_servers)):
            raise PolicyViolation("mcp_servers", f"mcp_servers {clash} are defined by the server; pick other names")
        for name, server in called.items():
            if server.type not in self.mcp_server_types:
                raise PolicyViolation(
                    "mcp_servers",
                    f"mcp_servers.{name}: {server.type} servers are not permitted by the server policy; "
                    f"permitted: {', '.join(self.mcp_server_types) or '(none)'}",
                )
        return {**self.mcp_servers, **called}

    def check_path(self, setting: str, text: str) -> Path:
        """An existing directory inside a root (symlinks resolved), or `PolicyViolation`.

        Containment is checked before existence, so nothing is revealed about paths outside the roots.
        """
        candidate = Path(text).expanduser()
        if not candidate.is_absolute():
            candidate = self.roots[0] / candidate
        try:
            real = candidate.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            raise PolicyViolation(setting, f"{setting} {text!r} cannot be resolved") from None
        if not any(real == root or real.is_relative_to(root) for root in self.roots):
            raise PolicyViolation(
                setting,
                f"{setting} {text!r} is outside the allowed roots ({', '.join(map(str, self.roots))}); "
                "pass a directory inside one of them, or start the server with --root",
            )
        if not real.exists():
            raise PolicyViolation(setting, f"{setting} {text!r} does not exist")
        if not real.is_dir():
            raise PolicyViolation(setting, f"{setting} {text!r} is not a directory")
        return real


@dataclass(frozen=True, slots=True)
class ResolvedSettings:
    """A call's settings after defaults and policy: concrete, checked, ready to map onto the CLI."""

    cwd: Path
    model: str | None
    fallback_model: str | None
    system_prompt: str | None
    append_system_prompt: str | None
    allowed_tools: tuple[str, ...]
    disallowed_tools: tuple[str, ...]
    permission_mode: PermissionMode
    max_turns: int | None
    max_budget_usd: float | None
    effort: Effort | None
    thinking: Thinking | None
    json_schema: dict[str, Any] | None
    add_dirs: tuple[Path, ...]
    timeout_s: float
    tools: tuple[str, ...] | None = None
    agents: dict[str, AgentSpec] = field(default_factory=dict)
    mcp_servers: dict[str, McpServer] = field(default_factory=dict)
    agent: str | None = None
    """Run the main conversation as this agent (`run_agent`)."""


def _capped(setting: str, asked: float | None, ceiling: float | None) -> Any:
    if asked is None:
        return ceiling
    if ceiling is not None and asked > ceiling:
        raise PolicyViolation(setting, f"{setting}={asked:g} exceeds the server limit of {ceiling:g}")
    return asked


def _format_errors(exc: ValidationError, model: type[BaseModel]) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            lines.append(f"{where}: not a setting{did_you_mean(model, error['loc'])}")
        else:
            lines.append(f"{where}: {error['msg']}")
    return "; ".join(lines)  # one line: a person reads it on a terminal, a client in its server log
