"""Fetching ``http(s)`` image URLs without becoming a server-side request forgery tool.

The gateway reads every image itself (the data guard OCRs it before anything leaves),
so an ``image_url`` that is a URL is fetched here and its *bytes* are forwarded, never
the URL. Each hop of a fetch is checked before a socket is opened:

1. the scheme is ``http`` or ``https`` and the URL carries no ``user:password@``;
2. the host is in ``media.fetch.allow_hosts`` (``example.com`` exactly, ``*.example.com``
   for its sub-domains only) on an allowed port: an entry without a port allows the web
   ports 80 and 443, ``host:8443`` allows that port;
3. every address the name resolves to (A and AAAA, one ``getaddrinfo``) is public:
   not loopback, private, shared (100.64/10), link-local, site-local, multicast,
   reserved, unspecified, documentation, nor an IPv6 form embedding such an IPv4
   (mapped ``::ffff:``, compatible ``::a.b.c.d``, 6to4, Teredo, NAT64), unless it lies
   in ``media.fetch.allow_networks``. Literal IPs, decimal, octal and hex ones included
   (``http://2130706433/``, ``http://0x7f.1/``), are read as ``inet_aton`` reads them and
   checked the same way. Cloud metadata endpoints, unspecified, multicast and broadcast
   addresses are refused even inside ``allow_networks``;
4. the connection goes to the address that was checked (pinned): the request URL names
   the IP, the ``Host`` header and the TLS SNI name the host, and the certificate is
   verified against the host name, so a second DNS answer (rebinding) is never used.

Redirects are followed by hand, at most ``max_redirects``, each hop checked again.
``timeout_s`` bounds the whole fetch; the body is counted as it streams and cut at
``max_bytes`` (413). Cookies, proxies from the environment and compressed bodies are not
used. Errors name the part (``param``) and the reason, never a response body nor where
a redirect pointed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import httpx

from modelmix.catalog import MediaFetchSettings
from modelmix.errors import ConfigError, InvalidMedia, MediaTooLarge

__all__ = ["Fetched", "Resolver", "fetch_image", "resolve_host"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Resolves ``(host, port)`` to IP address strings (all of them: A and AAAA).
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

USER_AGENT = "modelmix"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_WEB_PORTS = frozenset({80, 443})
_NUMERIC_HOST = re.compile(r"[0-9a-fx.]+")
_HOST_ENTRY = re.compile(r"(?P<host>\[[0-9a-f:.]+\]|[^:/\[\]@?#\s]+)(?::(?P<port>[0-9]{1,5}))?")


def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# Not public, whatever this Python's ipaddress tables say (they changed across 3.11-3.13:
# 3.11 calls 224.0.0.1 and fec0::1 "global"). IANA special-purpose registries.
_NOT_PUBLIC = _nets(
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/96", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
    "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
)
# Never fetched, even inside allow_networks: cloud instance metadata (AWS, GCP, Azure,
# ECS, Alibaba), "this host" and multicast/broadcast.
_NEVER = _nets(
    "169.254.169.254/32", "169.254.170.2/32", "100.100.100.200/32", "fd00:ec2::254/128",
    "0.0.0.0/8", "224.0.0.0/4", "255.255.255.255/32", "::/128", "ff00::/8",
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True, slots=True)
class Fetched:
    """An image fetched from a URL.

    Attributes:
        data: the body, as sent (no content decoding).
        content_type: the ``Content-Type`` the server declared, if any (a hint only:
            the media layer goes by the bytes).
        final_url: the URL the bytes came from, after redirects.
    """

    data: bytes
    content_type: str | None
    final_url: str


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (A and AAAA), in the resolver's order."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def fetch_image(url: str, settings: MediaFetchSettings, *, where: str,
                      client: httpx.AsyncClient | None = None,
                      resolver: Resolver = resolve_host) -> Fetched:
    """Fetch the image at ``url`` if ``settings`` allow it (see the module docstring).

    Args:
        url: the ``image_url.url`` the caller sent.
        settings: ``media.fetch``.
        where: the part's path (``messages.0.content.1``): every error's ``param`` and
            the start of its message.
        client: a client to send with (its pool and TLS settings; its cookies, auth and
            default headers are not used). Give one dedicated to fetching, made with
            ``trust_env=False``. By default a fresh one per fetch.
        resolver: name resolution (tests substitute it); one call per hop.

    Raises:
        InvalidMedia: fetching is off, or the URL, a redirect, an address, the status,
            the connection or the time taken is refused (400).
        MediaTooLarge: the body is over ``settings.max_bytes`` (413).

    Example::

        fetched = await fetch_image("https://img.example.com/a.png", settings.media.fetch,
                                    where="messages.0.content.1")
    """
    if not settings.enabled:
        raise _refused(where, "image URLs are not fetched by this gateway; "
                              "send the image as a base64 data URL")
    rules = _Rules.of(settings)
    fetch = _Fetch(rules, settings, where, resolver)
    try:
        async with asyncio.timeout(settings.timeout_s), _client(client, settings) as http:
            return await fetch.run(http, url)
    except TimeoutError:
        raise _refused(where, f"the image URL did not answer within "
                              f"{settings.timeout_s:g}s") from None


@contextlib.asynccontextmanager
async def _client(given: httpx.AsyncClient | None,
                  settings: MediaFetchSettings) -> AsyncIterator[httpx.AsyncClient]:
    if given is not None:
        yield given
        return
    async with httpx.AsyncClient(trust_env=False, follow_redirects=False,
                                 timeout=settings.timeout_s) as http:
        yield http


def _refused(where: str, reason: str) -> InvalidMedia:
    return InvalidMedia(f"{where}: {reason}", param=where)


@dataclass(frozen=True, slots=True)
class _HostRule:
    """One ``allow_hosts`` entry: a host (or ``*.`` suffix) and the port it allows."""

    host: str
    wildcard: bool
    port: int | None

    @classmethod
    def parse(cls, entry: str) -> _HostRule:
        match = _HOST_ENTRY.fullmatch(entry.strip().lower())
        name = match["host"] if match else ""
        wildcard = name.startswith("*.")
        try:
            url = httpx.URL(f"http://{name[2:] if wildcard else name}/")
        except httpx.InvalidURL:
            url = httpx.URL("http:///")
        port = int(match["port"]) if match and match["port"] else None
        if not url.raw_host or "*" in url.host or not 0 < (port or 80) < 65536:
            raise ConfigError(f"media.fetch.allow_hosts: {entry!r} is not a host, "
                              "*.domain or host:port")
        host, literal = _canonical_host(url)
        if wildcard and literal is not None:
            raise ConfigError(f"media.fetch.allow_hosts: {entry!r}: '*.' needs a name")
        return cls(host, wildcard, port)

    def allows(self, host: str, port: int) -> bool:
        if port not in (_WEB_PORTS if self.port is None else (self.port,)):
            return False
        return host.endswith("." + self.host) if self.wildcard else host == self.host


@dataclass(frozen=True, slots=True)
class _Rules:
    hosts: tuple[_HostRule, ...]
    networks: tuple[IPNetwork, ...]

    @classmethod
    def of(cls, settings: MediaFetchSettings) -> _Rules:
        try:
            networks = tuple(ipaddress.ip_network(cidr.strip(), strict=False)
                             for cidr in settings.allow_networks)
        except ValueError as exc:
            raise ConfigError(f"media.fetch.allow_networks: {exc}") from None
        return cls(tuple(_HostRule.parse(entry) for entry in settings.allow_hosts), networks)

    def allows_host(self, host: str, port: int) -> bool:
        return any(rule.allows(host, port) for rule in self.hosts)

    def allows_address(self, ip: IPAddress) -> bool:
        if _in(ip, _NEVER):
            return False
        return _in(ip, self.networks) or _is_public(ip)


def _in(ip: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(ip in network for network in networks)


def _is_public(ip: IPAddress) -> bool:
    """Whether ``ip`` is a public unicast address, IPv4 embedded in IPv6 included."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return _is_public(ip.ipv4_mapped)
        if ip in _NAT64:  # DNS64 on an IPv6-only network: the IPv4 address decides
            return _is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if _in(ip, _NOT_PUBLIC) or not ip.is_global or ip.is_multicast or ip.is_reserved:
        return False
    return all(_is_public(v4) for v4 in _tunnelled_v4(ip))


def _tunnelled_v4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 one tunnels to (6to4; Teredo's server and client)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return []
    found = [ip.sixtofour] if ip.sixtofour else []
    return found + list(ip.teredo or ())


def _ip_literal(host: str) -> IPAddress | None:
    """``host`` as an IP address if it is one, in any form ``inet_aton`` accepts
    (``2130706433``, ``0x7f.1``, ``0177.0.0.1``), IPv4-mapped IPv6 as IPv4."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if not _NUMERIC_HOST.fullmatch(host):
            return None
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _canonical_host(url: httpx.URL) -> tuple[str, IPAddress | None]:
    """The host as matched, resolved and sent: lower-case IDNA without a final dot,
    or the IP in its standard form."""
    host = url.raw_host.decode("ascii").lower()
    host = host[:-1] if host.endswith(".") else host
    literal = _ip_literal(host)
    return (str(literal) if literal is not None else host), literal


@dataclass(frozen=True, slots=True)
class _Target:
    """One hop: the URL as given and where it goes."""

    url: httpx.URL
    host: str
    port: int
    literal: IPAddress | None

    @classmethod
    def of(cls, url: httpx.URL) -> _Target:
        host, literal = _canonical_host(url)
        return cls(url, host, url.port or _DEFAULT_PORTS[url.scheme], literal)

    def request(self, ip: IPAddress, timeout_s: float) -> httpx.Request:
        """A GET to ``ip`` that names the host (Host header, TLS SNI and certificate)."""
        name = f"[{self.host}]" if ":" in self.host else self.host
        extensions: dict[str, object] = {"timeout": httpx.Timeout(timeout_s).as_dict()}
        if self.url.scheme == "https" and self.literal is None:
            extensions["sni_hostname"] = self.host
        headers = {
            "Host": name if self.url.port is None else f"{name}:{self.port}",
            "User-Agent": USER_AGENT,
            "Accept": "image/*",
            "Accept-Encoding": "identity",
            "Connection": "close",  # no connection (verified for one name) serves another
        }
        return httpx.Request("GET", self.url.copy_with(host=str(ip)), headers=headers,
                             extensions=extensions)


class _Fetch:
    """One fetch: its rules and the part it is for; ``run`` follows the hops."""

    def __init__(self, rules: _Rules, settings: MediaFetchSettings, where: str,
                 resolver: Resolver) -> None:
        self.rules = rules
        self.settings = settings
        self.where = where
        self.resolver = resolver

    async def run(self, http: httpx.AsyncClient, url: str) -> Fetched:
        try:
            current = httpx.URL(url)
        except httpx.InvalidURL:
            raise _refused(self.where, "the image URL is not a valid URL") from None
        for hop in range(self.settings.max_redirects + 1):
            target = self.check(current, redirected=hop > 0)
            addresses = await self.addresses(target, redirected=hop > 0)
            response = await self.send(http, target, addresses)
            try:
                if response.status_code not in _REDIRECTS:
                    return await self.read(response, current)
                current = self.location(response, current)
            finally:
                await response.aclose()
        raise _refused(self.where, f"the image URL redirected more than "
                                   f"{self.settings.max_redirects} times")

    def check(self, url: httpx.URL, *, redirected: bool) -> _Target:
        """Scheme, credentials, host and port; a redirect's target is not named."""
        if url.scheme not in _DEFAULT_PORTS:
            raise self.refused(redirected, "is not http or https; only those are fetched")
        if url.userinfo:
            raise self.refused(redirected, "carries credentials (user:password@), "
                                           "which are not sent")
        target = _Target.of(url)
        if not self.rules.allows_host(target.host, target.port):
            if redirected:
                raise self.refused(True, "is on a host or port not in "
                                         "media.fetch.allow_hosts")
            raise _refused(self.where, f"image URL host {target.host[:100]!r} (port "
                                       f"{target.port}) is not in media.fetch.allow_hosts")
        return target

    async def addresses(self, target: _Target, *, redirected: bool) -> list[IPAddress]:
        """The target's addresses, resolved once, every one of them allowed."""
        found = [target.literal] if target.literal is not None else \
            await self.resolve(target)
        if not all(self.rules.allows_address(ip) for ip in found):
            raise self.refused(redirected, "is on a non-public address (loopback, private, "
                                           "link-local or reserved), which is not fetched")
        return found

    def refused(self, redirected: bool, reason: str) -> InvalidMedia:
        """A refusal of the URL, or of where it redirected (not named: the server chose
        it, and it may be an internal name)."""
        url = "the URL the image URL redirected to" if redirected else "the image URL"
        return _refused(self.where, f"{url} {reason}")

    async def resolve(self, target: _Target) -> list[IPAddress]:
        try:
            answers = await self.resolver(target.host, target.port)
            found = [_ip_literal(str(answer).split("%")[0]) for answer in answers]
        except (OSError, UnicodeError):
            found = []
        if not found or any(ip is None for ip in found):
            raise _refused(self.where, "the image URL's host could not be resolved")
        return list(dict.fromkeys(ip for ip in found if ip is not None))

    async def send(self, http: httpx.AsyncClient, target: _Target,
                   addresses: list[IPAddress]) -> httpx.Response:
        """Connect to the checked addresses in turn (a refused connection tries the
        next); nothing is sent before the connection is up, so a retry is safe."""
        for ip in addresses:
            request = target.request(ip, self.settings.timeout_s)
            try:
                return await http.send(request, stream=True, follow_redirects=False,
                                       auth=None)
            except httpx.ConnectError:
                continue
            except httpx.TimeoutException:
                raise TimeoutError from None
            except httpx.HTTPError:
                break
        raise _refused(self.where, "could not fetch the image URL (connection refused, "
                                   "reset, or TLS verification failed)")

    def location(self, response: httpx.Response, url: httpx.URL) -> httpx.URL:
        location = response.headers.get("location")
        if not location:
            raise _refused(self.where, f"the image URL answered HTTP {response.status_code} "
                                       "without a Location")
        try:
            return url.join(location)
        except httpx.InvalidURL:
            raise _refused(self.where, "the image URL redirected to an invalid URL") from None

    async def read(self, response: httpx.Response, url: httpx.URL) -> Fetched:
        """The body, counted as it streams; refused over ``max_bytes``."""
        if not response.is_success:
            raise _refused(self.where, f"the image URL answered HTTP {response.status_code}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise _refused(self.where, "the image URL answered with a compressed body "
                                       f"({encoding[:20]}), which is not decoded")
        limit = self.settings.max_bytes
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > limit:
            raise self.too_large()
        body = bytearray()
        try:
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > limit:
                    raise self.too_large()
        except httpx.TimeoutException:
            raise TimeoutError from None
        except httpx.HTTPError:
            raise _refused(self.where, "the image URL's connection broke while reading "
                                       "the body") from None
        return Fetched(bytes(body), response.headers.get("content-type"), str(url))

    def too_large(self) -> MediaTooLarge:
        return MediaTooLarge(f"{self.where}: the image at the URL is larger than "
                             f"media.fetch.max_bytes ({self.settings.max_bytes} bytes)",
                             param=self.where)
