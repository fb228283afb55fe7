"""README.md and docs/: the generated references are in step with the models, the Quick start's
commands are what the CLI takes and CI runs, and every link and snippet holds."""

from pathlib import Path

from claude_mcp.config.policy import Policy
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
