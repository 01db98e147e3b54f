"""k real gateway processes behind Debian's nginx, sharing one Redis and one PostgreSQL.

The multi-replica tests (tests/test_replicas.py) and the scaling benchmark
(benchmarks/scale/run.py) start what production runs, on loopback:

* one fixed upstream process (tests/replica_upstream.py: exact usage, failures and delays
  on command, a hit counter);
* ``k`` gateways, each ``python -m modelmix.cli serve --config <catalog> --port <free>``
  with ``MODELMIX_MASTER_KEY``, ``MODELMIX_DB_URL`` (one database for all) and
  ``MODELMIX_REDIS_URL`` (one redis-server for all);
* nginx (``-p <temp dir>``, ``daemon off``) on a free port: round robin over the
  gateways with keep-alive connections, no retries of a request on another replica.

Example::

    with ReplicaSet(2, db_url=pg, redis_url=redis, tmp=tmp_path) as rs:
        key = rs.create_key(max_budget=0.05)
        replies = asyncio.run(burst(rs.url, key.key, [body] * 150))

Everything is stopped (SIGTERM to each process group, then SIGKILL) on exit; a process
that dies or never gets ready fails with the tail of its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from _servers import free_port

__all__ = [
    "MASTER_KEY",
    "Key",
    "Nginx",
    "ReplicaSet",
    "Reply",
    "UpstreamProcess",
    "burst",
    "chat_body",
    "default_catalog",
    "deployment",
    "nginx_binary",
    "post",
]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MASTER_KEY = "sk-master-replicas-0123456789"
#: USD per million output tokens of the test deployments: 10 tokens cost 0.001 USD.
OUTPUT_PRICE = 100.0
#: Environment a gateway must not inherit from the test run.
_DROPPED_ENV = ("MODELMIX_CONFIG", "MODELMIX_POLICY", "MODELMIX_REDIS_URL", "MODELMIX_DB_URL",
                "MODELMIX_MASTER_KEY")


def nginx_binary() -> str | None:
    """Debian's nginx (``/usr/sbin/nginx``), else one on PATH."""
    if os.access("/usr/sbin/nginx", os.X_OK):
        return "/usr/sbin/nginx"
    return shutil.which("nginx")


# -- processes ------------------------------------------------------------------------------


@dataclass
class Managed:
    """A child process in its own process group, with its output in ``log``."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the group (a gateway then flushes its usage rows), SIGKILL if stuck."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def launch(name: str, cmd: Sequence[str], log: Path, env: Mapping[str, str] | None = None,
           *, stdout_pipe: bool = False) -> Managed:
    """Start ``cmd`` (output to ``log``; stdout piped instead with ``stdout_pipe``)."""
    full_env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    full_env.update(env or {})
    with log.open("wb") as out:
        proc = subprocess.Popen(list(cmd), cwd=ROOT, env=full_env, start_new_session=True,
                                stdout=subprocess.PIPE if stdout_pipe else out,
                                stderr=out if stdout_pipe else subprocess.STDOUT)
    return Managed(name, proc, log)


def wait_http(managed: Sequence[tuple[Managed, str]], timeout: float = 90.0) -> None:
    """Poll each ``url`` until it answers 200 while its process lives."""
    pending = list(managed)
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while pending:
            for item in list(pending):
                proc, url = item
                proc.check_alive()
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(url).status_code == 200:
                        pending.remove(item)
            if pending and time.monotonic() > deadline:
                names = ", ".join(p.name for p, _ in pending)
                raise RuntimeError(f"not ready after {timeout:.0f} s: {names}\n"
                                   + "\n".join(p.tail(2000) for p, _ in pending))
            if pending:
                time.sleep(0.1)


# -- the upstream ---------------------------------------------------------------------------


class UpstreamProcess:
    """tests/replica_upstream.py in a process of its own (see its docstring)."""

    def __init__(self, tmp: Path, *, cpus: Sequence[int] | None = None):
        self.tmp = tmp
        self.cpus = cpus
        self.port = 0
        self.managed: Managed | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI base URL deployments point at."""
        return self.base + "/v1"

    def start(self) -> UpstreamProcess:
        cmd = [*taskset(self.cpus), sys.executable, str(HERE / "replica_upstream.py")]
        self.managed = launch("upstream", cmd, self.tmp / "upstream.log", stdout_pipe=True)
        stdout = self.managed.proc.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], 30)
        line = stdout.readline().decode() if ready else ""
        if not line.startswith("PORT "):
            self.managed.stop()
            raise RuntimeError(f"upstream did not start: {line!r}\n{self.managed.tail()}")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        if self.managed is not None:
            self.managed.stop()

    def stats(self) -> dict[str, Any]:
        """``{"count": chat requests, "models": {model: count}}`` since the last reset."""
        result: dict[str, Any] = httpx.get(self.base + "/stats", timeout=5).json()
        return result

    def hits(self, model: str | None = None) -> int:
        stats = self.stats()
        return int(stats["count"] if model is None else stats["models"].get(model, 0))

    def control(self, *, fail: int | None = None, delay_s: float = 0.0) -> None:
        """Every next chat request fails with ``fail`` (or answers) after ``delay_s``."""
        httpx.post(self.base + "/control", json={"fail": fail, "delay_s": delay_s},
                   timeout=5).raise_for_status()

    def reset(self) -> None:
        httpx.post(self.base + "/reset", timeout=5).raise_for_status()


# -- nginx ----------------------------------------------------------------------------------

_NGINX_CONF = """\
worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    upstream gateways {{
{servers}
        keepalive 512;
        keepalive_requests 1000000;
        keepalive_timeout 4s;  # below uvicorn's 5 s: never reuse a closing connection
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://gateways;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_read_timeout 300s;
            proxy_next_upstream off;
        }}
    }}
}}
"""


class Nginx:
    """nginx in front of ``backends`` (``host:port``): round robin, keep-alive, and
    ``proxy_next_upstream off`` (a request is never sent to a second replica)."""

    def __init__(self, tmp: Path, backends: Sequence[str], *, workers: int = 1,
                 cpus: Sequence[int] | None = None):
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx not found: apt-get install nginx-light")
        self.binary = binary
        self.dir = tmp / "nginx"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        servers = "\n".join(f"        server {b} max_fails=0;" for b in backends)
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(_NGINX_CONF.format(workers=workers, dir=self.dir,
                                                servers=servers, port=self.port))
        self.cpus = cpus
        self.managed: Managed | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        cmd = [*taskset(self.cpus), self.binary, "-p", str(self.dir), "-c", str(self.conf)]
        self.managed = launch("nginx", cmd, self.dir / "nginx.log")
        return self

    def stop(self) -> None:
        if self.managed is not None:
            self.managed.stop()


def taskset(cpus: Sequence[int] | None) -> list[str]:
    """``taskset -c ...`` to pin a command to ``cpus`` (nothing when None or no taskset)."""
    if not cpus or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", ",".join(map(str, cpus))]


# -- the replica set ------------------------------------------------------------------------


def deployment(upstream_url: str, name: str, **fields: Any) -> dict[str, Any]:
    """A deployment on the fixed upstream (upstream model ``<name>-model``), priced so
    that a request's reservation bound is its exact cost: input free, output
    ``OUTPUT_PRICE`` per million tokens (the upstream bills ``max_tokens`` completion
    tokens); ``fields`` add to it (``region``, ``rpm``, ...)."""
    return {"name": name, "provider": "openai-compatible", "base_url": upstream_url,
            "model": f"{name}-model", "input_cost_per_mtok": 0.0,
            "output_cost_per_mtok": OUTPUT_PRICE, **fields}


def default_catalog(upstream_url: str, extra: Sequence[Mapping[str, Any]] = ()
                    ) -> dict[str, Any]:
    """Deployments on the fixed upstream: ``fixed`` serves the limit tests; ``flaky`` is
    the one the breaker tests break; ``extra`` are more (``deployment()`` fields, with
    ``name``). The router is ``ordered``: no learned model to load, so replicas start
    fast."""
    made = [deployment(upstream_url, "fixed"), deployment(upstream_url, "flaky")]
    made += [deployment(upstream_url, **dict(fields)) for fields in extra]
    return {
        "deployments": made,
        "router": "ordered",
        "reliability": {"num_retries": 0, "timeout_s": 60, "attempt_timeout_s": 30,
                        "circuit_breaker": {"failure_threshold": 3, "cooldown_s": 60}},
    }


def merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, mappings recursively."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class Key:
    """A virtual key made by ``POST /key/generate``."""

    key: str
    id: str


@dataclass
class ReplicaSet:
    """``k`` gateways on one database and one Redis behind nginx; see the module docstring.

    Args:
        k: gateway processes.
        db_url: the store every gateway uses (``MODELMIX_DB_URL``).
        redis_url: the shared state (``MODELMIX_REDIS_URL``); None: per-process limits.
        tmp: where catalogs and logs go (a temporary directory when None).
        catalog: merged into :func:`default_catalog` (e.g. ``{"cache": {"mode": "exact"}}``).
        deployments: more deployments on the fixed upstream (``{"name": "eu",
            "region": "eu-west-1"}``).
        gateway_cpus / load_cpus: pin the gateways / nginx and the upstream (benchmarks).
        log_level: the gateways' ``--log-level``.
    """

    k: int
    db_url: str
    redis_url: str | None
    tmp: Path | None = None
    catalog: Mapping[str, Any] = field(default_factory=dict)
    deployments: Sequence[Mapping[str, Any]] = ()
    gateway_cpus: Sequence[int] | None = None
    load_cpus: Sequence[int] | None = None
    log_level: str = "warning"
    env: Mapping[str, str] = field(default_factory=dict)
    upstream: UpstreamProcess = field(init=False)
    gateways: list[Managed] = field(default_factory=list, init=False)
    ports: list[int] = field(default_factory=list, init=False)
    nginx: Nginx = field(init=False)
    _own_tmp: bool = field(default=False, init=False)

    @property
    def url(self) -> str:
        """nginx, in front of every replica."""
        return self.nginx.url

    def replica(self, i: int) -> str:
        """Replica ``i``'s own URL (bypassing nginx)."""
        return f"http://127.0.0.1:{self.ports[i]}"

    def __enter__(self) -> ReplicaSet:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ReplicaSet:
        if self.tmp is None:
            self.tmp, self._own_tmp = Path(tempfile.mkdtemp(prefix="modelmix-replicas-")), True
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.upstream = UpstreamProcess(self.tmp, cpus=self.load_cpus).start()
        config = self.tmp / "catalog.yaml"
        catalog = merge(default_catalog(self.upstream.url, self.deployments), self.catalog)
        config.write_text(yaml.safe_dump(catalog, sort_keys=False))
        env = {"MODELMIX_MASTER_KEY": MASTER_KEY, "MODELMIX_DB_URL": self.db_url,
               **({"MODELMIX_REDIS_URL": self.redis_url} if self.redis_url else {}),
               **self.env}
        for i in range(self.k):
            port = free_port()
            cmd = [*taskset(self.gateway_cpus), sys.executable, "-m", "modelmix.cli", "serve",
                   "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                   "--log-level", self.log_level]
            self.ports.append(port)
            self.gateways.append(launch(f"gateway-{i}", cmd, self.tmp / f"gateway-{i}.log",
                                        env))
        wait_http([(g, self.replica(i) + "/ready") for i, g in enumerate(self.gateways)])
        self.nginx = Nginx(self.tmp, [f"127.0.0.1:{p}" for p in self.ports],
                           cpus=self.load_cpus).start()
        assert self.nginx.managed is not None
        wait_http([(self.nginx.managed, self.url + "/ready")], timeout=15)
        return self

    def stop(self) -> None:
        """Stop nginx, then the gateways (SIGTERM: they flush usage rows), then the
        upstream; idempotent."""
        if hasattr(self, "nginx"):
            self.nginx.stop()
        for gateway in self.gateways:
            gateway.stop()
        if hasattr(self, "upstream"):
            self.upstream.stop()
        if self._own_tmp and self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self._own_tmp = False

    def logs(self) -> str:
        """The gateways' log tails (for assertion messages)."""
        return "\n".join(f"--- {g.name}\n{g.tail(3000)}" for g in self.gateways)

    # -- admin --------------------------------------------------------------------------

    def admin(self, path: str, body: Mapping[str, Any] | None = None, *,
              replica: int | None = None) -> dict[str, Any]:
        """A master-key call to ``/key/...`` through nginx or on ``replica``."""
        base = self.url if replica is None else self.replica(replica)
        headers = {"Authorization": f"Bearer {MASTER_KEY}"}
        if body is None:
            resp = httpx.get(base + path, headers=headers, timeout=30)
        else:
            resp = httpx.post(base + path, json=dict(body), headers=headers, timeout=30)
        if resp.status_code != 200:
            raise RuntimeError(f"{path}: {resp.status_code} {resp.text}")
        result: dict[str, Any] = resp.json()
        return result

    def create_key(self, **fields: Any) -> Key:
        """``POST /key/generate`` with ``fields`` (``max_budget``, ``rpm_limit``, ...)."""
        made = self.admin("/key/generate", fields)
        return Key(made["key"], made["key_id"])

    def revoke(self, key_id: str, *, replica: int | None = None) -> None:
        self.admin("/key/revoke", {"key_id": key_id}, replica=replica)

    def key_view(self, key_id: str, *, replica: int) -> dict[str, Any]:
        """The key as ``/key/list`` on ``replica`` shows it."""
        for view in self.admin("/key/list", replica=replica)["keys"]:
            if view["key_id"] == key_id:
                return dict(view)
        raise KeyError(key_id)


# -- load -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One answer: status, error code (None on success), the ``x-modelmix-*`` and
    ``retry-after`` headers, and the JSON body (``{}`` when not JSON)."""

    status: int
    code: str | None
    headers: dict[str, str]
    body: dict[str, Any]
    latency_s: float


def chat_body(model: str = "fixed", content: str = "hello", max_tokens: int = 10,
              **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens, **extra}


async def burst(url: str, key: str, bodies: Sequence[Mapping[str, Any]], *,
                concurrency: int | None = None, timeout: float = 120.0,
                headers: Mapping[str, str] | None = None) -> list[Reply]:
    """POST each body to ``url``/v1/chat/completions at once (at most ``concurrency``
    in flight: one connection each), as ``key``; replies in the order of ``bodies``."""
    import aiohttp

    limit = concurrency or len(bodies)
    gate = asyncio.Semaphore(limit)
    sent = {"Authorization": f"Bearer {key}", **(headers or {})}
    connector = aiohttp.TCPConnector(limit=limit, force_close=False)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        async def one(body: Mapping[str, Any]) -> Reply:
            async with gate:
                start = time.perf_counter()
                async with session.post(url + "/v1/chat/completions", json=dict(body),
                                        headers=sent) as resp:
                    raw = await resp.read()
                    return _reply(resp.status, resp.headers, raw, time.perf_counter() - start)

        return list(await asyncio.gather(*(one(b) for b in bodies)))


def _reply(status: int, headers: Mapping[str, str], raw: bytes, latency_s: float) -> Reply:
    import json

    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {"raw": raw[:500].decode(errors="replace")}
    if not isinstance(body, dict):
        body = {"raw": body}
    error = body.get("error") if status >= 400 else None
    code = str(error.get("code")) if isinstance(error, dict) else None
    kept = {k.lower(): v for k, v in headers.items()
            if k.lower().startswith("x-modelmix") or k.lower() == "retry-after"}
    return Reply(status, code, kept, body, latency_s)


def post(url: str, key: str, body: Mapping[str, Any], *,
         headers: Mapping[str, str] | None = None, timeout: float = 30.0) -> Reply:
    """One synchronous chat completion (httpx)."""
    start = time.perf_counter()
    resp = httpx.post(url + "/v1/chat/completions", json=dict(body), timeout=timeout,
                      headers={"Authorization": f"Bearer {key}", **(headers or {})})
    return _reply(resp.status_code, resp.headers, resp.content, time.perf_counter() - start)
