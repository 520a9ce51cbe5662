"""The RegistryActor as a thread: answers writes, refuses politely, stops the node on a bug."""

from __future__ import annotations

import threading

import pytest

from nacos_actors.actors.registry import RegistryActor
from nacos_actors.core.registry import RegistryCore, Rejected
from nacos_actors.messages import DeleteService, Ping, RegisterInstance, WriteBatch
from nacos_actors.model import Instance, ServiceKey

SVC = ServiceKey("public", "DEFAULT_GROUP@@demo")


class RecordingReply:
    """A Reply for tests: remembers the outcome and signals when it arrives."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value = None
        self.error = None

    def resolve(self, value):
        self.value = value
        self.done.set()

    def fail(self, error):
        self.error = error
        self.done.set()


@pytest.fixture
def started():
    fatal: list[BaseException] = []
    core = RegistryCore()
    ref = RegistryActor.start(core, fatal.append, clock=lambda: 42)
    yield ref, core, fatal
    ref.stop()


def test_ping_answers(started):
    ref, _, _ = started
    assert ref.ask(Ping(), timeout=5) == "pong"


def test_a_batch_is_applied_in_order_with_the_actor_clock_before_the_reply(started):
    ref, core, _ = started
    reply = RecordingReply()
    ref.tell(WriteBatch((RegisterInstance(SVC, Instance("127.0.0.1", 80)),), reply))
    assert reply.done.wait(5)
    assert reply.error is None
    (stored,) = reply.value
    assert stored.instance_id == "127.0.0.1#80#DEFAULT#DEFAULT_GROUP@@demo"
    assert core.service(SVC).modified_ms == 42


def test_a_refused_command_is_its_own_outcome_and_the_batch_goes_on(started):
    ref, core, fatal = started
    reply = RecordingReply()
    other = ServiceKey("public", "DEFAULT_GROUP@@other")
    batch = (
        RegisterInstance(SVC, Instance("127.0.0.1", 80)),
        DeleteService(other),
        RegisterInstance(other, Instance("127.0.0.1", 81)),
    )
    ref.tell(WriteBatch(batch, reply))
    assert reply.done.wait(5)
    first, refused, third = reply.value
    assert (first.port, third.port) == (80, 81)
    assert isinstance(refused, Rejected) and refused.status == 400
    assert core.service(other) is not None
    assert ref.ask(Ping(), timeout=5) == "pong" and fatal == []


def test_a_bug_fails_the_reply_reports_fatal_and_stops_the_actor():
    fatal: list[BaseException] = []
    reported = threading.Event()
    core = RegistryCore()

    def broken(command, now_ms):
        raise RuntimeError("boom")

    def on_fatal(error):
        fatal.append(error)
        reported.set()

    core.apply = broken  # type: ignore[method-assign]
    ref = RegistryActor.start(core, on_fatal)
    reply = RecordingReply()
    ref.tell(WriteBatch((DeleteService(SVC),), reply))
    assert reply.done.wait(5)
    assert isinstance(reply.error, RuntimeError)
    # pykka marks the actor stopped before it calls on_failure, so wait for the report itself.
    assert reported.wait(5)
    assert [type(e) for e in fatal] == [RuntimeError]
    assert ref.actor_stopped.wait(5) and not ref.is_alive()
