"""What counts as one client: the key that quotas, failed resumes and open connections are counted under."""

from __future__ import annotations

import ipaddress


def client_key(ip: str | None) -> str:
    """An IPv4 address, or the /64 network of an IPv6 address (an IPv4-mapped one counts as its IPv4 address).

    One IPv6 subscriber is given a whole /64 (or more), so counting its addresses one by one would never stop it.
    """
    if not ip:
        return "-"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
