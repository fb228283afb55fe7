"""A newcomer's first ten minutes (#30): register with a client, get a first answer, and read
errors that say what to do.

The client is played as the official MCP SDKs' stdio client plays it: it starts the server from
the registered entry, from `/`, with only its own few variables (HOME, PATH, …) and the entry's
`env`, and nothing of the shell that ran `config`.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import FakeModel, text_of

KEY = "sk-ant-newcomer-key"
Completed = subprocess.CompletedProcess[str]


def run(
    *args: str, env: dict[str, str], cwd: Path | str | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "claude_mcp", *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=cwd, input=stdin,
    )  # fmt: skip


@pytest.fixture
def shell(tmp_path: Path, fake_model: FakeModel) -> dict[str, str]:
    """A newcomer's shell: a fresh HOME (no Claude login), their key exported, Claude's endpoint set."""
    home = tmp_path / "home"
    home.mkdir()
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_", "XDG_"))}
    return {
        **keep,
        "HOME": str(home),
        "ANTHROPIC_API_KEY": KEY,
        "ANTHROPIC_BASE_URL": fake_model.url,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = (tmp_path / "project").resolve()
    (root / "src").mkdir(parents=True)
    return root


def desktop_entry(home: Path) -> dict[str, Any]:
    written = json.loads((home / ".config/Claude/claude_desktop_config.json").read_text())
    entry: dict[str, Any] = written["mcpServers"]["claude"]
    return entry


@pytest.mark.anyio
async def test_a_client_starts_the_registered_server_from_slash_and_gets_an_answer_on_the_key(
    shell: dict[str, str], project: Path
) -> None:
    done = run("config", "claude-desktop", "--write", env=shell, cwd=project)
    assert done.returncode == 0, done.stderr
    home = Path(shell["HOME"])
    config_file = home / ".config/Claude/claude_desktop_config.json"
    assert f"ANTHROPIC_API_KEY is now in {config_file}" in done.stdout
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600, "a file holding a key is its owner's only"
    entry = desktop_entry(home)
    assert entry["args"][-2:] == ["--root", str(project)]
    client_env = {"HOME": shell["HOME"], "PATH": shell["PATH"], **entry["env"]}
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=client_env, cwd="/")
    async with Client(params) as client:
        answer = await client.call_tool("ask", {"prompt": "[[report]]"})
        assert not answer.is_error, text_of(answer)
        report = json.loads(answer.content[0].text)  # type: ignore[union-attr]
        assert report["api_key"] == KEY
        assert f"Primary working directory: {project}" in report["environment"]
        # A client that offers its workspace as a root: the conversation works there (inside the registered root).
        roots_answer = await _ask_with_roots(entry, client_env, project / "src")
        assert f"Primary working directory: {project / 'src'}" in roots_answer["environment"]
    checked = run("doctor", "--client", "claude-desktop", env={"HOME": shell["HOME"], "PATH": shell["PATH"]})
    assert checked.returncode == 0, checked.stdout
    assert "credential: ANTHROPIC_API_KEY, from the entry's env" in checked.stdout
    assert f"[ok ] root {project}" in checked.stdout
    assert KEY not in checked.stdout + checked.stderr


async def _ask_with_roots(entry: dict[str, Any], env: dict[str, str], workspace: Path) -> dict[str, Any]:
    import mcp_types as types

    async def roots(context: Any) -> types.ListRootsResult:
        outside = types.Root(uri="file:///etc")  # not inside the registered root: passed over
        return types.ListRootsResult(roots=[outside, types.Root(uri=workspace.as_uri())])

    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=env, cwd="/")
    # Clients of the handshake era (Claude Desktop, editors) answer the server's roots/list; the 2026-07-28
    # revision deprecates it and has no server-to-client requests.
    async with Client(params, list_roots_callback=roots, mode="legacy") as client:
        answer = await client.call_tool("ask", {"prompt": "[[report]]"})
        assert not answer.is_error, text_of(answer)
        report: dict[str, Any] = json.loads(answer.content[0].text)  # type: ignore[union-attr]
        return report


def test_without_a_key_the_registration_says_so_and_doctor_names_what_the_client_lacks(
    shell: dict[str, str], project: Path
) -> None:
    done = run("config", "cursor", "--write", "--no-key", env=shell, cwd=project)
    assert done.returncode == 0, done.stderr
    assert "none is registered: the server will use Claude's own login" in done.stdout
    written = json.loads((Path(shell["HOME"]) / ".cursor/mcp.json").read_text())
    assert "ANTHROPIC_API_KEY" not in written["mcpServers"]["claude"].get("env", {})
    checked = run("doctor", "--client", "cursor", env=shell)  # the shell has the key; the client's server does not
    assert checked.returncode == 1
    assert "[FIX] the server cursor starts has no credential" in checked.stdout
    entry = json.loads((Path(shell["HOME"]) / ".cursor/mcp.json").read_text())["mcpServers"]["claude"]
    refused = anyio.run(_ask_as_client, entry, {"HOME": shell["HOME"], "PATH": shell["PATH"], **entry["env"]})
    assert refused.is_error and "Claude has no valid credential where the server runs" in text_of(refused)
    assert "bare environment" in text_of(refused) and "claude-mcp doctor --client" in text_of(refused)
    missing = run("doctor", "--client", "windsurf", env=shell)
    assert missing.returncode == 1 and "no entry 'claude'" in missing.stdout


async def _ask_as_client(entry: dict[str, Any], env: dict[str, str]) -> Any:
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=env, cwd="/")
    async with Client(params) as client:
        return await client.call_tool("ask", {"prompt": "hello"})


def test_config_never_registers_slash_or_a_missing_root(shell: dict[str, str], project: Path) -> None:
    at_slash = run("config", "cursor", env=shell, cwd="/")
    assert at_slash.returncode == 2 and _one_line(at_slash.stderr)
    assert "Claude could work anywhere on the disk" in at_slash.stderr and "--root" in at_slash.stderr
    missing = run("config", "cursor", "--root", str(project / "nope"), env=shell, cwd=project)
    assert missing.returncode == 2 and "does not exist" in missing.stderr and _one_line(missing.stderr)
    printed = run("config", "claude-desktop", env=shell, cwd=project)
    assert printed.returncode == 0 and KEY not in printed.stdout, "a printed snippet shows a placeholder"
    assert "<your ANTHROPIC_API_KEY>" in printed.stdout
    assert "the key is then in" in printed.stdout and "--no-key" in printed.stdout


def test_zed_and_vscode_settings_with_comments_are_added_to_and_keep_them(shell: dict[str, str], project: Path) -> None:
    zed = Path(shell["HOME"]) / ".config/zed/settings.json"
    zed.parent.mkdir(parents=True)
    zed.write_text('// my Zed settings\n{\n  "theme": "One Dark", // dark\n  "context_servers": {},\n}\n')
    assert run("config", "zed", "--write", env=shell, cwd=project).returncode == 0
    text = zed.read_text()
    assert "// my Zed settings" in text and "// dark" in text
    from claude_mcp.setup.jsonc import loads

    entry = loads(text)["context_servers"]["claude"]
    assert entry["env"]["ANTHROPIC_API_KEY"] == KEY and loads(text)["theme"] == "One Dark"
    vscode = project / ".vscode/mcp.json"
    vscode.parent.mkdir()
    vscode.write_text('{\n  /* the team\'s servers */\n  "servers": {"other": {"command": "x"}}\n}\n')
    done = run("config", "vscode", "--write", env=shell, cwd=project)
    assert done.returncode == 0, done.stderr
    assert KEY not in vscode.read_text(), "a workspace file is often committed: VS Code asks for the key"
    document = loads(vscode.read_text())
    assert "/* the team's servers */" in vscode.read_text() and "other" in document["servers"]
    assert document["servers"]["claude"]["env"]["ANTHROPIC_API_KEY"] == "${input:claude-mcp-anthropic-api-key}"
    assert document["inputs"][0]["password"] is True


def _one_line(stderr: str) -> bool:
    return len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


def test_help_and_version_answer_without_importing_the_server() -> None:
    probe = (
        "import sys, contextlib, io\n"
        "from claude_mcp import cli\n"
        "for argv in (['--help'], ['--version'], ['serve', '--help']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        cli.main(argv)\n"
        "heavy = ('mcp', 'uvicorn', 'claude_agent_sdk', 'pydantic')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
    from claude_mcp import cli
    from claude_mcp.setup.clients import CLIENTS
    from claude_mcp.telemetry.logs import LOG_FORMATS
    from claude_mcp.web.app import LOOPBACK, TRANSPORTS

    assert (cli.CLIENTS, cli.LOG_FORMATS, cli.TRANSPORTS, cli.LOOPBACK) == (CLIENTS, LOG_FORMATS, TRANSPORTS, LOOPBACK)


def test_the_version_is_the_installed_packages() -> None:
    from importlib.metadata import version

    from claude_mcp import __version__

    assert __version__ == version("claude-mcp")
    done = run("--version", env=dict(os.environ))
    assert done.stdout.strip() == f"claude-mcp {__version__}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_start_up_errors_are_one_line_a_person_can_act_on(shell: dict[str, str], project: Path) -> None:
    bad_key = project / "claude-mcp.toml"
    bad_key.write_text("max_turn = 5\n")
    unreachable = f"postgresql://newcomer:hunter2@127.0.0.1:{_free_port()}/claude"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cases: list[tuple[tuple[str, ...], str, str]] = [
            (("serve", "--transport", "http", "--port", str(taken.getsockname()[1])), "cannot listen on", "--port"),
            (("serve", "--state-url", unreachable), "cannot reach PostgreSQL at 127.0.0.1", "Connection refused"),
            (("usage", "--state-url", unreachable), "cannot reach PostgreSQL at 127.0.0.1", "state_url"),
            (("serve", "--log-level", "debug", "--root", str(project / "nope")), "nope does not exist", "--root"),
            (("serve", "--config", str(bad_key)), "max_turn: not a setting", "did you mean 'max_turns'?"),
            (
                ("serve", "--transport", "http", "--host", "0.0.0.0"),
                "Refusing to listen on 0.0.0.0",
                "--credentials caller",
            ),
            (("hash-token",), "no token on stdin", "hash-token"),
        ]
        for args, says, advice in cases:
            done = run(*args, env=shell, cwd=project)
            assert done.returncode == 2, (args, done.stderr)
            assert _one_line(done.stderr), (args, done.stderr)
            assert says in done.stderr and advice in done.stderr, (args, done.stderr)
            assert "hunter2" not in done.stderr and done.stdout == ""
    at_slash = run("serve", env=shell, cwd="/")
    assert at_slash.returncode == 2 and _one_line(at_slash.stderr)
    assert "started in / with no root named, so Claude could work anywhere on the disk" in at_slash.stderr


@pytest.mark.anyio
async def test_an_answer_carries_its_session_id_in_text_and_run_agent_says_how_to_define_an_agent(
    client: Client,
) -> None:
    # An optional argument given as null is still accepted (its schema no longer offers null: see test_tool_schemas).
    answer = await client.call_tool("ask", {"prompt": "[[say:hello]]", "allowed_tools": None})
    assert not answer.is_error, text_of(answer)
    assert answer.structured_content is not None
    session_id = answer.structured_content["session_id"]
    assert [block.text for block in answer.content] == ["hello", f"(session_id: {session_id})"]  # type: ignore[union-attr]
    refused = await client.call_tool("run_agent", {"agent": "reviewer", "prompt": "review"})
    assert refused.is_error
    assert "Unknown agent 'reviewer': no agents are defined" in text_of(refused)
    assert "`agents` argument" in text_of(refused) and "[agents.reviewer]" in text_of(refused)


def test_usage_shows_dollars_to_the_cent_and_names_the_store_it_read(shell: dict[str, str], project: Path) -> None:
    from claude_mcp.setup.usage import render
    from claude_mcp.state.store import UsageRow

    rows = [
        UsageRow(runs=1, model="haiku", cost_usd=0.00294),
        UsageRow(runs=1, model="opus", cost_usd=0.002940000000000005),
    ]
    table = render(rows, "model", "table").splitlines()
    assert table[1].endswith("0.00") and table[-1].split()[0] == "total" and table[-1].endswith("0.01")
    assert [line["cost_usd"] for line in json.loads(render(rows, "model", "json"))] == [0.00294, 0.00294]
    done = run("usage", env=shell, cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == f"(read from SQLite at {shell['HOME']}/.claude/claude-mcp/state.sqlite3)"
    tenants = project / "tenants.toml"
    tenants.write_text('[tenants.alice]\ntoken_env = "ALICE_TOKEN"\n')
    shared = run("usage", "--config", str(tenants), env=shell, cwd=project)
    assert shared.stderr.strip() == f"(read from SQLite at {shell['HOME']}/.claude-mcp/state.sqlite3)"
    doctor = run("doctor", env=shell, cwd=project)
    assert f"[ok ] store: SQLite at {shell['HOME']}/.claude/claude-mcp/state.sqlite3" in doctor.stdout


def test_only_local_file_roots_are_paths_the_server_looks_at() -> None:
    from claude_mcp.mcp_surface.roots import local_path

    assert local_path("file:///home/you/my%20project") == "/home/you/my project"
    assert local_path("file://localhost/srv/x") == "/srv/x"
    assert local_path("file://fileserver/share") is None and local_path("https://example.com/repo") is None
