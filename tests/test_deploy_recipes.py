"""The deploy recipes (deploy/, Dockerfile) hold together: every probe and health check asks a path
the server answers, on the port it listens on; every variable a recipe's consumer reads (Caddy's
site, the tenants' token and key variables the policy names) is given to that consumer; the
policy files hold only settings the server knows. `deploy/validate.sh` checks the same files
against their schemas with outside tools; this runs in the suite."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from claude_mcp.config.policy import Policy
from claude_mcp.config.tenants import TenantSpec
from tests.test_http import serving, tenants_config

DEPLOY = Path(__file__).parent.parent / "deploy"
DOCKERFILE = DEPLOY.parent / "Dockerfile"
PORT = 8765


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kubernetes(kind: str) -> dict[str, Any]:
    found = [doc for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")) for doc in _docs(path)]
    (doc,) = (doc for doc in found if doc["kind"] == kind)
    return doc


def _container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec["containers"]
    return container


def _compose() -> dict[str, Any]:
    (compose,) = _docs(DEPLOY / "compose.yaml")
    return compose


def _probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: container[name]["httpGet"] for name in container if name.endswith("Probe")}


def _health_checks() -> Iterator[tuple[str, str, int]]:
    """(where, path, port) of every health check the recipes make."""
    deployment = _container(_kubernetes("Deployment")["spec"]["template"]["spec"])
    ports = {port["name"]: port["containerPort"] for port in deployment["ports"]}
    for name, probe in _probes(deployment).items():
        yield f"kubernetes {name}", probe["path"], ports.get(probe["port"], probe["port"])
    (service,) = _docs(DEPLOY / "cloudrun" / "service.yaml")
    for name, probe in _probes(_container(service["spec"]["template"]["spec"])).items():
        yield f"cloud run {name}", probe["path"], probe["port"]
    urls = {
        "compose healthcheck": " ".join(_compose()["x-replica"]["healthcheck"]["test"]),
        "Dockerfile HEALTHCHECK": DOCKERFILE.read_text(),
    }
    for where, text in urls.items():
        (url,) = re.findall(r"http://127\.0\.0\.1:(\d+)(/\w+)", text)
        yield where, url[1], int(url[0])
    (caddy,) = re.findall(r"health_uri (\S+)", (DEPLOY / "Caddyfile").read_text())
    (upstream_port,) = set(re.findall(r"claude-mcp-\d:(\d+)", (DEPLOY / "Caddyfile").read_text()))
    yield "Caddyfile health_uri", caddy, int(upstream_port)


def test_every_health_check_asks_the_port_the_image_listens_on() -> None:
    assert f"EXPOSE {PORT}" in DOCKERFILE.read_text() and f'"--port", "{PORT}"' in DOCKERFILE.read_text()
    for where, _, port in _health_checks():
        assert port == PORT, where


def test_every_health_check_path_is_answered_by_the_server(tmp_path: Path, workdir: Path) -> None:
    paths = {path for _, path, _ in _health_checks()}
    with serving(tmp_path, tenants_config(tmp_path / "tenants.toml", workdir, {}), "http") as server:
        for path in sorted(paths):
            response = httpx2.get(server.base + path, timeout=10)
            assert response.status_code == 200, (path, response.text)


def test_kubernetes_routes_by_readiness_on_readyz_and_restarts_on_healthz_as_the_drain_section_says() -> None:
    pod = _kubernetes("Deployment")["spec"]["template"]["spec"]
    probes = _probes(_container(pod))
    assert probes["readinessProbe"]["path"] == "/readyz"  # 503 while draining: no new calls routed here
    assert probes["livenessProbe"]["path"] == "/healthz"  # 200 while draining: not restarted mid-drain
    assert pod["terminationGracePeriodSeconds"] >= Policy.model_fields["drain_grace_s"].default
    readme = (DEPLOY.parent / "README.md").read_text()
    assert "point the readiness probe at `/readyz`, the liveness probe at `/healthz`" in readme


def _variables_the_policy_reads(config: dict[str, Any]) -> set[str]:
    tenants = (TenantSpec.model_validate(spec) for spec in config.get("tenants", {}).values())
    names = {getattr(tenant, field) for tenant in tenants for field in ("token_env", "api_key_env", "oauth_token_env")}
    return {name for name in names if name} | {"CLAUDE_MCP_STATE_URL"}


def _policy_file(text: str) -> dict[str, Any]:
    config = tomllib.loads(text)
    unknown = set(config) - set(Policy.model_fields)
    assert not unknown, f"settings the server does not know: {unknown}"
    return config


def test_compose_gives_each_consumer_the_variables_it_reads() -> None:
    compose = _compose()
    replica = compose["x-replica"]["environment"]
    assert _variables_the_policy_reads(_policy_file((DEPLOY / "config.toml").read_text())) <= set(replica)
    caddy = compose["services"]["caddy"]
    site_variables = set(re.findall(r"\{\$(\w+)", (DEPLOY / "Caddyfile").read_text()))
    assert site_variables and site_variables <= set(caddy.get("environment", {}))
    example = (DEPLOY / "env.example").read_text()
    for name in re.findall(r"\$\{(\w+)", (DEPLOY / "compose.yaml").read_text()):
        assert re.search(rf"^#? ?{name}=", example, re.MULTILINE), f"{name} is not in deploy/env.example"


def test_kubernetes_gives_the_server_the_variables_its_policy_reads_from_the_secret_it_ships() -> None:
    config = _policy_file(_kubernetes("ConfigMap")["data"]["config.toml"])
    pod = _kubernetes("Deployment")["spec"]["template"]["spec"]
    env = {item["name"]: item for item in _container(pod)["env"]}
    assert _variables_the_policy_reads(config) <= set(env)
    secret = _kubernetes("Secret")
    for item in env.values():
        ref = item["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"], item["name"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == _kubernetes("ConfigMap")["metadata"]["name"]


def test_cloud_run_gives_the_server_the_variables_the_deploy_policy_reads() -> None:
    (service,) = _docs(DEPLOY / "cloudrun" / "service.yaml")
    env = {item["name"] for item in _container(service["spec"]["template"]["spec"])["env"]}
    assert _variables_the_policy_reads(_policy_file((DEPLOY / "config.toml").read_text())) <= env


@pytest.mark.parametrize(
    "recipe", ["cloudrun/service.yaml", "compose.yaml", "config.toml", "kubernetes/deployment.yaml", "Caddyfile"]
)
def test_the_readme_sections_and_files_a_recipe_points_to_exist(recipe: str) -> None:
    readme = (DEPLOY.parent / "README.md").read_text()
    for named in re.findall(r"[\w./-]+\.md\b", (DEPLOY / recipe).read_text()):
        assert (DEPLOY.parent / named).exists(), (recipe, named)
    headings = set(re.findall(r"^#+ (.+)$", readme, re.MULTILINE))
    for quoted in re.findall(r'README(?:\.md)?[,:]?\s*(?:#\s*)?"([^"]+)"', (DEPLOY / recipe).read_text()):
        assert re.sub(r"\s*\n\s*#\s*", " ", quoted) in headings, (recipe, quoted)
