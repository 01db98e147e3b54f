"""Fetching image URLs (media.fetch): allowed hosts only, no private address reachable by
name, literal, redirect or DNS rebinding, bounded in size and time.

Real servers on loopback, plain HTTP and TLS, no mocked network. Loopback is refused by
default, so fetches meant to succeed allow ``127.0.0.1/32``; ``127.0.0.2`` stays a
refused loopback address. The resolver is substituted only to play a DNS server's part
(rebinding, names that resolve to private addresses).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from _servers import free_port, serve_app
from modelmix.catalog import MediaFetchSettings
from modelmix.errors import ConfigError, InvalidMedia, MediaTooLarge
from modelmix.media._fetch import _is_public, fetch_image
from modelmix.server._protocol import http_protocol

WHERE = "messages.0.content.1"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


@dataclass
class Server:
    port: int
    received: list[dict[str, str]] = field(default_factory=list)  # /img's request headers

    @property
    def hosts(self) -> list[str]:
        return [headers.get("host", "") for headers in self.received]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _app(seen: list[dict[str, str]]) -> Starlette:
    async def img(request: Request) -> Response:
        seen.append(dict(request.headers))
        return Response(PNG, media_type="image/png")

    async def redirect(request: Request) -> Response:
        return RedirectResponse(request.query_params["to"], status_code=302)

    async def hops(request: Request) -> Response:
        left = int(request.path_params["n"])
        return await img(request) if left == 0 else RedirectResponse(f"/hops/{left - 1}")

    async def big(request: Request) -> Response:
        return Response(b"x" * 5000, media_type="image/png")  # with Content-Length

    async def chunked(request: Request) -> Response:
        async def body() -> Any:
            for _ in range(10):
                yield b"x" * 1000

        return StreamingResponse(body(), media_type="image/png")  # no Content-Length

    async def slow(request: Request) -> Response:
        for _ in range(200):  # until the client gives up (keeps server shutdown quick)
            if await request.is_disconnected():
                break
            await asyncio.sleep(0.05)
        return Response(PNG)

    async def missing(request: Request) -> Response:
        return PlainTextResponse("secret internal detail 10.1.2.3", status_code=404)

    async def gzipped(request: Request) -> Response:
        return Response(b"\x1f\x8b", headers={"content-encoding": "gzip"})

    return Starlette(routes=[
        Route("/img", img), Route("/redirect", redirect), Route("/hops/{n}", hops),
        Route("/big", big), Route("/chunked", chunked), Route("/slow", slow),
        Route("/missing", missing), Route("/gzipped", gzipped),
    ])


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    seen: list[dict[str, str]] = []
    with serve_app(_app(seen)) as base:
        srv = Server(int(base.rsplit(":", 1)[1]), seen)
        yield srv


@pytest.fixture
def srv(server: Server) -> Server:
    server.received.clear()
    return server


def _settings(port: int, **overrides: Any) -> MediaFetchSettings:
    values: dict[str, Any] = {
        "enabled": True,
        "allow_hosts": (f"127.0.0.1:{port}", f"localhost:{port}"),
        "allow_networks": ("127.0.0.1/32",),
        "timeout_s": 5.0,
    }
    return MediaFetchSettings(**(values | overrides))


def _stub(*answers: Sequence[str]) -> Any:
    """A DNS server's part: the n-th call answers ``answers[n]`` (the last one after)."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return list(answers[min(len(calls), len(answers)) - 1])

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


async def _refused(url: str, settings: MediaFetchSettings, **kw: Any) -> InvalidMedia:
    with pytest.raises(InvalidMedia) as info:
        await fetch_image(url, settings, where=WHERE, **kw)
    err = info.value
    assert err.param == WHERE and err.status_code == 400
    assert err.message.startswith(WHERE + ": ")
    return err


# -- off, schemes, credentials -----------------------------------------------------------

async def test_disabled_by_default(srv: Server) -> None:
    err = await _refused(f"{srv.url}/img", MediaFetchSettings())
    assert "not fetched by this gateway" in err.message and "base64 data URL" in err.message
    assert srv.hosts == []


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/a.png", "file:///etc/passwd",
                                 "gopher://127.0.0.1:70/"])
async def test_only_http_and_https(srv: Server, url: str) -> None:
    err = await _refused(url, _settings(srv.port))
    assert "not http or https" in err.message


async def test_credentials_in_url_refused(srv: Server) -> None:
    err = await _refused(f"http://user:pw@127.0.0.1:{srv.port}/img", _settings(srv.port))
    assert "credentials" in err.message and "pw" not in err.message
    assert srv.hosts == []


async def test_not_a_url(srv: Server) -> None:
    err = await _refused("http://[::1/x", _settings(srv.port))
    assert "not a valid URL" in err.message


# -- success ------------------------------------------------------------------------------

async def test_fetches_the_bytes(srv: Server) -> None:
    got = await fetch_image(f"{srv.url}/img", _settings(srv.port), where=WHERE)
    assert got.data == PNG and got.content_type == "image/png"
    assert got.final_url == f"{srv.url}/img"


async def test_by_name_sends_the_name_as_host(srv: Server) -> None:
    # localhost resolves to 127.0.0.1 (and maybe ::1, where nothing listens: the next
    # checked address is tried); the connection goes to the IP, the Host header names
    # the host.
    settings = _settings(srv.port, allow_networks=("127.0.0.1/32", "::1/128"))
    got = await fetch_image(f"http://LocalHost.:{srv.port}/img", settings, where=WHERE)
    assert got.data == PNG
    assert srv.hosts == [f"localhost:{srv.port}"]


async def test_follows_allowed_redirects(srv: Server) -> None:
    settings = _settings(srv.port, max_redirects=2)
    got = await fetch_image(f"{srv.url}/hops/2", settings, where=WHERE)
    assert got.data == PNG and got.final_url == f"{srv.url}/hops/0"


async def test_given_client_is_used_without_its_cookies_or_headers(srv: Server) -> None:
    async with httpx.AsyncClient(trust_env=False, headers={"Authorization": "Bearer x"},
                                 cookies={"session": "s"}) as client:
        got = await fetch_image(f"{srv.url}/img", _settings(srv.port), where=WHERE,
                                client=client)
        assert got.data == PNG and not client.is_closed
    [headers] = srv.received
    assert "authorization" not in headers and "cookie" not in headers
    assert headers["user-agent"] == "modelmix"


# -- hosts and ports -----------------------------------------------------------------------

async def test_host_not_allowed(srv: Server) -> None:
    settings = _settings(srv.port, allow_hosts=("images.example.com",))
    err = await _refused(f"{srv.url}/img", settings)
    assert "'127.0.0.1'" in err.message and "allow_hosts" in err.message
    assert srv.hosts == []


async def test_port_needs_host_colon_port(srv: Server) -> None:
    # an entry without a port allows 80 and 443 only: not a service on another port
    settings = _settings(srv.port, allow_hosts=("127.0.0.1",))
    err = await _refused(f"{srv.url}/img", settings)
    assert f"port {srv.port}" in err.message


async def test_wildcard_matches_subdomains_only(srv: Server) -> None:
    settings = _settings(srv.port, allow_hosts=(f"*.example.test:{srv.port}",))
    resolver = _stub(["127.0.0.1"])
    got = await fetch_image(f"http://img.cdn.example.test:{srv.port}/img", settings,
                            where=WHERE, resolver=resolver)
    assert got.data == PNG and srv.hosts == [f"img.cdn.example.test:{srv.port}"]
    for url in (f"http://example.test:{srv.port}/img", f"http://badexample.test:{srv.port}/"):
        await _refused(url, settings, resolver=resolver)
    assert resolver.calls == ["img.cdn.example.test"]  # refused before resolving


@pytest.mark.parametrize("entry", ["a/b", "user@host", "*.127.0.0.1", "host:99999", "*",
                                   "host:"])
async def test_bad_allow_hosts_entry(srv: Server, entry: str) -> None:
    with pytest.raises(ConfigError, match="allow_hosts"):
        await fetch_image(f"{srv.url}/img", _settings(srv.port, allow_hosts=(entry,)),
                          where=WHERE)


async def test_bad_allow_networks_entry(srv: Server) -> None:
    with pytest.raises(ConfigError, match="allow_networks"):
        await fetch_image(f"{srv.url}/img", _settings(srv.port, allow_networks=("10.0.0/33",)),
                          where=WHERE)


# -- private addresses ---------------------------------------------------------------------

@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "2130706433", "0x7f.1",
                                  "017700000001", "127.1", "[::1]", "[::ffff:127.0.0.1]",
                                  "[::ffff:7f00:1]"])
async def test_loopback_refused_without_allow_networks(srv: Server, host: str) -> None:
    allowed = (f"localhost:{srv.port}", f"127.0.0.1:{srv.port}", f"[::1]:{srv.port}")
    settings = _settings(srv.port, allow_hosts=allowed, allow_networks=())
    err = await _refused(f"http://{host}:{srv.port}/img", settings)
    assert "non-public address" in err.message
    assert srv.hosts == []


@pytest.mark.parametrize("address", [
    "10.0.0.1", "172.16.5.4", "192.168.1.1", "100.64.0.1", "169.254.169.254", "0.0.0.0",
    "224.0.0.1", "240.0.0.1", "255.255.255.255", "192.0.0.9", "198.18.0.1", "::",
    "::1", "fe80::1", "fec0::1", "fd00::1", "ff02::1", "::ffff:10.0.0.1", "::127.0.0.1",
    "2002:a00:1::", "2002:7f00:1::", "2001:0:4136:e378:8000:63bf:f5ff:fffe",
    "64:ff9b::a00:1", "64:ff9b::7f00:1", "fe80::1%eth0",
])
async def test_names_resolving_to_private_addresses_refused(srv: Server, address: str) -> None:
    settings = _settings(srv.port, allow_hosts=("img.example.test",))
    err = await _refused("https://img.example.test/a.png", settings,
                         resolver=_stub([address]))
    assert "non-public address" in err.message and address not in err.message


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111",
                                     "2002:5db8:d70e::", "64:ff9b::808:808"])
def test_public_addresses(address: str) -> None:
    assert _is_public(ipaddress.ip_address(address))


async def test_metadata_endpoint_refused_even_inside_allow_networks(srv: Server) -> None:
    settings = _settings(srv.port, allow_hosts=("169.254.169.254",),
                         allow_networks=("169.254.0.0/16",))
    await _refused("http://169.254.169.254/latest/meta-data/", settings)


async def test_any_private_answer_refuses_the_name(srv: Server) -> None:
    # a public address first, a private one after: every answer must pass
    settings = _settings(srv.port, allow_hosts=(f"img.example.test:{srv.port}",))
    err = await _refused(f"http://img.example.test:{srv.port}/img", settings,
                         resolver=_stub(["93.184.215.14", "10.0.0.1"]))
    assert "non-public address" in err.message


async def test_dns_rebinding_is_pinned(srv: Server) -> None:
    # The first answer passes; a rebinding DNS server answers a private address from then
    # on. The fetch resolves once and connects to the address it checked.
    settings = _settings(srv.port, allow_hosts=(f"img.example.test:{srv.port}",))
    resolver = _stub(["127.0.0.1"], ["10.0.0.1"])
    got = await fetch_image(f"http://img.example.test:{srv.port}/img", settings,
                            where=WHERE, resolver=resolver)
    assert got.data == PNG and srv.hosts == [f"img.example.test:{srv.port}"]
    assert resolver.calls == ["img.example.test"]


async def test_unresolvable_host(srv: Server) -> None:
    settings = _settings(srv.port, allow_hosts=("nowhere.invalid",))
    err = await _refused("http://nowhere.invalid/a.png", settings)
    assert "could not be resolved" in err.message


# -- redirects -----------------------------------------------------------------------------

async def test_redirect_to_private_address_refused(srv: Server) -> None:
    # 127.0.0.2 is allowed as a host but is loopback outside allow_networks (127.0.0.1/32)
    settings = _settings(srv.port, allow_hosts=(f"127.0.0.1:{srv.port}",
                                                f"127.0.0.2:{srv.port}"))
    err = await _refused(f"{srv.url}/redirect?to=http://127.0.0.2:{srv.port}/img", settings)
    assert "redirected" in err.message and "non-public address" in err.message
    assert "127.0.0.2" not in err.message
    assert srv.hosts == []


async def test_redirect_to_host_not_allowed_refused(srv: Server) -> None:
    err = await _refused(f"{srv.url}/redirect?to=http://internal.corp:{srv.port}/img",
                         _settings(srv.port))
    assert "redirected" in err.message and "allow_hosts" in err.message
    assert "internal.corp" not in err.message


@pytest.mark.parametrize("to", ["ftp://127.0.0.1/x", "http://u:p@127.0.0.1:{port}/img"])
async def test_redirect_to_other_scheme_or_credentials_refused(srv: Server, to: str) -> None:
    err = await _refused(f"{srv.url}/redirect?to={to.format(port=srv.port)}",
                         _settings(srv.port))
    assert "redirected" in err.message


async def test_too_many_redirects(srv: Server) -> None:
    err = await _refused(f"{srv.url}/hops/3", _settings(srv.port, max_redirects=2))
    assert "more than 2" in err.message
    assert srv.hosts == []


async def test_redirects_off(srv: Server) -> None:
    err = await _refused(f"{srv.url}/hops/1", _settings(srv.port, max_redirects=0))
    assert "more than 0" in err.message


# -- size, status, time --------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/big", "/chunked"])
async def test_body_over_max_bytes(srv: Server, path: str) -> None:
    with pytest.raises(MediaTooLarge) as info:
        await fetch_image(f"{srv.url}{path}", _settings(srv.port, max_bytes=4096),
                          where=WHERE)
    assert info.value.status_code == 413 and info.value.param == WHERE
    assert "4096 bytes" in info.value.message


async def test_error_status_named_body_not_leaked(srv: Server) -> None:
    err = await _refused(f"{srv.url}/missing", _settings(srv.port))
    assert "HTTP 404" in err.message
    assert "secret" not in err.message and "10.1.2.3" not in err.message


async def test_compressed_body_refused(srv: Server) -> None:
    err = await _refused(f"{srv.url}/gzipped", _settings(srv.port))
    assert "compressed" in err.message


async def test_slow_server_times_out(srv: Server) -> None:
    started = time.monotonic()
    err = await _refused(f"{srv.url}/slow", _settings(srv.port, timeout_s=0.5))
    assert "did not answer within 0.5s" in err.message
    assert time.monotonic() - started < 2


async def test_nothing_listening(srv: Server) -> None:
    port = free_port()
    err = await _refused(f"http://127.0.0.1:{port}/img", _settings(port))
    assert "could not fetch" in err.message


# -- TLS: pinned to the IP, verified for the name ------------------------------------------

@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path


def _issue(tmp: Path, name: str) -> Tls:
    """A CA and a certificate it signs for ``name`` only (no IP in it)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelmix test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    tls = Tls(tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem")
    tls.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tls.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tls.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return tls


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Tls, Server]]:
    tls = _issue(tmp_path_factory.mktemp("tls"), "images.test")
    port = free_port()
    srv = Server(port)
    config = uvicorn.Config(_app(srv.received), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", access_log=False, http=http_protocol(), ws="none",
                            ssl_certfile=str(tls.cert), ssl_keyfile=str(tls.key))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "TLS server did not start"
        time.sleep(0.01)
    yield port, tls, srv
    server.should_exit = True
    thread.join(timeout=10)


def _tls_client(tls: Tls) -> httpx.AsyncClient:
    return httpx.AsyncClient(trust_env=False, verify=ssl.create_default_context(
        cafile=str(tls.ca)))


async def test_https_pinned_to_the_ip_verified_for_the_name(
        tls_server: tuple[int, Tls, Server]) -> None:
    # The certificate names images.test only; the connection goes to 127.0.0.1 (the
    # resolver's answer) with SNI images.test, and verification checks that name.
    port, tls, srv = tls_server
    srv.received.clear()
    settings = _settings(port, allow_hosts=(f"images.test:{port}",))
    async with _tls_client(tls) as client:
        got = await fetch_image(f"https://images.test:{port}/img", settings, where=WHERE,
                                client=client, resolver=_stub(["127.0.0.1"]))
    assert got.data == PNG and srv.hosts == [f"images.test:{port}"]


async def test_https_certificate_for_another_name_refused(
        tls_server: tuple[int, Tls, Server]) -> None:
    port, tls, srv = tls_server
    srv.received.clear()
    settings = _settings(port, allow_hosts=(f"other.test:{port}", f"127.0.0.1:{port}"))
    async with _tls_client(tls) as client:
        for url, resolver in ((f"https://other.test:{port}/img", _stub(["127.0.0.1"])),
                              (f"https://127.0.0.1:{port}/img", _stub([]))):
            err = await _refused(url, settings, client=client, resolver=resolver)
            assert "TLS verification failed" in err.message
    assert srv.received == []

