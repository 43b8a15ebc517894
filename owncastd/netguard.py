"""Who the client is, and where we may connect to: pure address rules, no I/O but DNS.

- `ProxyRule`: X-Forwarded-For is believed only from a configured trusted proxy; otherwise the
  peer address is the client. Used by the login throttle, the per-address limits, chat and the
  viewer statistics.
- `check_outbound`: with `http.deny_private_addresses` on, an outbound URL (webhook, S3
  endpoint, directory) whose host resolves to a loopback, private, link-local (169.254.x.x:
  cloud metadata), multicast, reserved or unspecified address is refused. Checked after DNS
  resolution, so a public name pointing at 127.0.0.1 is refused too.
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Iterable
from urllib.parse import urlsplit


def parse_networks(values: Iterable[str]) -> list:
    """Addresses or CIDR networks; raises ValueError naming the bad entry."""
    out = []
    for value in values:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not an address or network")
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or CIDR network") from None
    return out


def networks_problem(values) -> str | None:
    """A config `check`: None when every entry is an address or network."""
    try:
        parse_networks(values)
    except ValueError as exc:
        return str(exc)
    return None


def _address(text: str):
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


class ProxyRule:
    """Which peers are trusted reverse proxies, and so whose X-Forwarded-For counts."""

    def __init__(self, trusted: Iterable[str] = ()):
        self.networks = parse_networks(trusted)

    def is_trusted(self, peer: str) -> bool:
        address = _address(peer or "")
        if address is None or not self.networks:
            return False
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in self.networks)

    def client_address(self, peer: str, forwarded_for: str | None) -> str:
        """The client: the peer, or, when the peer is a trusted proxy, the nearest address in
        X-Forwarded-For that is not itself a trusted proxy (the proxies append on the right)."""
        if not forwarded_for or not self.is_trusted(peer):
            return peer
        for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
            if _address(hop) is None:
                return peer   # garbage in the header: fall back to what we know
            if not self.is_trusted(hop):
                return hop
        return peer


class OutboundRefused(ValueError):
    """An outbound URL points somewhere `deny_private_addresses` forbids (or cannot resolve)."""


def is_private(address) -> bool:
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def check_outbound(url: str, resolve=socket.getaddrinfo) -> None:
    """Raise OutboundRefused when `url`'s host resolves to any non-public address."""
    host = urlsplit(url).hostname
    if not host:
        raise OutboundRefused("URL has no host")
    literal = _address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = resolve(host, None, 0, socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise OutboundRefused(f"cannot resolve {host}: {exc}") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:
        if is_private(address):
            raise OutboundRefused(
                f"{host} resolves to {address}, a loopback/private/link-local address, and "
                f"http.deny_private_addresses is on")


def redact_url(url: str) -> str:
    """`url` with any password in it replaced, for logs (issue 19.14)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


def delivery_failure(exc: BaseException) -> str:
    """One message for every way a connection can fail (refused, reset, timed out, no route):
    the logs must not tell an open port from a closed one (issue 19.9)."""
    if isinstance(exc, OutboundRefused):
        return str(exc)
    return "no HTTP answer (connection failed or timed out)"


def opener_without_redirects():
    """A urllib opener that treats a redirect as the final answer: an outbound URL is used as
    configured, never somewhere a server points it to."""
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            return None

    return urllib.request.build_opener(NoRedirect)
