"""deploy/compose.yaml run on loopback, without Docker.

:class:`Stack` starts what the compose file declares, each from the file's own words:

* PostgreSQL and redis-server from Debian (tests/_postgres.py, tests/_redis.py) where the
  compose file has the ``postgres`` and ``redis`` images; the ``modelmix`` role and
  database of ``MODELMIX_DB_URL`` are created in the throwaway cluster;
* the ``llama`` service's entrypoint and command (llama-cpp-python's OpenAI server) with
  the bundled SmolLM2 model in place of ``/opt/models/smollm2.gguf``;
* each ``gateway-*`` service: the Dockerfile's ENTRYPOINT and CMD with the service's
  interpolated environment and its mounted catalog (deploy/modelmix.yaml);
* nginx with deploy/nginx.conf.

Service addresses (``postgres:5432``, ``llama:8080``, ``gateway-1:4000``...) are rewritten
to free loopback ports, the bind address ``0.0.0.0`` to ``127.0.0.1``; nothing else
changes. Every process is stopped on exit (SIGTERM to its group, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from _deploy_files import DEPLOY, DOCKERFILE, NGINX_CONF, compose, exec_form, parse_dockerfile
from _postgres import Cluster
from _redis import RedisServer
from _servers import free_port

__all__ = ["GATEWAYS", "MASTER_KEY", "Stack", "dockerfile_command", "nginx_binary"]

MASTER_KEY = "sk-deploy-test-0123456789abcdef"
ENV = {"MODELMIX_MASTER_KEY": MASTER_KEY, "POSTGRES_PASSWORD": "deploy-test-pw"}
GATEWAYS = ("gateway-1", "gateway-2")
#: Variables a started process must not inherit from the test run.
_DROPPED = ("MODELMIX_", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY",
            "NVIDIA_API_KEY")


def nginx_binary() -> str | None:
    for candidate in ("/usr/sbin/nginx", "/usr/bin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def dockerfile_command() -> list[str]:
    """The final stage's ENTRYPOINT + CMD."""
    instructions = parse_dockerfile(DOCKERFILE.read_text())
    final = [i for i in instructions if i.stage == instructions[-1].stage]
    entry = [i for i in final if i.cmd == "ENTRYPOINT"]
    cmd = [i for i in final if i.cmd == "CMD"]
    return exec_form(entry[-1].args) + (exec_form(cmd[-1].args) if cmd else [])


@dataclass
class Proc:
    """A child process in its own session, its output in ``log``."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, name: str, argv: Sequence[str], log: Path, *, cwd: Path,
              env: Mapping[str, str] | None = None) -> Proc:
        full = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED)}
        full.update(env or {})
        with log.open("wb") as out:
            proc = subprocess.Popen(list(argv), cwd=cwd, env=full, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        return cls(name, proc, log)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def wait_ok(proc: Proc, url: str, timeout: float = 120.0) -> None:
    """Poll ``url`` until it answers 200 while ``proc`` lives."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.proc.returncode}):\n{proc.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name}: {url} not 200 after {timeout:.0f} s:\n"
                               f"{proc.tail()}")
        time.sleep(0.2)


def relocate(text: str, addresses: Mapping[str, str]) -> str:
    """``text`` with each ``service:port`` replaced by its loopback address."""
    for old, new in addresses.items():
        text = text.replace(old, new)
    return text


def _address(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


@dataclass
class Stack:
    """deploy/compose.yaml on loopback; see the module docstring."""

    tmp: Path
    model_path: Path
    spec: dict[str, Any] = field(init=False)
    addresses: dict[str, str] = field(default_factory=dict, init=False)
    ports: dict[str, int] = field(default_factory=dict, init=False)
    procs: dict[str, Proc] = field(default_factory=dict, init=False)
    db_url: str = field(default="", init=False)
    _pg: Cluster | None = field(default=None, init=False)
    _redis: RedisServer | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.spec = compose(ENV)

    def env(self, service: str) -> dict[str, str]:
        return {k: str(v) for k, v in self.spec["services"][service]["environment"].items()}

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    # -- start ------------------------------------------------------------------------------

    def start(self, pg_bindir: Path) -> Stack:
        gateway_env = self.env(GATEWAYS[0])
        self._start_postgres(pg_bindir, gateway_env["MODELMIX_DB_URL"])
        self._redis = RedisServer()
        self._redis.start()
        redis_at = _address(gateway_env["MODELMIX_REDIS_URL"])
        self.addresses[redis_at] = f"127.0.0.1:{self._redis.port}"
        self._start_llama()
        for name in GATEWAYS:
            self._start_gateway(name)
        for name in GATEWAYS:
            wait_ok(self.procs[name], self.url(name) + "/ready")
        self._start_nginx()
        wait_ok(self.procs["nginx"], self.url("nginx") + "/ready", timeout=20)
        return self

    def _start_postgres(self, bindir: Path, db_url: str) -> None:
        import psycopg
        from psycopg import sql

        self._pg = Cluster(bindir)
        admin = self._pg.start().replace("postgresql+psycopg://", "postgresql://")
        parts = urlsplit(db_url)
        user = sql.Identifier(parts.username or "")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                user, sql.Literal(parts.password)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(parts.path.lstrip("/")), user))
        self.addresses[_address(db_url)] = f"127.0.0.1:{self._pg.port}"
        self.db_url = relocate(db_url, self.addresses)

    def _start_llama(self) -> None:
        service = self.spec["services"]["llama"]
        argv = [*service["entrypoint"], *map(str, service["command"])]
        port = int(argv[argv.index("--port") + 1])
        self.ports["llama"] = free_port()
        self.addresses[f"llama:{port}"] = f"127.0.0.1:{self.ports['llama']}"
        argv = self._local(argv, {"/opt/models/smollm2.gguf": str(self.model_path),
                                  str(port): str(self.ports["llama"])})
        proc = Proc.start("llama", argv, self.tmp / "llama.log", cwd=self.tmp)
        self.procs["llama"] = proc
        wait_ok(proc, self.url("llama") + "/v1/models", timeout=90)

    def _start_gateway(self, name: str) -> None:
        service = self.spec["services"][name]
        env = {k: relocate(v, self.addresses) for k, v in self.env(name).items()}
        env["MODELMIX_CONFIG"] = str(self._catalog(service, env["MODELMIX_CONFIG"]))
        argv = dockerfile_command()
        port = argv[argv.index("--port") + 1]
        self.ports[name] = free_port()
        self.addresses[f"{name}:{port}"] = f"127.0.0.1:{self.ports[name]}"
        workdir = self.tmp / name
        workdir.mkdir()
        argv = self._local(argv, {port: str(self.ports[name])})
        self.procs[name] = Proc.start(name, [*argv, "--log-level", "warning"],
                                      self.tmp / f"{name}.log", cwd=workdir, env=env)

    def _catalog(self, service: Mapping[str, Any], container_path: str) -> Path:
        """The host file mounted at ``container_path``, relocated into ``tmp``."""
        for volume in service["volumes"]:
            source, target = volume.split(":")[:2]
            if target == container_path:
                text = (DEPLOY / source).read_text()
                out = self.tmp / Path(source).name
                out.write_text(relocate(text, self.addresses))
                return out
        raise AssertionError(f"{container_path} is not mounted into the gateway")

    def _start_nginx(self) -> None:
        binary = nginx_binary()
        assert binary is not None
        self.ports["nginx"] = free_port()
        conf = self.write_nginx_conf(self.tmp / "nginx", self.addresses, self.ports["nginx"])
        self.procs["nginx"] = Proc.start(
            "nginx", [binary, *nginx_args(conf)], self.tmp / "nginx.log", cwd=self.tmp)

    @staticmethod
    def write_nginx_conf(directory: Path, addresses: Mapping[str, str], port: int) -> Path:
        """deploy/nginx.conf for loopback: upstream addresses and the listen port
        rewritten, one worker, temp files and pid under ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        text = relocate(NGINX_CONF.read_text(), addresses)
        text = text.replace("listen 8080;", f"listen 127.0.0.1:{port};")
        text = text.replace("worker_processes auto;", "worker_processes 1;")
        temp = "".join(f"    {kind}_temp_path {directory}/{kind};\n"
                       for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        text = text.replace("http {\n", "http {\n" + temp, 1)
        conf = directory / "nginx.conf"
        conf.write_text(text)
        return conf

    @staticmethod
    def _local(argv: Sequence[str], replace: Mapping[str, str]) -> list[str]:
        """A container command for this host: ``python`` / ``modelmix`` run from this
        interpreter, ``0.0.0.0`` bound to loopback, and ``replace`` applied to whole
        arguments."""
        head = {"python": [sys.executable], "python3": [sys.executable],
                "modelmix": [sys.executable, "-m", "modelmix"]}
        out = list(head.get(argv[0], [argv[0]]))
        for arg in argv[1:]:
            arg = "127.0.0.1" if arg == "0.0.0.0" else arg
            out.append(replace.get(arg, arg))
        return out

    # -- stop -------------------------------------------------------------------------------

    def stop_gateways(self) -> None:
        """SIGTERM the gateways (they write their pending usage rows) and nginx."""
        for name in ("nginx", *GATEWAYS):
            if name in self.procs:
                self.procs[name].stop()

    def stop(self) -> None:
        self.stop_gateways()
        if "llama" in self.procs:
            self.procs["llama"].stop()
        if self._redis is not None:
            self._redis.close()
        if self._pg is not None:
            self._pg.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail(2000)}" for p in self.procs.values())


def nginx_args(conf: Path) -> list[str]:
    """nginx's arguments for ``conf`` in the foreground, logs to stderr."""
    return ["-e", "stderr", "-p", str(conf.parent), "-c", str(conf),
            "-g", f"daemon off; pid {conf.parent}/nginx.pid;"]
