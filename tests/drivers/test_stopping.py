"""Stopping actors within the stop's bound (node.stop_actors), whatever their mailboxes hold.

Before: each actor was stopped with pykka's stop, which queues behind everything already in the
mailbox; a push actor 30 s behind raised pykka.Timeout in run_node's `finally`, the snapshot
was never written, and the process never exited.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, ClassVar

import pykka
import pytest
from prometheus_client import CollectorRegistry

from nacos_actors.bridge import DriverActor
from nacos_actors.core.registry import RegistryCore, RegistryView
from nacos_actors.metrics import NodeMetrics
from nacos_actors.node import Shutdown, Watchdog, stop_actors
from nacos_actors.snapshot import SNAPSHOT_FILE, SnapshotOnce
from tests.nodes import fail_test


class SlowDriver:
    """Takes `seconds` over every message; `entered` is set on the first, which waits for
    `release` when it is given."""

    NAME: ClassVar[Any] = "slow"

    def __init__(self, seconds: float, release: threading.Event | None = None) -> None:
        self.seconds = seconds
        self.release = release
        self.entered = threading.Event()
        self.handled = 0

    def start(self, now_ms: int) -> None:
        pass

    def stop(self) -> None:
        pass

    def handle(self, message: object, now_ms: int) -> object:
        self.entered.set()
        if self.release is not None:
            self.release.wait(30)
        time.sleep(self.seconds)
        self.handled += 1
        return None


def metrics() -> NodeMetrics:
    return NodeMetrics(CollectorRegistry(), RegistryView(RegistryCore()))


def requested(timeout_s: float) -> Shutdown:
    shutdown = Shutdown(timeout_s)
    shutdown.request()
    return shutdown


def test_a_backlog_is_dropped_and_the_actor_stops_at_once():
    driver = SlowDriver(0.01)
    halted = threading.Event()
    ref = DriverActor.start(driver, metrics(), fail_test, halted=halted)
    for number in range(3000):  # 30 s of work
        ref.tell(number)
    assert driver.entered.wait(5)
    started = time.monotonic()
    stop_actors([("slow", ref)], halted, requested(2.0))
    assert time.monotonic() - started < 1.5
    assert not ref.is_alive()
    assert driver.handled < 100


def test_an_actor_stuck_in_a_message_is_logged_by_name_and_left_behind(caplog):
    release = threading.Event()
    driver = SlowDriver(0.0, release)
    halted = threading.Event()
    ref = DriverActor.start(driver, metrics(), fail_test, halted=halted)
    ref.tell("stuck")
    assert driver.entered.wait(5)
    started = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger="nacos_actors.node"):
            stop_actors([("slow", ref)], halted, requested(1.0))
        took = time.monotonic() - started
        assert 0.5 < took < 3.0
        assert "the slow actor did not stop within shutdown_timeout_ms" in caplog.text
        assert ref.is_alive()
    finally:
        release.set()  # let the thread end, so the test leaves nothing behind
        assert wait_stopped(ref)


def wait_stopped(ref: pykka.ActorRef[Any]) -> bool:
    deadline = time.monotonic() + 5
    while ref.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not ref.is_alive()


def test_actor_threads_are_daemons():
    ref = DriverActor.start(SlowDriver(0.0), metrics(), fail_test)
    try:
        assert DriverActor.use_daemon_thread
        threads = [t for t in threading.enumerate() if "DriverActor" in t.name]
        assert threads and all(t.daemon for t in threads)
    finally:
        ref.stop()


def test_every_actor_gets_the_time_that_is_left_not_each_its_own():
    releases = [threading.Event() for _ in range(3)]
    halted = threading.Event()
    drivers = [SlowDriver(0.0, release) for release in releases]
    refs = [DriverActor.start(driver, metrics(), fail_test, halted=halted) for driver in drivers]
    for ref, driver in zip(refs, drivers, strict=True):
        ref.tell("stuck")
        assert driver.entered.wait(5)
    started = time.monotonic()
    try:
        stop_actors([(f"slow{i}", ref) for i, ref in enumerate(refs)], halted, requested(1.0))
        assert time.monotonic() - started < 2.5  # not 3 x 1 s
    finally:
        for release in releases:
            release.set()
        assert all(wait_stopped(ref) for ref in refs)


@pytest.mark.parametrize(
    ("share", "cap", "expected"),
    [(0.4, None, 2.0), (0.4, 1.5, 1.5), (0.1, None, 0.5)],
)
def test_a_step_gets_its_share_of_the_timeout(share, cap, expected):
    assert Shutdown(5.0).seconds(share, cap) == pytest.approx(expected)


def test_a_late_step_gets_what_is_left_but_never_under_a_tenth_of_its_share():
    now = [100.0]
    shutdown = Shutdown(5.0, clock=lambda: now[0])
    shutdown.request()
    now[0] += 4.5
    assert shutdown.remaining() == pytest.approx(0.5)
    assert shutdown.seconds(0.4) == pytest.approx(0.5)
    now[0] += 10
    assert shutdown.remaining() == 0
    assert shutdown.seconds(0.4) == pytest.approx(0.2)


def test_the_first_request_starts_the_clock_and_runs_on_request_once():
    now = [0.0]
    calls: list[int] = []
    shutdown = Shutdown(3.0, clock=lambda: now[0], on_request=lambda: calls.append(1))
    assert not shutdown.requested and shutdown.remaining() == 3.0
    shutdown.request()
    now[0] = 1.0
    shutdown.request(1)
    assert calls == [1]
    assert shutdown.deadline == 3.0 and shutdown.exit_code == 1


class Ended:
    """Stands for os._exit: records the code and when it came."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.at: float | None = None
        self.done = threading.Event()

    def __call__(self, code: int) -> None:
        self.codes.append(code)
        self.at = time.monotonic()
        self.done.set()


def test_the_watchdog_saves_and_ends_a_stop_that_overran(tmp_path, caplog):
    shutdown = Shutdown(0.5)
    snapshot = SnapshotOnce(RegistryCore().all_services, tmp_path)
    ended = Ended()
    shutdown.on_request = Watchdog(shutdown, snapshot, grace_s=0.3, end_process=ended).start
    shutdown.step = "closing the HTTP server"
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="nacos_actors.node"):
        shutdown.request()
        assert ended.done.wait(5)
    assert ended.codes == [1]
    assert ended.at is not None and 0.7 <= ended.at - started < 3.0
    assert (tmp_path / SNAPSHOT_FILE).exists()
    assert "overran shutdown_timeout_ms (500 ms) by 0.3 s while closing the HTTP server" in caplog.text


def test_the_watchdog_does_nothing_once_the_stop_finished():
    shutdown = Shutdown(0.5)
    ended = Ended()
    watchdog = Watchdog(shutdown, SnapshotOnce(lambda: pytest.fail("saved"), None), grace_s=0.1, end_process=ended)
    shutdown.on_request = watchdog.start
    shutdown.request()
    watchdog.finished()
    assert not ended.done.wait(1.2)


def test_the_watchdog_never_cuts_the_data_file_write_short(tmp_path):
    shutdown = Shutdown(0.5)
    core = RegistryCore()

    def slow_services():
        time.sleep(1.5)  # past the deadline and the grace
        return core.all_services()

    snapshot = SnapshotOnce(slow_services, tmp_path)
    ended = Ended()
    watchdog = Watchdog(shutdown, snapshot, grace_s=0.3, end_process=ended)
    shutdown.on_request = watchdog.start
    shutdown.request()
    time.sleep(0.2)
    assert snapshot.save()
    saved_at = time.monotonic()
    assert (tmp_path / SNAPSHOT_FILE).exists()
    # The stop gets as much longer as the write took: nothing ended it meanwhile, and it ends
    # only if the rest of the stop overruns too.
    assert ended.done.wait(5)
    assert ended.at is not None and ended.at >= saved_at
