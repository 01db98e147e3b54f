"""The ``modelmix`` command line: serve, chat, models, usage, demo."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from modelmix.catalog import Config, Deployment, known_table
from modelmix.cli._cascade import cascade_app
from modelmix.cli._config_cmd import config_app
from modelmix.cli._guard import guard_app
from modelmix.cli._keys import keys_app
from modelmix.cli._output import ConfigOpt, console, err_console, plain
from modelmix.cli._output import config_or_fail as _config
from modelmix.cli._output import fail as _fail
from modelmix.cli._router import router_app
from modelmix.cli._systems import systems
from modelmix.errors import ConfigError, ModelmixError
from modelmix.observability._logging import LogFormat, configure_logging

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from modelmix.client import Route
    from modelmix.store import GroupField, SummaryRow

__all__ = ["app", "main"]

app = typer.Typer(help="modelmix: one OpenAI-compatible gateway over open and proprietary "
                       "models.", no_args_is_help=True, add_completion=False)


def _show_version(value: bool) -> None:
    if value:
        from modelmix._version import __version__

        console.print(f"modelmix {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", help="Print the version and exit.", callback=_show_version,
        is_eager=True)] = False) -> None:
    """modelmix: one OpenAI-compatible gateway over open and proprietary models."""






def _non_empty_host(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise typer.BadParameter("must not be empty (e.g. 127.0.0.1 or 0.0.0.0)")
    return value


def _build_app(cfg: Config, policy_env: bool = True) -> Starlette:
    """The gateway app; a bad policy, store URL or missing database driver is a clean
    error. ``policy_env``: whether ``$MODELMIX_POLICY`` may override the config's policy
    (not when ``--policy`` chose it)."""
    from modelmix.server import create_app

    try:
        return create_app(cfg, policy_env=policy_env)
    except ConfigError as exc:
        _fail(exc.message)


def _warn_if_nothing_available(cfg: Config) -> None:
    """Say so at start-up when no deployment can serve (every request would be a 404)."""
    from modelmix.providers import availability

    found = [(dep.name, availability(dep)) for dep in cfg.deployments]
    if any(avail.available for _, avail in found):
        return
    why = "; ".join(f"{name}: {avail.reason}" for name, avail in found)
    err_console.print(f"[yellow]warning:[/yellow] no deployment is available, so every request "
                      f"will fail until one is ({escape(why)})", highlight=False)


def _check_port(host: str, port: int) -> None:
    """Fail with one line when ``host:port`` cannot be bound (in use, no such address),
    before the app loads; uvicorn would exit with status 3 after several log lines."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror}")
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                  "(another server on that port? use --port)")


#: uvicorn's level names (``trace`` is below debug).
_LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _log_level(value: str) -> str:
    """``--log-level`` lower-cased, or one error line naming the levels (exit 2)."""
    level = value.strip().lower()
    if level not in _LOG_LEVELS:
        _fail(f"--log-level {value!r}: expected one of {', '.join(_LOG_LEVELS)}")
    return level


def _with_policy(cfg: Config, ref: str) -> Config:
    """``cfg`` with ``--policy ref`` as its policy (``none`` / ``off``: no policy). The
    policy is parsed once, when the app is built; a bad one stops the start there."""
    ref = ref.strip()
    if not ref:
        raise typer.BadParameter("must not be empty (a ready policy, a file, or none)",
                                 param_hint="--policy")
    chosen = None if ref.lower() in ("none", "off") else ref
    return cfg.updated(source=f"{cfg.source} (--policy)", policy=chosen)


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address.",
                                             callback=_non_empty_host)] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port.")] = None,
    log_level: Annotated[str, typer.Option(
        help="Log level: critical, error, warning, info, debug or trace.")] = "info",
    log_format: Annotated[LogFormat, typer.Option(
        help="json: one JSON object per line; text: for terminals.")] = LogFormat.JSON,
    policy: Annotated[str | None, typer.Option(
        help="Data policy (docs/guard.md): healthcare, finance, eu-residency, "
             "manufacturing, a policy file, or none. Overrides $MODELMIX_POLICY and the "
             "config's policy.")] = None,
) -> None:
    """Run the OpenAI-compatible gateway."""
    import gc

    import uvicorn

    from modelmix.server._protocol import http_protocol

    log_level = _log_level(log_level)
    cfg = _config(config)
    if policy is not None:
        cfg = _with_policy(cfg, policy)
    bind = host or cfg.server.host
    if bind not in ("127.0.0.1", "localhost", "::1") and not os.environ.get(
        cfg.server.master_key_env
    ):
        err_console.print(f"[yellow]warning:[/yellow] binding {bind} without "
                          f"{cfg.server.master_key_env}: anyone who can reach this port can "
                          "spend your API keys. Set a master key.")
    _check_port(bind, port or cfg.server.port)
    _warn_if_nothing_available(cfg)
    listener = configure_logging(log_format, log_level)
    try:
        application = _build_app(cfg, policy_env=policy is None)
        # What start-up built lives as long as the process: keep it out of the collector's
        # full passes (+12% requests/s, half the p99 at concurrency 32 in
        # benchmarks/overhead/RESULTS.md).
        gc.collect()
        gc.freeze()
        uvicorn.run(application, host=host or cfg.server.host, port=port or cfg.server.port,
                    log_level=log_level, access_log=False, log_config=None,
                    http=http_protocol(), ws="none")  # no WebSocket routes: Upgrade is plain HTTP
    finally:
        listener.stop()


def _known_mark(dep: Deployment, field: str) -> str:
    """``*`` when ``field`` of ``dep`` came from the known-models table, else nothing."""
    return "*" if field in dep.known_fields else ""


@app.command()
def models(config: ConfigOpt = None) -> None:
    """List deployments and groups with their availability."""
    from modelmix.providers import availability

    cfg = _config(config)
    table = Table("name", "provider", "model", "tier", "hosting", "context", "USD/1M in/out",
                  "available")
    for dep in cfg.deployments:
        avail = availability(dep)
        window, price = (_known_mark(dep, f) for f in ("context_window", "input_cost_per_mtok"))
        table.add_row(*plain(dep.name, dep.provider, dep.model, dep.tier.value,
                             dep.hosting.value, f"{dep.context_window:,}{window}",
                             f"{dep.input_cost_per_mtok:g} / {dep.output_cost_per_mtok:g}{price}"),
                      "yes" if avail.available else f"[yellow]no[/yellow]: {escape(avail.reason)}")
    console.print(table)
    groups = cfg.model_names()[len(cfg.deployments):]
    console.print("groups: " + ", ".join(groups))
    if any(_known_mark(dep, "context_window") or _known_mark(dep, "input_cost_per_mtok")
           for dep in cfg.deployments):
        console.print(f"* fields the config leaves out, from the known-models table (checked "
                      f"{known_table().checked}; vendors' list prices: verify; a field set in "
                      "the config wins; docs/configuration.md)")


@app.command()
def chat(
    prompt: Annotated[str, typer.Argument(
        help="The user message; - reads it from standard input.")],
    model: Annotated[str, typer.Option("--model", "-m")] = "auto",
    config: ConfigOpt = None,
    max_tokens: Annotated[int, typer.Option(help="Completion token limit.")] = 256,
    stream: Annotated[bool, typer.Option(help="Stream the answer.")] = True,
    show_route: Annotated[bool, typer.Option(
        "--route/--no-route", help="Say on stderr which deployment answered and why "
        "(for a system: its steps and what each decided).")] = True,
) -> None:
    """Send one chat message in-process (no server needed)."""
    from modelmix.client import Client
    from modelmix.guard import guard_from_config

    if prompt == "-":
        prompt = sys.stdin.read().strip()
        if not prompt:
            _fail("chat -: standard input is empty")
    cfg = _config(config)
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    try:  # the policy as the gateway applies it: $MODELMIX_POLICY, else the catalog's
        guard = guard_from_config(cfg, os.environ)
        client = Client(cfg, guard=guard)
    except ConfigError as exc:
        _fail(exc.message)
    try:
        with client:
            if stream:
                answer = client.chat(model=model, messages=messages, stream=True,
                                     max_tokens=max_tokens)
                for chunk in answer:
                    sys.stdout.write(chunk.text)
                    sys.stdout.flush()
                sys.stdout.write("\n")
                route = answer.route
            else:
                reply = client.chat(model=model, messages=messages, max_tokens=max_tokens)
                print(reply.text)
                route = reply.route
            if show_route:
                sys.stdout.flush()
                _print_route(route)
    except ModelmixError as exc:
        _fail(exc.message, code=1)


def _print_route(route: Route) -> None:
    """The route, dimmed on stderr (stdout keeps the answer alone, for pipes)."""
    where = route.deployment if route.system is None else \
        ", ".join(f"{step}:{dep}" for step, dep in route.steps)
    err_console.print(f"[dim]route: {escape(where)}: {escape(route.reason)}[/dim]",
                      soft_wrap=True)


@app.command()
def demo(
    config: ConfigOpt = None,
    n: Annotated[int, typer.Option("--n", min=1,
                                   help="Workload prompts (MMLU + GSM8K).")] = 60,
    max_tokens: Annotated[int, typer.Option(
        min=1, help="Completion token limit per prompt.")] = 48,
    compare_to: Annotated[str | None, typer.Option(
        help="Deployment to price the workload against (default: the first proprietary "
             "one).")] = None,
) -> None:
    """Start the gateway on loopback and send a real workload through it."""
    from modelmix.cli._demo import run_demo

    cfg = _config(config)
    try:
        code = run_demo(config=cfg, config_path=str(config) if config else None, n=n,
                        max_tokens=max_tokens, compare_to=compare_to)
    except ConfigError as exc:
        _fail(exc.message)
    except RuntimeError as exc:  # the gateway did not start; the message names its log
        _fail(str(exc), code=1)
    raise typer.Exit(code)


@app.command()
def usage(
    config: ConfigOpt = None,
    db: Annotated[str | None, typer.Option("--db", help="Database URL (default: "
                  "$MODELMIX_DB_URL, else store.url from the config).")] = None,
    since: Annotated[str | None, typer.Option(help="Only the last 30m, 1h, 24h, 7d...")] = None,
    by: Annotated[str, typer.Option(help="Group by deployment, key, model, provider, system, "
                  "step or endpoint; comma-separate several.")] = "deployment",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows.")] = False,
) -> None:
    """Summarise recorded usage: requests, errors, tokens, cost, p50/p95 latency.

    A system of models' request counts once; its steps' calls show as steps (docs/usage.md).

    Example: modelmix usage --since 24h --by deployment,key; modelmix usage --by system,step
    """
    import json
    import time

    from sqlalchemy.exc import SQLAlchemyError

    from modelmix.store import parse_window, resolve_db_url

    fields = cast("tuple[GroupField, ...]", tuple(f.strip() for f in by.split(",") if f.strip()))
    try:
        start = time.time() - parse_window(since) if since else None
        url = db or resolve_db_url(_config(config).store)
        rows, total = _usage_rows(url, start, fields)
    except (ValueError, ConfigError) as exc:
        _fail(str(getattr(exc, "message", exc)))
    except SQLAlchemyError as exc:
        _fail(str(exc), code=1, label="database error")
    if as_json:
        print(json.dumps({"since": start, "group_by": list(fields),
                          "rows": [r.to_dict() for r in rows], "total": total.to_dict()},
                         indent=2))
    else:
        console.print(_usage_table(fields, rows, total))


def _usage_rows(url: str, since: float | None, fields: tuple[GroupField, ...]
                ) -> tuple[list[SummaryRow], SummaryRow]:
    """Summary rows and the total row. A SQLite file that does not exist is an error."""
    from modelmix.store import UsageStore
    from modelmix.store._sql import normalize_url

    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(str(parsed.database)).expanduser().exists():
            raise ConfigError(f"no usage database at {parsed.database}")
    store = UsageStore(url)
    try:
        store.create_all()
        return store.summary(since=since, group_by=fields), store.summary(since, group_by=())[0]
    finally:
        store.close()


def _usage_table(fields: tuple[str, ...], rows: list[SummaryRow], total: SummaryRow) -> Table:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}"

    steps = total.steps > 0  # the step columns appear once systems of models ran
    table = Table(*fields, "requests", "errors", *(("steps", "step errors") if steps else ()),
                  "prompt tok", "completion tok", "cost USD", "p50 ms", "p95 ms", "p50 TTFT ms",
                  title="usage")
    for row in [*rows, total]:
        label: list[str | Text] = [Text("-" if v is None else v) for v in row.group.values()]
        if row is total:
            label = ["[bold]total[/bold]", *[""] * (len(fields) - 1)]
        step_cells = (f"{row.steps:,}", f"{row.step_errors:,}") if steps else ()
        table.add_row(*label, f"{row.requests:,}", f"{row.errors:,}", *step_cells,
                      f"{row.prompt_tokens:,}", f"{row.completion_tokens:,}",
                      f"{row.cost_usd:,.6f}", ms(row.p50_latency_ms), ms(row.p95_latency_ms),
                      ms(row.p50_ttft_ms))
    return table


app.command()(systems)
app.add_typer(keys_app, name="keys")
app.add_typer(router_app, name="router")
app.add_typer(cascade_app, name="cascade")
app.add_typer(guard_app, name="guard")
app.add_typer(config_app, name="config")


def _register_audit() -> None:
    from modelmix.cli._audit import audit  # data guard audit records (docs/guard.md)

    app.command("audit")(audit)


_register_audit()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
