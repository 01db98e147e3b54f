"""``modelmix systems``: list a catalog's systems of models, checked as the gateway
checks them at start-up (a bad spec is a one-line error naming the file, system, step
and field, exit status 2)."""

from __future__ import annotations

import os

from rich.markup import escape
from rich.table import Table

from modelmix.cli._output import ConfigOpt, console
from modelmix.cli._output import config_or_fail as _config
from modelmix.cli._output import fail as _fail
from modelmix.errors import ConfigError

__all__ = ["systems"]


def systems(config: ConfigOpt = None) -> None:
    """List the catalog's systems of models (call one as model system/<name>)."""
    from modelmix.engine import ChatService
    from modelmix.guard import guard_from_config

    cfg = _config(config)
    try:  # the policy as the gateway applies it, so systems stack on the same one
        service = ChatService(cfg, guard=guard_from_config(cfg, os.environ))
    except ConfigError as exc:
        _fail(exc.message)
    found = service.systems.systems
    if not found:
        console.print("no systems in this catalog (add systems: or include_systems: "
                      "[builtin]; docs/systems.md)")
        return
    table = Table(title="Systems of models", show_lines=True)
    for col in ("model", "policy", "steps (kind, waits for)", "output"):
        table.add_column(col)
    for system in found.values():
        steps = "\n".join(
            f"{name} ({node.step.kind}" + (f", after {', '.join(sorted(node.deps))}"
                                            if node.deps else "") + ")"
            + (" when " + escape(node.when.source) if node.when else "")
            for name, node in system.nodes.items())
        table.add_row(f"[bold]{system.model}[/bold]\n{escape(system.description)}",
                      system.policy or "-", steps, ", ".join(system.outputs))
    console.print(table)
