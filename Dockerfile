# syntax=docker/dockerfile:1
# claude-mcp: the MCP server over Streamable HTTP, with the `claude` CLI that claude-agent-sdk's
# wheel bundles, and the PostgreSQL extra for several replicas.
#
#   docker build -t claude-mcp .
#   docker run -p 8765:8765 -v "$PWD/deploy/config.toml:/etc/claude-mcp/config.toml:ro" \
#       -e CLAUDE_MCP_TOKEN=… -e ANTHROPIC_API_KEY=… -v claude-mcp-state:/var/lib/claude-mcp \
#       --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
#       --security-opt systempaths=unconfined claude-mcp
#
# The server refuses to bind 0.0.0.0 without tenant tokens, so the default command reads its
# config (with at least one [tenants.NAME]) from /etc/claude-mcp/config.toml: mount one there.
# BASE_IMAGE may be any Debian-like image with python3 (>= 3.11) and its venv module; the
# recipe uses only `python3`, so the official python image and a debootstrap'ed bookworm
# (deploy/build-image.sh) both work. Build and runtime stages must use the same base, since
# the venv's interpreter is a symlink to the base's python3.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY claude_mcp ./claude_mcp
# A CA bundle for a TLS-intercepting proxy may be given at build time only
# (`--secret id=build_ca,src=/etc/ssl/certs/ca-certificates.crt`); it is never stored in a layer.
RUN --mount=type=secret,id=build_ca \
    set -eu; \
    if [ -s /run/secrets/build_ca ]; then export PIP_CERT=/run/secrets/build_ca; fi; \
    python3 -m venv /opt/claude-mcp; \
    /opt/claude-mcp/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/dist .; \
    wheel="$(echo /tmp/dist/claude_mcp-*.whl)"; \
    /opt/claude-mcp/bin/pip install --no-cache-dir "claude-mcp[postgres] @ file://${wheel}"; \
    /opt/claude-mcp/bin/pip uninstall --yes pip setuptools wheel >/dev/null 2>&1 || true; \
    cli="$(/opt/claude-mcp/bin/python -c 'import claude_agent_sdk, pathlib; print(pathlib.Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude")')"; \
    test -x "$cli"; \
    "$cli" --version

FROM ${BASE_IMAGE} AS runtime
# tini (as PID 1, or with -s as a subreaper where it is not) reaps the processes Claude's tools
# leave behind: the server stops whole process trees, but whatever is re-parented to PID 1 must
# still be waited for, which Python does not do. bubblewrap is the sandbox each user's CLI runs
# in (isolation = "sandbox", the default with tenants or callers); it needs the container to
# allow unprivileged user namespaces and a fresh /proc (README, "The image"). git is what
# Claude Code expects to find in a repository. EXTRA_PACKAGES adds more (e.g. "ripgrep
# openssh-client").
ARG EXTRA_PACKAGES=""
# hadolint ignore=DL3008
RUN set -eu; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends \
        bubblewrap ca-certificates git tini ${EXTRA_PACKAGES}; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --gid 10001 claude; \
    useradd --uid 10001 --gid 10001 --home-dir /var/lib/claude-mcp --no-create-home \
        --shell /usr/sbin/nologin claude; \
    install -d -o 10001 -g 10001 -m 0700 /var/lib/claude-mcp; \
    install -d -o 10001 -g 10001 -m 0755 /workspace; \
    install -d -m 0755 /etc/claude-mcp

COPY --from=build /opt/claude-mcp /opt/claude-mcp

# State (the SQLite store, transcripts, each tenant's Claude config dir) lives on the volume;
# with CLAUDE_MCP_STATE_URL=postgresql://… the shared store is there instead and the volume
# holds only per-replica scratch. /workspace is the default root Claude may work in.
ENV PATH=/opt/claude-mcp/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/claude-mcp \
    CLAUDE_MCP_STATE=/var/lib/claude-mcp \
    CLAUDE_CONFIG_DIR=/var/lib/claude-mcp/.claude \
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
    DISABLE_AUTOUPDATER=1

USER 10001:10001
WORKDIR /workspace
VOLUME ["/var/lib/claude-mcp"]
EXPOSE 8765

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=4)"]

ENTRYPOINT ["/usr/bin/tini", "-s", "--", "claude-mcp"]
CMD ["serve", "--transport", "http", "--host", "0.0.0.0", "--port", "8765", "--config", "/etc/claude-mcp/config.toml"]
