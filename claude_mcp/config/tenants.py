"""`[tenants.NAME]` in the config: a tenant's token and credential (never the secrets themselves
in logs; the token only as a hash or an environment variable's name)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import ConfigError


def token_hash(token: str) -> str:
    """What the config stores instead of a token: `claude-mcp hash-token` prints it."""
    return hashlib.sha256(token.encode()).hexdigest()


class TenantSpec(BaseModel):
    """`[tenants.NAME]` in the config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="SHA-256 (hex) of the token.")
    token_env: str | None = Field(None, description="Environment variable holding the token.")
    api_key_env: str | None = Field(None, description="Environment variable with this tenant's ANTHROPIC_API_KEY.")
    oauth_token_env: str | None = Field(
        None, description="Environment variable with this tenant's CLAUDE_CODE_OAUTH_TOKEN (subscription)."
    )
    credential: Literal["own", "server"] = Field(
        "own",
        description="Whose Claude credential this tenant's runs use: its own (`api_key_env` or `oauth_token_env`) "
        "or the server's (`\"server\"`: the one in the server's [cli_env]).",
    )
    config_dir: Path | None = Field(None, description="The tenant's Claude config directory (default: under state).")
    policy: dict[str, Any] = Field(default_factory=dict, description="Policy settings that differ for this tenant.")

    @model_validator(mode="after")
    def _one_token(self) -> TenantSpec:
        if self.token_sha256 is not None and self.token_env is not None:
            raise ValueError("give one of token_sha256 or token_env, not both")
        return self

    @property
    def has_token(self) -> bool:
        """Whether the tenant has a static token (without one it is reached only through `[oauth]`)."""
        return self.token_sha256 is not None or self.token_env is not None

    def digest(self, name: str, environ: Mapping[str, str]) -> str | None:
        """The SHA-256 of the tenant's static token; None if it has none."""
        if self.token_sha256 is not None:
            return self.token_sha256
        if self.token_env is None:
            return None
        token = environ.get(self.token_env or "")
        if not token:
            raise ConfigError(f"tenant {name!r}: the environment variable {self.token_env} (its token) is not set")
        return token_hash(token)

    def credentials(self, name: str, environ: Mapping[str, str], *, required: bool = True) -> dict[str, str]:
        env: dict[str, str] = {}
        for variable, target in (
            (self.api_key_env, "ANTHROPIC_API_KEY"),
            (self.oauth_token_env, "CLAUDE_CODE_OAUTH_TOKEN"),
        ):
            if variable is None:
                continue
            if not environ.get(variable):
                raise ConfigError(f"tenant {name!r}: the environment variable {variable} (its credential) is not set")
            env[target] = environ[variable]
        if self.credential == "server":
            if env:
                raise ConfigError(f'tenant {name!r}: credential = "server" takes no api_key_env or oauth_token_env')
            return env
        if not env and required:
            raise ConfigError(
                f"tenant {name!r}: give api_key_env or oauth_token_env, so it uses its own credential "
                '(or credential = "server", so it uses the server\'s)'
            )
        return env
