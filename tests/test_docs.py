"""README's tool reference is generated from the models; this keeps it in step."""

from pathlib import Path

from claude_mcp.setup.reference import tool_reference, with_reference

README = Path(__file__).parent.parent / "README.md"


def test_the_readme_tool_reference_matches_the_models() -> None:
    text = README.read_text()
    assert tool_reference() in text
    assert with_reference(text) == text, "run: python -m claude_mcp.setup.reference --write README.md"


def test_the_readme_test_command_is_what_ci_runs() -> None:
    ci = (README.parent / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"```bash\n{ci}\n```" in README.read_text()
