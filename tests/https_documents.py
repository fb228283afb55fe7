"""Client metadata documents served over https on loopback, as a client's own site would serve
them: a certificate for `localhost` made here (its file is the CA a test server trusts through
`SSL_CERT_FILE`), and a uvicorn server in a thread answering each path with its document."""

from __future__ import annotations

import datetime
import ipaddress
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response


@dataclass
class Documents:
    origin: str
    """`https://localhost:PORT`"""
    ca_file: Path
    served: dict[str, bytes]
    fetched: list[str]
    headers: dict[str, str]
    """What each document is served with (`Cache-Control: max-age=60` unless changed)."""

    def url(self, path: str) -> str:
        return f"{self.origin}{path}"


def _certificate(directory: Path, names: tuple[str, ...]) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n) for n in names]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "documents-cert.pem", directory / "documents-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@contextmanager
def serving_documents(
    directory: Path, served: dict[str, bytes], names: tuple[str, ...] = ("localhost", "127.0.0.1")
) -> Iterator[Documents]:
    """Serve `served` (path -> body, as JSON) over https until the block ends; `served` may change meanwhile.
    `names`: the host names and addresses its certificate is for."""
    cert_file, key_file = _certificate(directory, names)
    fetched: list[str] = []
    headers = {"Cache-Control": "max-age=60"}

    async def document(request: Request) -> Response:
        fetched.append(request.url.path)
        body = served.get(request.url.path)
        if body is None:
            return Response(status_code=404)
        return Response(body, media_type="application/json", headers=headers)

    app = Starlette()
    app.add_route("/{path:path}", document)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
        ssl_certfile=str(cert_file),
        ssl_keyfile=str(key_file),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the documents' server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Documents(f"https://localhost:{port}", cert_file, served, fetched, headers)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
