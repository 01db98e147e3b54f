"""``modelmix config ...``: check a config file, or turn a LiteLLM proxy config into a
native one (docs/litellm.md).

Examples::

    modelmix config import-litellm litellm_config.yaml modelmix.yaml
    modelmix config validate modelmix.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.text import Text

from modelmix.catalog import convert_litellm, is_litellm_config, load_config
from modelmix.catalog._config import read_yaml_file
from modelmix.cli._output import catalog_warnings_printed, console, err_console
from modelmix.cli._output import fail as _fail
from modelmix.errors import ConfigError

__all__ = ["config_app", "native_yaml"]

config_app = typer.Typer(help="Config files: validate one, import a LiteLLM proxy config.",
                         no_args_is_help=True)


def _comment(text: str) -> str:
    """``text`` safe inside one ``#`` comment: every line break YAML knows (and any other
    non-printable character) escaped, so it cannot end the comment."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)


def native_yaml(native: dict[str, Any], warnings: list[str], source: str) -> str:
    """The native config as YAML: a header saying where it came from, then each warning
    as a comment, then the settings. Warnings and ``source`` are escaped
    (:func:`_comment`): they quote the LiteLLM file, which must not add settings."""
    head = [f"# modelmix config converted from the LiteLLM proxy config {_comment(source)}",
            "# by `modelmix config import-litellm` (docs/litellm.md).",
            "# Keys are read from the environment variables named by api_key_env and",
            "# server.master_key_env."]
    if warnings:
        head += ["#", f"# {len(warnings)} LiteLLM setting(s) not mapped or changed:"]
        head += [f"#   - {_comment(line)}" for line in warnings]
    body = yaml.safe_dump(native, sort_keys=False, allow_unicode=True, width=100)
    return "\n".join(head) + "\n\n" + body


def _warn(line: str) -> None:
    err_console.print(Text.assemble(("warning:", "yellow"), " ", line), soft_wrap=True,
                      highlight=False)


@config_app.command("import-litellm")
def import_litellm(
    source: Annotated[Path, typer.Argument(help="LiteLLM proxy config.yaml (model_list).")],
    out: Annotated[Path, typer.Argument(help="Native modelmix YAML to write.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT.")] = False,
) -> None:
    """Write the native modelmix config equivalent to a LiteLLM proxy config.

    Every setting that is not mapped is printed and kept as a comment in OUT. A key
    written in the LiteLLM file (not os.environ/NAME) stops the import: OUT never holds
    a key."""
    if out.exists() and not force:
        _fail(f"{out} exists; pass --force to overwrite it")
    try:
        raw = read_yaml_file(source)
        if not is_litellm_config(raw):
            raise ConfigError(f"{source}: not a LiteLLM proxy config (no top-level "
                              "model_list)")
        try:
            native, warnings = convert_litellm(raw)
        except ConfigError as exc:
            raise ConfigError(f"{source}: LiteLLM config: {exc.message}") from exc
        text = native_yaml(native, warnings, str(source))
        from modelmix.catalog import config_from_dict

        config_from_dict(_reparsed(text, out), source=str(out))  # what serve will load
    except ConfigError as exc:
        _fail(exc.message)
    for line in warnings:
        _warn(line)
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror}", code=1)
    console.print(Text(f"wrote {out}: {len(native['deployments'])} deployment(s), "
                       f"{len(native.get('groups', {}))} group(s), {len(warnings)} "
                       "warning(s)"), highlight=False)


def _reparsed(text: str, out: Path) -> Any:
    """The written text parsed back, as ``serve --config OUT`` will.

    Raises:
        ConfigError: it does not parse (a bug here, never a traceback for the user).
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{out}: the converted config does not parse as YAML "
                          f"({_comment(str(exc))[:200]}); nothing written") from exc


@config_app.command("validate")
def validate(file: Annotated[Path, typer.Argument(help="Config YAML (native or LiteLLM).")]
             ) -> None:
    """Load a config as `modelmix serve --config FILE` would and say what it holds."""
    try:
        with catalog_warnings_printed():
            cfg = load_config(file)
    except ConfigError as exc:
        _fail(exc.message)
    groups = cfg.model_names()[len(cfg.deployments):]
    console.print(Text(f"ok: {file}: {len(cfg.deployments)} deployment(s); model names: "
                       f"{', '.join(cfg.model_names())}; groups: {', '.join(groups)}"),
                  highlight=False)
