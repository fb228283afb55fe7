"""`/metrics`: exact counts after a known sequence of calls to a `claude-mcp serve --transport http`
subprocess (two tenants), parsed with prometheus_client's own parser; and who may read them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from claude_mcp import Policy
from claude_mcp.bridge.tenancy import Tenancy
from claude_mcp.config.tenants import TenantSpec
from claude_mcp.web.metrics import MetricsAccess
from tests.conftest import call
from tests.test_http import ALICE, BOB, HELPER, RunningServer, connect, serving, tenants_config

pytestmark = pytest.mark.anyio


class Scrape:
    """One scrape of /metrics, by sample name and labels."""

    def __init__(self, text: str) -> None:
        self.samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]

    def value(self, name: str, **labels: str) -> float:
        found = [
            s.value for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        assert len(found) == 1, (name, labels, found)
        return found[0]

    def total(self, name: str, **labels: str) -> float:
        return sum(
            s.value for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def label_values(self, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if label in s.labels}


@pytest.fixture
def server(tmp_path: Path, workdir: Path, cli_env: dict[str, str]) -> Iterator[RunningServer]:
    config = tenants_config(tmp_path / "tenants.toml", workdir, cli_env)
    with serving(tmp_path, config, "http") as running:
        yield running


async def scrape(server: RunningServer, token: str | None) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient() as http:
        return await http.get(server.base + "/metrics", headers=headers)


async def test_metrics_count_each_run_by_tool_tenant_and_outcome(server: RunningServer) -> None:
    with anyio.fail_after(90):
        async with connect(server, ALICE) as alice, connect(server, BOB) as bob:
            first = await call(alice, "ask", prompt="count one")
            await call(alice, "ask", prompt="count two")
            await call(alice, "ask", prompt="count three", session_id=first["session_id"])
            limited = await alice.call_tool("ask", {"prompt": "[[error:429]]"})
            assert limited.is_error
            job = await call(alice, "run_agent", agent="helper", prompt="count job", wait_s=30, agents=HELPER)
            assert job["status"] == "completed"
            await call(bob, "ask", prompt="bob counts too")
        response = await scrape(server, ALICE)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    metrics = Scrape(response.text)

    assert metrics.value("claude_mcp_runs_total", tool="ask", tenant="alice", outcome="ok") == 3
    assert metrics.value("claude_mcp_runs_total", tool="ask", tenant="alice", outcome="error") == 1
    assert metrics.value("claude_mcp_runs_total", tool="run_agent", tenant="alice", outcome="ok") == 1
    assert metrics.value("claude_mcp_runs_total", tool="ask", tenant="bob", outcome="ok") == 1
    assert metrics.value("claude_mcp_run_errors_total", tenant="alice", kind="api_429") == 1
    assert metrics.total("claude_mcp_run_errors_total") == 1
    assert metrics.value("claude_mcp_tool_calls_total", tool="ask", outcome="ok") == 4
    assert metrics.value("claude_mcp_tool_calls_total", tool="ask", outcome="api_429") == 1
    assert metrics.value("claude_mcp_tool_calls_total", tool="run_agent", outcome="ok") == 1

    assert metrics.value("claude_mcp_run_duration_seconds_count", tool="ask") == 5
    assert metrics.value("claude_mcp_run_duration_seconds_count", tool="run_agent") == 1
    assert metrics.value("claude_mcp_run_duration_seconds_sum", tool="ask") > 0
    assert metrics.value("claude_mcp_time_to_first_text_seconds_count", tool="ask") == 4  # not the 429
    assert metrics.value("claude_mcp_queue_wait_seconds_count") == 6
    assert metrics.value("claude_mcp_queue_depth") == 0
    assert metrics.total("claude_mcp_runs_in_flight") == 0

    assert metrics.value("claude_mcp_cli_starts_total") == 5
    assert metrics.value("claude_mcp_cli_start_seconds_count") == 5
    assert metrics.value("claude_mcp_run_processes_total", source="cold") == 5
    assert metrics.value("claude_mcp_run_processes_total", source="warm") == 1
    assert metrics.value("claude_mcp_warm_processes") >= 3

    assert metrics.value("claude_mcp_cost_usd_total", tenant="alice") > 0
    assert metrics.value("claude_mcp_tokens_total", tenant="alice", type="input") > 0
    assert metrics.value("claude_mcp_tokens_total", tenant="alice", type="output") > 0

    assert metrics.value("claude_mcp_jobs_finished_total", status="completed") == 1
    assert metrics.value("claude_mcp_jobs", status="completed") == 1
    assert metrics.value("claude_mcp_jobs", status="running") == 0
    assert metrics.value("claude_mcp_draining") == 0
    assert metrics.label_values("tenant") == {"alice", "bob"}


async def test_metrics_need_a_tenants_token_where_tenants_are_configured(server: RunningServer) -> None:
    with anyio.fail_after(30):
        assert (await scrape(server, None)).status_code == 401
        assert (await scrape(server, "not-a-token")).status_code == 401
        assert (await scrape(server, BOB)).status_code == 200
        refused = await scrape(server, "wrong")
    assert refused.headers["www-authenticate"] == "Bearer"
    assert "claude_mcp" not in refused.text


def access(policy: Policy, host: str, operator_token: str | None = None, **tenants: Any) -> MetricsAccess:
    environ = {"TOKEN": "tenant-token-0123456789", "KEY": "sk-ant-api03-x"}
    specs = {name: TenantSpec.model_validate(spec) for name, spec in tenants.items()}
    tenancy = Tenancy.from_policy(policy, specs, environ)
    return MetricsAccess(tenancy, host=host, operator_token=operator_token)


def test_who_may_read_the_metrics(workdir: Path) -> None:
    server_mode = Policy(roots=(workdir,))
    callers = Policy(roots=(workdir,), credentials="caller")
    tenant = {"token_env": "TOKEN", "api_key_env": "KEY"}
    bearer = "Bearer tenant-token-0123456789"

    assert access(server_mode, "127.0.0.1").refusal(None) is None
    with_tenants = access(server_mode, "0.0.0.0", alice=tenant)
    assert with_tenants.refusal(bearer) is None
    assert getattr(with_tenants.refusal(None), "status", None) == 401

    assert access(callers, "127.0.0.1").refusal(None) is None
    open_to_callers = access(callers, "0.0.0.0").refusal("Bearer sk-ant-api03-a-callers-key")
    assert open_to_callers is not None and open_to_callers.status == 403
    assert "metrics_token_env" in open_to_callers.reason

    operator = access(callers, "0.0.0.0", operator_token="ops-secret-0123456789", alice=tenant)
    assert operator.refusal("Bearer ops-secret-0123456789") is None
    assert getattr(operator.refusal(bearer), "status", None) == 401  # a tenant's token is not the operator's
    assert getattr(operator.refusal("Bearer ops-secret"), "status", None) == 401
