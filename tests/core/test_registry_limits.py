"""The registry's limits (issue 14, finding 5): instances per service, services per namespace and
merged instance metadata, refused with a 400 naming the setting; never past a limit whatever the
commands and batches; replicated states taken as they come. The limits count both halves of a
service: persistent writes (through Raft, tests.core.combined.LocalRegistry) are checked at the
edge against the whole registry, as well as by Raft's core against the persistent half."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nacos_actors.core.registry import NO_LIMITS, RegistryCore, RegistryLimits, Rejected
from nacos_actors.messages import (
    BeatInstance,
    CreateService,
    DeleteService,
    DeregisterInstance,
    Ok,
    Refused,
    RegisterInstance,
    RemoveEmptyService,
    UpdateMetadataBatch,
)
from nacos_actors.model import (
    NO_SELECTOR,
    Instance,
    InstanceKey,
    Service,
    ServiceKey,
    freeze,
    instance_map,
    metadata_size,
)
from tests.core.combined import LocalRegistry

NAMESPACES = ("public", "other")
SERVICES = [ServiceKey(ns, f"DEFAULT_GROUP@@s{n}") for ns in NAMESPACES for n in range(4)]
PORTS = range(8000, 8005)
LIMITS = RegistryLimits(max_instances_per_service=3, max_services_per_namespace=2, max_instance_metadata_bytes=8)


def key(port: int) -> InstanceKey:
    return InstanceKey("127.0.0.1", port, "DEFAULT", True)


def persistent_key(port: int) -> InstanceKey:
    return InstanceKey("127.0.0.1", port, "DEFAULT", False)


def refusal(core: RegistryCore | LocalRegistry, command) -> str:
    try:
        core.apply(command, 1)
    except Rejected as refused:
        assert refused.status == 400
        return refused.message
    raise AssertionError(f"{command} was not refused")


def test_the_default_is_no_limit():
    assert RegistryCore().limits == NO_LIMITS == RegistryLimits(0, 0, 0)


def test_instances_per_service():
    core = RegistryCore(LIMITS)
    service = SERVICES[0]
    for port in (1, 2, 3):
        core.apply(RegisterInstance(service, Instance("127.0.0.1", port)), 1)
    message = refusal(core, RegisterInstance(service, Instance("127.0.0.1", 4)))
    assert "holds 3 instances" in message and "max_instances_per_service" in message
    assert refusal(core, BeatInstance(service, key(4), Instance("127.0.0.1", 4)))
    core.apply(RegisterInstance(service, Instance("127.0.0.1", 3, weight=2.0)), 2)  # a replace is fine
    core.apply(DeregisterInstance(service, InstanceKey("127.0.0.1", 1, "DEFAULT", True)), 3)
    core.apply(RegisterInstance(service, Instance("127.0.0.1", 4)), 4)
    assert core.instance_count == 3


def test_services_per_namespace_and_a_refusal_keeps_the_tombstone():
    core = LocalRegistry(LIMITS)
    first, second, third = SERVICES[:3]
    core.apply(CreateService(first, 0.0, freeze({}), NO_SELECTOR), 1)
    core.apply(DeleteService(first), 2)
    remembered = core.registry.tombstones[first]
    core.apply(RegisterInstance(second, Instance("127.0.0.1", 1)), 3)
    core.apply(RegisterInstance(third, Instance("127.0.0.1", 1)), 4)
    message = refusal(core, RegisterInstance(first, Instance("127.0.0.1", 1)))
    assert "namespace public already holds 2 services" in message and "max_services_per_namespace" in message
    assert refusal(core, CreateService(first, 0.0, freeze({}), NO_SELECTOR))
    assert core.registry.tombstones[first] == remembered  # a later creation still carries on from it
    core.apply(RegisterInstance(SERVICES[4], Instance("127.0.0.1", 1)), 5)  # another namespace
    assert core.registry.service_count == 3


def test_a_batch_counts_the_services_it_creates_and_deletes():
    # A registry batch creates services by ephemeral registrations and deletes them by the
    # empty-service cleanup (CreateService and DeleteService go through Raft).
    core = RegistryCore(LIMITS)
    a, b, c, d = SERVICES[:4]
    core.apply(RegisterInstance(a, Instance("127.0.0.1", 1)), 1)
    done = core.apply_batch(
        [
            RegisterInstance(b, Instance("127.0.0.1", 1)),
            RegisterInstance(c, Instance("127.0.0.1", 1)),  # a and b: full
            DeregisterInstance(b, key(1)),
            RemoveEmptyService(b, 2),
            RegisterInstance(c, Instance("127.0.0.1", 1)),  # b went: room again
            RegisterInstance(d, Instance("127.0.0.1", 1)),
        ],
        2,
    )
    assert [type(outcome) for outcome in done.outcomes] == [Ok, Refused, Ok, Ok, Ok, Refused]
    assert sorted(s.key for s in core.all_services()) == sorted([a, c])


def test_a_service_made_through_raft_counts_the_services_of_both_halves():
    core = LocalRegistry(LIMITS)
    a, b, c = SERVICES[:3]
    core.apply(RegisterInstance(a, Instance("127.0.0.1", 1)), 1)
    core.apply(CreateService(b, 0.0, freeze({}), NO_SELECTOR), 2)
    for command in (
        CreateService(c, 0.0, freeze({}), NO_SELECTOR),
        RegisterInstance(c, Instance("127.0.0.1", 1, ephemeral=False)),
        BeatInstance(c, persistent_key(1), Instance("127.0.0.1", 1, ephemeral=False)),
        RegisterInstance(c, Instance("127.0.0.1", 1)),
    ):
        message = refusal(core, command)
        assert "namespace public already holds 2 services" in message, command
    assert core.registry.service_count == 2 and len(core.definitions.definitions) == 1


def test_a_persistent_instance_counts_the_instances_of_both_kinds():
    core = LocalRegistry(LIMITS)
    service = SERVICES[0]
    core.apply(RegisterInstance(service, Instance("127.0.0.1", 1)), 1)
    core.apply(RegisterInstance(service, Instance("127.0.0.1", 2)), 1)
    core.apply(RegisterInstance(service, Instance("127.0.0.1", 3, ephemeral=False)), 1)
    for command in (
        RegisterInstance(service, Instance("127.0.0.1", 4, ephemeral=False)),
        BeatInstance(service, persistent_key(4), Instance("127.0.0.1", 4, ephemeral=False)),
        RegisterInstance(service, Instance("127.0.0.1", 4)),
    ):
        message = refusal(core, command)
        assert "holds 3 instances" in message and "max_instances_per_service" in message, command
    core.apply(RegisterInstance(service, Instance("127.0.0.1", 3, weight=2.0, ephemeral=False)), 2)  # a replace
    assert core.registry.instance_count == 3


def test_a_metadata_merge_past_the_limit_changes_nothing():
    core = RegistryCore(LIMITS)
    service = SERVICES[0]
    core.apply(RegisterInstance(service, Instance("127.0.0.1", 1, metadata=freeze({"a": "1234"}))), 1)
    core.apply(RegisterInstance(service, Instance("127.0.0.1", 2)), 1)
    before = core.service(service)
    done = core.apply_batch([UpdateMetadataBatch(service, freeze({"b": "123"}), False, "ephemeral", ())], 2)
    (outcome,) = done.outcomes
    assert isinstance(outcome, Refused) and "would be 9 bytes" in outcome.message
    assert "max_instance_metadata_bytes" in outcome.message
    assert core.service(service) is before and not done.changes
    core.apply(UpdateMetadataBatch(service, freeze({"b": "12"}), False, "ephemeral", ()), 3)  # 8 bytes: fine
    core.apply(UpdateMetadataBatch(service, freeze({"a": ""}), True, "ephemeral", ()), 4)  # removal: never limited


def test_a_batch_naming_both_kinds_past_the_metadata_limit_changes_neither():
    core = LocalRegistry(LIMITS)
    service = SERVICES[0]
    core.apply(RegisterInstance(service, Instance("127.0.0.1", 1, metadata=freeze({"a": "1234"}))), 1)
    core.apply(RegisterInstance(service, Instance("127.0.0.1", 2, ephemeral=False)), 1)
    before = core.service(service)
    both = (key(1), persistent_key(2))
    message = refusal(core, UpdateMetadataBatch(service, freeze({"b": "123"}), False, None, both))
    assert "would be 9 bytes" in message and core.service(service) is before
    assert core.apply(UpdateMetadataBatch(service, freeze({"b": "12"}), False, None, both), 2) == (
        "127.0.0.1:2:unknown:DEFAULT:persist",
        "127.0.0.1:1:unknown:DEFAULT:ephemeral",
    )


def test_replicated_states_are_taken_past_the_limits():
    """A peer's state is the owner's truth: refusing it would split the cluster's view."""
    core = RegistryCore(LIMITS)
    for service in SERVICES[:3]:
        crowded = Service(
            key=service,
            instances=instance_map(Instance("127.0.0.1", p, metadata=freeze({"big": "x" * 50})) for p in PORTS),
            revision=1,
        )
        assert core.apply_replicated(crowded, False).value is True
    assert (core.service_count, core.instance_count) == (3, 15)


batched_commands = st.one_of(
    st.builds(
        lambda s, p, v: RegisterInstance(s, Instance("127.0.0.1", p, metadata=freeze({"v": v}))),
        st.sampled_from(SERVICES), st.sampled_from(PORTS), st.sampled_from(["", "1234567"]),
    ),
    st.builds(lambda s, p: DeregisterInstance(s, key(p)), st.sampled_from(SERVICES), st.sampled_from(PORTS)),
    st.builds(lambda s, p: BeatInstance(s, key(p), Instance("127.0.0.1", p)), st.sampled_from(SERVICES),
              st.sampled_from(PORTS)),
    st.builds(lambda s, v: UpdateMetadataBatch(s, freeze({"w": v}), False, "ephemeral", ()),
              st.sampled_from(SERVICES), st.sampled_from(["", "12345"])),
    st.builds(lambda s, r: RemoveEmptyService(s, r), st.sampled_from(SERVICES), st.integers(0, 6)),
)  # fmt: skip
"""What reaches a registry batch: the ephemeral writes and the health checker's verdicts."""

persistent_commands = st.one_of(
    st.builds(
        lambda s, p, v: RegisterInstance(s, Instance("127.0.0.1", p, ephemeral=False, metadata=freeze({"v": v}))),
        st.sampled_from(SERVICES), st.sampled_from(PORTS), st.sampled_from(["", "1234567"]),
    ),
    st.builds(lambda s, p: DeregisterInstance(s, persistent_key(p)), st.sampled_from(SERVICES),
              st.sampled_from(PORTS)),
    st.builds(lambda s, p: BeatInstance(s, persistent_key(p), Instance("127.0.0.1", p, ephemeral=False)),
              st.sampled_from(SERVICES), st.sampled_from(PORTS)),
    st.builds(lambda s, v: UpdateMetadataBatch(s, freeze({"w": v}), False, "persist", ()),
              st.sampled_from(SERVICES), st.sampled_from(["", "12345"])),
    st.builds(lambda s: CreateService(s, 0.0, freeze({}), NO_SELECTOR), st.sampled_from(SERVICES)),
    st.builds(DeleteService, st.sampled_from(SERVICES)),
)  # fmt: skip


def assert_within_limits(core: RegistryCore) -> None:
    for namespace, services in core.namespaces.items():
        assert len(services) <= LIMITS.max_services_per_namespace, namespace
        for service in services.values():
            assert len(service.instances) <= LIMITS.max_instances_per_service
            for instance in service.instances.values():  # registered with 8 bytes at most
                assert metadata_size(instance.metadata) <= LIMITS.max_instance_metadata_bytes
    assert core.service_count == sum(len(s) for s in core.namespaces.values())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(batched_commands, max_size=10), max_size=8))
def test_no_sequence_of_batches_passes_a_limit(batches):
    core = RegistryCore(LIMITS)
    now = 1_000
    for batch in batches:
        now += 1
        core.apply_batch(batch, now)
        assert_within_limits(core)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(batched_commands, persistent_commands), max_size=40))
def test_no_sequence_of_writes_of_either_kind_passes_a_limit(commands):
    local = LocalRegistry(LIMITS)
    for now, command in enumerate(commands, start=1_000):
        try:
            local.apply(command, now)
        except Rejected as refused:
            assert refused.status == 400, refused.message
        assert_within_limits(local.registry)
