"""``modelmix audit`` (the data guard's audit records, table ``guard_audit``) and
``modelmix guard policy`` (check a data policy, or see what it does with a text).

Examples::

    modelmix audit --since 24h --class regulated
    modelmix audit --action block --json
    modelmix audit --summary --by data_class,action,deployment
    modelmix guard policy finance
    modelmix guard policy ./ours.yaml -c catalog.yaml --text "card 4111 1111 1111 1111"
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.table import Table
from rich.text import Text

from modelmix.cli._output import console as _console
from modelmix.cli._output import fail as _fail

if TYPE_CHECKING:
    from modelmix.catalog import Config
    from modelmix.guard import Policy
    from modelmix.store import AuditRow, AuditStore
    from modelmix.store._audit import AuditGroup

__all__ = ["audit", "policy"]





def _db_url(config: Path | None, db: str | None) -> str:
    """``--db``, else ``$MODELMIX_DB_URL``, else the config's ``store.url``; a SQLite file
    that does not exist is an error (nothing was recorded there)."""
    from modelmix.catalog import config_from_env
    from modelmix.store import resolve_db_url
    from modelmix.store._sql import normalize_url

    if db is None:
        db = resolve_db_url(config_from_env(config).store)
    parsed = normalize_url(db)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(str(parsed.database)).expanduser().exists():
            from modelmix.errors import ConfigError

            raise ConfigError(f"no usage database at {parsed.database}")
    return db


_Config = Annotated[Path | None, typer.Option(
    "--config", "-c", help="YAML catalog (default: $MODELMIX_CONFIG or the embedded default).")]
_Db = Annotated[str | None, typer.Option(
    "--db", help="Database URL (default: $MODELMIX_DB_URL, else store.url from the config).")]
_Since = Annotated[str | None, typer.Option(help="Only the last 30m, 1h, 24h, 7d...")]
_Class = Annotated[str | None, typer.Option(
    "--class", help="public, internal, confidential or regulated.")]
_Action = Annotated[str | None, typer.Option(help="allow, pseudonymise, route-local or block.")]
_By = Annotated[str, typer.Option(help="With --summary: group by data_class, action, "
                                  "deployment, rule, policy, key (comma-separated).")]


def audit(
    config: _Config = None,
    db: _Db = None,
    since: _Since = None,
    data_class: _Class = None,
    action: _Action = None,
    deployment: Annotated[str | None, typer.Option(help="Served (or last tried) by.")] = None,
    key: Annotated[str | None, typer.Option(help="Virtual key id.")] = None,
    request_id: Annotated[str | None, typer.Option(help="One request's id.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most rows shown (newest first).")] = 50,
    summary: Annotated[bool, typer.Option(help="Counts per group instead of rows.")] = False,
    by: _By = "data_class,action",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show what the data guard found and decided per request: entity types and counts
    (never values), data class, action, deployment and the policy rule that decided."""
    from sqlalchemy.exc import SQLAlchemyError

    from modelmix.errors import ConfigError
    from modelmix.store import AuditStore, parse_window

    _check_choice("--class", data_class, _CLASSES)
    _check_choice("--action", action, _ACTIONS)
    try:
        start = time.time() - parse_window(since) if since else None
        url = _db_url(config, db)
        store = AuditStore(url)
    except (ValueError, ConfigError) as exc:
        _fail(str(getattr(exc, "message", exc)))
    filters = {"data_class": data_class, "action": action, "deployment": deployment,
               "key_id": key, "request_id": request_id}
    try:
        store.create_all()
        if summary:
            _show_summary(store, start, by, as_json)
        else:
            _show_rows(store.rows(since=start, limit=limit, **filters), as_json)
    except ValueError as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:  # the driver's own words, without SQLAlchemy's boilerplate
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        _fail(f"cannot read the audit table of {_safe_url(url)}: {reason}", code=1,
              label="database error")
    finally:
        store.close()


_CLASSES = ("public", "internal", "confidential", "regulated")
_ACTIONS = ("allow", "pseudonymise", "route-local", "block")


def _check_choice(option: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        _fail(f"{option} {value!r}: expected one of {', '.join(choices)}")


def _safe_url(url: str) -> str:
    from modelmix.store._sql import normalize_url

    return normalize_url(url).render_as_string(hide_password=True)


def _entities(counts: dict[str, int]) -> str:
    return ", ".join(f"{etype} x{n}" for etype, n in sorted(counts.items())) or "-"


def _show_rows(rows: list[AuditRow], as_json: bool) -> None:
    if as_json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    table = Table("time (UTC)", "request", "key", "class", "action", "rule", "entities",
                  "deployment", "status", "forbidden", title="guard audit")
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.created_at))
        cells = [when, r.request_id[:12], r.key_id or "-", r.data_class, r.action,
                 f"{r.policy}:{r.rule}", _entities(r.entities), r.deployment or "-",
                 str(r.status_code), ",".join(r.forbidden) or "-"]
        table.add_row(*(Text(c) for c in cells))
    _console.print(table)


def _show_summary(store: AuditStore, since: float | None, by: str, as_json: bool) -> None:
    fields = cast("tuple[AuditGroup, ...]", tuple(f.strip() for f in by.split(",") if f.strip()))
    rows = store.summary(since=since, group_by=fields)
    if as_json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    table = Table(*fields, "requests", "blocked", "entities", title="guard audit summary")
    for r in rows:
        table.add_row(*("-" if v is None else v for v in r.group.values()), f"{r.requests:,}",
                      f"{r.blocked:,}", f"{r.entities:,}")
    _console.print(table)


def policy(
    ref: Annotated[str | None, typer.Argument(
        help="A ready policy (healthcare, finance, eu-residency, manufacturing) or a "
             "policy file (default: $MODELMIX_POLICY, else the config's policy).")] = None,
    config: _Config = None,
    text: Annotated[str | None, typer.Option(
        help="Screen this text: data class, action, rule and the catalog's deployments "
             "allowed to serve it.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="A request tag (repeatable).")] = None,
    key: Annotated[str | None, typer.Option(help="Screen as this virtual key id.")] = None,
) -> None:
    """Check a data policy and print its rules, or what it decides for --text."""
    from modelmix.catalog import config_from_env
    from modelmix.errors import ConfigError
    from modelmix.guard import load_policy, resolve_policy_ref

    try:
        cfg = config_from_env(config)
        chosen = ref or resolve_policy_ref(cfg.policy)
        if chosen is None:
            _fail("no policy: name one, set MODELMIX_POLICY or the config's policy")
        pol = load_policy(chosen)
    except ConfigError as exc:
        _fail(exc.message)
    if text is None:
        _console.print_json(pol.model_dump_json(exclude_none=True))
        return
    _show_verdict(pol, cfg, text, tuple(tag or ()), key)


def _show_verdict(pol: Policy, cfg: Config, text: str, tags: tuple[str, ...],
                  key: str | None) -> None:
    import asyncio

    from modelmix.guard import Guard, load_detector
    from modelmix.protocol import ChatRequest

    request = ChatRequest.model_validate(
        {"model": "auto", "messages": [{"role": "user", "content": text}]})
    screening = asyncio.run(Guard(pol, load_detector(), in_thread=False)
                            .screen(request, key_id=key, tags=tags))
    a = screening.audit
    _console.print(Text(f"class {a.data_class}, action {a.action}, rule {pol.name}:{a.rule}; "
                        f"entities: {_entities(a.entities)}"))
    if screening.verdict.pseudonymising and a.action != "block":
        _console.print(Text("sent as: " + screening.outgoing.messages[0].text()))
    table = Table("deployment", "hosting", "tier", "region", "may serve", "raw values")
    for dep in cfg.deployments:
        why = screening.verdict.refuses(dep)
        raw = "yes" if why is None and screening.verdict.raw_allowed(dep) else "no"
        table.add_row(dep.name, dep.hosting.value, dep.tier.value, dep.region or "-",
                      Text("yes" if why is None else f"no: {why}"), raw)
    _console.print(table)
