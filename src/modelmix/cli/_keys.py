"""``modelmix keys``: create, list and revoke virtual keys in the store database.

With a Redis URL configured (``$MODELMIX_REDIS_URL`` or ``state.redis_url``), creating
and revoking also announce the change to every running gateway replica, which drops the
key from its cache at once; otherwise (or with Redis unreachable) they notice within
their key cache's 5 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from modelmix.catalog import Config
from modelmix.cli._output import ConfigOpt, console, err_console, plain
from modelmix.cli._output import config_or_fail as _config
from modelmix.cli._output import fail as _fail
from modelmix.errors import ConfigError, ModelmixError

if TYPE_CHECKING:
    from modelmix.server.keys import KeyStore
    from modelmix.state import KeyChange

__all__ = ["keys_app"]

keys_app = typer.Typer(help="Manage virtual keys (stored hashed in the store database: "
                            "$MODELMIX_DB_URL or store.url).", no_args_is_help=True)


@contextmanager
def _keystore(cfg: Config) -> Iterator[KeyStore]:
    """The key store of ``cfg``, closed afterwards; store errors become clean errors."""
    from sqlalchemy.exc import SQLAlchemyError

    from modelmix.server.keys import KeyStore

    try:
        store = KeyStore.from_config(cfg)
    except ConfigError as exc:
        _fail(exc.message)
    try:
        yield store
    except SQLAlchemyError as exc:
        _fail(str(exc), code=1, label="database error")
    finally:
        store.close()


def _announce(cfg: Config, change: KeyChange, key_id: str) -> None:
    """Tell running gateways that ``key_id`` changed, when a Redis URL is configured;
    a failure is a warning (they notice within seconds anyway)."""
    import asyncio

    from modelmix.state import publish_key_change, shared_redis

    try:
        shared = shared_redis(cfg)
    except ModelmixError as exc:
        err_console.print(Text.assemble(("not announced to gateways:", "yellow"), " ",
                                        exc.message))
        return
    if shared is None:
        return

    async def announce() -> None:
        try:
            await publish_key_change(shared, change, key_id)
        finally:
            await shared.aclose()

    try:
        asyncio.run(announce())
    except ModelmixError:
        err_console.print("[yellow]Redis is unreachable: running gateways notice this "
                          "change within 5 s[/]")


@keys_app.command("create")
def keys_create(
    config: ConfigOpt = None,
    alias: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
    models: Annotated[str | None, typer.Option(
        help="Comma-separated deployments / groups the key may use (default: all).")] = None,
    budget: Annotated[float | None, typer.Option(min=0, help="Budget in USD.")] = None,
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(min=1, help="Tokens per minute.")] = None,
    cache: Annotated[str | None, typer.Option(
        help="The key's response cache: off, exact or semantic (default: the catalog's "
             "cache.mode; docs/cache.md).")] = None,
) -> None:
    """Create a virtual key and print it (once: only its hash is stored)."""
    from modelmix.server._limits import check_limits

    cfg = _config(config)
    allowed = [m.strip() for m in models.split(",") if m.strip()] if models else None
    unknown = sorted(set(allowed or ()) - set(cfg.model_names()))
    if unknown:
        _fail(f"unknown models {unknown}")
    try:
        check_limits(budget, rpm, tpm)
    except ValueError as exc:
        _fail(str(exc))
    if cache not in (None, "off", "exact", "semantic"):
        _fail(f"--cache must be off, exact or semantic (got {cache!r})")
    with _keystore(cfg) as store:
        key, record = store.create(alias=alias, models=allowed, budget_usd=budget, rpm=rpm,
                                   tpm=tpm, cache=cache)
    _announce(cfg, "create", record.id)
    print(key)
    err_console.print(f"key id {record.id}: store the key now, it is not shown again")


@keys_app.command("list")
def keys_list(config: ConfigOpt = None) -> None:
    """List virtual keys (never the keys themselves)."""
    with _keystore(_config(config)) as store:
        keys = store.list_keys()
    table = Table("id", "alias", "key", "models", "budget USD", "spent USD", "rpm", "tpm",
                  "status")
    for k in keys:
        table.add_row(*plain(k.id, k.alias or "", k.key_prefix + "...",
                             ",".join(sorted(k.allowed_models)) if k.allowed_models else "all"),
                      "-" if k.budget_usd is None else f"{k.budget_usd:g}",
                      f"{k.spent_usd:.6f}", str(k.rpm or "-"), str(k.tpm or "-"),
                      "revoked" if k.revoked else "active")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see: modelmix keys list).")],
    config: ConfigOpt = None,
) -> None:
    """Revoke a virtual key (running gateways sharing Redis drop it at once, others
    notice within seconds)."""
    cfg = _config(config)
    with _keystore(cfg) as store:
        record = store.revoke(key_id)
    if record is None:
        _fail(f"no virtual key with id {key_id!r}", code=1)
    _announce(cfg, "revoke", record.id)
    console.print(f"revoked {record.id}")
