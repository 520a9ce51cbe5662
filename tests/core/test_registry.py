"""The registry against a plain reference model, plus its rules one by one. Persistent writes go
through a one-member Raft (tests.core.combined.LocalRegistry), as the edge routes them."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from nacos_actors.core.registry import RegistryCore, Rejected
from nacos_actors.messages import (
    BeatInstance,
    CreateService,
    DeleteService,
    DeregisterInstance,
    PatchInstance,
    RegisterInstance,
    UpdateInstance,
    UpdateMetadataBatch,
    UpdateService,
)
from nacos_actors.model import (
    NO_SELECTOR,
    ClusterConfig,
    Definition,
    Instance,
    InstanceKey,
    Selector,
    Service,
    ServiceKey,
    default_instance_id,
    freeze,
    instance_map,
)
from tests.core.combined import LocalRegistry

SERVICES = [ServiceKey("public", "DEFAULT_GROUP@@a"), ServiceKey("public", "g@@b"), ServiceKey("dev", "DEFAULT_GROUP@@a")]

instances = st.builds(
    Instance,
    ip=st.sampled_from(["127.0.0.1", "127.0.0.2"]),
    port=st.sampled_from([8080, 8081]),
    cluster=st.sampled_from(["DEFAULT", "c1"]),
    weight=st.sampled_from([0.0, 1.0, 2.5]),
    healthy=st.booleans(),
    enabled=st.booleans(),
    ephemeral=st.booleans(),
    metadata=st.dictionaries(st.sampled_from(["k", "v"]), st.sampled_from(["1", "2"]), max_size=2).map(freeze),
)
keys = st.builds(
    InstanceKey,
    st.sampled_from(["127.0.0.1", "127.0.0.2"]),
    st.sampled_from([8080, 8081]),
    st.sampled_from(["DEFAULT", "c1"]),
    st.booleans(),
)


def visible(core: RegistryCore) -> dict:
    """Everything a client can see, as plain values."""
    return {
        (ns, name): {key: instance for key, instance in service.instances.items()}
        for ns, services in core.namespaces.items()
        for name, service in services.items()
    }


def _plain(service) -> tuple:
    """A service's whole content as plain, independent values."""
    return (
        service.revision,
        service.modified_ms,
        dict(service.metadata),
        [(key, repr(instance), dict(instance.metadata)) for key, instance in service.instances.items()],
    )


class RegistryAgainstModel(RuleBasedStateMachine):
    """Any sequence of writes leaves the core showing what a dict-of-dicts model shows."""

    def __init__(self) -> None:
        super().__init__()
        self.local = LocalRegistry()
        self.core = self.local.registry
        self.model: dict[ServiceKey, dict[InstanceKey, Instance]] = {}
        self.now = 1_000
        self.held: list[tuple[object, object]] = []

    def _tick(self) -> int:
        self.now += 7
        return self.now

    def _hold_snapshots(self) -> None:
        """Keep what a reader holds now, with a deep copy to compare against later."""
        for service in list(self.core.all_services())[:3]:
            self.held.append((service, _plain(service)))
        self.held = self.held[-20:]

    def _model_put(self, service: ServiceKey, instance: Instance) -> None:
        current = self.model.setdefault(service, {})
        previous = current.get(instance.key)
        instance_id = previous.instance_id if previous else default_instance_id(instance.key, service.name)
        current[instance.key] = replace(instance, instance_id=instance_id)

    @rule(service=st.sampled_from(SERVICES), instance=instances)
    def register(self, service, instance):
        self._hold_snapshots()
        self.local.apply(RegisterInstance(service, instance), self._tick())
        self._model_put(service, instance)

    @rule(service=st.sampled_from(SERVICES), key=keys)
    def deregister(self, service, key):
        self._hold_snapshots()
        self.local.apply(DeregisterInstance(service, key), self._tick())
        self.model.get(service, {}).pop(key, None)

    @rule(service=st.sampled_from(SERVICES), instance=instances, must_exist=st.booleans())
    def update(self, service, instance, must_exist):
        exists = instance.key in self.model.get(service, {})
        if must_exist and not exists:
            with pytest.raises(Rejected):
                self.local.apply(UpdateInstance(service, instance, must_exist), self._tick())
            return
        self.local.apply(UpdateInstance(service, instance, must_exist), self._tick())
        self._model_put(service, instance)

    @rule(service=st.sampled_from(SERVICES), key=keys, weight=st.sampled_from([None, 3.0]), enabled=st.sampled_from([None, False, True]))
    def patch(self, service, key, weight, enabled):
        command = PatchInstance(service, key.ip, key.port, key.cluster, key.ephemeral, weight=weight, enabled=enabled)
        found = self.model.get(service, {}).get(key)
        if found is None:
            with pytest.raises(Rejected):
                self.local.apply(command, self._tick())
            return
        self.local.apply(command, self._tick())
        changes = {k: v for k, v in {"weight": weight, "enabled": enabled}.items() if v is not None}
        self.model[service][key] = replace(found, **changes)

    @rule(service=st.sampled_from(SERVICES), key=keys, full=st.booleans())
    def beat(self, service, key, full):
        reregister = Instance(key.ip, key.port, key.cluster, ephemeral=key.ephemeral) if full else None
        answer = self.local.apply(BeatInstance(service, key, reregister), self._tick())
        found = self.model.get(service, {}).get(key)
        if found is None:
            if full:
                self._model_put(service, reregister)
                assert answer == self.model[service][key]
            else:
                assert answer is None
        elif not found.healthy and found.ephemeral:  # a beat never revives a persistent instance (as Nacos)
            self.model[service][key] = replace(found, healthy=True)

    @invariant()
    def same_visible_state(self):
        assert visible(self.core) == {(s.namespace, s.name): i for s, i in self.model.items()}

    @invariant()
    def counters_match(self):
        services = list(self.core.all_services())
        assert self.core.service_count == len(services)
        assert self.core.instance_count == sum(len(s.instances) for s in services)

    @invariant()
    def held_snapshots_never_change(self):
        for service, plain_copy in self.held:
            assert _plain(service) == plain_copy


TestRegistryAgainstModel = RegistryAgainstModel.TestCase
TestRegistryAgainstModel.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


# -- rules, one by one -----------------------------------------------------------------------

SVC = ServiceKey("public", "DEFAULT_GROUP@@demo")


def test_reregister_resets_fields_and_keeps_the_instance_id():
    core = RegistryCore()
    core.apply(RegisterInstance(SVC, Instance("127.0.0.1", 80, weight=5.0, metadata=freeze({"a": "b"}))), 1)
    first = core.service(SVC).instances[InstanceKey("127.0.0.1", 80, "DEFAULT", True)]
    core.apply(RegisterInstance(SVC, Instance("127.0.0.1", 80)), 2)
    again = core.service(SVC).instances[first.key]
    assert (again.weight, dict(again.metadata)) == (1.0, {})
    assert again.instance_id == first.instance_id == "127.0.0.1#80#DEFAULT#DEFAULT_GROUP@@demo"


def test_ephemeral_and_persistent_with_one_address_are_two_instances():
    core = LocalRegistry()
    core.apply(RegisterInstance(SVC, Instance("127.0.0.1", 80, ephemeral=True)), 1)
    core.apply(RegisterInstance(SVC, Instance("127.0.0.1", 80, ephemeral=False)), 2)
    assert len(core.service(SVC).instances) == 2
    core.apply(DeregisterInstance(SVC, InstanceKey("127.0.0.1", 80, "DEFAULT", False)), 3)
    assert [k.ephemeral for k in core.service(SVC).instances] == [True]


def test_unchanged_register_publishes_nothing():
    core = RegistryCore()
    core.apply(RegisterInstance(SVC, Instance("127.0.0.1", 80)), 1)
    before = core.service(SVC)
    applied = core.apply(RegisterInstance(SVC, Instance("127.0.0.1", 80)), 2)
    assert applied.changed is None and core.service(SVC) is before


def test_every_change_bumps_revision_and_modified_time_monotonically():
    core = RegistryCore()
    core.apply(RegisterInstance(SVC, Instance("127.0.0.1", 80)), 100)
    core.apply(RegisterInstance(SVC, Instance("127.0.0.1", 81)), 50)  # the clock stepped back
    service = core.service(SVC)
    assert service.revision == 2 and service.modified_ms == 101


def test_snowflake_ids_are_the_smallest_free_integers():
    core = RegistryCore()
    snowflake = freeze({"preserved.instance.id.generator": "snowflake"})
    for port in (80, 81, 82):
        core.apply(RegisterInstance(SVC, Instance("127.0.0.1", port, metadata=snowflake)), port)
    core.apply(DeregisterInstance(SVC, InstanceKey("127.0.0.1", 81, "DEFAULT", True)), 90)
    core.apply(RegisterInstance(SVC, Instance("127.0.0.1", 83, metadata=snowflake)), 91)
    assert sorted(i.instance_id for i in core.service(SVC).instances.values()) == ["0", "1", "2"]


def test_light_beat_on_unknown_instance_changes_nothing():
    core = RegistryCore()
    applied = core.apply(BeatInstance(SVC, InstanceKey("127.0.0.1", 80, "DEFAULT", True), None), 1)
    assert applied.value is None and core.service(SVC) is None


def test_beat_does_not_revive_a_marked_instance_but_answers_it():
    core = RegistryCore()
    marked = Instance("127.0.0.1", 80, healthy=False, marked=True)
    core.apply(RegisterInstance(SVC, marked), 1)
    applied = core.apply(BeatInstance(SVC, marked.key, None), 2)
    assert applied.changed is None and applied.value.healthy is False


def test_service_lifecycle_rules():
    local = LocalRegistry()
    core = local.registry
    local.apply(CreateService(SVC, 0.5, freeze({"a": "1"}), NO_SELECTOR), 1)
    with pytest.raises(Rejected, match="already exists"):
        local.apply(CreateService(SVC, 0.5, freeze({}), NO_SELECTOR), 2)
    local.apply(UpdateService(SVC, 0.2, None, None), 3)
    assert core.service(SVC).protect_threshold == 0.2 and dict(core.service(SVC).metadata) == {"a": "1"}
    local.apply(RegisterInstance(SVC, Instance("127.0.0.1", 80)), 4)
    with pytest.raises(Rejected, match="not empty") as refused:
        local.apply(DeleteService(SVC), 5)
    assert refused.value.status == 400
    local.apply(DeregisterInstance(SVC, InstanceKey("127.0.0.1", 80, "DEFAULT", True)), 6)
    local.apply(DeleteService(SVC), 7)
    assert core.service(SVC) is None and core.namespaces == {} and core.service_count == 0
    with pytest.raises(Rejected, match="not exist"):
        local.apply(DeleteService(SVC), 8)
    with pytest.raises(Rejected, match="not found"):
        local.apply(UpdateService(SVC, 0.1, None, None), 9)


def test_metadata_batch_merges_or_removes_on_the_chosen_instances():
    core = LocalRegistry()
    core.apply(RegisterInstance(SVC, Instance("127.0.0.1", 80, metadata=freeze({"a": "1", "b": "2"}))), 1)
    core.apply(RegisterInstance(SVC, Instance("127.0.0.1", 81, ephemeral=False)), 2)
    merged = core.apply(UpdateMetadataBatch(SVC, freeze({"c": "3"}), False, "ephemeral", ()), 3)
    assert merged == ("127.0.0.1:80:unknown:DEFAULT:ephemeral",)
    removed = core.apply(
        UpdateMetadataBatch(SVC, freeze({"a": ""}), True, None, (InstanceKey("127.0.0.1", 80, "DEFAULT", True),)), 4
    )
    assert removed == ("127.0.0.1:80:unknown:DEFAULT:ephemeral",)
    ephemeral = core.service(SVC).instances[InstanceKey("127.0.0.1", 80, "DEFAULT", True)]
    assert dict(ephemeral.metadata) == {"b": "2", "c": "3"}
    assert core.apply(UpdateMetadataBatch(ServiceKey("public", "x@@y"), freeze({}), False, "persist", ()), 5) == ()
    both = (InstanceKey("127.0.0.1", 80, "DEFAULT", True), InstanceKey("127.0.0.1", 81, "DEFAULT", False))
    answered = core.apply(UpdateMetadataBatch(SVC, freeze({"d": "4"}), False, None, both), 6)
    assert answered == ("127.0.0.1:81:unknown:DEFAULT:persist", "127.0.0.1:80:unknown:DEFAULT:ephemeral")
    assert all(i.metadata.get("d") == "4" for i in core.service(SVC).instances.values())


@settings(max_examples=50, deadline=None)
@given(st.lists(instances, max_size=8))
def test_load_rebuilds_the_counters(batch):
    local = LocalRegistry()
    for n, instance in enumerate(batch):
        local.apply(RegisterInstance(SVC, instance), n)
    core = local.registry
    copy_of = RegistryCore()
    copy_of.load(core.all_services())
    assert visible(copy_of) == visible(core)
    assert (copy_of.service_count, copy_of.instance_count) == (core.service_count, core.instance_count)


def test_an_instance_write_keeps_every_other_service_field():
    """The instance writes build the next Service directly (not through dataclasses.replace):
    every field but instances, revision and modified_ms must carry over, including any
    field added to Service later."""
    current = Service(
        key=ServiceKey("ns-1", "G@@svc"),
        instances=instance_map([Instance("127.0.0.1", 80)]),
        protect_threshold=0.5,
        metadata=freeze({"k": "v"}),
        selector=Selector("label", "a = b"),
        explicit=True,
        revision=7,
        modified_ms=1_000,
        clusters=freeze({"C1": ClusterConfig()}),
        definition=Definition(key=ServiceKey("ns-1", "G@@svc"), explicit=True),
    )
    defaults = Service(key=current.key)
    for field in dataclasses.fields(Service):
        if field.name not in ("instances", "revision", "modified_ms", "key"):
            assert getattr(current, field.name) != getattr(defaults, field.name), f"set {field.name} in this test"
    instances = instance_map([Instance("127.0.0.1", 81)])
    following = RegistryCore._next_instances(current, instances, 900)
    expected = replace(current, instances=instances, revision=8, modified_ms=1_001)
    for field in dataclasses.fields(Service):
        assert getattr(following, field.name) == getattr(expected, field.name), field.name
