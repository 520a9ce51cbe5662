"""One member of a Raft group on pysyncobj, ticked by its owner's thread.

A Raft actor owns one `RaftGroup` on its own thread: it calls `tick()` in a loop, `propose()`
when a write arrives, and receives committed operations, in log order, through `apply`. The
library runs no thread of its own (`autoTick=False`); only `wake()` may be called from another
thread. Operations are opaque bytes; the group's state is the owner's (`save_state` and
`load_state` take it to and from a snapshot).

The SyncObj has exactly one replicated method, taking one bytes argument; anything else a log
entry carries is refused (logged, result None). Snapshots are msgpack files
(`snapshot_file`), never pickles; the journal is synced before anything is acknowledged
(`journal`); the transport takes frames from partners only, bounded and unpickled without
code (`transport`, `unpickle`); `safety.install_library_guards()` patches the library before
the first SyncObj is built.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pysyncobj.config import FAIL_REASON, SyncObjConf
from pysyncobj.node import TCPNode
from pysyncobj.pipe_notifier import PipeNotifier
from pysyncobj.syncobj import SyncObj, SyncObjException, replicated

from nacos_actors.raft.journal import (
    SyncedFileJournal,
    fsync_path,
    register_journal_file,
    unregister_journal_file,
)
from nacos_actors.raft.safety import install_library_guards
from nacos_actors.raft.snapshot_file import read_snapshot, write_snapshot
from nacos_actors.raft.transport import DEFAULT_MAX_FRAME_BYTES, GuardedTransport

log = logging.getLogger(__name__)

JOURNAL_FILE = "raft.journal"
SNAPSHOT_FILE = "raft.snapshot"
MIN_FRAME_BYTES = 1024 * 1024  # above the library's 64 KiB batches and snapshot chunks
FRAME_OVERHEAD_BYTES = 4096  # what a forwarded command's frame adds to the command

Apply = Callable[[bytes, int], Any]
Done = Callable[[Any, str | None], None]

# Why a proposal failed, by pysyncobj's FAIL_REASON; stable names for logs and metrics.
FAIL_REASONS: dict[int, str] = {
    FAIL_REASON.QUEUE_FULL: "queue_full",
    FAIL_REASON.MISSING_LEADER: "no_leader",
    FAIL_REASON.DISCARDED: "discarded",
    FAIL_REASON.NOT_LEADER: "not_leader",
    FAIL_REASON.LEADER_CHANGED: "leader_changed",
    FAIL_REASON.REQUEST_DENIED: "denied",
    FAIL_REASON.UNKNOWN_OUTCOME: "unknown_outcome",
}
# Our own: `apply` raised on this member; the group closed first; the operation cannot fit
# in one frame of the transport.
APPLY_FAILED = "apply_failed"
CLOSED = "closed"
TOO_LARGE = "too_large"
ROLES = {0: "follower", 1: "candidate", 2: "leader"}


class RaftBindError(OSError):
    """The group's address cannot be bound (taken, or not an address of this host)."""


def _check_address(name: str, address: str) -> None:
    host, _, port = address.rpartition(":")
    try:
        ipaddress.ip_address(host)
        port_number = int(port)
    except ValueError:
        raise ValueError(f"{name} must be 'ip:port' with a literal IP address, got {address!r}") from None
    if not 0 < port_number < 65536:
        raise ValueError(f"{name} has no valid port: {address!r}")


@dataclass(frozen=True, slots=True)
class RaftGroupConfig:
    """One member's settings; checked when built (ValueError names the field)."""

    self_address: str  # "ip:port" already resolved (no host names), this member
    partner_addresses: tuple[str, ...]  # the other members' "ip:port"
    bind_address: str  # "ip:port" to bind (explicit, never 0.0.0.0 implicitly)
    journal_dir: str | None  # None: in-memory journal (no durability)
    password: str | None  # required when partner_addresses is non-empty
    sync: bool = True  # fsync; False for tests only
    election_timeout_min_s: float = 0.4
    election_timeout_max_s: float = 0.8
    # appendEntriesPeriod; < election_timeout_min_s / 3. With batching a commit waits up to
    # two periods: 0.02 halves the latency of 0.05 (p50 ~50 ms instead of ~105 ms on three
    # loopback members) for about 1% more of a core per idle member
    # (scripts/benchmarks/raft_batching.py).
    heartbeat_period_s: float = 0.02
    # The library's default is 30 s: a leader cut off from the others would accept proposals
    # (which then fail) for that long.
    leader_fallback_timeout_s: float = 1.5
    connection_timeout_s: float = 2.0
    connection_retry_s: float = 0.5
    # appendEntriesUseBatch. Without batching the leader sends every entry at once: commits
    # are faster, but its many appends in flight make followers truncate entries they had
    # already applied (the library logs it as critical; up to 19 times in a run of 3000
    # proposals, in most runs); with batching, never (scripts/benchmarks/raft_batching.py).
    use_batch: bool = True
    queue_size: int = 10000  # commandsQueueSize
    compaction_min_entries: int = 5000
    compaction_min_time_s: float = 300.0
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES

    def __post_init__(self) -> None:
        _check_address("self_address", self.self_address)
        _check_address("bind_address", self.bind_address)
        for address in self.partner_addresses:
            _check_address("partner_addresses", address)
        if self.self_address in self.partner_addresses:
            raise ValueError("partner_addresses must not hold self_address")
        if len(set(self.partner_addresses)) != len(self.partner_addresses):
            raise ValueError("partner_addresses holds an address twice")
        if self.partner_addresses and not self.password:
            raise ValueError("password is required for a group with partners")
        if not self.heartbeat_period_s * 3 < self.election_timeout_min_s < self.election_timeout_max_s:
            raise ValueError("need heartbeat_period_s * 3 < election_timeout_min_s < election_timeout_max_s")
        if self.connection_timeout_s < self.election_timeout_max_s:
            raise ValueError("connection_timeout_s must be at least election_timeout_max_s")
        if self.leader_fallback_timeout_s <= self.heartbeat_period_s:
            raise ValueError("leader_fallback_timeout_s must exceed heartbeat_period_s")
        if self.connection_retry_s < 0:
            raise ValueError("connection_retry_s must not be negative")
        if self.queue_size < 1:
            raise ValueError("queue_size must be positive (the queue is bounded)")
        if self.compaction_min_entries < 2 or self.compaction_min_time_s <= 0:
            raise ValueError("compaction_min_entries must be at least 2 and compaction_min_time_s positive")
        if self.max_frame_bytes < MIN_FRAME_BYTES:
            raise ValueError(f"max_frame_bytes must be at least {MIN_FRAME_BYTES}")


@dataclass(frozen=True, slots=True)
class GroupStatus:
    """What one member knows of its group, at one tick."""

    role: str  # "leader", "follower" or "candidate"
    term: int
    leader: str | None  # the leader's address, when one is known
    commit_index: int
    applied_index: int
    log_entries: int
    journal_bytes: int  # the journal file's size; 0 in memory
    has_quorum: bool
    partners_connected: int
    tick_errors: int  # ticks that raised (logged) since the group started


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """The last snapshot this member saved."""

    bytes_written: int
    seconds: float
    last_index: int


class _Replica(SyncObj):  # type: ignore[misc]
    """The SyncObj: one replicated method, taking one bytes argument."""

    def __init__(
        self,
        config: RaftGroupConfig,
        conf: Any,
        on_apply: Callable[[bytes, int], Any],
    ) -> None:
        self._on_apply = on_apply
        self.max_frame_bytes = config.max_frame_bytes  # read by GuardedTransport
        try:
            super().__init__(
                config.self_address,
                list(config.partner_addresses),
                conf,
                transportClass=GuardedTransport,
            )
        except BaseException as error:
            self._release_after_failed_start()
            if isinstance(error, SyncObjException) and error.errorCode == "BindError":
                raise RaftBindError(f"cannot bind the Raft address {config.bind_address}") from None
            raise

    def _release_after_failed_start(self) -> None:
        """The library's constructor opened the journal and a server socket before it failed."""
        transport = getattr(self, "_SyncObj__transport", None)
        if transport is not None:
            transport.destroy()
        journal = getattr(self, "_SyncObj__raftLog", None)
        if journal is not None:
            journal._destroy()

    @replicated  # type: ignore[untyped-decorator]
    def apply_operation(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs or len(args) != 1 or not isinstance(args[0], bytes):
            log.error("refused a Raft log entry that is not one bytes operation: %.200r", (args, kwargs))
            return None
        # Inside the library's apply loop, the entry being applied is raftLastApplied + 1.
        return self._on_apply(args[0], self.raftLastApplied + 1)


class RaftGroup:
    """One member of a pysyncobj group. Every method runs on the owner's (ticking) thread,
    except `wake()` (any thread). `apply`, `save_state`, `load_state` and every `done` are
    called on the ticking thread, from inside `tick()` (`done` also from `propose()` when a
    proposal fails at once, and from `close()`)."""

    def __init__(
        self,
        config: RaftGroupConfig,
        apply: Apply,
        save_state: Callable[[], bytes],
        load_state: Callable[[bytes], None],
    ) -> None:
        """Build the member and bind its address; RaftBindError at once when it is taken.
        `apply(operation, index)` applies a committed operation (its return value is the
        proposal's result); it should not raise (a raise is logged and the entry counts as
        applied, with APPLY_FAILED for its proposal)."""
        install_library_guards()
        self._config = config
        self._apply = apply
        self._save_state = save_state
        self._load_state = load_state
        self._sync = config.sync and config.journal_dir is not None
        self._temp_dir: str | None = None
        if config.journal_dir is None:
            self._temp_dir = data_dir = tempfile.mkdtemp(prefix="raft-group-")
            self._journal_path: str | None = None
        else:
            data_dir = config.journal_dir
            if not os.path.isdir(data_dir):
                os.makedirs(data_dir)
                if self._sync:
                    fsync_path(os.path.dirname(os.path.abspath(data_dir)))
            self._journal_path = os.path.join(data_dir, JOURNAL_FILE)
        self._snapshot_path = os.path.join(data_dir, SNAPSHOT_FILE)
        self._pending: dict[int, Done] = {}
        self._proposals = 0
        self._tick_errors = 0
        self._last_snapshot: SnapshotInfo | None = None
        self._wake_lock = threading.Lock()
        self._ticking_thread: int | None = None
        self._closed = False
        conf = SyncObjConf(
            password=config.password or None,
            autoTick=False,
            commandsQueueSize=config.queue_size,
            raftMinTimeout=config.election_timeout_min_s,
            raftMaxTimeout=config.election_timeout_max_s,
            appendEntriesPeriod=config.heartbeat_period_s,
            connectionTimeout=config.connection_timeout_s,
            connectionRetryTime=config.connection_retry_s,
            leaderFallbackTimeout=config.leader_fallback_timeout_s,
            appendEntriesUseBatch=config.use_batch,
            bindAddress=config.bind_address,
            logCompactionMinEntries=config.compaction_min_entries,
            logCompactionMinTime=config.compaction_min_time_s,
            commandsWaitLeader=False,
            fullDumpFile=self._snapshot_path,
            journalFile=self._journal_path,
            # The default (0) retries a taken port forever at 100% CPU; with 1 the
            # constructor raises at once.
            maxBindRetries=1,
            dynamicMembershipChange=False,
            useFork=False,
            serializer=self._write_snapshot,
            deserializer=self._read_snapshot,
        )
        if self._journal_path is not None:
            register_journal_file(self._journal_path, self._sync)
        try:
            self._replica = _Replica(config, conf, self._apply_entry)
        except BaseException:
            self._forget_files()
            raise
        # The library makes its own pipe only without batching; this one is ours either way.
        self._notifier = PipeNotifier(self._replica._poller)

    # -- the owner's calls --------------------------------------------------------------

    def propose(self, operation: bytes, done: Done) -> None:
        """Propose `operation`. `done(result, None)` once it is committed and applied on this
        member (a follower forwards it to the leader and waits for its own apply), or
        `done(None, reason)` with a reason of FAIL_REASONS, APPLY_FAILED, CLOSED or TOO_LARGE.
        `done` is called at most once, on the ticking thread; a forwarded proposal whose
        outcome never comes back is failed only when the leader changes or the group closes,
        so the owner keeps its own deadline."""
        if not isinstance(operation, bytes):
            raise TypeError("a Raft operation is bytes")
        if self._closed:
            self._call_done(done, None, CLOSED)
            return
        if len(operation) > self._config.max_frame_bytes - FRAME_OVERHEAD_BYTES:
            self._call_done(done, None, TOO_LARGE)
            return
        self._proposals += 1
        key = self._proposals
        self._pending[key] = done

        def finished(result: Any, error: int) -> None:
            self._finish(key, result, error)

        self._replica.apply_operation(operation, callback=finished)
        # The next tick takes the proposal from the library's queue; its poll must not then
        # sleep before the tick that commits it (a one-member group sends nothing to wake it).
        self._notify()

    def tick(self, timeout_s: float) -> None:
        """One library tick: timers, received messages, commits, applies, sends. Waits for
        network events at most min(timeout_s, heartbeat_period_s), so heartbeats are never
        late, and returns early when woken. A tick that raises is logged and counted."""
        if self._closed:
            raise RuntimeError("the Raft group is closed")
        self._ticking_thread = threading.get_ident()
        wait_s = max(0.0, min(timeout_s, self._config.heartbeat_period_s))
        try:
            self._replica.doTick(wait_s)
        except Exception:
            self._tick_errors += 1
            log.exception("a Raft tick failed")
            time.sleep(wait_s)  # a failure that repeats must not spin

    def wake(self) -> None:
        """Make a tick blocked in the poller return now (or the next one not block), for a
        message another thread told the owner. Any thread; does nothing on the ticking thread
        (the owner telling itself its next tick must not cut that tick's wait short: it would
        spin) or once the group is closed."""
        if threading.get_ident() == self._ticking_thread:
            return
        self._notify()

    def _notify(self) -> None:
        with self._wake_lock:
            if self._closed:
                return
            try:
                self._notifier.notify()
            except BlockingIOError:
                pass  # the pipe is full: a wake-up is pending already

    def status(self) -> GroupStatus:
        """This member's view of the group."""
        replica = self._replica
        library_status = replica.getStatus()
        leader = library_status["leader"]
        journal_bytes = 0
        if self._journal_path is not None:
            try:
                journal_bytes = os.path.getsize(self._journal_path)
            except OSError:
                journal_bytes = 0
        return GroupStatus(
            role=ROLES.get(library_status["state"], "follower"),
            term=replica.raftCurrentTerm,
            leader=None if leader is None else str(leader.id),
            commit_index=replica.raftCommitIndex,
            applied_index=replica.raftLastApplied,
            log_entries=replica._getRaftLogSize(),
            journal_bytes=journal_bytes,
            has_quorum=bool(replica.hasQuorum),
            partners_connected=sum(1 for node in replica.otherNodes if replica.isNodeConnected(node)),
            tick_errors=self._tick_errors,
        )

    @property
    def last_snapshot(self) -> SnapshotInfo | None:
        """Bytes written and seconds taken by the last snapshot this member saved (None: none yet)."""
        return self._last_snapshot

    @property
    def config(self) -> RaftGroupConfig:
        """The member's settings."""
        return self._config

    def close(self) -> None:
        """Close the sockets and the journal (synced), fail the pending proposals with
        CLOSED, and remove the private directory of an in-memory group. Idempotent."""
        with self._wake_lock:
            if self._closed:
                return
            self._closed = True
            poller = self._replica._poller
            for name in ("_PipeNotifier__pipeR", "_PipeNotifier__pipeW"):
                descriptor = getattr(self._notifier, name)
                poller.unsubscribe(descriptor)
                os.close(descriptor)
        try:
            self._replica.destroy()
        finally:
            self._forget_files()
            pending, self._pending = self._pending, {}
            for done in pending.values():
                self._call_done(done, None, CLOSED)

    # -- called by the library, on the ticking thread -----------------------------------

    def _apply_entry(self, operation: bytes, index: int) -> Any:
        try:
            return self._apply(operation, index)
        except Exception:
            log.exception("applying Raft entry %d raised; it counts as applied", index)
            return _ApplyFailed

    def _finish(self, key: int, result: Any, error: int) -> None:
        done = self._pending.pop(key, None)
        if done is None:
            return
        if error != FAIL_REASON.SUCCESS:
            self._call_done(done, None, FAIL_REASONS.get(error, "unknown_outcome"))
        elif result is _ApplyFailed:
            self._call_done(done, None, APPLY_FAILED)
        else:
            self._call_done(done, result, None)

    @staticmethod
    def _call_done(done: Done, result: Any, reason: str | None) -> None:
        # `done` runs inside the library's apply loop: an exception escaping it would stop the
        # loop after the entry was applied but before it was counted, applying it twice.
        try:
            done(result, reason)
        except Exception:
            log.exception("a Raft proposal's done callback raised")

    def _write_snapshot(self, path: str, data: tuple[Any, Any, Any]) -> None:
        started = time.monotonic()
        last, previous, cluster = data
        try:
            written = write_snapshot(
                path, self._save_state(), last, previous, (str(node.id) for node in cluster), sync=self._sync
            )
        except Exception:
            log.exception("cannot save the Raft snapshot %s", path)
            raise
        self._last_snapshot = SnapshotInfo(written, time.monotonic() - started, int(last[1]))

    def _read_snapshot(self, path: str) -> tuple[Any, Any, set[Any]]:
        snapshot = read_snapshot(path, sync=self._sync)
        self._complete_interrupted_compaction(snapshot.previous, snapshot.last)
        self._load_state(snapshot.state)
        return snapshot.last, snapshot.previous, {TCPNode(address) for address in snapshot.cluster}

    def _complete_interrupted_compaction(self, previous: Any, last: Any) -> None:
        """The library drops the whole journal when its first two entries are not the
        snapshot's `previous` and `last`: after a crash between saving a snapshot and
        compacting the log, that would lose every entry after the snapshot (acknowledged
        ones included). When the journal still holds both, compact it now instead."""
        journal = self._replica._SyncObj__raftLog
        if len(journal) < 2 or (journal[0] == previous and journal[1] == last):
            return
        position = previous[1] - journal[0][1]
        if 0 < position < len(journal) - 1 and journal[position] == previous and journal[position + 1] == last:
            log.info("completing the Raft log compaction at index %d that a stop interrupted", previous[1])
            if isinstance(journal, SyncedFileJournal):
                journal.compact(position)
            else:
                journal.deleteEntriesTo(position)

    def _forget_files(self) -> None:
        if self._journal_path is not None:
            unregister_journal_file(self._journal_path)
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)


class _ApplyFailedType:
    """The result of an entry whose `apply` raised."""


_ApplyFailed = _ApplyFailedType()
