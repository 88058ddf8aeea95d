"""The public-address rule of `connectors.outbound`: what a tenant-chosen destination may resolve to."""

from __future__ import annotations

import ipaddress

import pytest

from connectors.outbound import ANY_ADDRESS, PUBLIC, AddressNotAllowed, Outbound, is_public


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.0.0.2",
        "10.0.0.5",
        "172.16.3.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a00:1::",  # 6to4 of 10.0.0.1
    ],
)
def test_internal_and_reserved_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))
    assert not PUBLIC.permits(ipaddress.ip_address(address))
    assert ANY_ADDRESS.permits(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.215.14", "2606:4700:4700::1111", "64:ff9b::808:808"])
def test_global_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_one_internal_answer_among_public_ones_refuses_the_name() -> None:
    answers = [ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("10.0.0.7")]
    outbound = Outbound(resolver=lambda host, port: answers)
    with pytest.raises(AddressNotAllowed):
        outbound.addresses("storage.example", 443)
    assert outbound.trusting().addresses("storage.example", 443) == answers
    assert Outbound.for_tenants(allow_private=True).rule is ANY_ADDRESS
