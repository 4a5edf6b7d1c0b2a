"""The outbound network guard, in-process: which addresses imports and webhooks may reach, and that the
address checked is the address connected to. No test here opens a connection to any address."""
import socket

import pytest

from services.outbound import GuardedResolver, NetworkPolicy, OutboundClient, OutboundRefused, parse_networks

# Data only, never connected to: an address outside every special-purpose range.
PUBLIC = "93.184.216.34"


def policy(allowed="", denied=""):
    return NetworkPolicy.from_settings({"outbound_allowed_networks": allowed, "outbound_denied_networks": denied})


# Data only, never connected to: addresses the guard must refuse by default.
@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.0.0.2", "::1", "0.0.0.0", "169.254.169.254", "169.254.1.1", "fe80::1", "10.1.2.3",
    "172.16.0.1", "192.168.1.1", "100.64.0.1", "100.100.100.200", "fd00:ec2::254", "fc00::1", "224.0.0.1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "192.0.2.1", "255.255.255.255",
])
def test_special_addresses_are_refused_by_default(address):
    assert not policy().admits(address)


def test_a_public_address_is_admitted_by_default():
    assert policy().admits(PUBLIC)


def test_the_allowlist_admits_exactly_its_networks():
    allowing = policy("127.0.0.1/32, 10.0.0.0/8")

    assert allowing.admits("127.0.0.1") and allowing.admits("10.20.30.40")
    assert not allowing.admits("127.0.0.2")


def test_the_denylist_wins_over_the_allowlist_and_public_addresses():
    assert not policy("10.0.0.0/8", "10.9.0.0/16").admits("10.9.1.1")
    assert not policy(denied=f"{PUBLIC}/32").admits(PUBLIC)


@pytest.mark.parametrize("allowed, address", [("100.64.0.0/10", "100.100.100.200"),
                                              ("169.254.0.0/16", "169.254.169.254"), ("fd00::/8", "fd00:ec2::254")])
def test_metadata_addresses_stay_refused_when_their_range_is_allowed(allowed, address):
    assert not policy(allowed).admits(address)


def test_networks_parse_from_comma_separated_cidrs_and_bare_addresses():
    assert [str(n) for n in parse_networks(" 127.0.0.1 , 10.0.0.0/8,,::1")] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]


class StubResolver:
    """Answers each lookup with the next address of ``answers`` (the way a rebinding DNS server would)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.lookups = 0

    async def resolve(self, host, port=0, family=socket.AF_INET):
        address = self.answers[min(self.lookups, len(self.answers) - 1)]
        self.lookups += 1
        return [{"hostname": host, "host": address, "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": 0}]

    async def close(self):
        pass


async def test_the_guarded_resolver_keeps_only_admitted_addresses():
    resolver = GuardedResolver(policy("127.0.0.1/32"), StubResolver("127.0.0.1"))

    assert [result["host"] for result in await resolver.resolve("registry.test", 443)] == ["127.0.0.1"]


async def test_the_guarded_resolver_refuses_a_host_with_only_refused_addresses():
    resolver = GuardedResolver(policy(), StubResolver("169.254.169.254"))

    with pytest.raises(OutboundRefused, match="169.254.169.254"):
        await resolver.resolve("metadata.test", 80)


async def test_an_answer_that_changes_after_the_check_is_refused_at_the_connection():
    stub = StubResolver(PUBLIC, "127.0.0.2")
    client = OutboundClient(policy("127.0.0.1/32"), resolver=stub)
    try:
        await client.check_host("rebinding.test")  # the first answer passes the check

        with pytest.raises(OutboundRefused, match="127.0.0.2"):
            async with client.request("GET", "http://rebinding.test/v2/"):
                pass
    finally:
        await client.close()

    assert stub.lookups == 2


@pytest.mark.parametrize("url", ["http://127.0.0.2/v2/", "http://[::1]/v2/", "http://169.254.169.254/latest/",
                                 "ftp://registry.test/", "file:///etc/passwd"])
async def test_literal_refused_addresses_and_other_schemes_are_refused_before_connecting(url):
    client = OutboundClient(policy("127.0.0.1/32"), resolver=StubResolver(PUBLIC))
    try:
        with pytest.raises(OutboundRefused):
            async with client.request("GET", url):
                pass
    finally:
        await client.close()
