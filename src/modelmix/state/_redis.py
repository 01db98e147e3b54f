"""One Redis connection pool per gateway process, its Lua scripts and its pub/sub.

:class:`SharedRedis` is what every shared-state part (key limits, deployment limits,
breakers, key changes, cache) holds. It owns:

* a ``redis.asyncio`` client (a connection pool) with ``state.timeout_s`` on every call;
* :meth:`call`, which turns any Redis failure into
  :class:`~modelmix.errors.StateUnavailable` (logged once per outage, and again when
  Redis answers);
* :meth:`script`, Lua scripts registered once and run with EVALSHA (atomic in Redis);
* one pub/sub listener task, :meth:`subscribe`: handlers by channel, resubscribed after a
  reconnect (``on_reconnect`` handlers run then, since messages sent meanwhile are lost).

Keys are ``<state.key_prefix><kind>:<name>`` (:meth:`key`); every key a part writes has
an expiry, so nothing outlives its use.

Example::

    shared = shared_redis(config, os.environ)        # None when no Redis is configured
    if shared is not None:
        await shared.start()
        bump = shared.script("return redis.call('INCR', KEYS[1])")
        n = await shared.call(bump, keys=[shared.key("demo", "x")])
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

from modelmix.catalog import Config, StateSettings
from modelmix.errors import ConfigError, StateUnavailable, require_extra

__all__ = ["REDIS_URL_ENV", "SharedRedis", "redis_url", "shared_redis"]

log = logging.getLogger("modelmix.state")

#: Environment variable with the Redis URL; overrides ``state.redis_url``.
REDIS_URL_ENV = "MODELMIX_REDIS_URL"

#: Seconds between reconnect attempts of the pub/sub listener.
_RESUBSCRIBE_S = 0.5

MessageHandler = Callable[[str], None]


def redis_url(config: Config, env: Mapping[str, str] | None = None) -> str | None:
    """The Redis URL in effect: ``$MODELMIX_REDIS_URL``, else ``state.redis_url``, else
    None (per-process state)."""
    env = os.environ if env is None else env
    return env.get(REDIS_URL_ENV) or config.state.redis_url or None


def shared_redis(config: Config, env: Mapping[str, str] | None = None) -> SharedRedis | None:
    """A :class:`SharedRedis` for ``config`` when a Redis URL is configured, else None.

    Raises:
        ConfigError: the URL is not ``redis://``, ``rediss://`` or ``unix://``.
        MissingExtra: redis-py is not installed (``pip install 'modelmix[redis]'``).
    """
    url = redis_url(config, env)
    if url is None:
        return None
    return SharedRedis(url, config.state)


class SharedRedis:
    """A process's connection to the shared Redis; see the module docstring.

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://...`` or ``unix://path``.
        settings: ``state`` settings (prefix, timeout, what to do when Redis is down).

    Raises:
        ConfigError: a URL of another scheme.
        MissingExtra: redis-py is missing.
    """

    def __init__(self, url: str, settings: StateSettings):
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"{REDIS_URL_ENV} / state.redis_url must be a redis://, "
                              f"rediss:// or unix:// URL (got a {url.split(':', 1)[0]!r} "
                              "URL)")
        require_extra("redis", "redis", "shared state in Redis")
        import redis.asyncio as aioredis

        self.settings = settings
        self.prefix = settings.key_prefix
        self.fail_closed = settings.on_redis_down == "closed"
        self._url = url
        # A blocking pool: a burst of more concurrent calls than connections waits for one
        # (within the call's time bound) instead of failing at once. Connections idle for
        # over a second are PINGed before use, so a Redis restart costs a reconnect, not a
        # failed request per pooled connection.
        try:
            pool = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=settings.max_connections, timeout=settings.timeout_s,
                socket_timeout=settings.timeout_s, socket_connect_timeout=settings.timeout_s,
                health_check_interval=1, decode_responses=True)
        except ValueError as exc:  # a bad port or db: an error, never a traceback (or the URL)
            raise ConfigError(f"{REDIS_URL_ENV} / state.redis_url is malformed: {exc}"
                              ) from None
        self.client: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self._handlers: dict[str, list[MessageHandler]] = {}
        self._reconnect_handlers: list[Callable[[], None]] = []
        self._listener: asyncio.Task[None] | None = None
        self._down = False
        self._closed = False
        self._subscribed = asyncio.Event()

    def __repr__(self) -> str:
        host = self._url.split("@")[-1].split("?")[0]  # never show a password
        return f"SharedRedis({host!r}, prefix={self.prefix!r})"

    def key(self, kind: str, name: str) -> str:
        """The Redis key of ``name`` of ``kind`` (e.g. ``modelmix:budget:key-1``)."""
        return f"{self.prefix}{kind}:{name}"

    @property
    def down(self) -> bool:
        """Whether the last call failed (Redis unreachable)."""
        return self._down

    def script(self, source: str) -> Any:
        """Register a Lua script (a ``redis.commands.core.AsyncScript``; run it through
        :meth:`call`)."""
        return self.client.register_script(source)

    async def call(self, script: Any, keys: Sequence[str] = (),
                   args: Sequence[str | int | float] = ()) -> Any:
        """Run a registered script atomically.

        Raises:
            StateUnavailable: Redis could not be reached or answered with an error.
        """
        return await self.run(script(keys=list(keys), args=list(args)))

    async def run(self, awaitable: Awaitable[Any]) -> Any:
        """Await one Redis command (e.g. ``shared.run(shared.client.get(k))``).

        Raises:
            StateUnavailable: Redis could not be reached or answered with an error.
        """
        from redis.exceptions import RedisError

        try:
            result = await asyncio.wait_for(awaitable, self.settings.timeout_s)
        except (TimeoutError, RedisError, OSError, RuntimeError) as exc:
            # RuntimeError: under uvloop, a connection Redis closed raises "unable to
            # perform operation on <TCPTransport closed=True>" from the client's send.
            if not self._down:
                log.error("shared state (Redis at %s) unreachable: %s: %s",
                          self._url.split("@")[-1], type(exc).__name__, exc)
            self._down = True
            raise StateUnavailable(
                "shared state (Redis) is unreachable; limits that hold across replicas "
                "cannot be checked, so the request is refused") from None
        if self._down:
            log.warning("shared state (Redis) reachable again")
            self._down = False
        return result

    async def ping(self) -> bool:
        """Whether Redis answers a PING now (never raises)."""
        try:
            return bool(await self.run(self.client.ping()))
        except StateUnavailable:
            return False

    # -- pub/sub ---------------------------------------------------------------------

    def channel(self, name: str) -> str:
        """The pub/sub channel ``name`` under this prefix."""
        return f"{self.prefix}chan:{name}"

    def subscribe(self, channel: str, handler: MessageHandler) -> None:
        """Call ``handler(message)`` for each message published on ``channel`` (a name
        from :meth:`channel`) by any replica, this one included. Handlers run on the
        event loop and must not block or raise."""
        self._handlers.setdefault(channel, []).append(handler)

    def on_reconnect(self, handler: Callable[[], None]) -> None:
        """Call ``handler()`` after the listener reconnects (messages may have been
        missed: drop what they would have invalidated)."""
        self._reconnect_handlers.append(handler)

    async def publish(self, channel: str, message: str) -> None:
        """Publish ``message`` on ``channel`` to every replica.

        Raises:
            StateUnavailable: Redis is unreachable.
        """
        await self.run(self.client.publish(channel, message))

    async def start(self) -> None:
        """Start the pub/sub listener (idempotent) and wait briefly for it to subscribe,
        so messages published after ``start`` returns are received. Never raises: with
        Redis down the listener keeps retrying."""
        if self._listener is None and self._handlers:
            self._listener = asyncio.create_task(self._listen(), name="modelmix-state-pubsub")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscribed.wait(), self.settings.timeout_s * 4)

    async def _listen(self) -> None:
        from redis.exceptions import RedisError

        first, lost = True, False
        while not self._closed:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*self._handlers)
                self._subscribed.set()
                if lost:
                    log.warning("state pub/sub resubscribed")
                lost = False
                if not first:
                    for reconnected in self._reconnect_handlers:
                        reconnected()
                first = False
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    for handler in self._handlers.get(message["channel"], ()):
                        try:
                            handler(message["data"])
                        except Exception:  # a handler bug must not stop the listener
                            log.exception("state message handler failed")
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, RuntimeError) as exc:
                if not self._closed:
                    # Once per outage (the retries every 0.5 s are debug), and the end.
                    log.log(logging.DEBUG if lost else logging.WARNING,
                            "state pub/sub lost (%s); reconnecting every %.1f s",
                            type(exc).__name__, _RESUBSCRIBE_S)
                    first, lost = False, True
                    await asyncio.sleep(_RESUBSCRIBE_S)
            finally:
                with contextlib.suppress(Exception):
                    # typed from redis-py 8.2 on, untyped before: one cast suits both
                    close = cast("Callable[[], Awaitable[object]]", pubsub.aclose)
                    await close()

    async def aclose(self) -> None:
        """Stop the listener and close the pool."""
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        with contextlib.suppress(Exception):
            await self.client.aclose()
