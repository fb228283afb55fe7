"""OAuth 2.1 for the HTTP server: who a bearer token says is calling (`identity.py`, the seam every
kind of token plugs into), the external identity provider's tokens (`jwt.py`, `introspection.py`),
the built-in authorization server (`builtin/`), and the resource server's metadata and refusals
(`resource.py`)."""

from .identity import IdentifiedToken, Identities, Identity, IdentityVerifier, StaticTokens, TokenKind, identity_of

__all__ = [
    "IdentifiedToken",
    "Identities",
    "Identity",
    "IdentityVerifier",
    "StaticTokens",
    "TokenKind",
    "identity_of",
]
