"""The built-in sign-in page as a person sees it: a real `claude-mcp serve` with the built-in
authorization server on loopback, a registered client, and its real `/authorize` URL opened in
headless Chromium (Debian's `chromium`, installed by `.ci/system-deps`), which follows the redirect
to the sign-in page and renders it. Chromium takes a screenshot, kept in the test output
(`tmp_path` and `.cache/test-output/oauth-sign-in.png`, for a person to look at), and dumps the DOM
it rendered: the client's name, where allowing sends you, the key field, and no script."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest

from claude_mcp.oauth.builtin import new_key_line
from tests.conftest import FakeModel
from tests.oauth_browser import Pkce
from tests.test_http import RunningServer, serving
from tests.test_oauth_builtin import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("oauth_sign_in_page")]

CLIENT_NAME = "Screenshot Test Client"
CALLBACK = "http://127.0.0.1:9/oauth/callback"
WIDTH, HEIGHT = 1000, 900
OUTPUT = Path(__file__).resolve().parent.parent / ".cache" / "test-output"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake_model: FakeModel) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("oauth-sign-in-page")
    workdir = root / "work"
    workdir.mkdir()
    key_file = root / "oauth-keys"
    key_file.write_text(new_key_line("2026-12") + "\n")
    key_file.chmod(0o600)
    port = free_port()
    config = root / "oauth.toml"
    config.write_text(
        f'credentials = "caller"\nroots = [{json.dumps(str(workdir))}]\napi_retries = 0\n'
        f'workspace_root = "{root / "workspaces"}"\n'
        f'[oauth]\nauthorization_server = "builtin"\naccept = ["oauth"]\nresource = "http://127.0.0.1:{port}/mcp"\n'
        f'[oauth.builtin]\nsecrets_key_file = "{key_file}"\n'
        f"[cli_env]\nANTHROPIC_BASE_URL = {json.dumps(fake_model.url)}\n"
    )
    with serving(root, config, "http", "--port", str(port)) as running:
        yield running


@pytest.fixture
async def sign_in_url(server: RunningServer) -> str:
    """A registered client's real `/authorize` URL: the server answers it with a redirect to its sign-in page."""
    metadata = {"redirect_uris": [CALLBACK], "client_name": CLIENT_NAME, "token_endpoint_auth_method": "none"}
    async with httpx2.AsyncClient(base_url=server.base, timeout=30) as http:
        registered = await http.post("/register", json=metadata)
        assert registered.status_code == 201, registered.text
        params = {
            "response_type": "code",
            "client_id": registered.json()["client_id"],
            "redirect_uri": CALLBACK,
            "code_challenge": Pkce.new().challenge,
            "code_challenge_method": "S256",
            "state": "st",
            "resource": server.url,
        }
        url = str(httpx2.URL(f"{server.base}/authorize", params=params))
        first = await http.get(url)
        assert first.status_code in (302, 303) and "/oauth/sign-in" in first.headers["location"], first.text
        return url


async def chromium(tmp_path: Path, *args: str) -> bytes:
    """Run headless Chromium once (an argv list, with a timeout, off the event loop); its stdout."""
    binary = shutil.which("chromium")
    assert binary, "Debian's chromium is not installed: run .ci/system-deps (as root, or with sudo)"
    argv = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'chromium-profile'}",
        f"--window-size={WIDTH},{HEIGHT}", *args,
    ]  # fmt: skip
    with anyio.fail_after(90):
        done = await anyio.run_process(argv, check=False, start_new_session=True)
    tail = done.stderr.decode(errors="replace")[-2000:]
    assert done.returncode == 0, f"chromium exited with {done.returncode}; its stderr ends:\n{tail}"
    return done.stdout


def png_size_and_pixels(data: bytes) -> tuple[int, int, bytes]:
    """Width and height from the IHDR chunk, and the decompressed image data (IDAT chunks joined)."""
    assert data.startswith(PNG_SIGNATURE), f"not a PNG: {data[:16]!r}"
    width, height = struct.unpack(">II", data[16:24])
    assert data[12:16] == b"IHDR"
    idat, at = b"", len(PNG_SIGNATURE)
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        if data[at + 4 : at + 8] == b"IDAT":
            idat += data[at + 8 : at + 8 + length]
        at += 12 + length
    return width, height, zlib.decompress(idat)


async def test_headless_chromium_renders_the_sign_in_page_as_a_picture(sign_in_url: str, tmp_path: Path) -> None:
    shot = tmp_path / "oauth-sign-in.png"
    await chromium(tmp_path, f"--screenshot={shot}", sign_in_url)
    assert shot.is_file(), "chromium wrote no screenshot"
    data = shot.read_bytes()
    OUTPUT.mkdir(parents=True, exist_ok=True)
    kept = OUTPUT / "oauth-sign-in.png"
    kept.write_bytes(data)
    print(f"the sign-in page, as headless Chromium rendered it: {kept}")
    width, height, pixels = png_size_and_pixels(data)
    assert (width, height) == (WIDTH, HEIGHT), f"see {kept}"
    # A page holding one heading is ~5 KB here, its image data 85 distinct byte values; the card, its
    # text and the coloured Allow button make ~50 KB and all 256.
    assert len(data) > 20_000 and len(set(pixels)) > 200, f"the screenshot looks blank: see {kept}"


async def test_the_page_chromium_rendered_names_the_client_where_it_goes_and_asks_for_the_key(
    sign_in_url: str, tmp_path: Path
) -> None:
    dom = (await chromium(tmp_path, "--dump-dom", sign_in_url)).decode()
    assert CLIENT_NAME in dom  # who is asking
    assert "<strong>127.0.0.1:9</strong>" in dom  # where allowing sends you
    assert 'type="password"' in dom and 'name="api_key"' in dom  # the key field
    assert 'action="/oauth/sign-in"' in dom and 'value="allow"' in dom and 'value="deny"' in dom
    assert "<script" not in dom.lower()  # the page runs no script
