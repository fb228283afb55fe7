"""The pure parts: argument validation, policy checks, the settings → CLI options mapping,
and the judgement of CLI results. No process is started here."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from claude_agent_sdk import ResultMessage
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from claude_mcp import AskArgs, AskResult, CallSettings, Policy, PolicyViolation
from claude_mcp.bridge.options import BUDGET_ENV, DEPTH_ENV, RunTarget, build_options
from claude_mcp.bridge.results import failure_of
from claude_mcp.config.specs import AgentSpec
from claude_mcp.errors import APIError, CLIFailed, ConfigError, SessionNotFound
from claude_mcp.mcp_surface.server import describe_validation_error
from claude_mcp.mcp_surface.tools import build_tools


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    return tmp_path / "root"


def test_settings_are_flat_optional_tool_arguments() -> None:
    schema = AskArgs.model_json_schema()
    assert schema["required"] == ["prompt"]
    assert schema["additionalProperties"] is False
    for name in CallSettings.model_fields:
        assert name in schema["properties"], name


def test_model_aliases_and_full_ids_are_accepted() -> None:
    for model in ["haiku", "sonnet", "opus", "opus[1m]", "claude-sonnet-4-5-20250929", "us.anthropic.claude-x-v1:0"]:
        assert CallSettings(model=model).model == model


@pytest.mark.parametrize(
    "bad",
    [
        {"model": "sonnet --dangerously-skip-permissions"},
        {"model": "-rf"},
        {"permission_mode": "yolo"},
        {"max_turns": 0},
        {"timeout_s": -1},
        {"allowed_tools": ["Bash,Write"]},
        {"json_schema": {"type": "array"}},
        {"json_schema": {"type": "object", "properties": {"x": {"type": "no-such-type"}}}},
        {"unknown_setting": 1},
    ],
)
def test_invalid_settings_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CallSettings.model_validate(bad)


def test_a_session_id_must_be_a_uuid() -> None:
    with pytest.raises(ValidationError, match="UUID"):
        AskArgs(prompt="hi", session_id="../../etc/passwd")


def test_validation_errors_name_each_argument_without_echoing_values() -> None:
    with pytest.raises(ValidationError) as caught:
        AskArgs.model_validate({"prompt": "x", "max_turns": "many", "colour": "SECRET-VALUE"})
    message = describe_validation_error("ask", caught.value)
    assert "max_turns" in message
    assert "unknown argument 'colour'" in message
    assert "SECRET-VALUE" not in message


def test_policy_defaults_fill_unset_settings(root: Path) -> None:
    policy = Policy(roots=(root,), defaults=CallSettings(model="haiku", max_turns=3))
    resolved = policy.resolve(CallSettings(max_turns=2))
    assert resolved.model == "haiku"
    assert resolved.max_turns == 2
    assert resolved.cwd == root.resolve()
    assert resolved.permission_mode == "default"
    assert resolved.timeout_s == policy.default_timeout_s


def test_bypass_permissions_is_refused_unless_the_policy_permits_it(root: Path) -> None:
    with pytest.raises(PolicyViolation, match="permission_mode 'bypassPermissions' is not permitted"):
        Policy(roots=(root,)).resolve(CallSettings(permission_mode="bypassPermissions"))
    permissive = Policy(roots=(root,), permission_modes=("default", "bypassPermissions"))
    assert permissive.resolve(CallSettings(permission_mode="bypassPermissions")).permission_mode == "bypassPermissions"


@pytest.mark.parametrize(
    ("setting", "value", "limit"),
    [("max_turns", 500, "100"), ("timeout_s", 7200, "3600"), ("max_budget_usd", 50, "5")],
)
def test_ceilings_name_the_setting_and_the_limit(root: Path, setting: str, value: float, limit: str) -> None:
    policy = Policy(roots=(root,), max_budget_usd=5)
    with pytest.raises(PolicyViolation) as caught:
        policy.resolve(CallSettings.model_validate({setting: value}))
    assert caught.value.setting == setting
    assert setting in str(caught.value) and limit in str(caught.value)


def test_a_budget_ceiling_is_also_the_default(root: Path) -> None:
    assert Policy(roots=(root,), max_budget_usd=2).resolve(CallSettings()).max_budget_usd == 2


def test_cwd_inside_a_root_is_resolved(root: Path) -> None:
    policy = Policy(roots=(root,))
    assert policy.resolve(CallSettings(cwd="sub")).cwd == (root / "sub").resolve()
    assert policy.resolve(CallSettings(cwd=str(root / "sub"))).cwd == (root / "sub").resolve()


@pytest.mark.parametrize("cwd", ["../outside", "/", "sub/../../outside", "/etc"])
def test_cwd_outside_the_roots_is_refused_not_replaced(root: Path, cwd: str) -> None:
    with pytest.raises(PolicyViolation, match="outside the allowed roots"):
        Policy(roots=(root,)).resolve(CallSettings(cwd=cwd))


def test_a_symlink_out_of_the_root_is_refused(root: Path) -> None:
    (root / "escape").symlink_to(root.parent / "outside")
    with pytest.raises(PolicyViolation, match="outside the allowed roots"):
        Policy(roots=(root,)).resolve(CallSettings(cwd="escape"))


def test_missing_cwd_and_add_dirs_are_refused(root: Path) -> None:
    policy = Policy(roots=(root,))
    with pytest.raises(PolicyViolation, match="does not exist"):
        policy.resolve(CallSettings(cwd="nope"))
    with pytest.raises(PolicyViolation, match=r"add_dirs '\.\./outside' is outside"):
        policy.resolve(CallSettings(add_dirs=["sub", "../outside"]))


def test_allowed_tools_beyond_the_policy_rules_are_refused(root: Path) -> None:
    policy = Policy(roots=(root,), allowed_tool_rules=("Read", "Bash(git *)"))
    assert policy.resolve(CallSettings(allowed_tools=["Bash(git *)"])).allowed_tools == ("Bash(git *)",)
    with pytest.raises(PolicyViolation, match="allowed_tools"):
        policy.resolve(CallSettings(allowed_tools=["Bash"]))


def test_policy_disallowed_tools_are_always_added(root: Path) -> None:
    policy = Policy(roots=(root,), disallowed_tools=("WebFetch",))
    assert policy.resolve(CallSettings(disallowed_tools=["Bash"])).disallowed_tools == ("Bash", "WebFetch")


def test_policy_loads_from_toml_with_roots_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "repos").mkdir()
    config = tmp_path / "claude-mcp.toml"
    config.write_text('roots = ["repos"]\nmax_turns = 7\n[defaults]\nmodel = "haiku"\n[cli_env]\nFOO = "bar"\n')
    policy = Policy.load(config, max_timeout_s=99)
    assert policy.roots == ((tmp_path / "repos").resolve(),)
    assert policy.max_turns == 7 and policy.max_timeout_s == 99
    assert policy.defaults.model == "haiku"
    assert policy.cli_env == {"FOO": "bar"}


@pytest.mark.parametrize(
    ("text", "complaint"),
    [("max_turns = 'x'", "max_turns"), ("nonsense = 1", "nonsense"), ("[[[", "not valid TOML")],
)
def test_a_bad_config_file_is_explained(tmp_path: Path, text: str, complaint: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=complaint):
        Policy.load(config)


def test_options_map_every_setting_onto_the_sdk(root: Path) -> None:
    policy = Policy(roots=(root,), cli_env={"ANTHROPIC_API_KEY": "k"}, api_retries=1)
    resolved = policy.resolve(
        CallSettings(
            model="haiku",
            fallback_model="sonnet",
            system_prompt="SYS",
            append_system_prompt="MORE",
            allowed_tools=["Read"],
            disallowed_tools=["Bash"],
            permission_mode="acceptEdits",
            max_turns=4,
            max_budget_usd=0.5,
            effort="low",
            json_schema={"type": "object"},
            add_dirs=["sub"],
        )
    )
    options = build_options(resolved, policy, target=RunTarget(resume="abc"), child_depth=2)
    assert options.model == "haiku" and options.fallback_model == "sonnet"
    assert options.system_prompt == {"type": "custom", "prompt": "SYS"}
    assert options.extra_args == {"append-system-prompt": "MORE"}
    assert options.allowed_tools == ["Read"] and options.disallowed_tools == ["Bash"]
    assert options.permission_mode == "acceptEdits"
    assert options.max_turns == 4 and options.max_budget_usd == 0.5 and options.effort == "low"
    assert options.output_format == {"type": "json_schema", "schema": {"type": "object"}}
    assert options.add_dirs == [(root / "sub").resolve()]
    assert options.resume == "abc" and options.fork_session is False
    assert options.strict_mcp_config is True
    assert options.env == {
        "ANTHROPIC_API_KEY": "k",
        "CLAUDE_CODE_MAX_RETRIES": "1",
        DEPTH_ENV: "2",
        BUDGET_ENV: "0.5",
    }
    assert options.include_partial_messages is True


def test_without_a_system_prompt_claude_code_keeps_its_own(root: Path) -> None:
    policy = Policy(roots=(root,))
    plain = build_options(policy.resolve(CallSettings()), policy)
    assert plain.system_prompt == {"type": "preset", "preset": "claude_code"}
    appended = build_options(policy.resolve(CallSettings(append_system_prompt="X")), policy)
    assert appended.system_prompt == {"type": "preset", "preset": "claude_code", "append": "X"}


def test_a_resume_that_sets_a_system_prompt_turns_the_snapshot_off(root: Path) -> None:
    policy = Policy(roots=(root,))
    resolved = policy.resolve(CallSettings(system_prompt="NEW"))
    target = RunTarget(resume="abc", override_system_prompt=True)
    assert build_options(resolved, policy, target=target).system_prompt == {
        "type": "custom",
        "prompt": "NEW",
        "snapshot": False,
    }


REVIEWER = AgentSpec(description="Reviews code", prompt="You review.", tools=["Read"], permissionMode="plan")


def test_agents_and_mcp_servers_map_onto_the_cli(root: Path) -> None:
    policy = Policy(roots=(root,), agents={"reviewer": REVIEWER})
    call = CallSettings.model_validate(
        {
            "tools": ["Read", "Grep"],
            "agents": {"fixer": {"description": "Fixes", "prompt": "You fix.", "maxTurns": 3}},
            "mcp_servers": {
                "local": {"command": "my-server", "args": ["--x"]},
                "remote": {"type": "http", "url": "https://example.test/mcp", "headers": {"A": "b"}},
            },
        }
    )
    resolved = replace(policy.resolve(call), agent="reviewer")
    options = build_options(resolved, policy)
    assert options.tools == ["Read", "Grep"]
    assert json.loads(options.extra_args["agents"] or "") == {
        "reviewer": {
            "description": "Reviews code",
            "prompt": "You review.",
            "tools": ["Read"],
            "permissionMode": "plan",
        },
        "fixer": {"description": "Fixes", "prompt": "You fix.", "maxTurns": 3},
    }
    assert options.extra_args["agent"] == "reviewer"
    assert options.mcp_servers == {
        "local": {"type": "stdio", "command": "my-server", "args": ["--x"], "env": {}},
        "remote": {"type": "http", "url": "https://example.test/mcp", "headers": {"A": "b"}},
    }


def test_per_call_agents_and_servers_stay_within_the_policy(root: Path) -> None:
    policy = Policy(roots=(root,), agents={"reviewer": REVIEWER}, mcp_server_types=("http",))
    with pytest.raises(PolicyViolation, match="stdio servers are not permitted"):
        policy.resolve(CallSettings.model_validate({"mcp_servers": {"x": {"command": "sh"}}}))
    with pytest.raises(PolicyViolation, match="defined by the server"):
        policy.resolve(CallSettings.model_validate({"agents": {"reviewer": {"description": "d", "prompt": "p"}}}))
    sneaky = {"agents": {"yolo": {"description": "d", "prompt": "p", "permissionMode": "bypassPermissions"}}}
    with pytest.raises(PolicyViolation, match="bypassPermissions"):
        policy.resolve(CallSettings.model_validate(sneaky))
    with pytest.raises(ValidationError):
        CallSettings.model_validate({"mcp_servers": {"bad name!": {"command": "x"}}})


def _result(**overrides: object) -> AskResult:
    fields: dict[str, object] = {
        "subtype": "success",
        "duration_ms": 1,
        "duration_api_ms": 1,
        "is_error": False,
        "num_turns": 1,
        "session_id": "s",
        "result": "ok",
    }
    fields.update(overrides)
    return AskResult.from_message(ResultMessage(**fields))  # type: ignore[arg-type]


def test_a_successful_result_is_not_a_failure() -> None:
    assert failure_of(_result(), None) is None


@pytest.mark.parametrize(
    ("status", "advice"),
    [(401, "credentials"), (429, "rate limit"), (529, "overloaded"), (500, "HTTP 500")],
)
def test_api_errors_carry_advice(status: int, advice: str) -> None:
    failure = failure_of(_result(is_error=True, result="API Error", terminal_reason="api_error"), status)
    assert isinstance(failure, APIError) and failure.status == status
    assert advice in str(failure)
    assert "session_id: s" in str(failure)


def test_an_unknown_session_is_named_as_such() -> None:
    failure = failure_of(
        _result(is_error=True, subtype="error_during_execution", errors=["No conversation found with session ID x"]),
        None,
    )
    assert isinstance(failure, SessionNotFound)


def test_turn_limit_results_explain_how_to_go_on() -> None:
    failure = failure_of(_result(is_error=True, subtype="error_max_turns"), None)
    assert isinstance(failure, CLIFailed) and "max_turns" in str(failure)


TOOL_ARGS = {spec.name: spec.args for spec in build_tools()}
FIELDS = sorted({name for model in TOOL_ARGS.values() for name in model.model_fields} | {"extra"})
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=50),
    st.lists(st.text(max_size=10), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(TOOL_ARGS)), st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=8))
def test_arbitrary_tool_arguments_validate_or_fail_cleanly(tool: str, arguments: dict[str, object]) -> None:
    try:
        TOOL_ARGS[tool].model_validate(arguments)
    except ValidationError as exc:
        message = describe_validation_error(tool, exc)
        assert message.startswith(f"Invalid arguments for {tool}")
        assert "Traceback" not in message
