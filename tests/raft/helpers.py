"""What the Raft group tests share: free loopback ports, configs, and `Member`, a RaftGroup
ticked by its own thread (as the Raft actor will tick it) that the test drives by calls."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import msgpack

from nacos_actors.raft.group import GroupStatus, RaftGroup, RaftGroupConfig

HOST = "127.0.0.1"
PASSWORD = "raft-test-secret"


def free_port() -> int:
    """A loopback TCP port nothing listens on (free a moment ago)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def single_config(journal_dir: str | None = None, **overrides: Any) -> RaftGroupConfig:
    """A one-member group on a free loopback port (no password), sync off unless overridden."""
    address = f"{HOST}:{free_port()}"
    settings: dict[str, Any] = {"sync": False, **overrides}
    return RaftGroupConfig(address, (), address, journal_dir, None, **settings)


def cluster_configs(
    count: int, journal_dirs: list[str | None] | None = None, **overrides: Any
) -> list[RaftGroupConfig]:
    """Configs of a `count`-member group on free loopback ports, with a password."""
    addresses = [f"{HOST}:{free_port()}" for _ in range(count)]
    dirs = journal_dirs or [None] * count
    settings: dict[str, Any] = {"sync": False, "password": PASSWORD, **overrides}
    return [
        RaftGroupConfig(
            address,
            tuple(other for other in addresses if other != address),
            address,
            dirs[index],
            **settings,
        )
        for index, address in enumerate(addresses)
    ]


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll `predicate` until true; answers the seconds it took, or fails naming `what`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.01)
    return time.monotonic() - started


class Member:
    """A RaftGroup on its own ticking thread. Its state is the list of (index, operation)
    it applied; snapshots carry that list. Every call to the group goes through the thread."""

    def __init__(self, config: RaftGroupConfig, name: str, apply: Callable[[bytes, int], Any] | None = None) -> None:
        self.config = config
        self.name = name
        self.applied: list[tuple[int, bytes]] = []
        self.state_loads = 0
        self._extra_apply = apply
        self._inbox: queue.SimpleQueue[tuple[Callable[[RaftGroup], Any], Future[Any]]] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self.group = RaftGroup(config, self._apply, self._save_state, self._load_state)
        self.thread = threading.Thread(target=self._run, name=f"raft-{name}", daemon=True)
        self.thread.start()

    def _apply(self, operation: bytes, index: int) -> Any:
        self.applied.append((index, operation))
        if self._extra_apply is not None:
            return self._extra_apply(operation, index)
        return index

    def _save_state(self) -> bytes:
        return bytes(msgpack.packb([[index, operation] for index, operation in self.applied]))

    def _load_state(self, state: bytes) -> None:
        self.applied = [(index, operation) for index, operation in msgpack.unpackb(state)]
        self.state_loads += 1

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                while True:
                    try:
                        function, future = self._inbox.get_nowait()
                    except queue.Empty:
                        break
                    try:
                        future.set_result(function(self.group))
                    except BaseException as error:
                        future.set_exception(error)
                self.group.tick(0.05)
        finally:
            self.group.close()

    def call(self, function: Callable[[RaftGroup], Any], timeout_s: float = 5.0) -> Any:
        """Run `function(group)` on the ticking thread and answer its result."""
        future: Future[Any] = Future()
        self._inbox.put((function, future))
        self.group.wake()
        return future.result(timeout_s)

    def propose(self, operation: bytes) -> Future[tuple[Any, str | None]]:
        """Propose on the ticking thread; the future holds (result, reason) once done."""
        future: Future[tuple[Any, str | None]] = Future()
        self.call(lambda group: group.propose(operation, lambda result, reason: future.set_result((result, reason))))
        return future

    def status(self) -> GroupStatus:
        return self.call(lambda group: group.status())  # type: ignore[no-any-return]

    def applied_now(self) -> list[tuple[int, bytes]]:
        return self.call(lambda group: list(self.applied))  # type: ignore[no-any-return]

    def stop(self) -> None:
        """Stop ticking and close the group (on its thread)."""
        self._stopping.set()
        self.group.wake()
        self.thread.join(10)
        assert not self.thread.is_alive(), f"{self.name} did not stop"


def leaders(members: list[Member]) -> list[Member]:
    return [member for member in members if member.thread.is_alive() and member.status().role == "leader"]


def wait_for_one_leader(members: list[Member], timeout_s: float) -> tuple[Member, float]:
    """The single leader among the live members once there is exactly one, and how long it took."""
    found: list[Member] = []

    def one() -> bool:
        found[:] = leaders(members)
        return len(found) == 1

    started = time.monotonic()
    wait_until(one, timeout_s, "exactly one leader")
    took = time.monotonic() - started
    address = found[0].config.self_address
    live = [member for member in members if member.thread.is_alive()]
    wait_until(
        lambda: all(member.status().leader == address for member in live), timeout_s, "every member knows the leader"
    )
    return found[0], took
