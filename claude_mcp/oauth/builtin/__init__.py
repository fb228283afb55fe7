"""The built-in OAuth authorization server (`[oauth] authorization_server = "builtin"`): people sign
in with their own Anthropic key, and the client gets tokens that run Claude on that key.

- `server.py`: the whole of it for the HTTP app (routes, and the `IdentityVerifier` of its tokens);
- `provider.py`: the `mcp` SDK's `OAuthAuthorizationServerProvider` over the shared store;
- `sign_in.py` (and `sign_in.html`): the sign-in and consent page;
- `cimd.py`: clients identified by a metadata document URL, fetched with care;
- `keycheck.py`: a key is checked with the model API before anything is issued;
- `sealing.py`: the key ring that keeps callers' keys encrypted at rest.
"""

from .sealing import KeyRing, new_key_line
from .server import BuiltinAuthorizationServer

__all__ = ["BuiltinAuthorizationServer", "KeyRing", "new_key_line"]
