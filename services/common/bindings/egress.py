"""Where a tenant's binding may make the platform connect to (SSRF defence).

An endpoint is accepted when its host is on the backend's provider host list (e.g.
`*.blob.core.windows.net`) and every address it resolves to is global, or when the operator's
egress allow-list (MAKOTO_EGRESS_ALLOW; the local emulators and simulator in development) names
it. Loopback, link-local (169.254.0.0/16 with the cloud metadata service, fe80::/10), private
(RFC 1918, fc00::/7, 100.64.0.0/10), unspecified (0.0.0.0, ::), multicast and reserved addresses
are refused, and so are non-canonical IPv4 spellings (2130706433, 0177.0.0.1, 0x7f.1) that
resolvers quietly read as loopback.

TenantService checks at bind time (INVALID_ARGUMENT); the adapters check again when they build
a client (FAILED_PRECONDITION), because DNS may answer differently by then (rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Seconds a bind-time or build-time lookup may take before the host counts as unresolvable.
RESOLVE_TIMEOUT_SECONDS = 5.0
_DEFAULT_PORTS = {"http": 80, "https": 443, "postgres": 5432, "postgresql": 5432}
# Labels a resolver may read as a number: decimal, octal (leading 0) or hex (0x...).
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class EgressRefused(ValueError):
    """The endpoint may not be contacted; the message says why (never a secret)."""


@dataclass(frozen=True)
class AllowEntry:
    """One allow-list entry: a host name or IP (optionally with a port), or an IP network."""

    host: str | None = None
    network: IPNetwork | None = None
    port: int | None = None

    def names(self, host: str, port: int) -> bool:
        return self.host == host and self.port in (None, port)

    def covers(self, address: IPAddress, port: int) -> bool:
        return self.network is not None and address in self.network and self.port in (None, port)


def parse_allow(entries: Iterable[str]) -> tuple[AllowEntry, ...]:
    """`host`, `host:port`, `[v6]:port`, `ip`, `ip:port` or `cidr` (e.g. 10.0.0.0/16)."""
    out: list[AllowEntry] = []
    for raw in entries:
        text = raw.strip().lower()
        if not text:
            continue
        if "/" in text:
            out.append(AllowEntry(network=ipaddress.ip_network(text, strict=False)))
            continue
        host, port = _split_host_port(text)
        try:
            address = _ip(host)
        except ValueError:
            out.append(AllowEntry(host=host, port=port))
        else:
            out.append(AllowEntry(network=ipaddress.ip_network(address), port=port))
    return tuple(out)


def _split_host_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, None  # a name, an IPv4 address or a bare IPv6 address


def _ip(host: str) -> IPAddress:
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address


def inside_kind(address: IPAddress) -> str | None:
    """Why an address is not a public one, or None when it is."""
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local (cloud metadata)"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "non-global"
    return None


def endpoint_host_port(endpoint: str) -> tuple[str, int]:
    """(host, port) of a URL or of `host[:port]`; EgressRefused when there is no usable host."""
    text = endpoint if "://" in endpoint else f"postgresql://{endpoint}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise EgressRefused("is not a URL with a valid host and port") from None
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise EgressRefused("has no host")
    return host, port or _DEFAULT_PORTS.get(parts.scheme, 443)


def _non_canonical_ip(host: str) -> bool:
    """True for hosts a resolver reads as an IPv4 address but that are not dotted-quad decimal."""
    labels = host.split(".")
    if not all(_NUMERIC_LABEL.match(label) for label in labels):
        return False
    try:
        ipaddress.IPv4Address(host)  # canonical dotted quad (leading zeros are refused)
    except ValueError:
        return True
    return False


def host_matches(host: str, patterns: Sequence[str]) -> bool:
    """`api.openai.com` matches itself; `*.blob.core.windows.net` matches any subdomain."""
    for pattern in patterns:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


class EgressPolicy:
    """The allow-list plus the checks. `resolver` (host, port) -> addresses replaces the
    system resolver, so tests can play a DNS server whose answers change (rebinding)."""

    def __init__(
        self,
        allow: Iterable[str] = (),
        *,
        resolve_timeout: float = RESOLVE_TIMEOUT_SECONDS,
        resolver: Callable[[str, int], Awaitable[list[str]]] | None = None,
    ) -> None:
        self.allow = parse_allow(allow)
        self._timeout = resolve_timeout
        self._resolver = resolver

    def __repr__(self) -> str:
        return f"EgressPolicy(allow={len(self.allow)} entries)"

    async def check(self, endpoint: str, hosts: Sequence[str]) -> None:
        """Raise EgressRefused unless `endpoint` may be contacted. `hosts` is the provider host
        list ((): any public host, e.g. a self-hosted PostgreSQL)."""
        host, port = endpoint_host_port(endpoint.strip().lower())
        if _non_canonical_ip(host):
            raise EgressRefused("is a non-canonical IP address form (decimal, octal or hex)")
        if any(entry.names(host, port) for entry in self.allow):
            return
        try:
            literal: IPAddress | None = _ip(host.split("%", 1)[0])
        except ValueError:
            literal = None
        if literal is not None:
            if any(entry.covers(literal, port) for entry in self.allow):
                return  # the allow-list is the one exception to the provider host lists
            self._check_address(literal, port)
            if hosts:
                raise EgressRefused(f"must name a host of {', '.join(hosts)}, not an IP address")
            return
        if hosts and not host_matches(host, hosts):
            raise EgressRefused(f"must be a host of {', '.join(hosts)}")
        addresses = await self._resolve(host, port)
        if addresses is None:
            if hosts:
                # A name under the provider's own domain that does not resolve here cannot be
                # reached either; the adapter checks again before it connects.
                return
            raise EgressRefused("does not resolve")
        for address in addresses:
            self._check_address(address, port)

    def _check_address(self, address: IPAddress, port: int) -> None:
        kind = inside_kind(address)
        if kind is None or any(entry.covers(address, port) for entry in self.allow):
            return
        raise EgressRefused(f"points inside the platform ({kind} address)")

    async def _resolve(self, host: str, port: int) -> list[IPAddress] | None:
        try:
            raws = await asyncio.wait_for(self._lookup(host, port), self._timeout)
        except (OSError, TimeoutError, UnicodeError):
            return None
        out: list[IPAddress] = []
        for raw_address in raws:
            raw = raw_address.split("%", 1)[0]
            try:
                out.append(_ip(raw))
            except ValueError:
                continue
        return out or None

    async def _lookup(self, host: str, port: int) -> list[str]:
        if self._resolver is not None:
            return await self._resolver(host, port)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [str(info[4][0]) for info in infos]
