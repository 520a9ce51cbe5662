"""Raft groups for tests that are not about Raft: the driver boundary modelled, not the library.

`ImmediateGroup` is a group of one member that commits each proposal at its next tick (what a
real one-member group does, minus the election wait and the journal): HTTP and driver tests
get persistent writes at the speed of ephemeral ones. The real library (pysyncobj behind
nacos_actors.raft.group) is exercised by tests/raft and the end-to-end tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ImmediateStatus:
    role: str = "leader"
    term: int = 1
    leader: str | None = "127.0.0.1:7848"
    commit_index: int = 0
    applied_index: int = 0
    log_entries: int = 0
    journal_bytes: int = 0


class ImmediateGroup:
    """A one-member group that commits each proposal at the next tick, in order. `tick` waits
    (at most its timeout) for a proposal; `wake` and `propose` end the wait. Thread-safe."""

    def __init__(
        self,
        apply: Callable[[bytes, int], Any],
        save_state: Callable[[], bytes] | None = None,
        load_state: Callable[[bytes], None] | None = None,
        leader: str | None = "127.0.0.1:7848",
    ) -> None:
        self._apply = apply
        self._queue: list[tuple[bytes, Callable[[Any, str | None], None]]] = []
        self._lock = threading.Lock()
        self._arrived = threading.Event()
        self.index = 0
        self.leader = leader
        self.closed = False

    def propose(self, operation: bytes, done: Callable[[Any, str | None], None]) -> None:
        with self._lock:
            self._queue.append((operation, done))
        self._arrived.set()

    def tick(self, timeout_s: float) -> None:
        self._arrived.wait(timeout_s)
        self._arrived.clear()
        with self._lock:
            queued, self._queue = self._queue, []
        for operation, done in queued:
            if self.leader is None:
                done(None, "no_leader")
                continue
            self.index += 1
            done(self._apply(operation, self.index), None)

    def wake(self) -> None:
        self._arrived.set()

    def status(self) -> ImmediateStatus:
        return ImmediateStatus(leader=self.leader, commit_index=self.index, applied_index=self.index)

    def close(self) -> None:
        self.closed = True
