"""The deployment recipes: Dockerfile, deploy/compose.yaml, deploy/nginx.conf, the deploy
catalogs and the Kubernetes manifests in docs/deploy.md.

No Docker daemon runs here, so the files are parsed and checked against the code, and
what they run is run on loopback: the image's entrypoint and healthcheck, the model
server's command, the gateways with the compose environment, nginx with its config in
front of two gateways, on Debian's redis-server and PostgreSQL (tests/_deploy_stack.py).
Missing engines skip those tests, or fail them under ``CI=true``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
import yaml

from _deploy_files import (
    COMPOSE,
    DEPLOY,
    DEPLOY_DOC,
    DOCKERFILE,
    NGINX_CONF,
    ROOT,
    Instruction,
    compose,
    compose_variables,
    exec_form,
    interpolate,
    k8s_documents,
    nginx_upstreams,
    parse_dockerfile,
    source_env_names,
    stages,
)
from _deploy_stack import ENV, GATEWAYS, MASTER_KEY, Stack, dockerfile_command, nginx_args
from _deploy_stack import nginx_binary as find_nginx
from _servers import free_port

REQUIRED_GATEWAY_ENV = {"MODELMIX_CONFIG", "MODELMIX_MASTER_KEY", "MODELMIX_DB_URL",
                        "MODELMIX_REDIS_URL"}


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def docker() -> dict[str, list[Instruction]]:
    return stages(parse_dockerfile(DOCKERFILE.read_text()))


def final_stage(docker: dict[str, list[Instruction]]) -> list[Instruction]:
    return list(docker.values())[-1]


def last(instructions: list[Instruction], cmd: str) -> Instruction:
    found = [i for i in instructions if i.cmd == cmd]
    assert found, f"no {cmd} in the stage"
    return found[-1]


# -- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_with_a_non_root_runtime(
        docker: dict[str, list[Instruction]]) -> None:
    assert len(docker) >= 2, "the image builds in one stage and runs in another"
    runtime = final_stage(docker)
    user = last(runtime, "USER").args.split(":")[0]
    assert user not in ("root", "0"), "the gateway runs as root"
    assert user.isdigit(), "numeric USER, so Kubernetes' runAsNonRoot can check it"
    builder = next(iter(docker))
    copies = [i for i in runtime if i.cmd == "COPY" and f"--from={builder}" in i.flags]
    assert any(i.args.split()[0] == "/opt/venv" for i in copies), "runtime copies the venv"
    assert not any(i.cmd == "RUN" and "install.sh" in i.args for i in runtime)


def test_dockerfile_builder_runs_scripts_install_sh(docker: dict[str, list[Instruction]]) -> None:
    """The image installs with the script `make test` and CI use, so it cannot drift."""
    builder = next(iter(docker.values()))
    runs = [i for i in builder if i.cmd == "RUN" and "scripts/install.sh" in i.args]
    assert len(runs) == 1
    assert re.search(r"\bVENV=/opt/venv\b.*\bbash scripts/install\.sh\b", runs[0].args)
    copied = {i.args.split()[0] for i in builder if i.cmd == "COPY"} | {
        w for i in builder if i.cmd == "COPY" for w in i.args.split()[:-1]}
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["readme"]
    for needed in ("pyproject.toml", readme, "scripts/install.sh", "src"):
        assert needed in copied, f"the builder does not copy {needed} (install.sh needs it)"
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert 'VENV=${VENV:-.venv}' in install, "install.sh no longer takes VENV"
    assert "--disable-pip-version-check" in install


def test_dockerfile_healthcheck_entrypoint_and_port(docker: dict[str, list[Instruction]]) -> None:
    runtime = final_stage(docker)
    health = last(runtime, "HEALTHCHECK")
    assert health.args.startswith("CMD ")
    check = exec_form(health.args[4:])
    assert "http://127.0.0.1:4000/ready" in " ".join(check)
    assert last(runtime, "EXPOSE").args.split() == ["4000"]
    command = dockerfile_command()
    assert command[:4] == ["modelmix", "serve", "--host", "0.0.0.0"]
    assert command[command.index("--port") + 1] == "4000"
    env = last(runtime, "ENV").args
    assert "PATH=/opt/venv/bin:$PATH" in env, "modelmix and python come from the venv"


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for needed in (".git", ".venv", "deploy/.env", "*.db"):
        assert needed in patterns
    for source in ("pyproject.toml", "README.md", "src", "scripts"):
        assert source not in patterns and f"{source}/" not in patterns


def _dpkg_depends() -> dict[str, set[str]]:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Pre-Depends}, ${Depends}\n"],
                         capture_output=True, text=True, check=True).stdout
    deps: dict[str, set[str]] = {}
    for line in out.splitlines():
        name, _, rest = line.partition("\t")
        names = re.findall(r"(?:^|[,|]\s*)([a-z0-9][a-z0-9.+-]*)", rest)
        deps.setdefault(name, set()).update(names)
    return deps


def _closure(roots: set[str], deps: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(deps.get(name, ()))
    return seen


def _venv_system_libraries() -> set[str]:
    sos = [str(p) for p in Path(sys.prefix).rglob("*.so*") if p.is_file()]
    libs: set[str] = set()
    for i in range(0, len(sos), 200):
        out = subprocess.run(["ldd", *sos[i:i + 200]], capture_output=True, text=True).stdout
        libs.update(re.findall(r"=> (/\S+)", out))
    # Debian's libraries only (not the venv's own, nor a /usr/local or pyenv build's)
    return {lib for lib in libs if lib.startswith(("/lib", "/usr/lib"))}


def _owners(libs: set[str]) -> dict[str, str]:
    """``{library: Debian package}`` (one ``dpkg -S`` call; with merged /usr a file may be
    registered under /lib or /usr/lib)."""
    real = {lib: os.path.realpath(lib) for lib in libs}
    queries = {q for path in real.values()
               for q in (path, path.removeprefix("/usr"), "/usr" + path.removeprefix("/usr"))}
    out = subprocess.run(["dpkg", "-S", *sorted(queries)], capture_output=True, text=True).stdout
    by_name = {line.split(": ", 1)[1].rsplit("/", 1)[-1]: line.split(":")[0]
               for line in out.splitlines() if ": " in line}
    return {lib: by_name.get(path.rsplit("/", 1)[-1], "?") for lib, path in real.items()}


#: Packages of the slim Python base image that the wheels link against.
_BASE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libssl3", "libuuid1",
                  "libffi8", "libsqlite3-0", "libbz2-1.0", "liblzma5", "libexpat1"}


def test_runtime_packages_cover_the_shared_libraries_of_the_venv(
        docker: dict[str, list[Instruction]]) -> None:
    """Every system library the installed wheels link against (llama.cpp's OpenMP,
    OpenCV's GL and GLib...) is in the slim base or installed by the runtime stage:
    a missing one breaks the image at import time, which nothing else here would see."""
    if shutil.which("dpkg-query") is None or shutil.which("ldd") is None:
        pytest.skip("needs Debian's dpkg-query and ldd")
    run = " ".join(i.args for i in final_stage(docker) if i.cmd == "RUN")
    installed = set(re.findall(r"apt-get install (?:-\S+ )*([^&]+)", run)[0].split())
    have = _closure(installed | _BASE_PACKAGES, _dpkg_depends())
    owners = _owners(_venv_system_libraries())
    missing = {lib: pkg for lib, pkg in owners.items() if pkg not in have}
    assert not missing, f"the runtime stage should apt-get install: {missing}"


# -- compose ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return compose(ENV)


def test_compose_services_and_two_gateway_replicas(spec: dict[str, Any]) -> None:
    services = spec["services"]
    assert {"nginx", "redis", "postgres", "llama", *GATEWAYS} <= set(services)
    images = {services[g].get("image") for g in GATEWAYS}
    assert len(images) == 1 and None not in images, "both replicas run the same image"
    assert services["llama"]["image"] in images, "the model server runs the gateway image"
    assert services["nginx"]["image"].startswith("nginx:") and "alpine" not in \
        services["nginx"]["image"], "the official Debian-based nginx image"
    build = services[GATEWAYS[0]]["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert services["vllm"]["profiles"] == ["gpu"]
    assert all("profiles" not in services[s] for s in services if s != "vllm")


def test_compose_healthchecks_and_start_order(spec: dict[str, Any]) -> None:
    services = spec["services"]
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for gateway in GATEWAYS:
        needs = services[gateway]["depends_on"]
        for dep in ("redis", "postgres", "llama"):
            assert needs[dep]["condition"] == "service_healthy"
        assert "/ready" in " ".join(services[gateway]["healthcheck"]["test"])
    assert {g: {"condition": "service_healthy"} for g in GATEWAYS} == \
        services["nginx"]["depends_on"]
    assert "/v1/models" in " ".join(services["llama"]["healthcheck"]["test"]), \
        "llama must not inherit the image's gateway healthcheck"


def test_compose_gateway_env_is_read_by_the_code(spec: dict[str, Any]) -> None:
    known = source_env_names()
    for gateway in GATEWAYS:
        env = spec["services"][gateway]["environment"]
        assert REQUIRED_GATEWAY_ENV <= set(env)
        unknown = {k for k in env if k.startswith("MODELMIX_") and k not in known}
        assert not unknown, f"the code reads none of {unknown}"
    catalog = yaml.safe_load((DEPLOY / "modelmix.yaml").read_text())
    keys = {d["api_key_env"] for d in catalog["deployments"] if d.get("api_key_env")}
    assert keys <= set(spec["services"][GATEWAYS[0]]["environment"])


def test_compose_wiring_points_at_its_services(spec: dict[str, Any]) -> None:
    services = spec["services"]
    env = services[GATEWAYS[0]]["environment"]
    db = env["MODELMIX_DB_URL"]
    assert db.startswith("postgresql+psycopg://modelmix:deploy-test-pw@postgres:5432/")
    pg_env = services["postgres"]["environment"]
    assert db.endswith("/" + pg_env["POSTGRES_DB"]) and pg_env["POSTGRES_USER"] == "modelmix"
    assert env["MODELMIX_REDIS_URL"] == "redis://redis:6379/0"
    mounts = dict(v.split(":")[1::-1] for v in services[GATEWAYS[0]]["volumes"])
    assert env["MODELMIX_CONFIG"] in mounts, "the catalog is mounted where MODELMIX_CONFIG says"
    for source in mounts.values():
        assert (DEPLOY / source).is_file()
    llama = [*services["llama"]["entrypoint"], *services["llama"]["command"]]
    llama_base = f"http://llama:{llama[llama.index('--port') + 1]}/v1"
    alias = llama[llama.index("--model_alias") + 1]
    for source in mounts.values():
        for dep in yaml.safe_load((DEPLOY / source).read_text())["deployments"]:
            if dep["name"] == "smollm2":
                assert (dep["base_url"], dep["model"]) == (llama_base, alias)
    nginx_mount = dict(v.split(":")[1::-1] for v in services["nginx"]["volumes"])
    assert nginx_mount["/etc/nginx/nginx.conf"] == "./nginx.conf"
    assert services["nginx"]["ports"][0].endswith(":8080")
    assert "listen 8080;" in NGINX_CONF.read_text()


def test_compose_requires_the_master_key_and_password() -> None:
    """Without deploy/.env's secrets compose refuses to start (no default secret)."""
    raw = compose()
    gateway_env = raw["services"][GATEWAYS[0]]["environment"]
    assert gateway_env["MODELMIX_MASTER_KEY"].startswith("${MODELMIX_MASTER_KEY:?")
    for env in ({}, {"MODELMIX_MASTER_KEY": "", "POSTGRES_PASSWORD": "x"},
                {"MODELMIX_MASTER_KEY": "x"}):
        with pytest.raises(ValueError):
            compose(env)
    example = (DEPLOY / ".env.example").read_text()
    for name in compose_variables():
        assert re.search(rf"^#? ?{name}=", example, re.M), f"{name} not in .env.example"
    assert ".env" in (ROOT / ".gitignore").read_text()


def test_compose_interpolation_matches_compose_rules() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("${SET:-d}|${EMPTY:-d}|${EMPTY-d}|${UNSET-d}|$$SET|$SET", env) == \
        "v|d||d|$SET|v"
    with pytest.raises(ValueError):
        interpolate("${EMPTY:?needed}", env)
    assert interpolate("${EMPTY?needed}", env) == ""


def test_compose_file_validates_with_docker_compose(tmp_path: Path) -> None:
    """Debian's docker-compose (1.29) checks the file against its compose schema and
    interpolates it (it predates the top-level ``name``, which is dropped here)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        unavailable("docker-compose is missing: apt-get install docker-compose")
    copy = tmp_path / "compose.yaml"
    copy.write_text(re.sub(r"^name: .*\n", "", COMPOSE.read_text(), flags=re.M))
    env = {**os.environ, **ENV}
    for profile in ([], ["--profile", "gpu"]):
        proc = subprocess.run([binary, "-f", str(copy), "--project-directory", str(DEPLOY),
                               *profile, "config"], capture_output=True, text=True, env=env,
                              cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        resolved = yaml.safe_load(proc.stdout)
        assert str(DEPLOY / "nginx.conf") in " ".join(resolved["services"]["nginx"]["volumes"])
        assert resolved["services"]["gateway-1"]["build"]["context"] == str(ROOT)


def test_deploy_catalogs_load_and_keep_default_prices() -> None:
    from modelmix.catalog import DEFAULT_CONFIG, load_config

    defaults = {d["name"]: d for d in DEFAULT_CONFIG["deployments"]}
    for name in ("modelmix.yaml", "modelmix-gpu.yaml"):
        config = load_config(DEPLOY / name)
        assert config.state.on_redis_down == "closed"
        raw = yaml.safe_load((DEPLOY / name).read_text())
        for dep in raw["deployments"]:
            if dep["name"] in defaults:
                assert dep == defaults[dep["name"]], f"{name}: {dep['name']} drifted"
        assert any(d.provider in ("llamacpp", "vllm") for d in config.deployments)


# -- nginx ------------------------------------------------------------------------------------


def test_nginx_upstream_lists_every_gateway_replica(spec: dict[str, Any]) -> None:
    upstreams = nginx_upstreams(NGINX_CONF.read_text())
    assert len(upstreams) == 1
    servers = next(iter(upstreams.values()))
    port = dockerfile_command()[dockerfile_command().index("--port") + 1]
    gateways = [s for s in spec["services"] if s.startswith("gateway-")]
    assert sorted(servers) == sorted(f"{g}:{port}" for g in gateways)
    conf = NGINX_CONF.read_text()
    assert re.search(r"proxy_pass http://" + next(iter(upstreams)) + ";", conf)
    for needed in ("proxy_buffering off;",  # streams arrive chunk by chunk
                   "proxy_http_version 1.1;", 'proxy_set_header Connection "";',  # keep-alive
                   "proxy_next_upstream error timeout;"):  # never "non_idempotent"
        assert needed in conf


def test_nginx_t_accepts_the_config(tmp_path: Path) -> None:
    binary = find_nginx()
    if binary is None:
        unavailable("nginx is missing: apt-get install nginx")
    addresses = {f"{g}:4000": f"127.0.0.1:{free_port()}" for g in GATEWAYS}
    conf = Stack.write_nginx_conf(tmp_path, addresses, free_port())
    proc = subprocess.run([binary, "-t", *nginx_args(conf)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "syntax is ok" in proc.stderr


# -- the stack on loopback --------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from _postgres import pg_bindir
    from modelmix.providers.local import default_model_path

    if find_nginx() is None:
        unavailable("nginx is missing: apt-get install nginx")
    bindir = pg_bindir()
    if bindir is None:
        unavailable("PostgreSQL is missing: apt-get install postgresql")
    model = default_model_path()
    try:
        import llama_cpp.server.app  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError as exc:
        unavailable(f"{exc.name} is missing (make install)")
    if model is None:
        unavailable("the SmolLM2 model is missing (make install)")
    running = Stack(tmp_path_factory.mktemp("stack"), model)
    try:
        yield running.start(bindir)
    except RuntimeError as exc:
        pytest.fail(f"{exc}\n{running.logs()}")
    finally:
        running.stop()


AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
HI = {"model": "smollm2", "max_tokens": 2, "temperature": 0,
      "messages": [{"role": "user", "content": "Say hi."}]}


def _served(stack: Stack, gateway: str) -> int:
    text = httpx.get(stack.url(gateway) + "/metrics", timeout=10).text
    return int(sum(float(v) for v in re.findall(
        r'^modelmix_requests_total\{[^}]*status_code="200"[^}]*\} (\S+)', text, re.M)))


def test_stack_ready_and_health_through_nginx(stack: Stack) -> None:
    ready = httpx.get(stack.url("nginx") + "/ready", timeout=10)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "available_deployments": ["smollm2"],
                            "shared_state": "ok"}, "the replicas use the compose's Redis"
    assert httpx.get(stack.url("nginx") + "/health", timeout=10).json() == {"status": "ok"}
    assert httpx.get(stack.url("nginx") + "/metrics", timeout=10).status_code == 404
    assert httpx.get(stack.url(GATEWAYS[0]) + "/metrics", timeout=10).status_code == 200


def test_stack_requests_need_the_master_key(stack: Stack) -> None:
    resp = httpx.post(stack.url("nginx") + "/v1/chat/completions", json=HI, timeout=30)
    assert resp.status_code == 401
    models = httpx.get(stack.url("nginx") + "/v1/models", headers=AUTH, timeout=10)
    assert "smollm2" in {m["id"] for m in models.json()["data"]}


def test_stack_round_robins_over_both_replicas(stack: Stack) -> None:
    before = {g: _served(stack, g) for g in GATEWAYS}
    with httpx.Client(base_url=stack.url("nginx"), headers=AUTH, timeout=120) as client:
        for _ in range(4):
            resp = client.post("/v1/chat/completions", json=HI)
            assert resp.status_code == 200, resp.text
            assert resp.headers["x-modelmix-deployment"] == "smollm2"
            assert resp.json()["choices"][0]["message"]["role"] == "assistant"
    served = {g: _served(stack, g) - before[g] for g in GATEWAYS}
    assert served == {g: 2 for g in GATEWAYS}, stack.logs()


def test_stack_streams_through_nginx(stack: Stack) -> None:
    body = {**HI, "stream": True, "max_tokens": 4}
    with httpx.stream("POST", stack.url("nginx") + "/v1/chat/completions", json=body,
                      headers=AUTH, timeout=120) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) >= 3


def test_stack_healthcheck_commands_pass(stack: Stack,
                                         docker: dict[str, list[Instruction]]) -> None:
    """The image's HEALTHCHECK and the compose healthchecks, run against loopback."""
    checks: list[tuple[list[str], int, int]] = [
        (exec_form(last(final_stage(docker), "HEALTHCHECK").args[4:]), 4000,
         stack.ports[GATEWAYS[0]])]
    for name, port in (("gateway-2", 4000), ("llama", 8080), ("nginx", 8080)):
        test = stack.spec["services"][name]["healthcheck"]["test"]
        assert test[0] == "CMD"
        checks.append((test[1:], port, stack.ports[name]))
    for argv, port, local in checks:
        if argv[0] == "curl" and shutil.which("curl") is None:
            continue
        argv = [sys.executable if a == "python" else a.replace(f":{port}/", f":{local}/")
                for a in argv]
        assert subprocess.run(argv, timeout=30).returncode == 0, argv


def test_stack_usage_rows_reach_postgres(stack: Stack) -> None:
    """Both replicas write to the compose's PostgreSQL (``MODELMIX_DB_URL``)."""
    import sqlalchemy as sa

    ids = [f"deploy-usage-{i}" for i in range(2)]  # one through each replica
    for request_id in ids:
        resp = httpx.post(stack.url("nginx") + "/v1/chat/completions", json=HI, timeout=120,
                          headers={**AUTH, "x-request-id": request_id})
        assert resp.status_code == 200, resp.text
    stack.stop_gateways()  # SIGTERM: each writes its pending rows
    engine = sa.create_engine(stack.db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT request_id, status_code FROM usage WHERE request_id IN (:a, :b)"),
                {"a": ids[0], "b": ids[1]}).all()
    finally:
        engine.dispose()
    assert sorted(map(tuple, rows)) == [(i, 200) for i in ids], stack.logs()


# -- docs/deploy.md ---------------------------------------------------------------------------


def test_deploy_doc_names_every_env_var_the_code_reads() -> None:
    doc = DEPLOY_DOC.read_text()
    read = source_env_names()
    assert not sorted(n for n in read if n not in doc), "add them to docs/deploy.md"
    named = set(re.findall(r"\bMODELMIX_[A-Z0-9_]+\b", doc))
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert not sorted(n for n in named if n not in read and n not in install)


def _by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_kubernetes_manifests_in_the_doc() -> None:
    docs = k8s_documents()
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]
    (deployment,) = [d for d in _by_kind(docs, "Deployment")
                     if d["metadata"]["name"] == "modelmix"]
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["selector"]["matchLabels"].items() <= \
        spec["template"]["metadata"]["labels"].items()
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    port = container["ports"][0]["containerPort"]
    assert port == 4000
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": port}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    assert security["runAsNonRoot"] is True
    _check_env_sources(docs, container, pod)
    (service,) = _by_kind(docs, "Service")
    assert service["spec"]["selector"].items() <= \
        spec["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] in (port, container["ports"][0]["name"])


def _check_env_sources(docs: list[dict[str, Any]], container: dict[str, Any],
                       pod: dict[str, Any]) -> None:
    """Every secret / config map the pod reads is defined in the doc with those keys,
    and MODELMIX_CONFIG names the mounted catalog."""
    secrets = {d["metadata"]["name"]: d for d in _by_kind(docs, "Secret")}
    maps = {d["metadata"]["name"]: d for d in _by_kind(docs, "ConfigMap")}
    env = {e["name"]: e for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        name = source["secretRef"]["name"]
        env.update({k: {"name": k} for k in secrets[name]["stringData"]})
    assert REQUIRED_GATEWAY_ENV <= set(env)
    for item in env.values():
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["key"] in secrets[ref["name"]]["stringData"]
    assert all(n in source_env_names() for n in env if n.startswith("MODELMIX_"))
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_path = env["MODELMIX_CONFIG"]["value"]
    for name, path in mounts.items():
        if "configMap" in volumes[name] and config_path.startswith(path + "/"):
            catalog = maps[volumes[name]["configMap"]["name"]]["data"][
                config_path.removeprefix(path + "/")]
            break
    else:
        raise AssertionError(f"{config_path} is not a mounted ConfigMap key")
    from modelmix.catalog import config_from_dict

    config_from_dict(yaml.safe_load(catalog))
