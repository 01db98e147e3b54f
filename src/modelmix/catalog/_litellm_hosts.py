"""Whether a LiteLLM ``api_base`` is on this machine or a private network (docs/litellm.md).

The data guard trusts ``hosting: self-hosted``: a request a policy keeps off the cloud
may go there. So the answer is "private" only when the host certainly is: an IP literal
in loopback, RFC 1918, link-local or unique-local space (in any form a resolver accepts:
``127.1``, ``0x7f000001``, ``[::1]``), ``localhost``, a single-label name that is not a
number, or a name under ``.local``, ``.internal``, ``.lan``, ``.svc``. Everything else,
including a number no resolver reads as an address, is public.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

__all__ = ["private_host"]

_PRIVATE_V4 = tuple(ipaddress.IPv4Network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16"))
_PRIVATE_V6 = tuple(ipaddress.IPv6Network(n) for n in ("::1/128", "fe80::/10", "fc00::/7"))
_PRIVATE_SUFFIXES = (".local", ".internal", ".lan", ".svc")
#: A host made of digits, hex numbers and dots: an address or nothing, never a name.
_NUMERIC = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*$")


def private_host(url: str) -> bool:
    """Whether ``url``'s host is this machine or a private network (not a cloud API);
    False for a URL that does not parse."""
    try:
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
    except ValueError:
        return False
    if not host:
        return False
    address = _address(host)
    if address is not None:
        return _private_address(address)
    if _NUMERIC.match(host):
        return False  # a number no resolver reads as an address: unknown, so public
    return host == "localhost" or "." not in host or host.endswith(_PRIVATE_SUFFIXES)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an IP address, in the forms URL clients resolve (dotted, short
    ``127.1``, decimal ``2130706433``, hex, IPv6), else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not _NUMERIC.match(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _private_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return _private_address(address.ipv4_mapped)
        return any(address in net for net in _PRIVATE_V6)
    return any(address in net for net in _PRIVATE_V4)
