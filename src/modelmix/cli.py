"""The ``modelmix`` command line: serve, chat, models, usage, demo."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from modelmix.catalog import Config, load_config
from modelmix.errors import ConfigError, ModelmixError

__all__ = ["app", "main"]

app = typer.Typer(help="modelmix: one OpenAI-compatible gateway over open and proprietary "
                       "models.", no_args_is_help=True, add_completion=False)
# Wide enough for tables when output is not a terminal (CI logs, pipes).
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML catalog (default: $MODELMIX_CONFIG or the "
                 "embedded default).", exists=False),
]


def _config(path: Path | None) -> Config:
    path = path or (Path(os.environ["MODELMIX_CONFIG"]) if os.environ.get("MODELMIX_CONFIG")
                    else None)
    try:
        return load_config(path)
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}", soft_wrap=True, markup=True,
                          highlight=False)
        raise typer.Exit(2) from None


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run the OpenAI-compatible gateway."""
    import uvicorn

    from modelmix.server import create_app

    cfg = _config(config)
    bind = host or cfg.server.host
    if bind not in ("127.0.0.1", "localhost", "::1") and not os.environ.get(
        cfg.server.master_key_env
    ):
        err_console.print(f"[yellow]warning:[/yellow] binding {bind} without "
                          f"{cfg.server.master_key_env}: anyone who can reach this port can "
                          "spend your API keys. Set a master key.")
    application = create_app(cfg)
    uvicorn.run(application, host=host or cfg.server.host, port=port or cfg.server.port,
                log_level=log_level, access_log=False)


@app.command()
def models(config: ConfigOpt = None) -> None:
    """List deployments and groups with their availability."""
    cfg = _config(config)
    table = Table("name", "provider", "model", "tier", "hosting", "context", "USD/1M in/out",
                  "available")
    for dep in cfg.deployments:
        avail = cfg.availability(dep)
        table.add_row(dep.name, dep.provider, dep.model, dep.tier.value, dep.hosting.value,
                      f"{dep.context_window:,}",
                      f"{dep.input_cost_per_mtok:g} / {dep.output_cost_per_mtok:g}",
                      "yes" if avail.available else f"[yellow]no[/yellow]: {avail.reason}")
    console.print(table)
    groups = cfg.model_names()[len(cfg.deployments):]
    console.print("groups: " + ", ".join(groups))


@app.command()
def chat(
    prompt: Annotated[str, typer.Argument(help="The user message.")],
    model: Annotated[str, typer.Option("--model", "-m")] = "auto",
    config: ConfigOpt = None,
    max_tokens: Annotated[int, typer.Option(help="Completion token limit.")] = 256,
    stream: Annotated[bool, typer.Option(help="Stream the answer.")] = True,
) -> None:
    """Send one chat message in-process (no server needed)."""
    from modelmix.client import Client

    cfg = _config(config)
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    try:
        with Client(cfg) as client:
            if stream:
                for chunk in client.chat(model=model, messages=messages, stream=True,
                                         max_tokens=max_tokens):
                    sys.stdout.write(chunk.text)
                    sys.stdout.flush()
                sys.stdout.write("\n")
            else:
                print(client.chat(model=model, messages=messages, max_tokens=max_tokens).text)
    except ModelmixError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None


@app.command()
def demo(
    config: ConfigOpt = None,
    n: Annotated[int, typer.Option("--n", help="Workload prompts (MMLU + GSM8K).")] = 60,
    max_tokens: Annotated[int, typer.Option(help="Completion token limit per prompt.")] = 48,
    compare_to: Annotated[str | None, typer.Option(
        help="Proprietary deployment to price the workload against.")] = None,
) -> None:
    """Start the gateway on loopback and send a real workload through it."""
    from modelmix.demo import run_demo

    cfg = _config(config)
    code = run_demo(config=cfg, config_path=str(config) if config else None, n=n,
                    max_tokens=max_tokens, compare_to=compare_to)
    raise typer.Exit(code)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
