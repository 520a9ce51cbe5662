"""The Prober: tasks on the loop, timeouts, batched reports, the hard cap and close."""

from __future__ import annotations

import asyncio
import threading

from blockbuster import blockbuster_ctx

from nacos_actors.core.probing import (
    PROBE_BAD_ANSWER,
    PROBE_ERROR,
    PROBE_OK,
    PROBE_REFUSED,
    PROBE_TIMEOUT,
    ProbeResult,
)
from nacos_actors.model import HTTP_CHECKER, MYSQL_CHECKER, TCP_CHECKER
from nacos_actors.probes.prober import BUSY_DETAIL, START_SLICE, Prober
from tests.mariadb import MariaDB
from tests.probes.servers import closed_port, full_backlog, silent_listener, target


class Reports:
    """What the prober reported: each call's batch, and the thread it came on."""

    def __init__(self) -> None:
        self.batches: list[tuple[ProbeResult, ...]] = []
        self.threads: set[int] = set()

    def __call__(self, results: tuple[ProbeResult, ...]) -> None:
        self.batches.append(results)
        self.threads.add(threading.get_ident())

    @property
    def results(self) -> dict[int, ProbeResult]:
        return {result.probe_id: result for batch in self.batches for result in batch}

    async def wait_for(self, count: int, timeout_s: float = 5.0) -> dict[int, ProbeResult]:
        async with asyncio.timeout(timeout_s):
            while sum(map(len, self.batches)) < count:
                await asyncio.sleep(0.005)
        return self.results


async def test_each_probe_gets_one_result_on_the_loop_thread(mariadb: MariaDB):
    reports = Reports()
    prober = Prober(reports, max_in_flight=64)
    try:
        async with silent_listener() as listener:
            probes = [
                target(TCP_CHECKER, listener.port, probe_id=1),
                target(TCP_CHECKER, closed_port(), probe_id=2),
                target(HTTP_CHECKER, closed_port(), probe_id=3),
                target(MYSQL_CHECKER, mariadb.port, probe_id=4, user=mariadb.user, password=mariadb.password),
                target(MYSQL_CHECKER, mariadb.port, probe_id=5, user=mariadb.user, password="wrong"),
                target("NONE", listener.port, probe_id=6),
            ]
            prober.async_start(probes)
            results = await reports.wait_for(len(probes))
    finally:
        await prober.async_close()
    assert {probe_id: (r.kind, r.outcome, r.immediate) for probe_id, r in results.items()} == {
        1: (TCP_CHECKER, PROBE_OK, False),
        2: (TCP_CHECKER, PROBE_REFUSED, True),
        3: (HTTP_CHECKER, PROBE_REFUSED, True),
        4: (MYSQL_CHECKER, PROBE_OK, False),
        5: (MYSQL_CHECKER, PROBE_BAD_ANSWER, True),
        6: ("NONE", PROBE_ERROR, False),
    }
    assert sum(map(len, reports.batches)) == len(probes)
    assert reports.threads == {threading.get_ident()}
    assert all(result.elapsed_ms >= 0 for result in results.values())


async def test_results_of_one_loop_turn_are_one_batch():
    reports = Reports()
    prober = Prober(reports, max_in_flight=64)
    # Names are refused before any I/O: every probe of a slice ends as it starts, in one turn.
    prober.async_start([target(TCP_CHECKER, 80, ip="localhost", probe_id=i) for i in range(START_SLICE)])
    await reports.wait_for(START_SLICE)
    await prober.async_close()
    assert len(reports.batches) == 1
    assert [result.probe_id for result in reports.batches[0]] == list(range(START_SLICE))


async def test_probes_start_a_slice_per_loop_iteration():
    reports = Reports()
    prober = Prober(reports, max_in_flight=64)
    count = 3 * START_SLICE + 1
    prober.async_start([target(TCP_CHECKER, 80, ip="localhost", probe_id=i) for i in range(count)])
    assert prober.in_flight == count  # waiting their turn: none started yet
    await reports.wait_for(count)
    await prober.async_close()
    assert [len(batch) for batch in reports.batches] == [START_SLICE] * 3 + [1]
    assert [r.probe_id for batch in reports.batches for r in batch] == list(range(count))


async def test_each_probe_is_bounded_by_its_timeout():
    reports = Reports()
    prober = Prober(reports, max_in_flight=64)
    try:
        with full_backlog() as stalled_port:
            async with silent_listener() as silent:
                prober.async_start(
                    [
                        target(TCP_CHECKER, stalled_port, timeout_ms=50, probe_id=1),
                        target(HTTP_CHECKER, silent.port, timeout_ms=50, probe_id=2),
                        target(MYSQL_CHECKER, silent.port, timeout_ms=50, probe_id=3, user="u", password="p"),
                    ]
                )
                results = await reports.wait_for(3)
                async with asyncio.timeout(2):  # both connections to the silent server were closed
                    while silent.closed_by_peer < 2:
                        await asyncio.sleep(0.005)
    finally:
        await prober.async_close()
    assert {probe_id: (r.outcome, r.immediate, r.detail) for probe_id, r in results.items()} == {
        1: (PROBE_TIMEOUT, False, "tcp:timeout"),
        2: (PROBE_TIMEOUT, False, "http:timeout"),
        3: (PROBE_TIMEOUT, False, "mysql:timeout"),
    }
    assert all(result.elapsed_ms > 0 for result in results.values())


async def test_probes_past_the_cap_end_at_once_as_busy():
    reports = Reports()
    prober = Prober(reports, max_in_flight=2)
    try:
        async with silent_listener() as silent:
            prober.async_start([target(HTTP_CHECKER, silent.port, timeout_ms=10_000, probe_id=i) for i in range(5)])
            results = await reports.wait_for(3)
            assert prober.in_flight == 2
            assert {probe_id: (r.outcome, r.detail) for probe_id, r in results.items()} == {
                2: (PROBE_ERROR, BUSY_DETAIL),
                3: (PROBE_ERROR, BUSY_DETAIL),
                4: (PROBE_ERROR, BUSY_DETAIL),
            }
            assert len(reports.batches) == 1
    finally:
        await prober.async_close()


async def test_close_cancels_running_probes_unreported_and_closes_their_connections():
    reports = Reports()
    prober = Prober(reports, max_in_flight=64)
    async with silent_listener() as silent:
        prober.async_start(
            [
                target(kind, silent.port, timeout_ms=10_000, probe_id=i, user="u")
                for i, kind in enumerate((TCP_CHECKER, HTTP_CHECKER, MYSQL_CHECKER) * 3)
            ]
        )
        async with asyncio.timeout(2):
            while silent.accepted < 9 or reports.batches == []:
                await asyncio.sleep(0.005)
        # The TCP probes finished (connected); the HTTP and MySQL ones wait for an answer.
        assert prober.in_flight == 6
        reported = sum(map(len, reports.batches))
        await prober.async_close()
        assert prober.in_flight == 0
        async with asyncio.timeout(2):
            while silent.open_connections:
                await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        assert sum(map(len, reports.batches)) == reported == 3
        prober.async_start([target(TCP_CHECKER, silent.port, probe_id=99)])  # dropped: closed
        await asyncio.sleep(0.05)
        assert 99 not in reports.results and prober.in_flight == 0


async def test_probes_never_block_the_loop(mariadb: MariaDB):
    reports = Reports()
    prober = Prober(reports, max_in_flight=64)
    async with silent_listener() as listener:
        with blockbuster_ctx("nacos_actors"):
            prober.async_start(
                [
                    target(TCP_CHECKER, listener.port, probe_id=1),
                    target(HTTP_CHECKER, closed_port(), probe_id=2),
                    target(MYSQL_CHECKER, mariadb.port, probe_id=3, user=mariadb.user, password=mariadb.password),
                    target(MYSQL_CHECKER, mariadb.port, probe_id=4, user=mariadb.user, password="no"),
                ]
            )
            results = await reports.wait_for(4)
            await prober.async_close()
    assert [results[i].outcome for i in (1, 2, 3, 4)] == [PROBE_OK, PROBE_REFUSED, PROBE_OK, PROBE_BAD_ANSWER]
