"""The registry driver in its actor: answers writes, refuses politely, stops the node on a bug."""

from __future__ import annotations

import logging
import threading

import pykka
import pytest
from prometheus_client import CollectorRegistry

from nacos_actors.bridge import ActorDirectory
from nacos_actors.core.registry import RegistryCore
from nacos_actors.logs import EVENT_ATTRIBUTE
from nacos_actors.messages import (
    HEALTH,
    DeleteService,
    DeregisterInstance,
    Ok,
    PatchInstance,
    Ping,
    Refused,
    RegisterInstance,
    ServicesChanged,
    Watch,
    WriteBatch,
)
from nacos_actors.metrics import NodeMetrics
from nacos_actors.model import Instance, InstanceKey, ServiceKey
from tests.drivers.support import RecordingReply
from tests.nodes import start_registry

SVC = ServiceKey("public", "DEFAULT_GROUP@@demo")


@pytest.fixture
def started():
    fatal: list[BaseException] = []
    core = RegistryCore()
    ref = start_registry(core, NodeMetrics(CollectorRegistry(), core), ActorDirectory(), fatal.append, clock=lambda: 42)
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
    (outcome,) = reply.value
    stored = outcome.value
    assert stored.instance_id == "127.0.0.1#80#DEFAULT#DEFAULT_GROUP@@demo"
    assert core.service(SVC).modified_ms == 42


class ChangeRecorder(pykka.ThreadingActor):
    """A watcher that keeps every ServicesChanged it is told, after the first (the Watch answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.told: list[ServicesChanged] = []
        self.arrived = threading.Event()

    def on_receive(self, message):
        if isinstance(message, ServicesChanged) and not message.replicated:
            self.told.append(message)
            self.arrived.set()


def test_a_batch_tells_watchers_each_changed_service_once_with_every_instance_it_touched():
    core = RegistryCore()
    actors = ActorDirectory()
    ref = start_registry(core, NodeMetrics(CollectorRegistry(), core), actors)
    recorder = ChangeRecorder.start()
    actors.add(HEALTH, recorder)
    try:
        ref.tell(Watch(HEALTH))
        other = ServiceKey("public", "DEFAULT_GROUP@@other")
        reply = RecordingReply()
        batch = (
            RegisterInstance(SVC, Instance("127.0.0.1", 80)),
            RegisterInstance(other, Instance("127.0.0.1", 90)),
            RegisterInstance(SVC, Instance("127.0.0.1", 81)),
            DeregisterInstance(SVC, InstanceKey("127.0.0.1", 80, "DEFAULT", True)),
        )
        ref.tell(WriteBatch(batch, reply))
        assert reply.done.wait(5)
        assert recorder.proxy().arrived.get(timeout=5).wait(5)
        (told,) = recorder.proxy().told.get(timeout=5)
        changes = {change.key: change for change in told.changes}
        assert set(changes) == {SVC, other}
        assert changes[SVC].touched == {
            InstanceKey("127.0.0.1", 80, "DEFAULT", True),
            InstanceKey("127.0.0.1", 81, "DEFAULT", True),
        }
        assert [i.port for i in changes[SVC].snapshot.instances.values()] == [81]
        assert changes[other].touched == {InstanceKey("127.0.0.1", 90, "DEFAULT", True)}
    finally:
        recorder.stop()
        ref.stop()


def test_a_refused_command_is_its_own_outcome_and_the_batch_goes_on(started):
    ref, core, fatal = started
    reply = RecordingReply()
    other = ServiceKey("public", "DEFAULT_GROUP@@other")
    batch = (
        RegisterInstance(SVC, Instance("127.0.0.1", 80)),
        PatchInstance(other, "127.0.0.1", 99, "DEFAULT", True, weight=2.0),
        RegisterInstance(other, Instance("127.0.0.1", 81)),
    )
    ref.tell(WriteBatch(batch, reply))
    assert reply.done.wait(5)
    first, refused, third = reply.value
    assert isinstance(first, Ok) and isinstance(third, Ok)
    assert (first.value.port, third.value.port) == (80, 81)
    assert isinstance(refused, Refused) and refused.status == 400
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
    ref = start_registry(core, NodeMetrics(CollectorRegistry(), core), ActorDirectory(), on_fatal)
    reply = RecordingReply()
    ref.tell(WriteBatch((DeleteService(SVC),), reply))
    assert reply.done.wait(5)
    assert isinstance(reply.error, RuntimeError)
    # pykka marks the actor stopped before it calls on_failure, so wait for the report itself.
    assert reported.wait(5)
    assert [type(e) for e in fatal] == [RuntimeError]
    assert ref.actor_stopped.wait(5) and not ref.is_alive()


# -- metrics and event logs ------------------------------------------------------------------


def _sample(metrics: NodeMetrics, sample_name: str, /, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(sample_name, labels)


def test_writes_batches_and_handling_time_are_recorded():
    core = RegistryCore()
    metrics = NodeMetrics(CollectorRegistry(), core)
    ref = start_registry(core, metrics, ActorDirectory(), lambda error: None)
    try:
        assert _sample(metrics, "nacos_actors_actor_mailbox_depth", actor="registry") == 0
        reply = RecordingReply()
        batch = (
            RegisterInstance(SVC, Instance("127.0.0.1", 80)),
            RegisterInstance(SVC, Instance("127.0.0.1", 81)),
            DeleteService(ServiceKey("public", "DEFAULT_GROUP@@missing")),
        )
        ref.tell(WriteBatch(batch, reply))
        assert reply.done.wait(5)
        assert ref.ask(Ping(), timeout=5) == "pong"  # the batch's bookkeeping is done too
        writes = "nacos_actors_registry_writes_total"
        assert _sample(metrics, writes, command="register_instance", outcome="applied") == 2
        assert _sample(metrics, writes, command="delete_service", outcome="rejected") == 1
        assert _sample(metrics, writes, command="delete_service", outcome="applied") == 0
        assert _sample(metrics, "nacos_actors_registry_write_batch_size_count") == 1
        assert _sample(metrics, "nacos_actors_registry_write_batch_size_sum") == 3
        handled = "nacos_actors_actor_message_duration_seconds_count"
        assert _sample(metrics, handled, actor="registry", message="WriteBatch") == 1
    finally:
        ref.stop()
    assert _sample(metrics, "nacos_actors_actor_mailbox_depth", actor="registry") is None


def test_register_and_deregister_that_change_the_registry_log_one_event_each(started, caplog):
    ref, _, _ = started
    caplog.set_level(logging.INFO, logger="nacos_actors.drivers.registry")
    instance = Instance("127.0.0.1", 80, cluster="c1")
    for command in (
        RegisterInstance(SVC, instance),
        RegisterInstance(SVC, instance),  # unchanged: no line
        DeregisterInstance(SVC, instance.key),
        DeregisterInstance(SVC, instance.key),  # nothing removed: no line
    ):
        reply = RecordingReply()
        ref.tell(WriteBatch((command,), reply))
        assert reply.done.wait(5)
    records = [r for r in caplog.records if r.name == "nacos_actors.drivers.registry"]
    assert [r.getMessage() for r in records] == [
        "registered 127.0.0.1:80 in DEFAULT_GROUP@@demo (namespace public, cluster c1, ephemeral)",
        "deregistered 127.0.0.1:80 in DEFAULT_GROUP@@demo (namespace public, cluster c1, ephemeral)",
    ]
    fields = [getattr(r, EVENT_ATTRIBUTE) for r in records]
    assert fields[0] == {
        "event": "register",
        "namespace": "public",
        "service": "DEFAULT_GROUP@@demo",
        "ip": "127.0.0.1",
        "port": 80,
        "cluster": "c1",
        "ephemeral": True,
    }
    assert fields[1]["event"] == "deregister"


def test_an_actor_failure_is_counted_as_a_nacos_exception():
    core = RegistryCore()
    metrics = NodeMetrics(CollectorRegistry(), core)
    reported = threading.Event()

    def broken(command, now_ms):
        raise RuntimeError("boom")

    core.apply = broken  # type: ignore[method-assign]
    ref = start_registry(core, metrics, ActorDirectory(), lambda error: reported.set())
    ref.tell(WriteBatch((DeleteService(SVC),), RecordingReply()))
    assert reported.wait(5)
    assert _sample(metrics, "nacos_exception_total", module="naming", name="actorFailed") == 1
    assert ref.actor_stopped.wait(5)
