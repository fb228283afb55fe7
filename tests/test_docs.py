"""README.md and docs/: the generated references are in step with the models, the Quick start's
commands are what the CLI takes and CI runs, and every link and snippet holds."""

import argparse
import ast
import contextlib
import io
import json
import re
import shlex
import subprocess
import sys
import tokenize
import tomllib
from pathlib import Path

import pytest

from claude_mcp import cli
from claude_mcp.config.policy import Policy
from claude_mcp.config.tenants import TenantSpec
from claude_mcp.setup import clients
from claude_mcp.setup.reference import tool_reference, with_reference
from claude_mcp.setup.settings_reference import _sections

README = Path(__file__).parent.parent / "README.md"


def test_the_readme_tool_reference_matches_the_models() -> None:
    text = README.read_text()
    assert tool_reference() in text
    assert with_reference(text) == text, "run: python -m claude_mcp.setup.reference --write README.md"


def test_the_readme_test_command_is_what_ci_runs() -> None:
    ci = (README.parent / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"```bash\n{ci}\n```" in README.read_text()


def _section(text: str, heading: str) -> str:
    """The body of a `## heading` section of a Markdown text."""
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_every_setting_an_operator_may_set_is_in_the_readme_settings_reference() -> None:
    settings = _section(README.read_text(), "Settings reference")
    for path, model in _sections(Policy, ""):
        for name in model.model_fields:
            assert f"| `{name}` |" in settings, f"{name} of [{path or 'top level'}] is missing from the README"


DOCS = [README, *sorted((README.parent / "docs").glob("*.md"))]


def _outside_code(text: str) -> str:
    """The text with fenced code blocks blanked out (a `# comment` in one is no heading)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def _code_blocks(text: str, *languages: str) -> list[str]:
    return [body for language, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
            if language in languages]  # fmt: skip


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    """The anchors of a Markdown text's headings (a repeated one numbered)."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _outside_code(text), re.MULTILINE):
        slug = _slug(heading)
        numbered, n = slug, 0
        while numbered in anchors:
            n += 1
            numbered = f"{slug}-{n}"
        anchors.add(numbered)
    return anchors


@pytest.mark.parametrize("page", DOCS, ids=lambda page: page.name)
def test_every_link_to_a_file_or_a_heading_of_the_docs_resolves(page: Path) -> None:
    text = page.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", _outside_code(text)):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target} names no file"
        if anchor:
            assert anchor in _anchors(linked.read_text()), f"{page.name}: {target} names no heading"


@pytest.mark.parametrize("page", DOCS, ids=lambda page: page.name)
def test_every_section_of_a_page_is_in_its_contents(page: Path) -> None:
    text = page.read_text()
    contents = _section(text, "Contents") if page == README else text.split("\n## ", 1)[0]
    for heading in re.findall(r"^## (.+)$", _outside_code(text), re.MULTILINE):
        if heading not in ("Quick start", "Contents"):
            assert f"](#{_slug(heading)})" in contents, f"{heading}: add it to the contents of {page.name}"


def _commands(text: str) -> list[list[str]]:
    """Every `claude-mcp …` command the text shows, in shell code blocks or inline code, as argv."""
    lines = [line for block in _code_blocks(text, "bash", "sh") for line in block.replace("\\\n", " ").split("\n")]
    spans = re.findall(r"`([^`]+)`", _outside_code(text))
    lines += [span.replace("\n", " ") for span in spans if re.search(r"\bclaude-mcp ", span)]
    commands = []
    for line in lines:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token and set(token) <= set("();<>|&"):  # the end of a command
                while words and re.fullmatch(r"\w+=\S*", words[0]):  # VAR=value before the command
                    words.pop(0)
                if "--" in words and words[words.index("--") + 1 :][:1] == ["claude-mcp"]:  # claude mcp add … --
                    words = words[words.index("--") + 1 :]
                if words and words[0].split("/")[-1] == "claude-mcp":
                    commands.append([{"CLIENT": "claude-desktop"}.get(word, word) for word in words[1:]])
                words = []
            else:
                words.append(token)
    return commands


@pytest.mark.parametrize("page", DOCS, ids=lambda page: page.name)
def test_every_claude_mcp_command_the_docs_show_is_one_the_cli_takes(page: Path) -> None:
    parser = cli._parser()
    shown = _commands(page.read_text())
    for argv in shown:
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
                parser.parse_args(argv)
        except SystemExit as exit:
            assert exit.code == 0, f"claude-mcp {shlex.join(argv)}: {err.getvalue()}"  # --help and --version exit 0
    if page == README:
        assert ["config", "claude-desktop", "--write"] in shown and ["doctor"] in shown


def test_the_readme_installs_from_a_clone_with_extras_that_exist() -> None:
    text = README.read_text()
    assert not re.search(r"pip install [\"']?claude-mcp", text), "the package is on no index: install from a clone"
    extras = tomllib.loads((README.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in re.findall(r"pip install (?:-q )?(?:-e )?'\.\[(\w+)\]'", text):
        assert extra in extras, extra
    quick_start = _section(text, "Quick start")
    assert "pip install -q ." in quick_start and "claude-mcp config claude-desktop --write" in quick_start


def test_the_benchmark_commands_exist_and_say_they_need_the_test_extras() -> None:
    page = (README.parent / "docs" / "benchmark.md").read_text()
    modules = re.findall(r"python -m (bench\.\w+)", page)
    assert modules
    for module in modules:
        assert (README.parent / (module.replace(".", "/") + ".py")).exists(), module
    assert "pip install -q -e '.[test]'" in page


@pytest.mark.parametrize("page", DOCS, ids=lambda page: page.name)
def test_every_python_snippet_compiles_imports_what_exists_and_its_strings_encode_as_ascii(page: Path) -> None:
    """A snippet's placeholder key must survive an HTTP header: `api_key="…"` raised UnicodeEncodeError."""
    for snippet in _code_blocks(page.read_text(), "python"):
        tree = compile(snippet, page.name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT | ast.PyCF_ONLY_AST)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                exec(ast.unparse(node), {})  # the modules and names it imports exist
        for token in tokenize.generate_tokens(io.StringIO(snippet).readline):
            if token.type == tokenize.STRING:
                assert token.string.isascii(), f"{page.name}: {token.string}"


def test_every_json_snippet_parses() -> None:
    for snippet in _code_blocks(README.read_text(), "json"):
        json.loads(snippet)


def test_every_toml_snippet_names_only_settings_the_server_knows() -> None:
    """Each TOML example parses, and every key in it is a setting (a typo'd one would be refused at start)."""
    for snippet in _code_blocks(README.read_text(), "toml"):
        config = tomllib.loads(snippet)
        tenants = config.pop("tenants", {})
        assert set(config) <= set(Policy.model_fields), snippet
        for tenant in tenants.values():
            assert set(tenant) <= set(TenantSpec.model_fields), snippet
            assert set(tenant.get("policy", {})) <= set(Policy.model_fields), snippet


def test_the_quick_start_registers_claude_desktop_with_the_key_and_the_root_as_it_says(tmp_path: Path) -> None:
    """Steps 1–3 of the Quick start, run as written (but the install: this venv is the clone's): the
    version prints, and the entry written carries the key and the directory it was run from."""
    steps = _code_blocks(_section(README.read_text(), "Quick start"), "bash")
    version, key, register = steps[0].splitlines()[-1], steps[1], steps[2]
    claude_mcp = Path(sys.executable).parent / "claude-mcp"
    home = tmp_path / "home"
    (home / "projects").mkdir(parents=True)
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}  # the venv is not on PATH, as after step 1
    script = "\n".join([version.replace(".venv/bin/claude-mcp", str(claude_mcp)), key, register])
    script = script.replace("~/claude-mcp/.venv/bin/claude-mcp", str(claude_mcp))
    done = subprocess.run(
        ["bash", "-euc", script], env=env, cwd=home, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("claude-mcp "), done.stdout  # the version
    written = home / ".config" / "Claude" / "claude_desktop_config.json"
    entry = json.loads(written.read_text())["mcpServers"]["claude"]
    serve = ["serve", "--root", str(home / "projects")]
    assert Path(entry["command"]).parent == claude_mcp.parent  # the venv's claude-mcp, or its Python (-m)
    assert entry["args"] in (serve, ["-m", "claude_mcp", *serve])
    assert entry["env"] == {"ANTHROPIC_API_KEY": re.search(r"ANTHROPIC_API_KEY=(\S+)", key)[1]}  # type: ignore[index]
    assert written.stat().st_mode & 0o777 == 0o600  # it holds a key: readable by its owner only


def test_every_subcommand_and_flag_of_the_cli_is_in_the_readme() -> None:
    text = README.read_text()
    (subcommands,) = (action for action in cli._parser()._actions if isinstance(action, argparse._SubParsersAction))
    for name, parser in subcommands.choices.items():
        assert f"claude-mcp {name}" in text, name
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in ("-h", "--help") or flag in text, f"claude-mcp {name} {flag}"


def test_the_readme_names_every_variable_a_registration_carries() -> None:
    registering = _section(README.read_text(), "Register it in an MCP client")
    for name in (*clients.CREDENTIALS, *clients.CARRIED_SETTINGS):
        assert f"`{name}`" in registering, name


def test_the_readme_says_what_each_dependency_is_for() -> None:
    project = tomllib.loads((README.parent / "pyproject.toml").read_text())["project"]
    listed = _section(README.read_text(), "What each dependency is for")
    extras = [requirement for group in project["optional-dependencies"].values() for requirement in group]
    for requirement in [*project["dependencies"], *extras]:
        name = re.match(r"[\w.-]+", requirement)[0]  # type: ignore[index]
        assert name == "claude-mcp" or f"`{name}" in listed, f"{name}: add a row to 'What each dependency is for'"
