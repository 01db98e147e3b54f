"""Readers of the deployment recipes for tests/test_deploy_files.py: the Dockerfile, the
compose file with its ``${...}`` interpolation, nginx.conf and docs/deploy.md.

No Docker daemon is needed: the files are parsed here, and the tests run their commands
(gateway entrypoint, model server, healthchecks, nginx) on loopback.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
NGINX_CONF = DEPLOY / "nginx.conf"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

__all__ = [
    "COMPOSE",
    "DEPLOY",
    "DEPLOY_DOC",
    "DOCKERFILE",
    "NGINX_CONF",
    "ROOT",
    "Instruction",
    "compose",
    "compose_variables",
    "exec_form",
    "interpolate",
    "k8s_documents",
    "nginx_upstreams",
    "parse_dockerfile",
    "source_env_names",
    "stages",
]


# -- Dockerfile -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: ``cmd`` upper-case, ``flags`` its leading ``--x=y``
    options, ``args`` the rest with line continuations joined."""

    stage: str
    cmd: str
    flags: tuple[str, ...]
    args: str


def _logical_lines(text: str) -> list[str]:
    """Instructions as single lines: comments dropped (inside continuations too, as
    Docker does), ``\\`` continuations joined."""
    out: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1].rstrip() + " "
            continue
        out.append(buf + line)
        buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def _split_flags(rest: str) -> tuple[tuple[str, ...], str]:
    flags: list[str] = []
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        flags.append(flag)
        rest = rest.lstrip()
    return tuple(flags), rest


def parse_dockerfile(text: str) -> list[Instruction]:
    """The instructions of ``text``, each tagged with its stage's name (``AS name``, else
    its index)."""
    result: list[Instruction] = []
    stage = ""
    count = 0
    for line in _logical_lines(text):
        cmd, _, rest = line.partition(" ")
        cmd = cmd.upper()
        flags, args = _split_flags(rest.strip())
        if cmd == "FROM":
            words = args.split()
            stage = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(count)
            count += 1
        result.append(Instruction(stage, cmd, flags, args))
    return result


def stages(instructions: list[Instruction]) -> dict[str, list[Instruction]]:
    """Instructions by stage, in order (ARGs before the first FROM are left out)."""
    out: dict[str, list[Instruction]] = {}
    for ins in instructions:
        if ins.stage:
            out.setdefault(ins.stage, []).append(ins)
    return out


def exec_form(args: str) -> list[str]:
    """An exec-form (JSON array) argument list; shell form is split as a shell would."""
    if args.startswith("["):
        value = json.loads(args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return list(value)
    return shlex.split(args)


# -- compose ----------------------------------------------------------------------------------

_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                  r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")


class MissingVariable(ValueError):
    """A ``${VAR:?message}`` whose variable is unset or empty (compose refuses to start)."""


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation of one string: ``$$``, ``$VAR``, ``${VAR}``,
    ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``."""
    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if op in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and unset:
            return arg
        return current or ""

    return _VAR.sub(sub, value)


def _interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env) for k, v in node.items()}
    return node


def compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """deploy/compose.yaml as YAML (merge keys resolved), interpolated with ``env`` when
    given."""
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data if env is None else dict(_interpolate_tree(data, env))


def compose_variables() -> set[str]:
    """Every variable name compose interpolates in deploy/compose.yaml."""
    names = set()
    for match in _VAR.finditer(COMPOSE.read_text()):
        name = match.group("name") or match.group("bare")
        if name:
            names.add(name)
    return names


# -- nginx, sources, docs ---------------------------------------------------------------------


def nginx_upstreams(conf: str) -> dict[str, list[str]]:
    """``{upstream name: [server address, ...]}`` of an nginx configuration."""
    out: dict[str, list[str]] = {}
    for block in re.finditer(r"upstream\s+(\S+)\s*\{(.*?)\}", conf, re.S):
        body = re.sub(r"#[^\n]*", "", block.group(2))
        out[block.group(1)] = re.findall(r"^\s*server\s+(\S+?)[\s;]", body, re.M)
    return out


def source_env_names() -> set[str]:
    """``MODELMIX_*`` names in the package's source: the variables the code can read."""
    names: set[str] = set()
    for path in (ROOT / "src" / "modelmix").rglob("*.py"):
        names.update(re.findall(r"\bMODELMIX_[A-Z0-9_]+\b", path.read_text()))
    return names


def k8s_documents() -> list[dict[str, Any]]:
    """The Kubernetes objects of docs/deploy.md: every ```yaml block with an apiVersion."""
    docs: list[dict[str, Any]] = []
    for block in re.findall(r"```yaml\n(.*?)```", DEPLOY_DOC.read_text(), re.S):
        if "apiVersion:" not in block:
            continue
        docs.extend(d for d in yaml.safe_load_all(block) if d is not None)
    return docs
