"""The TCP checker against real listeners on the loopback."""

from __future__ import annotations

import asyncio

import pytest

from nacos_actors.core.probing import PROBE_ERROR, PROBE_OK, PROBE_REFUSED
from nacos_actors.model import TCP_CHECKER
from nacos_actors.probes.finding import Finding
from nacos_actors.probes.tcp import probe_tcp
from tests.probes.servers import HOST6, closed_port, full_backlog, has_ipv6_loopback, silent_listener, target


async def settle(predicate, timeout_s: float = 2.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_an_open_port_is_ok_and_the_connection_is_closed_without_data():
    async with silent_listener() as listener:
        finding = await probe_tcp(target(TCP_CHECKER, listener.port))
        assert finding == Finding(PROBE_OK, False, "tcp:connected")
        await settle(lambda: listener.closed_by_peer == 1)
        assert listener.accepted == 1
        assert listener.received == b""


async def test_a_closed_port_is_refused_and_fails_at_once():
    finding = await probe_tcp(target(TCP_CHECKER, closed_port()))
    assert finding == Finding(PROBE_REFUSED, True, "tcp:refused")


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
async def test_ipv6_literals_are_probed():
    async with silent_listener(HOST6) as listener:
        assert (await probe_tcp(target(TCP_CHECKER, listener.port, ip=HOST6))).outcome == PROBE_OK
    assert (await probe_tcp(target(TCP_CHECKER, closed_port(HOST6), ip=HOST6))).outcome == PROBE_REFUSED


@pytest.mark.parametrize(
    ("ip", "port"),
    [
        ("localhost", 0),
        ("localhost", 80),
        ("example.com", 80),
        ("127.1", 80),
        ("fe80::1%lo", 80),
        ("", 80),
        ("127.0.0.1", 0),
        ("127.0.0.1", 70_000),
    ],
)
async def test_a_name_or_a_bad_port_is_never_connected_to(ip: str, port: int):
    finding = await probe_tcp(target(TCP_CHECKER, port, ip=ip))
    assert finding == Finding(PROBE_ERROR, False, "tcp:not an IP literal and port")


async def test_a_connect_that_hangs_is_bounded_by_the_caller_and_closes_its_socket():
    with full_backlog() as port:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await probe_tcp(target(TCP_CHECKER, port))
    # The cancelled connect left no socket open: a ResourceWarning would fail under -W error,
    # and a second probe on the same loop still works.
    async with silent_listener() as listener:
        assert (await probe_tcp(target(TCP_CHECKER, listener.port))).outcome == PROBE_OK


async def test_many_probes_at_once():
    async with silent_listener() as listener:
        findings = await asyncio.gather(
            *(probe_tcp(target(TCP_CHECKER, listener.port, probe_id=i)) for i in range(200))
        )
        assert {finding.outcome for finding in findings} == {PROBE_OK}
        await settle(lambda: listener.closed_by_peer == 200)
