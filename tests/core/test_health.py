"""The health core: beat deadlines with integer time, driven together with the registry core."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from nacos_actors.core.health import HealthConfig, HealthCore
from nacos_actors.core.registry import RegistryCore
from nacos_actors.messages import (
    BeatInstance,
    Command,
    DeleteService,
    DeregisterInstance,
    ExpireInstance,
    MarkUnhealthy,
    RegisterInstance,
    RemoveEmptyService,
)
from nacos_actors.model import (
    HEART_BEAT_TIMEOUT_KEY,
    IP_DELETE_TIMEOUT_KEY,
    Instance,
    InstanceKey,
    ServiceKey,
    freeze,
)
from tests.core.combined import LocalRegistry

SERVICE = ServiceKey("public", "DEFAULT_GROUP@@orders")


def instance(port: int, *, timeout: int | None = None, delete: int | None = None, **fields) -> Instance:
    metadata = {}
    if timeout is not None:
        metadata[HEART_BEAT_TIMEOUT_KEY] = str(timeout)
    if delete is not None:
        metadata[IP_DELETE_TIMEOUT_KEY] = str(delete)
    return Instance("127.0.0.1", port, metadata=freeze(metadata), **fields)


@dataclass
class World:
    """A registry (tests.core.combined: persistent writes through a one-member Raft) and a health
    core wired as the actors wire them, with a dict for beats."""

    config: HealthConfig = field(default_factory=HealthConfig)
    compare_all: bool = False
    now: int = 0
    verdicts: list[tuple[int, Command]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.local = LocalRegistry()
        self.registry = self.local.registry
        self.health = HealthCore(self.config)
        self.beats: dict[tuple[ServiceKey, InstanceKey], int] = {}

    def last_beat(self, service: ServiceKey, key: InstanceKey) -> int | None:
        return self.beats.get((service, key))

    def write(self, command: Command) -> None:
        """Apply a command; tell the health core what changed, as the registry actor does
        (with the touched instances, or with None to make it compare everything)."""
        seen = len(self.local.changes)
        self.local.apply(command, self.now)
        for change in self.local.changes[seen:]:
            self._observe(change.key, change.snapshot, None if self.compare_all else change.touched)

    def _observe(self, key, snapshot, touched) -> None:
        observed = self.health.observe(key, snapshot, self.now, self.last_beat, touched)
        for instance_key in observed.appeared:
            self.beats.setdefault((key, instance_key), self.now)
        for instance_key in observed.removed:
            self.beats.pop((key, instance_key), None)

    def register(self, at: int, new: Instance, service: ServiceKey = SERVICE) -> None:
        self.advance(at - 1)
        self.now = at
        self.write(RegisterInstance(service, new))
        self.beats[(service, new.key)] = at

    def beat(self, at: int, key: InstanceKey, service: ServiceKey = SERVICE) -> None:
        """What the front does: record the beat; revive an unhealthy instance with a write."""
        self.advance(at - 1)
        self.now = at
        found = self.registry.service(service).instances.get(key)
        if found is None:
            return
        self.beats[(service, key)] = at
        if not found.healthy:
            self.write(BeatInstance(service, key, None))

    def advance(self, until: int) -> None:
        """Wake at every deadline up to `until`, as the alarm would, and apply the verdicts."""
        while (deadline := self.health.next_deadline()) is not None and deadline <= until:
            self.now = max(self.now, deadline)
            for command in self.health.due(self.now, self.last_beat):
                self.verdicts.append((self.now, command))
                self.write(command)
        self.now = max(self.now, until)

    def instance(self, key: InstanceKey, service: ServiceKey = SERVICE) -> Instance | None:
        snapshot = self.registry.service(service)
        return snapshot.instances.get(key) if snapshot is not None else None


def test_default_deadlines_mark_unhealthy_after_15_s_and_remove_after_30_s():
    world = World()
    silent = instance(1)
    world.register(0, silent)
    assert world.health.next_deadline() == 15_001
    world.advance(15_000)
    assert world.instance(silent.key).healthy
    world.advance(15_001)
    assert not world.instance(silent.key).healthy
    assert world.health.next_deadline() == 30_001
    world.advance(30_000)
    assert world.instance(silent.key) is not None
    world.advance(30_001)
    assert world.instance(silent.key) is None
    assert world.verdicts == [(15_001, MarkUnhealthy(SERVICE, silent.key)), (30_001, ExpireInstance(SERVICE, silent.key))]
    assert world.health.next_deadline() is None
    assert (SERVICE, silent.key) not in world.beats


def test_per_instance_timeouts_come_from_the_metadata():
    world = World()
    quick = instance(1, timeout=1_000, delete=2_500)
    slow = instance(2)
    world.register(0, quick)
    world.register(0, slow)
    world.advance(40_000)
    assert world.verdicts == [
        (1_001, MarkUnhealthy(SERVICE, quick.key)),
        (2_501, ExpireInstance(SERVICE, quick.key)),
        (15_001, MarkUnhealthy(SERVICE, slow.key)),
        (30_001, ExpireInstance(SERVICE, slow.key)),
    ]


def test_beats_keep_an_instance_healthy_and_a_beat_revives_an_unhealthy_one():
    world = World()
    beating = instance(1, timeout=1_000, delete=3_000)
    world.register(0, beating)
    for at in range(500, 5_001, 500):
        world.beat(at, beating.key)
    assert world.verdicts == []
    world.advance(6_001)
    assert world.verdicts == [(6_001, MarkUnhealthy(SERVICE, beating.key))]
    world.beat(6_500, beating.key)
    assert world.instance(beating.key).healthy
    assert world.health.next_deadline() == 7_501
    world.advance(9_000)
    assert world.verdicts[1:] == [(7_501, MarkUnhealthy(SERVICE, beating.key))]


def test_marked_and_persistent_instances_are_never_expired():
    world = World()
    marked = instance(1, marked=True)
    persistent = instance(2, ephemeral=False)
    world.register(0, marked)
    world.register(0, persistent)
    world.advance(100_000)
    assert world.verdicts == []
    assert world.health.next_deadline() is None


def test_without_expiry_a_silent_instance_is_only_marked_unhealthy():
    world = World(HealthConfig(expire_instances=False))
    silent = instance(1)
    world.register(0, silent)
    world.advance(100_000)
    assert world.verdicts == [(15_001, MarkUnhealthy(SERVICE, silent.key))]
    assert world.instance(silent.key) is not None


def test_with_beat_checks_off_nothing_is_expired():
    world = World(HealthConfig(check_beats=False))
    world.register(0, instance(1))
    world.advance(100_000)
    assert world.verdicts == []


def test_an_instance_without_a_beat_on_record_counts_from_when_its_service_was_first_seen():
    registry = RegistryCore()
    registry.apply(RegisterInstance(SERVICE, instance(1)), 0)  # e.g. loaded from --data-dir
    health = HealthCore(HealthConfig())
    observed = health.observe(SERVICE, registry.service(SERVICE), 50_000, lambda s, k: None)
    assert observed.appeared == (instance(1).key,)
    assert health.next_deadline() == 65_001
    assert health.due(65_000, lambda s, k: None) == []
    assert health.due(65_001, lambda s, k: None) == [MarkUnhealthy(SERVICE, instance(1).key)]


def test_a_deregistered_instance_is_forgotten_and_its_deadline_dropped():
    world = World()
    gone = instance(1)
    world.register(0, gone)
    world.advance(1_000)
    world.write(DeregisterInstance(SERVICE, gone.key))
    assert (SERVICE, gone.key) not in world.beats
    world.advance(100_000)
    assert world.verdicts == []


def test_empty_services_stay_unless_cleanup_is_configured():
    world = World()
    only = instance(1)
    world.register(0, only)
    world.write(DeregisterInstance(SERVICE, only.key))
    world.advance(10_000_000)
    assert world.registry.service(SERVICE) is not None


def test_an_empty_service_is_removed_after_its_ttl_when_configured():
    world = World(HealthConfig(clean_empty_services=True, empty_service_ttl_ms=60_000))
    only = instance(1, timeout=1_000, delete=2_000)
    world.register(0, only)
    world.advance(61_000)
    assert world.registry.service(SERVICE) is not None  # emptied at 2_001 by expiry
    world.advance(62_001)
    assert world.registry.service(SERVICE) is None
    assert world.verdicts[-1] == (62_001, RemoveEmptyService(SERVICE, 3))


def test_a_service_that_fills_again_is_not_cleaned_up():
    world = World(HealthConfig(clean_empty_services=True, empty_service_ttl_ms=1_000))
    first = instance(1)
    world.register(0, first)
    world.now = 10
    world.write(DeregisterInstance(SERVICE, first.key))
    world.register(500, instance(2))
    world.advance(5_000)
    assert world.registry.service(SERVICE) is not None
    assert not any(isinstance(c, RemoveEmptyService) for _, c in world.verdicts)


def test_a_stale_cleanup_verdict_changes_nothing():
    registry = RegistryCore()
    registry.apply(RegisterInstance(SERVICE, instance(1)), 0)
    registry.apply(DeregisterInstance(SERVICE, instance(1).key), 1)
    revision = registry.service(SERVICE).revision
    registry.apply(RegisterInstance(SERVICE, instance(2)), 2)
    assert registry.apply(RemoveEmptyService(SERVICE, revision), 3).value is False
    assert registry.service(SERVICE) is not None


def test_a_deleted_service_is_forgotten():
    world = World(HealthConfig(clean_empty_services=True, empty_service_ttl_ms=1_000))
    world.register(0, instance(1))
    world.write(DeregisterInstance(SERVICE, instance(1).key))
    world.write(DeleteService(SERVICE))
    world.advance(10_000)
    assert world.verdicts == []
    assert world.health.service_count == 0


def test_verdicts_on_a_changed_instance_are_conditional():
    registry = RegistryCore()
    registry.apply(RegisterInstance(SERVICE, instance(1, marked=True)), 0)
    assert registry.apply(MarkUnhealthy(SERVICE, instance(1).key), 1).value is False
    assert registry.apply(ExpireInstance(SERVICE, instance(1).key), 1).value is False
    assert registry.apply(MarkUnhealthy(SERVICE, instance(9).key), 1).value is False
    assert registry.service(SERVICE).instances[instance(1).key].healthy


# -- the deadlines are exact: compared with a brute-force model, millisecond by millisecond ------------------

timeouts = st.integers(1, 30).map(lambda n: n * 100)


@st.composite
def scenarios(draw):
    count = draw(st.integers(1, 5))
    members = []
    for port in range(1, count + 1):
        timeout = draw(timeouts)
        delete = draw(timeouts)
        start = draw(st.integers(0, 20)) * 50
        beats = sorted(set(draw(st.lists(st.integers(0, 120).map(lambda n: n * 50), max_size=12))))
        members.append((instance(port, timeout=timeout, delete=delete), start, [b for b in beats if b > start]))
    return members


def brute_force(members, horizon: int) -> list[tuple[int, str, int]]:
    """Nacos's rule checked every millisecond: beats first, then the timeouts."""
    events = []
    for member, start, beats in members:
        healthy, last, beat_times = True, start, set(beats)
        for now in range(start + 1, horizon + 1):
            if now in beat_times:
                last, healthy = now, True
            if now - last > member.delete_timeout_ms:
                events.append((now, "expire", member.port))
                break
            if healthy and now - last > member.beat_timeout_ms:
                healthy = False
                events.append((now, "unhealthy", member.port))
    return sorted(events)


@settings(max_examples=60, deadline=None)
@given(scenarios(), st.booleans())
def test_verdicts_land_exactly_at_the_first_millisecond_past_each_deadline(members, compare_all):
    horizon = 10_000
    world = World(compare_all=compare_all)
    timeline = sorted(
        [(start, 0, member) for member, start, _ in members]
        + [(at, 1, member) for member, _, beats in members for at in beats],
        key=lambda item: (item[0], item[1]),
    )
    for at, kind, member in timeline:
        if kind == 0:
            world.register(at, member)
        else:
            world.beat(at, member.key)
    world.advance(horizon)
    got = sorted(
        (at, "expire" if isinstance(command, ExpireInstance) else "unhealthy", command.key.port)
        for at, command in world.verdicts
    )
    assert got == brute_force(members, horizon)
