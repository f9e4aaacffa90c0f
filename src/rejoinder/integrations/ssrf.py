"""The SSRF guard: resolve a host once, refuse non-public addresses unless allowed, return those to use.

The caller connects to exactly the addresses returned here, never to the name again, so a DNS answer that
changes between the check and the connection (DNS rebinding) cannot smuggle a request into a private network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``await resolver(host, port)``: the host's IP addresses as strings; ``OSError`` when there are none."""

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_PRIVATE = tuple(
    ipaddress.ip_network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
_ALLOW_HINT = "(add the host to integrate.allow_hosts to allow it)"


class DestinationError(Exception):
    """The request may not (or cannot) go to this host. ``str()`` is a message fit for the bot's author."""

    retryable = False


class Refused(DestinationError):
    """The host is, or resolves to, an address the guard does not allow."""


class ResolutionFailed(DestinationError):
    """The host name could not be resolved."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the system resolver, off the event loop (``getaddrinfo`` runs in a thread)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _normalise_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


@dataclass(frozen=True)
class AllowList:
    """The exceptions from ``integrate.allow_hosts``: host names, and IP addresses or networks (CIDR)."""

    names: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """Parse allow_hosts entries; ``ValueError`` names the first entry that is none of the three."""
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            text = entry.strip()
            try:
                networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = _normalise_host(text)
            if not _HOSTNAME.match(name):
                raise ValueError(
                    f"integrate.allow_hosts: {entry!r} is not a host name, an IP address or a network "
                    "such as 10.0.0.0/8"
                )
            names.add(name)
        return cls(frozenset(names), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return _normalise_host(host) in self.names

    def allows_address(self, ip: IPAddress) -> bool:
        candidates = [ip] if (embedded := _embedded_ipv4(ip)) is None else [ip, embedded]
        return any(addr in net for addr in candidates for net in self.networks if addr.version == net.version)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches through (mapped, NAT64 or 6to4), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def _kind(ip: IPAddress) -> str | None:
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip in _CGNAT:
        return "a shared (carrier-grade NAT) address"
    if any(ip in net for net in _PRIVATE if net.version == ip.version) or (
        isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local
    ):
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "a special-purpose address"
    return None


def non_public_kind(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address (e.g. ``"a private address"``), or None when it is one."""
    embedded = _embedded_ipv4(ip)
    # Judged by the IPv4 address reached: DNS64 networks answer 64:ff9b::/96 addresses for every public name.
    return _kind(ip if embedded is None else embedded)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def check_destination(host: str, port: int, allow: AllowList, resolver: Resolver) -> tuple[str, ...]:
    """Resolve ``host`` and return its addresses, all checked; raise :class:`DestinationError` otherwise.

    Every address must be public, inside an allowed network, or belong to a host named in the allow list: one
    bad address refuses the host, since a later connection could pick any of them.
    """
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            answers = await resolver(host, port)
        except socket.gaierror as exc:
            raise ResolutionFailed(
                f"could not resolve {host}", retryable=exc.errno == socket.EAI_AGAIN
            ) from None
        except (OSError, UnicodeError):
            raise ResolutionFailed(f"could not resolve {host}") from None
        addresses = []
        for answer in answers:
            address = _literal(answer)
            if address is None:
                raise ResolutionFailed(f"could not resolve {host}: the resolver returned {answer!r}")
            addresses.append(address)
        if not addresses:
            raise ResolutionFailed(f"could not resolve {host}")

    if not allow.allows_host(host):
        for address in addresses:
            kind = non_public_kind(address)
            if kind is None or allow.allows_address(address):
                continue
            if literal is not None:
                raise Refused(f"{address} is {kind} {_ALLOW_HINT}")
            raise Refused(f"{host} resolves to {address}, {kind} {_ALLOW_HINT}")
    return tuple(dict.fromkeys(str(address) for address in addresses))
