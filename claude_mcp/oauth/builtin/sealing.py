"""Callers' credentials at rest: sealed with AES-256-GCM under a key ring, opened only in memory.

A key ring is a list of named 256-bit keys; the first seals, every one of them opens. A sealed
value names the key that sealed it (`v1.<key id>.<nonce>.<ciphertext>`, base64url), so a ring with
a new key first and the old ones after it opens everything stored before and seals anew with the
new key: that is a rotation. The additional data binds a sealed value to the record it belongs to
(a grant's id), so a value copied into another record does not open.

The ring comes from an environment variable or a key file (as a KMS-style secret would be mounted):
one key a line or comma-separated, each `KEY_ID:BASE64_KEY`: 32 random bytes in base64 or base64url
(`echo "2026-12:$(openssl rand -base64 32)"` makes one).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ...errors import ConfigError

VERSION = "v1"
MAKE_ONE = 'make one with: echo "2026-12:$(openssl rand -base64 32)"'
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class SealBroken(ValueError):
    """A sealed value that no key of the ring opens (a key removed too early, or tampering)."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no key of the ring opens this value (sealed with key id {key_id!r})")
        self.key_id = key_id


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    text = text.replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class KeyRing:
    """Named AES-256-GCM keys; `current` seals, all of them open."""

    keys: Mapping[str, bytes] = field(repr=False)
    current: str

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise ConfigError(f"the key ring has no key {self.current!r}")

    def seal(self, plaintext: str, *, bound_to: str) -> str:
        """`plaintext` sealed with the current key, bound to `bound_to` (opened only with the same)."""
        nonce = os.urandom(12)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, plaintext.encode(), bound_to.encode())
        return f"{VERSION}.{self.current}.{_b64(nonce)}.{_b64(sealed)}"

    def open(self, sealed: str, *, bound_to: str) -> str:
        """The plaintext of a value `seal` made with the same `bound_to`; `SealBroken` otherwise."""
        version, key_id, nonce, body = ([*sealed.split("."), "", "", ""])[:4]
        key = self.keys.get(key_id)
        if version != VERSION or key is None:
            raise SealBroken(key_id)
        try:
            return AESGCM(key).decrypt(_unb64(nonce), _unb64(body), bound_to.encode()).decode()
        except (InvalidTag, ValueError, binascii.Error):
            raise SealBroken(key_id) from None

    def sealed_with_current(self, sealed: str) -> bool:
        """Whether `sealed` is under the current key (else a rotation re-seals it when next written)."""
        return sealed.startswith(f"{VERSION}.{self.current}.")

    @classmethod
    def parse(cls, text: str, *, source: str) -> KeyRing:
        """A ring from `KEY_ID:BASE64_KEY` entries (one a line or comma-separated; the first seals)."""
        keys: dict[str, bytes] = {}
        entries = [e.strip() for e in re.split(r"[,\n]", text) if e.strip() and not e.strip().startswith("#")]
        for entry in entries:
            key_id, sep, encoded = entry.partition(":")
            if not sep or not _KEY_ID.match(key_id.strip()):
                raise ConfigError(f"{source}: each key is KEY_ID:BASE64_KEY (KEY_ID letters, digits, - or _)")
            try:
                key = _unb64(encoded.strip())
            except (ValueError, binascii.Error):
                key = b""
            if len(key) != 32:
                raise ConfigError(f"{source}: key {key_id.strip()!r} is not 32 bytes of base64 ({MAKE_ONE})")
            if key_id.strip() in keys:
                raise ConfigError(f"{source}: key id {key_id.strip()!r} appears twice")
            keys[key_id.strip()] = key
        if not keys:
            raise ConfigError(f"{source}: no key; {MAKE_ONE}")
        return cls(keys, next(iter(keys)))

    @classmethod
    def load(cls, *, env: str | None, file: Path | None, environ: Mapping[str, str] | None = None) -> KeyRing:
        """The ring from the environment variable `env` if it is set, else from `file`."""
        environ = os.environ if environ is None else environ
        if env and environ.get(env):
            return cls.parse(environ[env], source=f"${env}")
        if file is not None:
            try:
                return cls.parse(file.read_text(), source=str(file))
            except OSError as exc:
                raise ConfigError(f"cannot read the OAuth key file {file}: {exc.strerror}") from None
        raise ConfigError(
            f"the built-in authorization server keeps callers' keys encrypted and needs its key: set ${env} "
            f"or `secrets_key_file` to `KEY_ID:BASE64_KEY` ({MAKE_ONE})"
        )


def new_key_line(key_id: str) -> str:
    """A fresh `KEY_ID:BASE64_KEY` entry."""
    if not _KEY_ID.match(key_id):
        raise ConfigError("a key id is 1-32 letters, digits, - or _")
    return f"{key_id}:{_b64(secrets.token_bytes(32))}"
