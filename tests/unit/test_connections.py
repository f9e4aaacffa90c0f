"""Counting connections per client address, as the server's protocols do."""

from __future__ import annotations

import asyncio

import pytest

from rejoinder.server.addresses import client_key
from rejoinder.server.connections import PeerConnections
from rejoinder.server.socket_quota import SocketQuota


class FakeTransport(asyncio.BaseTransport):
    pass


@pytest.mark.parametrize(
    ("host", "counted_as"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("unix-socket", "unix-socket"),
    ],
)
def test_a_client_is_an_ipv4_address_or_an_ipv6_64(host: str, counted_as: str) -> None:
    assert client_key(host) == counted_as


def test_a_peer_holds_at_most_its_limit_and_a_closed_connection_frees_its_place() -> None:
    peers = PeerConnections(2, "10.0.0.1")
    first, second, third = FakeTransport(), FakeTransport(), FakeTransport()
    assert peers.open(first, "203.0.113.7")
    assert peers.open(second, "203.0.113.7")
    assert not peers.open(third, "203.0.113.7")
    assert peers.open(third, "203.0.113.8")  # another client
    # Addresses of one IPv6 /64 are one client.
    assert peers.open(FakeTransport(), "2001:db8::1") and peers.open(FakeTransport(), "2001:db8::2")
    assert not peers.open(FakeTransport(), "2001:db8::3")

    peers.close(first)
    peers.close(first)  # counted once, forgotten once
    peers.close(FakeTransport())  # never counted
    assert peers.held("203.0.113.7") == 1
    assert peers.open(FakeTransport(), "203.0.113.7")


def test_a_trusted_proxy_is_not_capped() -> None:
    peers = PeerConnections(1, "10.0.0.0/8")
    assert all(peers.open(FakeTransport(), "10.1.2.3") for _ in range(5))
    assert peers.held("10.1.2.3") == 0


def test_socket_quota_counts_addresses_and_sessions_apart() -> None:
    quota = SocketQuota(per_ip=2, per_session=1)
    assert quota.take_ip("a") and quota.take_ip("a") and not quota.take_ip("a")
    assert quota.take_session("s") and not quota.take_session("s")
    quota.give_back_ip("a")
    quota.give_back_session("s")
    assert quota.held(ip="a") == 1 and quota.held(session_id="s") == 0
    assert quota.take_session("s")
