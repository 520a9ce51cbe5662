"""The Raft driver, fed by hand: proposals, what it tells the registry, 503s, snapshots.

The group is a scripted stand-in at the driver's port (ConsensusGroup), so each step is
explicit; the real library is exercised by tests/raft and the end-to-end tests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

from nacos_actors.core.codec import encode_definitions, encode_operation
from nacos_actors.core.consensus import RaftBoard
from nacos_actors.core.definitions import DefinitionCore
from nacos_actors.core.registry import NO_LIMITS
from nacos_actors.drivers.raft import RaftDriver, RaftDriverConfig
from nacos_actors.logs import EVENT_ATTRIBUTE
from nacos_actors.messages import (
    RAFT,
    REGISTRY,
    ApplyProbeVerdict,
    CreateService,
    DefinitionsApplied,
    DefinitionsLoaded,
    Ok,
    PollRaft,
    Propose,
    Refused,
    RegisterInstance,
)
from nacos_actors.model import NO_SELECTOR, Definition, Instance, ServiceKey, freeze
from tests.drivers.support import RecordingReply

SVC = ServiceKey("public", "DEFAULT_GROUP@@db")
DB = Instance("127.0.0.1", 3306, ephemeral=False)


@dataclass
class Status:
    role: str = "leader"
    term: int = 3
    leader: str | None = "127.0.0.1:7848"
    commit_index: int = 0
    applied_index: int = 0
    log_entries: int = 0
    journal_bytes: int = 0


@dataclass
class ScriptedGroup:
    """Holds proposals until the test commits or fails them; `commit` applies through the
    driver's apply_entry and calls `done` as the library does (right after the entry applied)."""

    driver: RaftDriver | None = None
    proposed: list[tuple[bytes, Any]] = field(default_factory=list)
    index: int = 0
    state: Status = field(default_factory=Status)
    ticks: int = 0
    closed: bool = False

    def propose(self, operation: bytes, done: Any) -> None:
        self.proposed.append((operation, done))

    def tick(self, timeout_s: float) -> None:
        self.ticks += 1

    def status(self) -> Status:
        return self.state

    def close(self) -> None:
        self.closed = True

    def commit(self) -> None:
        assert self.driver is not None
        for operation, done in self.proposed:
            self.index += 1
            done(self.driver.apply_entry(operation, self.index), None)
        self.proposed.clear()
        self.state.commit_index = self.state.applied_index = self.index

    def fail(self, reason: str) -> None:
        for _, done in self.proposed:
            done(None, reason)
        self.proposed.clear()


class Outbox:
    def __init__(self) -> None:
        self.told: list[tuple[str, object]] = []

    def tell(self, actor: str, message: object) -> None:
        self.told.append((actor, message))

    def to(self, actor: str) -> list[object]:
        return [message for name, message in self.told if name == actor]


class Recorder:
    def __init__(self) -> None:
        self.proposals: list[str] = []
        self.writes: list[tuple[type, bool]] = []
        self.snapshots = 0

    def proposal(self, outcome: str, seconds: float) -> None:
        self.proposals.append(outcome)

    def write(self, command: type, applied: bool) -> None:
        self.writes.append((command, applied))

    def snapshot(self, size: int, seconds: float) -> None:
        self.snapshots += 1


@pytest.fixture
def rig():
    outbox, recorder, board = Outbox(), Recorder(), RaftBoard()
    config = RaftDriverConfig(proposal_timeout_ms=3000, leader_addresses={"127.0.0.1:7848": "127.0.0.1:8848"})
    driver = RaftDriver(DefinitionCore(NO_LIMITS), outbox, board, recorder, config)
    group = ScriptedGroup(driver)
    driver.attach(group)
    return driver, group, outbox, recorder, board


def test_a_committed_proposal_is_merged_by_the_registry_before_it_is_answered(rig):
    driver, group, outbox, recorder, _ = rig
    reply = RecordingReply()
    driver.handle(Propose(RegisterInstance(SVC, DB), 1_000, reply), 1_000)
    assert not reply.done.is_set()
    group.commit()
    driver.handle(PollRaft(), 1_001)
    assert not reply.done.is_set()  # the registry answers, once it merged the change
    (applied,) = outbox.to(REGISTRY)
    assert isinstance(applied, DefinitionsApplied)
    (change,) = applied.changes
    assert change.key == SVC and DB.key in change.definition.instances
    ((answer, outcome),) = applied.answers
    assert answer is reply and isinstance(outcome, Ok) and outcome.value.port == 3306
    assert recorder.proposals == ["applied"] and recorder.writes == [(RegisterInstance, True)]


def test_a_refused_proposal_is_answered_with_its_refusal(rig):
    driver, group, outbox, recorder, _ = rig
    create = CreateService(SVC, 0.0, freeze({}), NO_SELECTOR)
    first, second = RecordingReply(), RecordingReply()
    driver.handle(Propose(create, 1_000, first), 1_000)
    driver.handle(Propose(create, 1_000, second), 1_000)
    group.commit()
    driver.handle(PollRaft(), 1_001)
    (applied,) = outbox.to(REGISTRY)
    outcomes = [outcome for _, outcome in applied.answers]
    assert isinstance(outcomes[0], Ok) and isinstance(outcomes[1], Refused) and outcomes[1].status == 400
    assert recorder.proposals == ["applied", "refused"]


@pytest.mark.parametrize(
    ("reason", "outcome", "words"),
    [
        ("no_leader", "no_leader", "no Raft leader"),
        ("leader_changed", "leader_changed", "leader changed"),
        ("queue_full", "overloaded", "too many"),
        ("closed", "failed", "could not take"),
    ],
)
def test_a_failed_proposal_is_a_503_naming_the_leader(rig, reason, outcome, words):
    driver, group, outbox, recorder, board = rig
    driver.handle(PollRaft(), 1_000)  # publishes the status: the leader is known
    reply = RecordingReply()
    driver.handle(Propose(RegisterInstance(SVC, DB), 1_000, reply), 1_000)
    group.fail(reason)
    assert reply.done.is_set()
    assert reply.value.status == 503 and words in reply.value.message and "127.0.0.1:8848" in reply.value.message
    assert recorder.proposals == [outcome]
    assert outbox.to(REGISTRY) == []


def test_a_proposal_past_its_deadline_is_a_503_and_its_late_commit_is_still_merged(rig):
    driver, group, outbox, recorder, _ = rig
    reply = RecordingReply()
    driver.handle(Propose(RegisterInstance(SVC, DB), 1_000, reply), 1_000)
    driver.handle(PollRaft(), 4_000)
    assert reply.value.status == 503 and "outcome is unknown" in reply.value.message
    group.commit()  # committed after all: every member applies it, nobody is answered twice
    driver.handle(PollRaft(), 4_001)
    (applied,) = outbox.to(REGISTRY)
    assert len(applied.changes) == 1 and applied.answers == ()
    assert recorder.proposals == ["timed_out"]


def test_an_entry_that_does_not_decode_is_skipped(rig):
    driver, group, outbox, _, _ = rig
    outcome = driver.apply_entry(b"\x81\xa7version\x09", 7)
    assert isinstance(outcome, Refused) and outcome.status == 400
    assert driver.core.definitions == {}


def test_entries_of_other_members_are_applied_and_told_without_answers(rig):
    driver, group, outbox, _, _ = rig
    driver.apply_entry(encode_operation(RegisterInstance(SVC, DB), 5), 1)
    driver.handle(PollRaft(), 10)
    (applied,) = outbox.to(REGISTRY)
    assert applied.answers == () and applied.changes[0].definition.index == 1


def test_a_snapshot_round_trips_and_replaces_every_definition(rig):
    driver, group, outbox, recorder, _ = rig
    driver.apply_entry(encode_operation(RegisterInstance(SVC, DB), 5), 1)
    saved = driver.save_state()
    assert recorder.snapshots == 1
    other = ServiceKey("public", "DEFAULT_GROUP@@other")
    driver.core.load([Definition(other)])
    driver.load_state(saved)
    assert set(driver.core.definitions) == {SVC}
    loaded = [m for m in outbox.to(REGISTRY) if isinstance(m, DefinitionsLoaded)]
    assert [d.key for d in loaded[-1].definitions] == [SVC]
    with pytest.raises(ValueError):
        driver.load_state(encode_definitions([])[:-1] + b"\xc1")


def test_the_board_shows_the_leader_by_its_member_address(rig):
    driver, group, outbox, _, board = rig
    driver.handle(PollRaft(), 10)
    status = board.status
    assert (status.role, status.term, status.leader, status.ready) == ("leader", 3, "127.0.0.1:8848", True)
    group.state.leader = None
    driver.handle(PollRaft(), 20)
    assert board.status.leader is None and not board.status.ready
    assert outbox.to(RAFT) == [PollRaft(), PollRaft()]


def test_stopping_answers_what_waits_and_closes_the_group(rig):
    driver, group, _, _, _ = rig
    reply = RecordingReply()
    driver.handle(Propose(RegisterInstance(SVC, DB), 1_000, reply), 1_000)
    driver.stop()
    assert reply.value.status == 503 and group.closed
    late = RecordingReply()
    driver.handle(Propose(RegisterInstance(SVC, DB), 1_000, late), 1_000)
    assert late.value.status == 503


def test_an_applied_probe_verdict_is_logged_once_by_its_proposer(rig, caplog):
    driver, group, _, recorder, _ = rig
    caplog.set_level(logging.INFO, logger="nacos_actors.drivers.registry")
    driver.handle(Propose(RegisterInstance(SVC, DB), 1_000, RecordingReply()), 1_000)
    verdict = ApplyProbeVerdict(SVC, DB.ip, DB.port, DB.cluster, False, "TCP")
    for _ in range(2):  # the second changes nothing: no line
        driver.handle(Propose(verdict, 1_000, RecordingReply()), 1_000)
    group.commit()
    records = [r for r in caplog.records if getattr(r, EVENT_ATTRIBUTE, {}).get("event") == "probe_verdict"]
    assert [r.getMessage() for r in records] == [
        "127.0.0.1:3306 in DEFAULT_GROUP@@db (namespace public, cluster DEFAULT, persistent)"
        " marked unhealthy by its TCP probe"
    ]
    assert getattr(records[0], EVENT_ATTRIBUTE) == {
        "event": "probe_verdict",
        "namespace": "public",
        "service": "DEFAULT_GROUP@@db",
        "ip": "127.0.0.1",
        "port": 3306,
        "cluster": "DEFAULT",
        "healthy": False,
        "checker": "TCP",
    }
    assert recorder.proposals == ["applied"] * 3
