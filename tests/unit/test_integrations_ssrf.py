"""The SSRF guard on its own: which addresses it refuses, what allow_hosts allows, what resolving gives."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

import pytest

from rejoinder.integrations.ssrf import (
    AllowList,
    Refused,
    ResolutionFailed,
    check_destination,
    non_public_kind,
)


def stub(*answers: str) -> tuple[list[str], object]:
    """A resolver answering ``answers`` for any name, recording the names it was asked for."""
    asked: list[str] = []

    async def resolve(host: str, port: int) -> Sequence[str]:
        asked.append(host)
        return answers

    return asked, resolve


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.0.0.5", "a private address"),
        ("172.16.3.4", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fd12:3456::1", "a private address"),
        ("169.254.169.254", "a link-local address"),  # cloud metadata
        ("fe80::1", "a link-local address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("100.64.0.1", "a shared (carrier-grade NAT) address"),
        ("240.0.0.1", "a reserved address"),
        ("192.0.2.10", "a special-purpose address"),  # documentation range
        ("::ffff:10.0.0.5", "a private address"),  # IPv4-mapped
        ("::ffff:127.0.0.1", "a loopback address"),
        ("64:ff9b::a9fe:a9fe", "a link-local address"),  # NAT64 of 169.254.169.254
        ("2002:a00:5::1", "a private address"),  # 6to4 of 10.0.0.5
    ],
)
def test_non_public_addresses_are_named(address: str, kind: str) -> None:
    assert non_public_kind(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_pass(address: str) -> None:
    assert non_public_kind(ipaddress.ip_address(address)) is None


async def test_a_name_resolving_to_a_private_address_is_refused_with_a_clear_reason() -> None:
    asked, resolver = stub("10.0.0.5")
    with pytest.raises(Refused) as refused:
        await check_destination("api.shop.example", 443, AllowList(), resolver)  # type: ignore[arg-type]
    assert str(refused.value) == (
        "api.shop.example resolves to 10.0.0.5, a private address "
        "(add the host to integrate.allow_hosts to allow it)"
    )
    assert asked == ["api.shop.example"]


async def test_one_bad_address_among_good_ones_refuses_the_host() -> None:
    _, resolver = stub("93.184.216.34", "127.0.0.1")
    with pytest.raises(Refused, match="loopback"):
        await check_destination("mixed.example", 80, AllowList(), resolver)  # type: ignore[arg-type]


async def test_ip_literals_are_checked_without_asking_the_resolver() -> None:
    asked, resolver = stub("93.184.216.34")
    with pytest.raises(Refused) as refused:
        await check_destination("10.0.0.5", 80, AllowList(), resolver)  # type: ignore[arg-type]
    assert str(refused.value) == (
        "10.0.0.5 is a private address (add the host to integrate.allow_hosts to allow it)"
    )
    assert asked == []


async def test_public_answers_come_back_in_order_without_duplicates() -> None:
    _, resolver = stub("93.184.216.34", "2606:4700:4700::1111", "93.184.216.34")
    addresses = await check_destination("example.com", 443, AllowList(), resolver)  # type: ignore[arg-type]
    assert addresses == ("93.184.216.34", "2606:4700:4700::1111")


async def test_allow_hosts_by_name_by_address_and_by_network() -> None:
    _, private = stub("10.1.2.3")
    by_name = AllowList.parse(["Backend.Internal."])
    assert await check_destination("backend.internal", 80, by_name, private) == ("10.1.2.3",)  # type: ignore[arg-type]
    with pytest.raises(Refused):
        await check_destination("other.internal", 80, by_name, private)  # type: ignore[arg-type]

    by_network = AllowList.parse(["10.1.0.0/16"])
    assert await check_destination("anything.internal", 80, by_network, private) == ("10.1.2.3",)  # type: ignore[arg-type]
    with pytest.raises(Refused):
        await check_destination("10.2.0.1", 80, by_network, private)  # type: ignore[arg-type]

    by_address = AllowList.parse(["127.0.0.1"])
    assert await check_destination("127.0.0.1", 80, by_address, private) == ("127.0.0.1",)  # type: ignore[arg-type]
    with pytest.raises(Refused):
        await check_destination("127.0.0.2", 80, by_address, private)  # type: ignore[arg-type]


async def test_an_allowed_ipv4_address_also_allows_its_mapped_ipv6_form() -> None:
    _, resolver = stub("::ffff:127.0.0.1")
    allow = AllowList.parse(["127.0.0.1"])
    addresses = await check_destination("local.test", 80, allow, resolver)  # type: ignore[arg-type]
    assert [ipaddress.ip_address(a) for a in addresses] == [ipaddress.ip_address("::ffff:127.0.0.1")]


@pytest.mark.parametrize("entry", ["http://example.com", "exa mple.com", "10.0.0.0/33", ""])
def test_bad_allow_hosts_entries_are_rejected_by_name(entry: str) -> None:
    with pytest.raises(ValueError, match=r"integrate\.allow_hosts"):
        AllowList.parse([entry])


async def test_resolution_failures_are_reported_and_only_temporary_ones_retryable() -> None:
    async def unknown(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def flaky(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    async def empty(host: str, port: int) -> Sequence[str]:
        return []

    with pytest.raises(ResolutionFailed, match=r"^could not resolve nowhere\.example$") as failed:
        await check_destination("nowhere.example", 80, AllowList(), unknown)
    assert not failed.value.retryable
    with pytest.raises(ResolutionFailed) as failed:
        await check_destination("nowhere.example", 80, AllowList(), flaky)
    assert failed.value.retryable
    with pytest.raises(ResolutionFailed):
        await check_destination("nowhere.example", 80, AllowList(), empty)
