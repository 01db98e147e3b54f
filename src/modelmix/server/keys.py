"""Virtual keys: authentication, per-key limits and the LiteLLM-style admin endpoints.

:class:`VirtualKeyAuth` is the gateway's default :class:`~modelmix.server.Authenticator`:

* the master key (``MODELMIX_MASTER_KEY``) is the admin: any model, no limits, and the
  only key that may call ``/key/generate``, ``/key/list`` and ``/key/revoke``;
* a virtual key (``sk-mm-...``, stored hashed in ``virtual_keys``) gets its allow-list
  and a :class:`~modelmix.server._limits.KeyLimiter` (budget, RPM, TPM), or with Redis
  configured and a limit set a
  :class:`~modelmix.server._shared_limits.SharedKeyLimiter` (the same limits, held
  across every replica);
* with no master key and no virtual key in the database, everyone is admitted to the
  chat and model endpoints (the loopback laptop default, as
  :class:`~modelmix.server.MasterKeyAuth` does), but never to ``/key/*``: those answer
  403 until a master key is configured, so one anonymous request cannot create a key
  and lock everybody else out (docs/decisions/0001).

Without Redis, limits are kept per gateway process; with it, they hold across replicas
and key changes (create, revoke) reach every replica at once; see ``docs/keys.md``.

Example::

    store = KeyStore("sqlite:///modelmix_usage.db")
    auth = VirtualKeyAuth(os.environ.get("MODELMIX_MASTER_KEY"), store)
    app = create_app(config, auth=auth)       # also mounts the /key/* routes
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from modelmix.catalog import Config
from modelmix.errors import (
    AuthenticationFailed,
    AuthUnavailable,
    InvalidRequest,
    ModelmixError,
    PermissionDenied,
    invalid_request,
)
from modelmix.server._auth import KeyInfo, bearer_token
from modelmix.server._body_read import read_body
from modelmix.server._gateway import error_response
from modelmix.server._keystore import (
    KEY_PREFIX,
    KeyStore,
    SpendLedger,
    VirtualKey,
    database_url,
    hash_key,
)
from modelmix.server._limits import (
    MAX_BUDGET_USD,
    MAX_RPM,
    MAX_TPM,
    KeyLimiter,
    KeyLimits,
    Reservation,
    max_request_cost,
)
from modelmix.server._shared_limits import SharedKeyLimiter, SharedLimits
from modelmix.state import (
    KEY_CHANGES,
    KeyChange,
    KeyFigures,
    SharedRedis,
    parse_key_change,
    publish_key_change,
)

__all__ = [
    "KEY_PREFIX",
    "KeyLimiter",
    "KeyLimits",
    "KeyNotFound",
    "KeyStore",
    "Reservation",
    "VirtualKey",
    "VirtualKeyAuth",
    "database_url",
    "key_admin_routes",
    "key_view",
    "max_request_cost",
]

log = logging.getLogger("modelmix.keys")

#: Largest admin request body, bytes.
_ADMIN_BODY_LIMIT = 64 * 1024


class KeyNotFound(InvalidRequest):
    """No virtual key has the given id (404)."""

    status_code = 404
    default_code = "key_not_found"


class VirtualKeyAuth:
    """Master key plus hashed virtual keys from a :class:`KeyStore`.

    Args:
        master_key: the admin key, or None (then keys are needed only once one exists).
        store: where virtual keys live.
        refresh_s: how long (s) a key looked up from the database is trusted before it is
            read again, so keys revoked or created by another process (the CLI) take
            effect within this time. Revocation through :meth:`revoke_key` is immediate.
        flush_delay_s: seconds spend is batched before it is written to the database.
        clock: monotonic seconds, for the cache and the limiters (tests pass a fake).
        shared: the replicas' shared state (Redis): budgets, RPM and TPM then hold across
            every gateway process, and key changes reach them all at once (pub/sub);
            None keeps limits per process.
        request_timeout_s: a request's deadline when it sets none, seconds
            (``reliability.timeout_s``): a reservation left in Redis expires (charged as
            spent) 60 s after it.

    Raises (from ``authenticate``):
        AuthenticationFailed: missing, unknown or revoked key.
        AuthUnavailable: the key store could not be read (503; logged). Authentication
            fails closed: a store error never admits a request, and a failed "are there
            any keys?" count counts as "keys exist".
    """

    def __init__(
        self,
        master_key: str | None,
        store: KeyStore,
        *,
        refresh_s: float = 5.0,
        flush_delay_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedRedis | None = None,
        request_timeout_s: float = 600.0,
    ):
        self.store = store
        self.shared = shared
        self._master = master_key
        self._refresh_s = refresh_s
        self._clock = clock
        self._ledger = SpendLedger(store, delay_s=flush_delay_s)
        self._cache: dict[str, tuple[VirtualKey, float]] = {}
        self._limiters: dict[str, KeyLimiter | SharedKeyLimiter] = {}
        self._any_keys = False
        self._counted_at: float | None = None
        self._counting: asyncio.Future[bool | None] | None = None
        self.shared_limits: SharedLimits | None = None
        if shared is not None:
            self.shared_limits = SharedLimits(
                shared, ledger_add=self._ledger.add, stored_spend=self._stored_spend,
                request_timeout_s=request_timeout_s)
            shared.subscribe(shared.channel(KEY_CHANGES), self._key_changed)
            shared.on_reconnect(self._cache.clear)

    @property
    def has_master_key(self) -> bool:
        """Whether a master key is configured (the ``/key/*`` endpoints need one)."""
        return self._master is not None

    def __repr__(self) -> str:
        master = "set" if self._master else "unset"
        return f"VirtualKeyAuth(master_key={master}, store={self.store!r})"

    async def authenticate(self, authorization: str | None) -> KeyInfo:
        token = bearer_token(authorization)
        if self._master is None:
            keys_exist = await self._keys_exist()
            if keys_exist is False:
                return KeyInfo(key_id=None, is_admin=True)
            if keys_exist is None and token is None:
                raise AuthUnavailable("cannot check API keys: the key store is unreachable")
        if token is None:
            raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>' "
                                       "(or 'x-api-key: <key>' on /v1/messages)")
        if self._master is not None and hmac.compare_digest(token.encode(),
                                                            self._master.encode()):
            return KeyInfo(key_id="master", is_admin=True)
        key = await self._lookup(token)
        if key is None:
            raise AuthenticationFailed("invalid API key")
        if key.revoked:
            raise AuthenticationFailed("this API key was revoked", code="revoked_api_key")
        return KeyInfo(key_id=key.id, allowed_models=key.allowed_models,
                       admission=self._limiter(key), cache=key.cache)

    async def _keys_exist(self) -> bool | None:
        """Whether any virtual key exists: True (sticky once seen), False, or None when
        the store could not be counted (callers treat that as "keys exist").

        The count is re-read every ``refresh_s``. Concurrent callers wait for one
        shared count, so no request is admitted in open mode while it is in flight.
        """
        if self._any_keys:
            return True
        now = self._clock()
        if self._counted_at is not None and now - self._counted_at < self._refresh_s:
            return False
        if self._counting is None:
            self._counting = asyncio.ensure_future(self._count())
        # Shielded: a caller that leaves (client disconnect) does not cancel the count
        # the others wait for.
        return await asyncio.shield(self._counting)

    async def _count(self) -> bool | None:
        try:
            found = await asyncio.to_thread(self.store.count) > 0
        except Exception:  # any failure to count fails closed
            log.exception("key store unreachable while counting keys; refusing keyless "
                          "requests (503) until it answers")
            return None
        finally:
            self._counting = None
        self._counted_at = self._clock()
        self._any_keys = self._any_keys or found
        return self._any_keys

    async def _lookup(self, token: str) -> VirtualKey | None:
        if not token.startswith(KEY_PREFIX):
            return None
        digest = hash_key(token)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[1] < self._refresh_s:
            key = cached[0]
        else:
            try:
                found = await asyncio.to_thread(self.store.get_by_hash, digest)
            except Exception:  # any failure to look up fails closed
                log.exception("key store unreachable while looking up a key; refused (503)")
                raise AuthUnavailable(
                    "cannot check this API key: the key store is unreachable") from None
            if found is None:
                self._cache.pop(digest, None)
                return None
            key = found
            self._cache[digest] = (key, now)
        # The database found the row by hash already; compare again in constant time in
        # case its collation is case-insensitive.
        return key if hmac.compare_digest(key.key_hash, digest) else None

    def _limiter(self, key: VirtualKey) -> KeyLimiter | SharedKeyLimiter:
        limits = KeyLimits(budget_usd=key.budget_usd, rpm=key.rpm, tpm=key.tpm)
        shared = self.shared_limits is not None and limits.limited
        limiter = self._limiters.get(key.id)
        if limiter is None or isinstance(limiter, SharedKeyLimiter) != shared:
            if self.shared_limits is not None and shared:
                limiter = self.shared_limits.limiter(key.id, limits, key.spent_usd)
            else:
                limiter = KeyLimiter(key.id, limits, spent_usd=key.spent_usd,
                                     on_spend=self._ledger.add, clock=self._clock)
            self._limiters[key.id] = limiter
        elif limiter.limits != limits:
            limiter.limits = limits
        if isinstance(limiter, SharedKeyLimiter):
            limiter.stored_spent_usd = key.spent_usd
        return limiter

    def limiter(self, key_id: str) -> KeyLimiter | SharedKeyLimiter | None:
        """The live limiter of a key this process has seen, or None."""
        return self._limiters.get(key_id)

    async def _stored_spend(self, key_id: str) -> float | None:
        """The key's spend in the database (USD) after writing this process's pending
        spend; None when the key is not there. Raises what the store raises."""
        await self._ledger.flush()
        record = await asyncio.to_thread(self.store.get, key_id)
        return record.spent_usd if record is not None else None

    def _key_changed(self, message: str) -> None:
        """A replica (or the CLI) created, revoked or changed a key: drop it from the
        cache so the next request reads it again (a malformed message drops all)."""
        change = parse_key_change(message)
        if change is None:
            self._cache.clear()
            return
        kind, key_id = change
        if kind == "create":
            self._any_keys = True
        for digest, (key, _) in list(self._cache.items()):
            if key.id == key_id:
                del self._cache[digest]

    async def _announce(self, change: KeyChange, key_id: str) -> None:
        """Tell the other replicas (best effort: without Redis they notice within
        ``refresh_s``)."""
        if self.shared is None:
            return
        try:
            await publish_key_change(self.shared, change, key_id)
        except ModelmixError:
            log.warning("could not announce that key %s changed (%s); other replicas "
                        "notice within %.0f s", key_id, change, self._refresh_s)

    async def key_figures(self, key_ids: Iterable[str]
                          ) -> dict[str, KeyLimiter | SharedKeyLimiter | KeyFigures]:
        """What ``/key/list`` shows of each key: the shared figures from Redis when it
        holds them (best effort), else this process's limiter."""
        ids = list(key_ids)
        shown: dict[str, KeyLimiter | SharedKeyLimiter | KeyFigures] = {
            k: limiter for k in ids if (limiter := self._limiters.get(k)) is not None}
        if self.shared_limits is not None:
            shown.update(await self.shared_limits.figures(ids))
        return shown

    async def create_key(
        self,
        *,
        alias: str | None = None,
        models: list[str] | None = None,
        budget_usd: float | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        cache: str | None = None,
    ) -> tuple[str, VirtualKey]:
        """Create a virtual key; returns (the key, shown only now; its record).
        ``cache``: the key's response cache (docs/cache.md), None for the catalog's."""
        create = functools.partial(self.store.create, alias=alias, models=models,
                                   budget_usd=budget_usd, rpm=rpm, tpm=tpm, cache=cache)
        key, record = await asyncio.to_thread(create)
        self._any_keys = True
        await self._announce("create", record.id)
        return key, record

    async def list_keys(self) -> list[VirtualKey]:
        """Every stored key, revoked ones included."""
        return await asyncio.to_thread(self.store.list_keys)

    async def revoke_key(self, key_id: str) -> VirtualKey:
        """Revoke a key now in this process; other replicas sharing Redis drop it at
        once (pub/sub, well within 1 s), other processes within ``refresh_s``.

        Raises:
            KeyNotFound: no key has this id.
        """
        record = await asyncio.to_thread(self.store.revoke, key_id)
        if record is None:
            raise KeyNotFound(f"no virtual key with id {key_id!r}", param="key_id")
        self._cache[record.key_hash] = (record, self._clock())
        await self._announce("revoke", record.id)
        return record

    async def aclose(self) -> None:
        """Land pending Redis settles (up to 2 s), write pending spend and release the
        database. Call it before the shared Redis connection is closed."""
        if self.shared_limits is not None:
            await self.shared_limits.aclose()
        await self._ledger.aclose()
        await asyncio.to_thread(self.store.close)


def key_view(key: VirtualKey,
             limiter: KeyLimiter | SharedKeyLimiter | KeyFigures | None = None
             ) -> dict[str, Any]:
    """A key as the admin API shows it (never the key or its hash); ``spend``,
    ``reserved`` and ``in_flight`` are the live figures when ``limiter`` is given (this
    process's limiter, or the replicas' figures from Redis). Amounts in USD, times in
    Unix seconds."""
    return {
        "key_id": key.id,
        "key_alias": key.alias,
        "key_prefix": key.key_prefix,
        "models": sorted(key.allowed_models) if key.allowed_models is not None else None,
        "max_budget": _finite(key.budget_usd),
        "spend": _finite(limiter.spent_usd if limiter is not None else key.spent_usd),
        "reserved": limiter.reserved_usd if limiter is not None else 0.0,
        "in_flight": limiter.in_flight if limiter is not None else 0,
        "rpm_limit": key.rpm,
        "tpm_limit": key.tpm,
        "cache": key.cache,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }


def _finite(value: float | None) -> float | None:
    """None for NaN / infinity (JSON has no such numbers; rows written before limits
    were validated may hold them: an infinite budget is no budget)."""
    return value if value is None or math.isfinite(value) else None


_M = TypeVar("_M", bound=BaseModel)


class GenerateKeyRequest(BaseModel):
    """``POST /key/generate`` body (LiteLLM names). ``models`` None or empty: all models.
    ``max_budget`` is USD, finite, at most ``MAX_BUDGET_USD``; limits are bounded too."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] | None = None
    max_budget: float | None = Field(default=None, ge=0, le=MAX_BUDGET_USD,
                                     allow_inf_nan=False)
    rpm_limit: int | None = Field(default=None, gt=0, le=MAX_RPM)
    tpm_limit: int | None = Field(default=None, gt=0, le=MAX_TPM)
    key_alias: str | None = Field(default=None, max_length=200)
    #: the key's response cache (docs/cache.md); None: the catalog's ``cache.mode``
    cache: Literal["off", "exact", "semantic"] | None = None


class RevokeKeyRequest(BaseModel):
    """``POST /key/revoke`` body."""

    model_config = ConfigDict(extra="forbid")

    key_id: str = Field(min_length=1)


def _parse(body: bytes | bytearray, model: type[_M]) -> _M:
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise invalid_request(exc) from exc


Handler = Callable[[Request], Awaitable[dict[str, Any]]]


class _KeyAdmin:
    """The admin endpoints' logic; every call needs the master key, so with none
    configured every call is refused (403), open mode or not."""

    def __init__(self, auth: VirtualKeyAuth, config: Config, systems: Iterable[str] = ()):
        self.auth = auth
        self.model_names = frozenset(config.model_names()) | frozenset(systems)
        self.master_key_env = config.server.master_key_env

    def guarded(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                await self._check_admin(request)
                return JSONResponse(await handler(request))
            except ModelmixError as exc:
                return error_response(exc)
            except SQLAlchemyError:
                log.exception("key store error in %s", request.url.path)
                return error_response(AuthUnavailable("the key store is unreachable"))
        return endpoint

    async def _check_admin(self, request: Request) -> None:
        if not self.auth.has_master_key:
            raise PermissionDenied(
                f"key management is disabled: no master key is configured. Set "
                f"{self.master_key_env} (the variable named by server.master_key_env) and "
                "restart the gateway, or run 'modelmix keys create' on the gateway's host.",
                code="master_key_not_configured")
        info = await self.auth.authenticate(request.headers.get("authorization"))
        if not info.is_admin:
            raise PermissionDenied("key management needs the master key",
                                   code="admin_key_required")

    async def generate(self, request: Request) -> dict[str, Any]:
        body = _parse(await read_body(request, _ADMIN_BODY_LIMIT), GenerateKeyRequest)
        unknown = sorted(set(body.models or ()) - self.model_names)
        if unknown:
            raise InvalidRequest(f"unknown models {unknown}; known: "
                                 f"{sorted(self.model_names)}", param="models",
                                 code="invalid_value")
        key, record = await self.auth.create_key(
            alias=body.key_alias, models=body.models or None, budget_usd=body.max_budget,
            rpm=body.rpm_limit, tpm=body.tpm_limit, cache=body.cache)
        return {"key": key, **key_view(record)}

    async def list(self, request: Request) -> dict[str, Any]:
        keys = await self.auth.list_keys()
        shown = await self.auth.key_figures(k.id for k in keys)
        return {"keys": [key_view(k, shown.get(k.id)) for k in keys]}

    async def revoke(self, request: Request) -> dict[str, Any]:
        body = _parse(await read_body(request, _ADMIN_BODY_LIMIT), RevokeKeyRequest)
        record = await self.auth.revoke_key(body.key_id)
        shown = await self.auth.key_figures([record.id])
        return key_view(record, shown.get(record.id))


def key_admin_routes(auth: VirtualKeyAuth, config: Config, systems: Iterable[str] = ()
                     ) -> list[Route]:
    """``POST /key/generate``, ``GET /key/list`` and ``POST /key/revoke``, master key only.
    A key's ``models`` may name deployments, groups and ``systems`` (``system/<name>``).

    ``/key/generate`` takes ``{"models", "max_budget" (USD), "rpm_limit", "tpm_limit",
    "key_alias", "cache"}`` (all optional) and answers the key once, with its ``key_id``.
    """
    admin = _KeyAdmin(auth, config, systems)
    return [
        Route("/key/generate", admin.guarded(admin.generate), methods=["POST"]),
        Route("/key/list", admin.guarded(admin.list), methods=["GET"]),
        Route("/key/revoke", admin.guarded(admin.revoke), methods=["POST"]),
    ]
