"""Raft in the cluster simulation, modelled at the driver boundary.

Why a model and not the library: pysyncobj owns its sockets, its poller and its monotonic
clock, so it cannot run over the simulated network or clock (a run would no longer be a pure
function of its seed, nor faster than real time). What runs unchanged is everything above the
`ConsensusGroup` port of nacos_actors.drivers.raft: the RaftDriver, the DefinitionCore and the
registry's merge of the persistent half. `SimRaft` is one group shared by the simulation's
members; each member's end of it (`SimRaftMember`) is the group its RaftDriver ticks.

It models Raft's guarantees, not its algorithm:

- One log. Only the leader appends to it: a live member that reaches a majority of the members
  (itself included) over the simulated network, with the same cluster secret (the library's
  password). An entry commits once the leader reaches a majority, a round trip after it was
  appended or at a later heartbeat (every 50 ms); committed entries are never lost, changed
  or reordered. Raft traffic rides TCP: it suffers the network's delays and cuts, not its drops.
- Elections: once the leader is dead, cut off from the majority or stepped down, a new one is
  chosen after an election timeout (`raft_election_timeout_ms` to twice that) among the live
  members that reach a majority and hold every committed entry (Raft's vote rule); the term is
  bumped, the new leader appends a no-op (as pysyncobj does: an index no apply sees), and the
  old leader's uncommitted tail survives in part or not at all (a random prefix). A leader that
  loses its majority steps down after 1.5 s (pysyncobj's leader fallback timeout); until it
  hears of the new term it still takes proposals, which never commit.
- Proposals, as the driver sees them through RaftGroup: on the leader they are appended; on a
  follower forwarded to the leader it knows (one hop each way, the answer carrying the entry's
  index and term, then awaited at that index); without a known leader they fail at once with
  "no_leader". A forwarded proposal still unanswered when the member's leader changes fails with
  "leader_changed"; an entry whose index commits with another term fails with "discarded"; one
  whose answer comes after its index was applied with "unknown_outcome"; one whose request or
  answer is lost to a cut never completes (the driver's deadline answers 503).
- Applying: each member learns the commit index from the leader's heartbeats while it reaches
  the leader (a member cut off from it applies nothing new until it is reconnected), and applies
  committed entries in log order at its next tick (PollRaft), calling each proposal's `done`
  only after it applied that proposal's entry. Every callback into the driver (`apply_entry`,
  `save_state`, `load_state`, `done`) happens inside `tick`, or inside `propose` for a proposal
  that fails at once, as the port promises.
- Journal and snapshots: a member's `Journal` outlives its process (unless it is restarted
  without it): its last snapshot, how far it holds the committed log, the commit index it
  knew. A member snapshots its state (the driver's `save_state`) every `raft_snapshot_entries`
  applied entries; a restarted one loads its snapshot (`load_state`) and replays its journal
  up to the commit index it knew, before any leader is known; one that is behind the leader's
  snapshot (restarted without a journal, or away for long) is sent that snapshot.

Not modelled: votes and vote splits, log matching and conflicting uncommitted entries on
followers, the library's batching, queue limits (QUEUE_FULL) and frame limits, fsync, journal
sizes (journal_bytes is 0) and membership changes.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nacos_actors.drivers.raft import RaftDriver
from nacos_actors.settings import Settings

if TYPE_CHECKING:
    from tests.sim.cluster import SimNode, Simulation

Done = Callable[[Any, str | None], None]

HEARTBEAT_MS = 50  # pysyncobj's appendEntriesPeriod as nacos_actors.raft.group sets it
LEADER_FALLBACK_MS = 1500  # RaftGroupConfig.leader_fallback_timeout_s
MAX_HOP_MS = 25  # one Raft message's delay, as the network's own (plus its extra delay)


def raft_id(address: str) -> str:
    """A member's Raft node id: its host and the default Raft port (HTTP port - 1000)."""
    host, _, port = address.rpartition(":")
    return f"{host}:{int(port) - 1000}"


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry: the term it was appended in and the driver's operation (None: a new
    leader's no-op)."""

    term: int
    operation: bytes | None


@dataclass
class Journal:
    """What one member keeps on disk across crashes: its last snapshot (the index it covers and
    the driver's state), how far it holds the committed log, the last term and the commit
    index it knew."""

    snapshot_index: int = 0
    snapshot: bytes | None = None
    received: int = 0
    commit: int = 0
    term: int = 0


@dataclass(frozen=True, slots=True)
class SimGroupStatus:
    """A member's view of the group (the driver's GroupStatus)."""

    role: str
    term: int
    leader: str | None
    commit_index: int
    applied_index: int
    log_entries: int
    journal_bytes: int


class SimRaft:
    """The group every member of a Simulation belongs to: the log, the leader and its term, and
    each member's journal. Its heartbeat (every HEARTBEAT_MS of simulated time) commits, holds
    elections and tells each member what it hears from the leader."""

    def __init__(self, sim: Simulation, settings: Settings) -> None:
        self.sim = sim
        # A stream of its own: the seed's other draws stay what they were without Raft.
        self.rng = random.Random(f"raft-{sim.seed}")
        self.election_timeout_ms = settings.raft_election_timeout_ms
        self.snapshot_entries = settings.raft_snapshot_entries
        self.log: list[Entry] = []
        self.commit_index = 0
        self.term = 0
        self.leader: str | None = None
        self.elections: list[tuple[int, int, str]] = []  # (time, term, leader)
        self.outcomes: Counter[str] = Counter()  # how proposals ended: "applied" or the failure reason
        self.journals: dict[str, Journal] = {address: Journal() for address in sim.addresses}
        self.members: dict[str, SimRaftMember] = {}
        self._election_at: int | None = None
        sim.scheduler.after(HEARTBEAT_MS, self._heartbeat)

    # -- membership and reachability --------------------------------------------------------

    def join(self, node: SimNode, driver: RaftDriver, keep_journal: bool = True) -> SimRaftMember:
        """The group end of `node`'s new process, around its driver; it loads the node's journal
        (unless `keep_journal` is false: the data directory was lost)."""
        if not keep_journal:
            self.journals[node.address] = Journal()
        member = SimRaftMember(self, node, driver)
        self.members[node.address] = member
        return member

    def live(self, address: str) -> SimRaftMember | None:
        """The member of the process running at `address`, if any."""
        member = self.members.get(address)
        if member is None or member.closed or not member.node.alive or member.node.incarnation != member.incarnation:
            return None
        return member

    def reaches(self, a: str, b: str) -> bool:
        """Whether Raft messages pass between two members now."""
        one, other = self.live(a), self.live(b)
        if one is None or other is None:
            return False
        if a == b:
            return True
        same_password = one.node.settings.cluster_secret == other.node.settings.cluster_secret
        return same_password and self.sim.network.connected(a, b)

    @property
    def majority(self) -> int:
        return len(self.sim.addresses) // 2 + 1

    def reaches_majority(self, address: str) -> bool:
        return sum(1 for other in self.sim.addresses if self.reaches(address, other)) >= self.majority

    def hop_ms(self) -> int:
        extra = self.sim.network.extra_delay_ms
        return self.rng.randint(1, MAX_HOP_MS) + (self.rng.randint(0, extra) if extra else 0)

    def _leads(self, address: str) -> bool:
        member = self.live(address)
        return member is not None and member.leading and member.term == self.term and self.reaches_majority(address)

    # -- the log ------------------------------------------------------------------------------

    def append(self, member: SimRaftMember, operation: bytes) -> tuple[int, int]:
        """Append `operation` on `member`, which believes it leads: the index and term it gets.
        A leader deposed without knowing it appends to a log that will never commit: its index
        lies past every entry of its term, so it is discarded once that index applies."""
        if member.address == self.leader and member.term == self.term:
            self.log.append(Entry(self.term, operation))
            self.sim.scheduler.after(2 * self.hop_ms(), self._commit_if_leading)
            return len(self.log), self.term
        member.stale_appends += 1
        return len(self.log) + member.stale_appends, member.term

    def _commit_if_leading(self) -> None:
        if self.leader is not None and self._leads(self.leader):
            self._commit()

    def _commit(self) -> None:
        """Commit the whole log: the leader reaches a majority, and each member it reaches holds
        the entries (unless it is behind the leader's snapshot: it catches up by heartbeat)."""
        assert self.leader is not None
        if self.commit_index == len(self.log):
            return
        self.commit_index = len(self.log)
        first_held = self.journals[self.leader].snapshot_index
        for address in self.sim.addresses:
            journal = self.journals[address]
            if self.reaches(self.leader, address) and journal.received >= first_held:
                journal.received = self.commit_index
        leader = self.live(self.leader)
        assert leader is not None
        leader.learn_commit(self.commit_index)

    def forward(self, member: SimRaftMember, operation: bytes, request: int) -> None:
        """Carry a follower's proposal to the leader it knows and the leader's answer back (one
        hop each way); either is lost if the link is cut when it arrives."""
        target = member.known_leader
        assert target is not None

        def arrive() -> None:
            receiver = self.live(target)
            if receiver is None or self.live(member.address) is not member or not self.reaches(member.address, target):
                return
            if not receiver.leading:
                index, term, error = 0, 0, "not_leader"
            else:
                index, term = self.append(receiver, operation)
                error = None
                # The answer travels ahead of the heartbeats that carry this entry's commit (one
                # connection): until it arrives the member learns no commit past it.
                member.in_flight.add(index)

            def back() -> None:
                member.in_flight.discard(index)
                if self.live(member.address) is member and self.reaches(target, member.address):
                    member.answered(request, index, term, error)

            self.sim.scheduler.after(self.hop_ms(), back)

        self.sim.scheduler.after(self.hop_ms(), arrive)

    # -- heartbeats and elections --------------------------------------------------------

    def _heartbeat(self) -> None:
        now = self.sim.now
        if self.leader is not None and self._leads(self.leader):
            self._election_at = None
            self._commit()
        elif self._election_at is None:
            self._election_at = now + self.rng.randint(self.election_timeout_ms, 2 * self.election_timeout_ms)
        elif now >= self._election_at:
            self._elect(now)
        for address in self.sim.addresses:
            member = self.live(address)
            if member is not None:
                self._contact(member, now)
        self.sim.scheduler.after(HEARTBEAT_MS, self._heartbeat)

    def _elect(self, now: int) -> None:
        """Choose a leader among the members that could win a vote: live, reaching a majority,
        holding every committed entry."""
        qualified = [
            address
            for address in self.sim.addresses
            if self.live(address) is not None
            and self.reaches_majority(address)
            and self.journals[address].received >= self.commit_index
        ]
        if not qualified:
            self._election_at = now + self.rng.randint(self.election_timeout_ms, 2 * self.election_timeout_ms)
            return
        winner = self.rng.choice(qualified)
        self.term += 1
        kept = self.rng.randint(0, len(self.log) - self.commit_index)
        del self.log[self.commit_index + kept :]
        self.log.append(Entry(self.term, None))
        self.leader = winner
        self._election_at = None
        self.elections.append((now, self.term, winner))
        member = self.live(winner)
        assert member is not None
        member.lead(self.term, now)
        self.sim.scheduler.after(2 * self.hop_ms(), self._commit_if_leading)

    def _contact(self, member: SimRaftMember, now: int) -> None:
        """What `member` hears at this heartbeat: as a leader, whether it keeps a majority; as a
        follower, the leader's heartbeat (and the commit index, or a snapshot), or silence."""
        if member.leading:
            if self._hears_newer_term(member):
                member.follow(None, now)  # deposed: it follows the new leader below, if it hears it
            elif self.reaches_majority(member.address):
                member.quorum_ms = now
                return
            else:
                if now - member.quorum_ms > LEADER_FALLBACK_MS:
                    member.follow(None, now)
                return
        leader = self.leader
        if leader is not None and leader != member.address and self._heard_from(leader, member):
            member.follow(leader, now, self.term)
            self._catch_up(member, leader)
            return
        followed = self.live(member.known_leader) if member.known_leader is not None else None
        if (
            followed is not None
            and followed.leading
            and followed.term == member.term
            and self.reaches(followed.address, member.address)
        ):
            member.heard_ms = now  # a deposed leader of its term, still sending heartbeats
        elif now - member.heard_ms > self.election_timeout_ms:
            member.follow(None, now)

    def _hears_newer_term(self, member: SimRaftMember) -> bool:
        for address in self.sim.addresses:
            other = self.live(address)
            if other is not None and other.term > member.term and self.reaches(member.address, address):
                return True
        return False

    def _heard_from(self, leader: str, member: SimRaftMember) -> bool:
        sender = self.live(leader)
        return (
            sender is not None and sender.leading and sender.term == self.term and self.reaches(leader, member.address)
        )

    def _catch_up(self, member: SimRaftMember, leader: str) -> None:
        journal, source = self.journals[member.address], self.journals[leader]
        if journal.received < source.snapshot_index:
            assert source.snapshot is not None
            member.send_snapshot(source.snapshot_index, source.snapshot)
            return
        journal.received = max(journal.received, self.commit_index)
        member.learn_commit(self.commit_index)


class SimRaftMember:
    """One member's end of a SimRaft: the ConsensusGroup its RaftDriver ticks, on the
    simulation's thread. Its process's lifetime: a restarted node gets a new one."""

    def __init__(self, group: SimRaft, node: SimNode, driver: RaftDriver) -> None:
        self.group = group
        self.node = node
        self.address = node.address
        self.incarnation = node.incarnation
        self.journal = group.journals[node.address]
        self._apply = driver.apply_entry
        self._save_state = driver.save_state
        self._load_state = driver.load_state
        now = group.sim.now
        self.leading = False
        self.known_leader: str | None = None
        self.term = self.journal.term
        self.heard_ms = now
        self.quorum_ms = now
        self.applied = 0
        self.known_commit = self.journal.commit
        self.stale_appends = 0
        self.in_flight: set[int] = set()
        self.closed = False
        self.snapshots_loaded: list[tuple[str, int]] = []  # ("journal" or "leader", index)
        self.snapshots_saved: list[int] = []
        self._queue: list[tuple[bytes, Done]] = []
        self._awaiting_reply: dict[int, Done] = {}
        self._awaiting_commit: dict[int, list[tuple[int, Done]]] = {}
        self._requests = 0
        self._callbacks: list[Callable[[], None]] = []
        self._snapshot_sent: tuple[int, bytes] | None = None
        # As pysyncobj's constructor: the snapshot first, then the journal's entries replay at
        # the ticks, up to the commit index it knew.
        if self.journal.snapshot is not None:
            self._load_state(self.journal.snapshot)
            self.applied = self.journal.snapshot_index
            self.snapshots_loaded.append(("journal", self.applied))

    # -- the ConsensusGroup port ----------------------------------------------------------

    def propose(self, operation: bytes, done: Done) -> None:
        if self.closed:
            self._finish(done, None, "closed")
            return
        self._queue.append((operation, done))
        self.node.wake_raft()

    def tick(self, timeout_s: float) -> None:
        if self.closed:
            raise RuntimeError("the Raft group is closed")
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()
        if self._snapshot_sent is not None:
            self._install(*self._snapshot_sent)
        queued, self._queue = self._queue, []
        for operation, done in queued:
            self._submit(operation, done)
        self._apply_committed()
        if self.applied - self.journal.snapshot_index >= self.group.snapshot_entries:
            self.journal.snapshot, self.journal.snapshot_index = self._save_state(), self.applied
            self.snapshots_saved.append(self.applied)

    def status(self) -> SimGroupStatus:
        role = "leader" if self.leading else "follower" if self.known_leader is not None else "candidate"
        return SimGroupStatus(
            role=role,
            term=self.term,
            leader=raft_id(self.known_leader) if self.known_leader is not None else None,
            commit_index=self.known_commit,
            applied_index=self.applied,
            log_entries=self.journal.received - self.journal.snapshot_index,
            journal_bytes=0,
        )

    def wake(self) -> None:
        self.node.wake_raft()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        waiting = [done for _, done in self._queue] + list(self._awaiting_reply.values())
        waiting += [done for subscribers in self._awaiting_commit.values() for _, done in subscribers]
        self._queue, self._awaiting_reply, self._awaiting_commit = [], {}, {}
        for done in waiting:
            self._finish(done, None, "closed")

    # -- inside a tick ---------------------------------------------------------------------

    def _submit(self, operation: bytes, done: Done) -> None:
        if self.leading:
            index, term = self.group.append(self, operation)
            self._awaiting_commit.setdefault(index, []).append((term, done))
        elif self.known_leader is not None:
            self._requests += 1
            self._awaiting_reply[self._requests] = done
            self.group.forward(self, operation, self._requests)
        else:
            self._finish(done, None, "no_leader")

    def _apply_committed(self) -> None:
        log = self.group.log
        while self.applied < self.known_commit:
            index = self.applied + 1
            entry = log[index - 1]
            result = None if entry.operation is None else self._apply(entry.operation, index)
            self.applied = index
            for term, done in self._awaiting_commit.pop(index, ()):
                if term == entry.term:
                    self._finish(done, result, None)
                else:
                    self._finish(done, None, "discarded")

    def _finish(self, done: Done, result: Any, reason: str | None) -> None:
        self.group.outcomes[reason or "applied"] += 1
        done(result, reason)

    def _install(self, index: int, snapshot: bytes) -> None:
        """The leader's snapshot replaces this member's state and journal (proposals awaiting
        an index it covers never complete, as in pysyncobj)."""
        self._snapshot_sent = None
        if index <= self.applied:
            return
        self._load_state(snapshot)
        self.applied = index
        self.known_commit = max(self.known_commit, index)
        journal = self.journal
        journal.snapshot, journal.snapshot_index = snapshot, index
        journal.received = index
        journal.commit = max(journal.commit, index)
        self.snapshots_loaded.append(("leader", index))

    # -- what the group tells it, between ticks ---------------------------------------------

    def lead(self, term: int, now: int) -> None:
        """It won an election in `term`."""
        self.follow(self.address, now, term)
        self.leading = True
        self.quorum_ms = now

    def follow(self, leader: str | None, now: int, term: int | None = None) -> None:
        """Its leader is now `leader` (None: none known, it stands as a candidate)."""
        self.leading = False
        if term is not None:
            self.term = self.journal.term = max(self.term, term)
        if leader is not None:
            self.heard_ms = now
        if leader == self.known_leader:
            return
        self.known_leader = leader
        # pysyncobj's __onLeaderChanged: forwarded proposals still unanswered fail.
        unanswered, self._awaiting_reply = list(self._awaiting_reply.values()), {}
        self._callbacks.extend(lambda done=done: self._finish(done, None, "leader_changed") for done in unanswered)
        self.node.wake_raft()

    def answered(self, request: int, index: int, term: int, error: str | None) -> None:
        """The leader's answer to a forwarded proposal: its index and term, or an error."""
        done = self._awaiting_reply.pop(request, None)
        if done is None:
            return

        def settle() -> None:
            if error is not None:
                self._finish(done, None, error)
            elif index <= self.applied:
                self._finish(done, None, "unknown_outcome")
            else:
                self._awaiting_commit.setdefault(index, []).append((term, done))

        self._callbacks.append(settle)
        self.node.wake_raft()

    def learn_commit(self, commit: int) -> None:
        cap = min(self.in_flight) - 1 if self.in_flight else commit
        known = min(commit, self.journal.received, cap)
        if known > self.known_commit:
            self.known_commit = self.journal.commit = known
        if self.known_commit > self.applied:
            self.node.wake_raft()

    def send_snapshot(self, index: int, snapshot: bytes) -> None:
        self._snapshot_sent = (index, snapshot)
        self.node.wake_raft()
