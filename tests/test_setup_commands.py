"""`claude-mcp doctor` and `claude-mcp config CLIENT`, run as a new user would."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import tomllib
from pathlib import Path

import pytest

from claude_mcp.setup import jsonc
from claude_mcp.setup.clients import CLIENTS, launcher
from claude_mcp.setup.doctor import bundled_cli
from tests.zygote import spawn


def run(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m claude_mcp ARGS` to its end, its output captured (forked by the test worker's zygote: these
    tests are of what the commands do, not of how fast an interpreter starts them)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = spawn(args, env=env, stdout=out, stderr=err, cwd=cwd)
        try:
            code = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(process.args, code, out.read().decode(), err.read().decode())


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """A user with no Claude login and no credentials in the environment."""
    home = tmp_path / "home"
    home.mkdir()
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_", "XDG_"))}
    return {**keep, "HOME": str(home), "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}


def test_doctor_explains_a_missing_login(clean_env: dict[str, str], tmp_path: Path) -> None:
    done = run("doctor", env=clean_env, cwd=tmp_path)
    assert done.returncode == 1
    assert "CLI 2." in done.stdout and "bundled with claude-agent-sdk" in done.stdout
    assert "[FIX] Claude is not logged in" in done.stdout
    assert "claude /login" in done.stdout and "ANTHROPIC_API_KEY" in done.stdout


def test_doctor_names_the_credential_without_printing_it(clean_env: dict[str, str], tmp_path: Path) -> None:
    done = run("doctor", env={**clean_env, "ANTHROPIC_API_KEY": "sk-ant-very-secret"}, cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    assert "credential: an API key (ANTHROPIC_API_KEY)" in done.stdout
    assert "very-secret" not in done.stdout + done.stderr


def test_doctor_checks_the_config_and_its_paths(clean_env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        'roots = ["missing"]\ncli_path = "/nowhere/claude"\n[cli_env]\nANTHROPIC_API_KEY = "k"\n'
        '[mcp_servers.x]\ncommand = "no-such-command-here"\n'
    )
    done = run("doctor", "--config", str(config), env=clean_env, cwd=tmp_path)
    assert done.returncode == 1
    assert "Claude Code CLI not found (configured" in done.stdout
    assert f"root {tmp_path / 'missing'} does not exist" in done.stdout
    assert "mcp_servers.x: command 'no-such-command-here' not found" in done.stdout
    config.write_text("max_turns = 'lots'\n")
    bad = run("doctor", "--config", str(config), env=clean_env, cwd=tmp_path)
    assert bad.returncode == 1 and "max_turns" in bad.stdout


def test_doctor_says_whether_the_walls_between_users_can_be_built(clean_env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'credentials = "caller"\nroots = ["{tmp_path}"]\n')
    assert (
        "[ok ] isolation: sandbox (bubblewrap works here"
        in run("doctor", "--config", str(config), env=clean_env).stdout
    )
    config.write_text(f'credentials = "caller"\nroots = ["{tmp_path}"]\nbwrap_path = "/nowhere/bwrap"\n')
    missing = run("doctor", "--config", str(config), env=clean_env)
    assert missing.returncode == 1 and "isolation: sandbox, but bubblewrap (`/nowhere/bwrap`) is not installed" in (
        missing.stdout
    )
    config.write_text(f'credentials = "caller"\nroots = ["{tmp_path}"]\nisolation = "none"\n')
    bare = run("doctor", "--config", str(config), env=clean_env)
    assert bare.returncode == 1 and "isolation_none_acknowledged" in bare.stdout


@pytest.mark.parametrize("client", CLIENTS)
def test_config_prints_a_registration_with_the_absolute_path(
    clean_env: dict[str, str], tmp_path: Path, client: str
) -> None:
    done = run("config", client, env=clean_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    command, prefix = launcher()  # `claude-mcp` if it is on PATH, else this python with -m claude_mcp
    assert Path(command).is_absolute() and Path(command).exists()
    assert command in done.stdout
    assert all(part in done.stdout for part in prefix)


def test_config_write_merges_backs_up_and_refuses_to_clobber(clean_env: dict[str, str], tmp_path: Path) -> None:
    settings = Path(clean_env["HOME"]) / ".cursor" / "mcp.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"mcpServers": {"other": {"command": "x"}}, "theme": "dark"}))
    first = run("config", "cursor", "--write", env=clean_env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    document = json.loads(settings.read_text())
    assert document["theme"] == "dark" and document["mcpServers"]["other"] == {"command": "x"}
    assert document["mcpServers"]["claude"]["args"] == [*launcher()[1], "serve", "--root", str(tmp_path.resolve())]
    assert list(settings.parent.glob("mcp.json.bak-*")), "a backup was made"
    again = run("config", "cursor", "--write", env=clean_env, cwd=tmp_path)
    assert again.returncode == 2 and "already has an entry 'claude'" in again.stderr


def test_config_write_for_codex_appends_toml(clean_env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "policy.toml"
    config.write_text("max_turns = 5\n")
    done = run("config", "codex", "--write", "--config", str(config), env=clean_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = tomllib.loads((Path(clean_env["HOME"]) / ".codex" / "config.toml").read_text())
    assert written["mcp_servers"]["claude"]["args"] == [*launcher()[1], "serve", "--config", str(config)]
    assert written["mcp_servers"]["claude"]["tool_timeout_sec"] == 600


def test_config_write_for_claude_code_uses_claude_mcp_add(clean_env: dict[str, str], tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cli = bundled_cli()
    assert cli is not None
    (bin_dir / "claude").symlink_to(cli)
    env = {**clean_env, "PATH": f"{bin_dir}{os.pathsep}{clean_env['PATH']}"}
    done = run("config", "claude-code", "--write", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    listed = subprocess.run(["claude", "mcp", "get", "claude"], capture_output=True, text=True, env=env, timeout=60)
    assert "serve" in listed.stdout and ("claude-mcp" in listed.stdout or "-m claude_mcp" in listed.stdout)
    checked = run("doctor", "--client", "claude-code", env=env)  # reads the entry Claude Code keeps
    assert f"[ok ] claude-code: entry 'claude' in {clean_env['HOME']}/.claude.json" in checked.stdout
    assert f"[ok ] root {tmp_path.resolve()}" in checked.stdout


HOSTED = "https://mcp.example.com/mcp"
REMOTE_ENTRIES = {
    "cursor": (".cursor/mcp.json", "mcpServers", {"url": HOSTED}),
    "windsurf": (".codeium/windsurf/mcp_config.json", "mcpServers", {"serverUrl": HOSTED}),
    "gemini": (".gemini/settings.json", "mcpServers", {"httpUrl": HOSTED}),
    "zed": (".config/zed/settings.json", "context_servers", {"source": "custom", "url": HOSTED}),
}


@pytest.mark.parametrize("client", REMOTE_ENTRIES)
def test_config_url_registers_the_hosted_server_in_each_clients_own_shape(
    clean_env: dict[str, str], tmp_path: Path, client: str
) -> None:
    where, section, entry = REMOTE_ENTRIES[client]
    env = {**clean_env, "ANTHROPIC_API_KEY": "sk-ant-never-written"}  # a key in the shell is not carried
    printed = run("config", client, "--url", HOSTED, env=env, cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert json.dumps({section: {"claude": entry}}, indent=2) in printed.stdout
    written = run("config", client, "--write", "--url", HOSTED, env=env, cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    settings = Path(clean_env["HOME"]) / where
    assert json.loads(settings.read_text()) == {section: {"claude": entry}}
    assert "never-written" not in printed.stdout + written.stdout + settings.read_text()


def test_config_url_for_vscode_and_codex_keeps_what_the_files_held(clean_env: dict[str, str], tmp_path: Path) -> None:
    settings = tmp_path / ".vscode" / "mcp.json"
    settings.parent.mkdir()
    settings.write_text(
        '{\n  // the team\'s servers\n  "servers": {"docs": {"type": "http", "url": "https://d/mcp"}}\n}\n'
    )
    done = run("config", "vscode", "--write", "--url", HOSTED, env=clean_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "// the team's servers" in settings.read_text()
    servers = jsonc.loads(settings.read_text())["servers"]
    assert servers == {"docs": {"type": "http", "url": "https://d/mcp"}, "claude": {"type": "http", "url": HOSTED}}
    codex = Path(clean_env["HOME"]) / ".codex" / "config.toml"
    codex.parent.mkdir()
    codex.write_text('model = "o4"\n')
    done = run("config", "codex", "--write", "--url", HOSTED, env=clean_env, cwd=tmp_path)
    assert done.returncode == 0 and "codex mcp login claude" in done.stdout, done.stderr
    written = tomllib.loads(codex.read_text())
    assert written["model"] == "o4" and written["mcp_servers"]["claude"]["url"] == HOSTED
    assert "command" not in written["mcp_servers"]["claude"]


def test_config_url_for_claude_code_runs_claude_mcp_add_transport_http(
    clean_env: dict[str, str], tmp_path: Path
) -> None:
    printed = run("config", "claude-code", "--url", HOSTED, env=clean_env)
    assert f"claude mcp add --scope user --transport http claude {HOSTED}" in printed.stdout
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cli = bundled_cli()
    assert cli is not None
    (bin_dir / "claude").symlink_to(cli)
    env = {**clean_env, "PATH": f"{bin_dir}{os.pathsep}{clean_env['PATH']}"}
    done = run("config", "claude-code", "--write", "--url", HOSTED, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "/mcp → claude → Authenticate" in done.stdout
    listed = subprocess.run(["claude", "mcp", "get", "claude"], capture_output=True, text=True, env=env, timeout=60)
    assert HOSTED in listed.stdout and "http" in listed.stdout.lower(), listed.stdout
    checked = run("doctor", "--client", "claude-code", env=env)  # a hosted entry starts nothing here
    assert checked.returncode == 0 and f"[ok ] a hosted server at {HOSTED}" in checked.stdout, checked.stdout


def test_config_url_refusals_are_one_line_with_exit_2(clean_env: dict[str, str], tmp_path: Path) -> None:
    desktop = run("config", "claude-desktop", "--url", HOSTED, env=clean_env, cwd=tmp_path)
    assert desktop.returncode == 0 and "Add custom connector" in desktop.stdout and HOSTED in desktop.stdout
    refusals = {
        ("claude-desktop", "--write", "--url", HOSTED): "not in claude_desktop_config.json",
        ("cursor", "--url", "http://mcp.example.com/mcp"): "plain http to another machine",
        ("cursor", "--url", "ftp://mcp.example.com/mcp"): "is not an http(s) URL",
        ("cursor", "--url", "https://me:secret@mcp.example.com/mcp"): "carries a user name or password",
        ("cursor", "--url", HOSTED, "--no-key"): "--root, --config and --no-key are for a local one",
    }
    for argv, reason in refusals.items():
        done = run("config", *argv, env=clean_env, cwd=tmp_path)
        assert done.returncode == 2 and reason in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and not done.stdout and "secret" not in done.stderr
    assert not (Path(clean_env["HOME"]) / ".config" / "Claude").exists()
    local = run("config", "cursor", "--write", "--url", "http://127.0.0.1:8000/mcp", env=clean_env, cwd=tmp_path)
    assert local.returncode == 0, local.stderr  # plain http to this machine is fine
