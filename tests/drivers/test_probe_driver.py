"""The ProbeDriver, called directly with a recording Outbox: the probes it hands the loop, the
verdicts it proposes through Raft, the wake-ups it asks for and the metrics it records."""

from __future__ import annotations

import logging
import random

from prometheus_client import CollectorRegistry

from nacos_actors.core.probes import ProbeConfig, ProbeCore
from nacos_actors.core.probing import PROBE_OK, PROBE_REFUSED, ProbeResult
from nacos_actors.core.registry import RegistryCore, RegistryView
from nacos_actors.drivers.probe import ProbeDriver
from nacos_actors.drivers.registry import RegistryDriver
from nacos_actors.messages import (
    HEALTH,
    NO_REPLY,
    PROBE,
    RAFT,
    ApplyProbeVerdict,
    DefinitionChange,
    DefinitionsApplied,
    ProbesFinished,
    Propose,
    RegisterInstance,
    ServiceChange,
    ServicesChanged,
    Tick,
    Watch,
    WriteBatch,
)
from nacos_actors.metrics import NodeMetrics
from nacos_actors.model import Definition, Instance, Service, ServiceKey, instance_map

SERVICE = ServiceKey("public", "DEFAULT_GROUP@@db")
NOW = 1_000_000


class RecordingOutbox:
    def __init__(self) -> None:
        self.told: list[tuple[str, object]] = []
        self.probes: list = []
        self.wakes: list[int | None] = []

    def tell(self, actor, message) -> None:
        self.told.append((actor, message))

    def call_peer(self, call) -> None:
        raise AssertionError("the probe driver calls no peer")

    def send_datagrams(self, datagrams) -> None:
        raise AssertionError("the probe driver sends no datagram")

    def send_to_streams(self, pushes) -> None:
        raise AssertionError("the probe driver writes on no stream")

    def start_probes(self, probes) -> None:
        self.probes.extend(probes)

    def wake_at(self, actor, deadline_ms) -> None:
        self.wakes.append(deadline_ms)


def snapshot(healthy: bool = True) -> Service:
    instance = Instance(ip="127.0.0.1", port=3306, ephemeral=False, healthy=healthy)
    instances = instance_map([instance])
    return Service(SERVICE, instances, definition=Definition(SERVICE, instances))


class Harness:
    def __init__(self) -> None:
        self.metrics = NodeMetrics(CollectorRegistry(), RegistryView(RegistryCore()))
        self.outbox = RecordingOutbox()
        core = ProbeCore(ProbeConfig(interval_ms=1_000, jitter_ms=0), random.Random(7).random)
        self.driver = ProbeDriver(core, self.outbox, self.metrics.probes)

    def sample(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def probe_until_started(self) -> None:
        """Tick at each wake-up asked for until a probe is handed to the loop."""
        before = len(self.outbox.probes)
        for _ in range(10):
            due = self.outbox.wakes[-1]
            assert due is not None
            self.driver.handle(Tick(), due)
            if len(self.outbox.probes) > before:
                return
        raise AssertionError("no probe started")


def test_a_persistent_instance_is_probed_and_its_failure_proposed_through_raft(caplog):
    harness = Harness()
    harness.driver.start(NOW)
    harness.driver.handle(ServicesChanged((ServiceChange(SERVICE, snapshot()),), 0), NOW)
    assert harness.outbox.wakes[-1] is not None and NOW <= harness.outbox.wakes[-1] < NOW + 1_000
    harness.probe_until_started()
    (probe,) = harness.outbox.probes
    assert (probe.kind, probe.ip, probe.port) == ("TCP", "127.0.0.1", 3306)
    assert harness.sample("nacos_actors_health_probes_in_flight") == 1
    assert harness.sample("nacos_actors_health_probe_targets") == 1

    refused = ProbeResult(probe.probe_id, "TCP", PROBE_REFUSED, True, "tcp:refused", 0.4)
    with caplog.at_level(logging.INFO, logger="nacos_actors.drivers.probe"):
        harness.driver.handle(ProbesFinished((refused,)), NOW + 1_000)
    proposed = [message for actor, message in harness.outbox.told if actor == RAFT]
    assert proposed == [
        Propose(ApplyProbeVerdict(SERVICE, "127.0.0.1", 3306, "DEFAULT", False, "TCP"), NOW + 1_000, NO_REPLY)
    ]
    assert "proposing unhealthy after 1 result(s), last tcp:refused" in caplog.text
    assert harness.sample("nacos_actors_health_probes_total", type="TCP", outcome="refused") == 1
    assert harness.sample("nacos_actors_health_probe_verdicts_total", type="TCP", verdict="unhealthy") == 1
    assert harness.sample("nacos_actors_health_probe_seconds_count", type="TCP") == 1
    assert harness.sample("nacos_actors_health_probes_in_flight") == 0


def test_an_unhealthy_instance_is_revived_only_after_check_times_successes():
    harness = Harness()
    harness.driver.start(NOW)
    harness.driver.handle(ServicesChanged((ServiceChange(SERVICE, snapshot(healthy=False)),), 0), NOW)
    for round_ in range(3):
        harness.probe_until_started()
        probe = harness.outbox.probes[-1]
        ok = ProbeResult(probe.probe_id, "TCP", PROBE_OK, False, "tcp:connected", 0.2)
        harness.driver.handle(ProbesFinished((ok,)), harness.outbox.wakes[-1] or NOW)
        proposed = [message for actor, message in harness.outbox.told if actor == RAFT]
        assert len(proposed) == (1 if round_ == 2 else 0)
    (verdict,) = [message.command for actor, message in harness.outbox.told if actor == RAFT]
    assert isinstance(verdict, ApplyProbeVerdict) and verdict.healthy
    assert harness.sample("nacos_actors_health_probes_total", type="TCP", outcome="ok") == 3


def test_the_prober_hears_what_raft_changes_and_not_the_ephemeral_writes():
    registry = RegistryCore()
    outbox = RecordingOutbox()
    driver = RegistryDriver(registry, outbox, NodeMetrics(CollectorRegistry(), RegistryView(registry)))
    driver.handle(Watch(PROBE, persistent_only=True), NOW)
    driver.handle(Watch(HEALTH), NOW)
    outbox.told.clear()
    ephemeral = Instance(ip="127.0.0.1", port=8080)
    driver.handle(WriteBatch((RegisterInstance(SERVICE, ephemeral),), NO_REPLY), NOW)
    assert [actor for actor, _ in outbox.told] == [HEALTH]
    persistent = snapshot()
    assert persistent.definition is not None
    change = DefinitionChange(SERVICE, persistent.definition, touched=tuple(persistent.definition.instances))
    driver.handle(DefinitionsApplied((change,), ()), NOW)
    assert [actor for actor, _ in outbox.told[1:]] == [HEALTH, PROBE]
