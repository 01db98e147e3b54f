"""Authentication interface of the gateway, and the master-key implementation."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Protocol

from modelmix.engine import Admission
from modelmix.errors import AuthenticationFailed

__all__ = ["Authenticator", "KeyInfo", "MasterKeyAuth", "bearer_token"]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """Who is calling: key id (never the key itself), allow-list and budget gate, and
    the key's response-cache setting (``off``, ``exact``, ``semantic``; None: the
    catalog's; docs/cache.md)."""

    key_id: str | None
    allowed_models: frozenset[str] | None = None
    admission: Admission | None = None
    is_admin: bool = False
    cache: str | None = None


class Authenticator(Protocol):
    """Turns an ``Authorization`` header into a :class:`KeyInfo`.

    Raises:
        AuthenticationFailed: missing, malformed or unknown key.
    """

    async def authenticate(self, authorization: str | None) -> KeyInfo: ...


def bearer_token(authorization: str | None) -> str | None:
    """The token of ``Bearer <token>``, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class MasterKeyAuth:
    """Accepts only the master key; with no master key configured, everyone is admitted
    (the default for a laptop gateway on loopback)."""

    def __init__(self, master_key: str | None):
        self._master = master_key

    async def authenticate(self, authorization: str | None) -> KeyInfo:
        if self._master is None:
            return KeyInfo(key_id=None, is_admin=True)
        token = bearer_token(authorization)
        if token is None:
            raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>' "
                                       "(or 'x-api-key: <key>' on /v1/messages)")
        if hmac.compare_digest(token.encode(), self._master.encode()):
            return KeyInfo(key_id="master", is_admin=True)
        raise AuthenticationFailed("invalid API key")
