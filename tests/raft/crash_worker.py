"""A one-member Raft group that proposes operations until it is killed, printing each one it
saw acknowledged (`ack op-N`, flushed) — the subject of test_group's crash test.

    python -m tests.raft.crash_worker JOURNAL_DIR PORT COMPACTION_MIN_ENTRIES [kill-in-compaction]

With `kill-in-compaction` it SIGKILLs itself in the middle of rewriting its journal during
its third log compaction (after two entries of the rewrite), the moment the library's
in-place rewrite used to lose the entries after the snapshot. Its state is the list of operations it applied; a snapshot carries that list (msgpack).
Talks to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import msgpack
import pysyncobj.journal

from nacos_actors.raft.group import RaftGroup, RaftGroupConfig
from nacos_actors.raft.journal import SyncedFileJournal

IN_FLIGHT = 16


def kill_in_the_third_compaction() -> None:
    add, delete_entries_to = pysyncobj.journal.FileJournal.add, SyncedFileJournal.deleteEntriesTo
    compactions = [0]
    adds_left: list[int] = []

    def counting_delete_entries_to(journal: Any, entry_to: int) -> None:
        compactions[0] += 1
        if compactions[0] == 3:
            adds_left.append(2)
        delete_entries_to(journal, entry_to)

    def killing_add(journal: Any, *entry: Any) -> None:
        add(journal, *entry)
        if adds_left:
            adds_left[0] -= 1
            if adds_left[0] == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    pysyncobj.journal.FileJournal.add = killing_add
    SyncedFileJournal.deleteEntriesTo = counting_delete_entries_to


def main(argv: list[str]) -> None:
    journal_dir, port, compaction = argv[0], int(argv[1]), int(argv[2])
    if argv[3:] == ["kill-in-compaction"]:
        kill_in_the_third_compaction()
    address = f"127.0.0.1:{port}"
    state: list[bytes] = []

    def apply(operation: bytes, index: int) -> None:
        state.append(operation)

    def load(data: bytes) -> None:
        state[:] = msgpack.unpackb(data)

    config = RaftGroupConfig(address, (), address, journal_dir, None, sync=True, compaction_min_entries=compaction)
    group = RaftGroup(config, apply, lambda: bytes(msgpack.packb(state)), load)
    in_flight = 0
    next_op = 0

    def done(operation: bytes) -> Any:
        def finished(result: Any, reason: str | None) -> None:
            nonlocal in_flight
            in_flight -= 1
            if reason is None:
                print("ack", operation.decode(), flush=True)

        return finished

    print("ready", flush=True)
    while True:
        if group.status().role == "leader":
            while in_flight < IN_FLIGHT:
                operation = f"op-{next_op}".encode()
                next_op += 1
                in_flight += 1
                group.propose(operation, done(operation))
        group.tick(0.05)


if __name__ == "__main__":
    main(sys.argv[1:])
