"""``modelmix router reload`` and ``modelmix router events``: swap the router of a running
gateway and read the audit of those swaps (docs/routing-in-gateway.md, "Retraining on a
schedule and hot-swapping").

Examples::

    MODELMIX_MASTER_KEY=... modelmix router reload --url http://127.0.0.1:4000 \\
        --artifact /srv/router/v8 --check-cv-margin 0.01
    modelmix router events -c gateway.yaml --limit 10
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from modelmix.cli._output import console as _out
from modelmix.cli._output import err_console as _err
from modelmix.cli._output import fail as _fail
from modelmix.errors import ModelmixError

__all__ = ["cv_regressions", "register"]


def cv_regressions(new: dict[str, Any] | None, live: dict[str, Any] | None,
                   margin: float) -> list[str]:
    """Why ``new`` CV metrics (a manifest's ``cv_metrics``) are worse than ``live``'s: one
    line per dataset both report whose mean APGR dropped by more than ``margin`` (APGR,
    RouteLLM's average performance gap recovered, in [0, 1]). Empty: not worse.

    Raises:
        ValueError: either has no CV metrics, or they share no dataset (nothing to compare).
    """
    if not new or not live:
        which = "new" if not new else "live"
        raise ValueError(f"the {which} router has no CV metrics: train both with --cv")
    new_sets, live_sets = new.get("datasets", {}), live.get("datasets", {})
    common = sorted(set(new_sets) & set(live_sets))
    if not common:
        raise ValueError(f"no dataset in common to compare: new {sorted(new_sets)}, live "
                         f"{sorted(live_sets)}")
    worse = []
    for name in common:
        was, now = live_sets[name]["apgr"]["mean"], new_sets[name]["apgr"]["mean"]
        if was is not None and (now is None or now < was - margin):
            worse.append(f"{name}: APGR {now} < live {was:.3f} - {margin:g}")
    return worse


def _check_cv(client: Any, url: str, artifact: str, margin: float) -> None:
    """Exit 1 unless ``artifact``'s CV metrics are within ``margin`` of the live router's."""
    directory = Path(artifact)
    if artifact == "default" and not directory.is_dir():  # the shipped router, as the
        from modelmix.routing.learned import default_artifact_dir  # endpoint reads it

        directory = default_artifact_dir(artifact)
    try:
        manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _fail(f"cannot read {artifact}/manifest.json: {exc}")
    live = _call(client, "GET", url + "/router/info")
    try:
        worse = cv_regressions(manifest.get("cv_metrics"),
                               (live.get("router") or {}).get("cv_metrics"), margin)
    except ValueError as exc:
        _fail(f"cannot check the new router against the live one: {exc}", code=1)
    if worse:
        _fail("not swapped: the new router is worse than the live one: " + "; ".join(worse),
              code=1)


def _call(client: Any, method: str, url: str, body: dict[str, Any] | None = None
          ) -> dict[str, Any]:
    """One admin call; exits 1 with the gateway's error message on failure."""
    import httpx

    try:
        resp = client.request(method, url, json=body)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the gateway at {url}: {exc}", code=1)
    try:
        data: dict[str, Any] = resp.json()
    except ValueError:
        data = {}
    if resp.status_code != 200:
        message = (data.get("error") or {}).get("message") or resp.text[:300]
        _fail(f"{url} answered {resp.status_code}: {message}", code=1)
    return data


def reload_command(
    url: Annotated[str, typer.Option(help="The gateway's base URL.")] = "http://127.0.0.1:4000",
    artifact: Annotated[str | None, typer.Option(
        help="'default' or a router directory on the gateway's host (default: the "
             "configured learned_router.artifact, read again).")] = None,
    calibration: Annotated[str | None, typer.Option(
        help="A calibration.json to use instead of the artifact's own.")] = None,
    target: Annotated[str | None, typer.Option(
        help="The calibrated target requests use when they name none.")] = None,
    broadcast: Annotated[bool, typer.Option(
        help="With Redis, reload every replica (--no-broadcast: this one only, a canary).")]
    = True,
    check_cv_margin: Annotated[float | None, typer.Option(
        min=0.0, help="Refuse (exit 1) unless the new artifact's CV APGR is at most this "
                      "far below the live router's on every dataset both report.")] = None,
    key_env: Annotated[str, typer.Option(
        help="Environment variable holding the master key.")] = "MODELMIX_MASTER_KEY",
    timeout: Annotated[float, typer.Option(min=1.0, help="Seconds to wait.")] = 120.0,
) -> None:
    """Swap the learned router of a running gateway (POST /router/reload) and print the
    router now serving (JSON). Exit 1 when the gateway refused: the old router serves."""
    import httpx

    key = os.environ.get(key_env)
    if not key:
        _fail(f"set {key_env} to the gateway's master key")
    base = url.rstrip("/")
    if check_cv_margin is not None and artifact is None:
        raise typer.BadParameter("needs --artifact (the router to check)",
                                 param_hint="--check-cv-margin")
    with httpx.Client(headers={"authorization": f"Bearer {key}"}, timeout=timeout) as client:
        if check_cv_margin is not None and artifact is not None:
            _check_cv(client, base, artifact, check_cv_margin)
        body = {k: v for k, v in (("artifact", artifact), ("calibration", calibration),
                                  ("target", target)) if v is not None}
        data = _call(client, "POST", base + "/router/reload", {**body, "broadcast": broadcast})
    router = data.get("router") or {}
    _err.print(f"reloaded on {data.get('replica')}: {data.get('previous_fingerprint')} -> "
               f"{router.get('fingerprint')} ({router.get('artifact')})"
               + (", broadcast to the other replicas" if data.get("broadcast") else ""),
               highlight=False)
    _out.print(json.dumps(data, indent=1), highlight=False, soft_wrap=True)


def events_command(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML catalog.")] = None,
    db: Annotated[str | None, typer.Option(help="Database URL (default: $MODELMIX_DB_URL, "
                                           "else store.url).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most recent events to show.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")]
    = False,
) -> None:
    """List router reloads, newest first: who, result, fingerprints, artifact, why."""
    from sqlalchemy.exc import SQLAlchemyError

    from modelmix.catalog import config_from_env
    from modelmix.store import resolve_db_url
    from modelmix.store._router_events import RouterEventStore

    try:
        url = db or resolve_db_url(config_from_env(config).store)
        with RouterEventStore(url) as store:
            events = store.rows(limit=limit)
    except ModelmixError as exc:
        _fail(exc.message)
    except SQLAlchemyError as exc:
        _fail(f"cannot read router events: {type(exc).__name__}: {exc}"[:500], code=1)
    for event in events:
        if as_json:
            print(json.dumps(event.to_dict()))  # JSON escapes control characters itself
        else:
            print(_event_line(event))
    if not events and not as_json:
        _err.print("no router reloads recorded", highlight=False)


def _event_line(event: Any) -> str:
    """One event as a line of text; stored values go through ``printable`` so a value
    holding a newline or a terminal escape cannot forge a row or drive the terminal."""
    import time

    from modelmix.store._router_events import printable

    def p(value: object) -> str:  # an absent value (no fingerprint, no reason) prints "-"
        return "-" if value is None else printable(value)

    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.created_at))
    return (f"{when}  {p(event.result):7}  {p(event.trigger):9}  {p(event.actor):12}  "
            f"{p(event.old_fingerprint)} -> {p(event.new_fingerprint)}  {p(event.artifact)}  "
            f"{p(event.reason)}")


def register(router_app: typer.Typer) -> None:
    """Add ``reload`` and ``events`` to the ``router`` sub-app."""
    router_app.command("reload")(reload_command)
    router_app.command("events")(events_command)
