"""RaftDriver: persistent writes through a Raft group, applied to the DefinitionCore.

The group (nacos_actors.raft.group around pysyncobj in a node; a shared in-memory log in the
cluster simulation) is ticked by this driver only, on its actor's thread: each PollRaft ticks
it once and tells PollRaft again, so proposals and the library's timers take turns. The
library calls back, on this same thread, `apply_entry` for each committed entry (in log
order, on every member), `save_state`/`load_state` for snapshots, and each proposal's `done`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from time import monotonic
from typing import Any, ClassVar, Protocol, assert_never

from nacos_actors.core.codec import (
    CodecError,
    decode_definitions,
    decode_operation,
    encode_definitions,
    encode_operation,
)
from nacos_actors.core.consensus import (
    FAILURE_OUTCOMES,
    PROPOSAL_APPLIED,
    PROPOSAL_FAILED,
    PROPOSAL_REFUSED,
    PROPOSAL_TIMED_OUT,
    RaftBoard,
    RaftStatus,
    unavailable,
)
from nacos_actors.core.definitions import DefinitionCore
from nacos_actors.drivers.outbox import Outbox
from nacos_actors.drivers.registry import log_change
from nacos_actors.logs import event
from nacos_actors.messages import (
    RAFT,
    REGISTRY,
    ActorName,
    DefinitionChange,
    DefinitionsApplied,
    DefinitionsLoaded,
    ImportDefinition,
    Outcome,
    PersistentCommand,
    PollRaft,
    Propose,
    RaftMessage,
    Refused,
    Reply,
)

log = logging.getLogger(__name__)


class GroupStatus(Protocol):
    """What the driver reads of its group after each tick."""

    @property
    def role(self) -> str: ...
    @property
    def term(self) -> int: ...
    @property
    def leader(self) -> str | None: ...
    @property
    def commit_index(self) -> int: ...
    @property
    def applied_index(self) -> int: ...
    @property
    def log_entries(self) -> int: ...
    @property
    def journal_bytes(self) -> int: ...


class ConsensusGroup(Protocol):
    """A Raft group member the driver ticks (nacos_actors.raft.group.RaftGroup)."""

    def propose(self, operation: bytes, done: Callable[[Any, str | None], None]) -> None: ...

    def tick(self, timeout_s: float) -> None: ...

    def status(self) -> GroupStatus: ...

    def close(self) -> None: ...


class RaftRecorder(Protocol):
    """Where the driver records its figures (nacos_actors.metrics.RaftMetrics)."""

    def proposal(self, outcome: str, seconds: float) -> None: ...

    def write(self, command: type, applied: bool) -> None: ...

    def snapshot(self, size: int, seconds: float) -> None: ...


@dataclass(frozen=True, slots=True)
class RaftDriverConfig:
    """`tick_s`: how long one idle tick may wait for the network; `busy_tick_s` the same while
    proposals wait (short: a one-member group commits on the next tick); a proposal not done
    after `proposal_timeout_ms` is answered 503 (outcome unknown). `leader_addresses` maps
    each member's Raft address to the address its clients use (its HTTP host:port). Without
    `poll_continuously` the driver does not tell itself the next PollRaft (the simulation
    schedules them)."""

    tick_s: float = 0.02
    busy_tick_s: float = 0.001
    proposal_timeout_ms: int = 3000
    leader_addresses: Mapping[str, str] | None = None
    durable: bool = False
    poll_continuously: bool = True


@dataclass(slots=True)
class _Pending:
    reply: Reply[Outcome]
    command: PersistentCommand
    deadline_ms: int
    started: float


class RaftDriver:
    """Proposes each Propose to the group and answers it once the entry is committed and this
    member's registry merged it (the registry resolves the reply after DefinitionsApplied), or
    with a 503 when the group fails it or it outlives its deadline. Tells the registry every
    change the group applies, in log order. Runs on the Raft actor's thread (or the
    simulation's)."""

    NAME: ClassVar[ActorName] = RAFT

    def __init__(
        self, core: DefinitionCore, outbox: Outbox, board: RaftBoard, recorder: RaftRecorder, config: RaftDriverConfig
    ) -> None:
        self.core = core
        self._outbox = outbox
        self._board = board
        self._recorder = recorder
        self._config = config
        self._group: ConsensusGroup | None = None
        self._pending: dict[int, _Pending] = {}
        self._next_token = 0
        self._changes: list[DefinitionChange] = []
        self._answers: list[tuple[Reply[Outcome], Outcome]] = []
        self._snapshot_bytes = 0
        self._snapshot_seconds = 0.0
        self._stopped = False
        self._last_change: DefinitionChange | None = None

    def attach(self, group: ConsensusGroup) -> None:
        """Drive `group` (made with this driver's apply_entry, save_state and load_state)."""
        self._group = group

    def start(self, now_ms: int) -> None:
        pass

    def stop(self) -> None:
        self._stopped = True
        for pending in self._pending.values():
            pending.reply.resolve(Refused(503, "the node is stopping; retry the request"))
        self._pending.clear()
        if self._group is not None:
            self._group.close()

    def handle(self, message: object, now_ms: int) -> object:
        received: RaftMessage = message  # type: ignore[assignment]  # what may arrive; the match covers it
        match received:
            case Propose(command, proposed_ms, reply):
                self._propose(command, proposed_ms, reply, now_ms)
            case PollRaft():
                if self._stopped or self._group is None:
                    return None
                self._group.tick(self._config.busy_tick_s if self._pending else self._config.tick_s)
                self._flush()
                self._expire(now_ms)
                self._publish()
                if self._config.poll_continuously:
                    self._outbox.tell(RAFT, PollRaft())
            case _:
                assert_never(received)
        return None

    # -- proposals -------------------------------------------------------------------------

    def _propose(self, command: PersistentCommand, proposed_ms: int, reply: Reply[Outcome], now_ms: int) -> None:
        group = self._group
        if group is None or self._stopped:
            reply.resolve(Refused(503, "the node is stopping; retry the request"))
            return
        token = self._next_token
        self._next_token += 1
        self._pending[token] = _Pending(reply, command, now_ms + self._config.proposal_timeout_ms, monotonic())
        group.propose(encode_operation(command, proposed_ms), lambda result, reason: self._done(token, result, reason))

    def _done(self, token: int, result: Any, reason: str | None) -> None:
        pending = self._pending.pop(token, None)
        if pending is None:  # answered already: it outlived its deadline
            return
        seconds = monotonic() - pending.started
        if reason is None:
            applied = not isinstance(result, Refused)
            self._recorder.proposal(PROPOSAL_APPLIED if applied else PROPOSAL_REFUSED, seconds)
            if not isinstance(pending.command, ImportDefinition):
                self._recorder.write(type(pending.command), applied)
            self._answers.append((pending.reply, result))
            # The library calls `done` right after applying the proposal's own entry.
            change = self._last_change
            if applied and change is not None and not isinstance(pending.command, ImportDefinition):
                log_change(pending.command, change.touched)
        else:
            outcome = FAILURE_OUTCOMES.get(reason, PROPOSAL_FAILED)
            self._recorder.proposal(outcome, seconds)
            pending.reply.resolve(unavailable(outcome, self._board.status.leader))

    def _expire(self, now_ms: int) -> None:
        expired = [token for token, pending in self._pending.items() if pending.deadline_ms <= now_ms]
        for token in expired:
            pending = self._pending.pop(token)
            self._recorder.proposal(PROPOSAL_TIMED_OUT, monotonic() - pending.started)
            pending.reply.resolve(unavailable(PROPOSAL_TIMED_OUT, self._board.status.leader))

    # -- what the group calls back, on this thread -----------------------------------------------

    def apply_entry(self, operation: bytes, index: int) -> Outcome:
        """Apply one committed entry (every member, log order); answers its Outcome."""
        try:
            command, proposed_ms = decode_operation(operation)
        except CodecError as error:
            log.error("Raft entry %d is not valid and was skipped: %s", index, error)
            return Refused(400, f"the Raft entry is not valid: {error}")
        applied = self.core.apply(command, proposed_ms, index)
        self._last_change = applied.change
        if applied.change is not None:
            self._changes.append(applied.change)
        return applied.outcome

    def save_state(self) -> bytes:
        """The state a snapshot holds: every definition, encoded."""
        started = monotonic()
        data = encode_definitions(self.core.all())
        self._snapshot_bytes = len(data)
        self._snapshot_seconds = monotonic() - started
        self._recorder.snapshot(self._snapshot_bytes, self._snapshot_seconds)
        log.info(
            "Raft snapshot: %d services, %d bytes",
            len(self.core.definitions),
            len(data),
            extra=event("raft_snapshot", services=len(self.core.definitions), bytes=len(data)),
        )
        return data

    def load_state(self, data: bytes) -> None:
        """Replace every definition with a snapshot's (raises CodecError when it does not decode)."""
        definitions = decode_definitions(data)
        self._flush()
        self.core.load(definitions)
        self._outbox.tell(REGISTRY, DefinitionsLoaded(tuple(definitions)))
        log.info(
            "loaded a Raft snapshot: %d services, %d persistent instances",
            len(definitions),
            self.core.instance_count,
            extra=event("raft_snapshot_loaded", services=len(definitions), instances=self.core.instance_count),
        )

    # -- after each tick -------------------------------------------------------------------

    def _flush(self) -> None:
        if self._changes or self._answers:
            self._outbox.tell(REGISTRY, DefinitionsApplied(tuple(self._changes), tuple(self._answers)))
            self._changes = []
            self._answers = []

    def _publish(self) -> None:
        assert self._group is not None
        group = self._group.status()
        leaders = self._config.leader_addresses or {}
        leader = leaders.get(group.leader, group.leader) if group.leader is not None else None
        status = RaftStatus(
            role=group.role,
            term=group.term,
            leader=leader,
            commit_index=group.commit_index,
            applied_index=group.applied_index,
            log_entries=group.log_entries,
            journal_bytes=group.journal_bytes,
            # Caught up: a leader is known and everything known committed is applied here.
            ready=group.leader is not None and group.applied_index >= group.commit_index,
            durable=self._config.durable,
            snapshot_bytes=self._snapshot_bytes,
            snapshot_seconds=self._snapshot_seconds,
        )
        previous = self._board.status
        if status != previous:
            if (status.role, status.term, status.leader) != (previous.role, previous.term, previous.leader):
                log.info(
                    "Raft: %s in term %d, leader %s",
                    status.role,
                    status.term,
                    status.leader or "unknown",
                    extra=event("raft_role", role=status.role, term=status.term, leader=status.leader or ""),
                )
            self._board.status = status
