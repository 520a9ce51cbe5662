"""Where the edge sends each write (nacos_actors.core.writes.route_write): ephemeral data to the
registry, persistent data to Raft, and the checks that need the whole service, refused as Nacos
words them before anything is proposed."""

from __future__ import annotations

from dataclasses import replace
from typing import get_args

import pytest

from nacos_actors.core.codec import decode_operation, encode_operation
from nacos_actors.core.registry import RegistryCore, RegistryLimits, Rejected
from nacos_actors.core.writes import Routed, route_write
from nacos_actors.messages import (
    BeatInstance,
    Command,
    CreateService,
    DeleteService,
    DeregisterInstance,
    ExpireInstance,
    MarkUnhealthy,
    PatchInstance,
    RegisterInstance,
    RemoveEmptyService,
    SetInstanceHealth,
    UpdateCluster,
    UpdateInstance,
    UpdateMetadataBatch,
    UpdateService,
)
from nacos_actors.model import (
    NO_SELECTOR,
    ClusterConfig,
    Instance,
    InstanceKey,
    Service,
    ServiceKey,
    freeze,
    instance_map,
)

SVC = ServiceKey("public", "DEFAULT_GROUP@@orders")
IP = "127.0.0.1"
EPHEMERAL = Instance(IP, 80)
PERSISTENT = Instance(IP, 81, ephemeral=False)


def key(port: int) -> InstanceKey:
    """A persistent instance's key at IP:port."""
    return InstanceKey(IP, port, "DEFAULT", False)


def service(*instances: Instance, clusters: dict | None = None) -> Service:
    return Service(key=SVC, instances=instance_map(instances), clusters=freeze(clusters or {}))


def refusal(command: Command, current: Service | None, **limits) -> tuple[int, str]:
    with pytest.raises(Rejected) as refused:
        route_write(command, current, **limits)
    return refused.value.status, refused.value.message


# -- instances ---------------------------------------------------------------------------------


@pytest.mark.parametrize("current", [None, service(EPHEMERAL, PERSISTENT)], ids=["absent", "present"])
def test_instance_writes_go_by_the_instances_kind(current):
    for instance in (EPHEMERAL, PERSISTENT):
        for command in (
            RegisterInstance(SVC, instance),
            UpdateInstance(SVC, instance, False),
            DeregisterInstance(SVC, instance.key),
        ):
            expected = Routed(command, None) if instance.ephemeral else Routed(None, command)
            assert route_write(command, current) == expected


def test_an_update_that_must_find_its_instance_refuses_a_missing_service_alike_for_both_kinds():
    words = (400, "service not found, namespace: public, service: DEFAULT_GROUP@@orders")
    assert refusal(UpdateInstance(SVC, PERSISTENT, True), None) == words
    with pytest.raises(Rejected) as refused:  # the registry's own check, for an ephemeral one
        RegistryCore().apply(UpdateInstance(SVC, EPHEMERAL, True), 1)
    assert (refused.value.status, refused.value.message) == words
    assert route_write(UpdateInstance(SVC, PERSISTENT, False), None).raft is not None


def test_a_patch_naming_its_kind_goes_by_it():
    for ephemeral in (True, False):
        patch = PatchInstance(SVC, IP, 80, "DEFAULT", ephemeral, weight=2.0)
        expected = Routed(patch, None) if ephemeral else Routed(None, patch)
        assert route_write(patch, service(EPHEMERAL)) == expected


def test_a_patch_of_either_kind_prefers_the_ephemeral_instance_then_the_persistent_one():
    patch = PatchInstance(SVC, IP, 80, "DEFAULT", None, enabled=False)
    both = service(EPHEMERAL, replace(EPHEMERAL, ephemeral=False))
    assert route_write(patch, both) == Routed(replace(patch, ephemeral=True), None)
    only_persistent = service(replace(EPHEMERAL, ephemeral=False))
    assert route_write(patch, only_persistent) == Routed(None, replace(patch, ephemeral=False))
    # Neither there: the registry answers "instance not found".
    assert route_write(patch, service(PERSISTENT)) == Routed(None, replace(patch, ephemeral=False))
    assert route_write(patch, None) == Routed(replace(patch, ephemeral=True), None)


def test_beats_of_ephemeral_instances_and_light_beats_go_to_the_registry():
    for current in (None, service(EPHEMERAL, PERSISTENT)):
        full = BeatInstance(SVC, EPHEMERAL.key, EPHEMERAL)
        light = BeatInstance(SVC, PERSISTENT.key, None)
        assert route_write(full, current) == Routed(full, None)
        assert route_write(light, current) == Routed(light, None)


def test_a_full_beat_registers_a_missing_persistent_instance_through_raft():
    beat = BeatInstance(SVC, PERSISTENT.key, PERSISTENT)
    assert route_write(beat, None) == Routed(None, RegisterInstance(SVC, PERSISTENT))
    assert route_write(beat, service(EPHEMERAL)) == Routed(None, RegisterInstance(SVC, PERSISTENT))


def test_a_full_beat_never_changes_a_persistent_instance_that_is_there():
    """Nacos's beat refreshes only ephemeral instances: the registry answers this one as it is."""
    unhealthy = replace(PERSISTENT, healthy=False, weight=5.0)
    beat = BeatInstance(SVC, PERSISTENT.key, PERSISTENT)
    assert route_write(beat, service(unhealthy)) == Routed(beat, None)


@pytest.mark.parametrize(
    "command",
    [MarkUnhealthy(SVC, EPHEMERAL.key), ExpireInstance(SVC, EPHEMERAL.key), RemoveEmptyService(SVC, 3)],
    ids=lambda command: type(command).__name__,
)
def test_the_health_checkers_verdicts_go_to_the_registry(command):
    assert route_write(command, service(EPHEMERAL)) == Routed(command, None)


# -- services and clusters ---------------------------------------------------------------------

CREATE = CreateService(SVC, 0.0, freeze({}), NO_SELECTOR)
UPDATE = UpdateService(SVC, 0.5, None, None)
DELETE = DeleteService(SVC)
CLUSTER = UpdateCluster(SVC, "c1", ClusterConfig())


def test_service_writes_go_to_raft():
    assert route_write(CREATE, None) == Routed(None, CREATE)
    for command in (UPDATE, DELETE, CLUSTER):
        assert route_write(command, service()) == Routed(None, command)


def test_create_service_refuses_a_service_held_by_either_half():
    for current in (service(), service(EPHEMERAL), service(PERSISTENT)):
        assert refusal(CREATE, current) == (
            400,
            "specified service already exists, serviceName : DEFAULT_GROUP@@orders",
        )


def test_update_service_and_update_cluster_refuse_a_missing_service():
    assert refusal(UPDATE, None) == (400, "service DEFAULT_GROUP@@orders not found!")
    assert refusal(CLUSTER, None) == (400, "service not found:DEFAULT_GROUP@@orders")


def test_delete_service_refuses_a_missing_service_or_one_with_ephemeral_instances():
    assert refusal(DELETE, None) == (400, "specified service not exist, serviceName : DEFAULT_GROUP@@orders")
    assert refusal(DELETE, service(EPHEMERAL, PERSISTENT)) == (
        400,
        "Service DEFAULT_GROUP@@orders is not empty, can't be delete. Please unregister instance first",
    )
    # Persistent instances are Raft's to see: it refuses them with the same words.
    assert route_write(DELETE, service(PERSISTENT)) == Routed(None, DELETE)


# -- health by hand ----------------------------------------------------------------------------


def test_manual_health_goes_to_raft_when_a_persistent_instance_is_there_else_to_the_registry():
    at_80 = SetInstanceHealth(SVC, IP, 80, "DEFAULT", False)
    assert route_write(at_80, service(EPHEMERAL, replace(EPHEMERAL, ephemeral=False))) == Routed(None, at_80)
    assert route_write(at_80, service(EPHEMERAL)) == Routed(at_80, None)
    # No instance at the address in a configured cluster: the registry answers that nothing changed.
    configured = SetInstanceHealth(SVC, IP, 80, "c1", False)
    assert route_write(configured, service(clusters={"c1": ClusterConfig()})) == Routed(configured, None)


def test_manual_health_refuses_a_missing_service_or_cluster_with_a_404():
    at_80 = SetInstanceHealth(SVC, IP, 80, "DEFAULT", False)
    assert refusal(at_80, None) == (404, "service DEFAULT_GROUP@@orders is not found!")
    assert refusal(replace(at_80, cluster="c1"), service(EPHEMERAL)) == (
        404,
        "cluster c1 is not found in service DEFAULT_GROUP@@orders!",
    )


# -- metadata batches --------------------------------------------------------------------------


def batch(kind: str | None = None, *targets: InstanceKey) -> UpdateMetadataBatch:
    return UpdateMetadataBatch(SVC, freeze({"k": "v"}), False, kind, targets)


def test_a_metadata_batch_by_kind_goes_to_that_kinds_store():
    assert route_write(batch("persist"), service()) == Routed(None, batch("persist"))
    assert route_write(batch("ephemeral"), service()) == Routed(batch("ephemeral"), None)


def test_a_metadata_batch_by_targets_is_split_by_their_kind():
    assert route_write(batch(None, EPHEMERAL.key, PERSISTENT.key), service()) == Routed(
        batch(None, EPHEMERAL.key), batch(None, PERSISTENT.key)
    )
    assert route_write(batch(None, EPHEMERAL.key), service()) == Routed(batch(None, EPHEMERAL.key), None)
    assert route_write(batch(None, PERSISTENT.key), service()) == Routed(None, batch(None, PERSISTENT.key))
    assert route_write(batch(None), service()) == Routed(batch(None), None)  # nothing named: answers ()


# -- limits counting both halves ---------------------------------------------------------------

LIMITS = {"limits": RegistryLimits(max_instances_per_service=2, max_services_per_namespace=3)}


@pytest.mark.parametrize(
    "command",
    [CREATE, RegisterInstance(SVC, PERSISTENT), UpdateInstance(SVC, PERSISTENT, False),
     BeatInstance(SVC, PERSISTENT.key, PERSISTENT)],
    ids=lambda command: type(command).__name__,
)  # fmt: skip
def test_a_persistent_write_that_makes_a_service_counts_every_service_of_the_namespace(command):
    assert refusal(command, None, services_held=3, **LIMITS) == (
        400,
        "namespace public already holds 3 services, the limit (max_services_per_namespace)",
    )
    assert route_write(command, None, services_held=2, **LIMITS).raft is not None


@pytest.mark.parametrize(
    "command",
    [RegisterInstance(SVC, PERSISTENT), UpdateInstance(SVC, PERSISTENT, False),
     BeatInstance(SVC, PERSISTENT.key, PERSISTENT)],
    ids=lambda command: type(command).__name__,
)  # fmt: skip
def test_a_new_persistent_instance_counts_the_instances_of_both_kinds(command):
    full = service(EPHEMERAL, replace(EPHEMERAL, port=82))
    assert refusal(command, full, services_held=3, **LIMITS) == (
        400,
        "service DEFAULT_GROUP@@orders already holds 2 instances, the limit (max_instances_per_service)",
    )
    replacing = service(EPHEMERAL, PERSISTENT)
    assert route_write(RegisterInstance(SVC, replace(PERSISTENT, weight=2.0)), replacing, **LIMITS).raft is not None


def test_a_batch_split_between_both_stores_is_refused_whole_past_the_metadata_limit():
    limits = RegistryLimits(max_instance_metadata_bytes=8)
    current = service(replace(EPHEMERAL, metadata=freeze({"a": "1234"})), PERSISTENT)
    over = UpdateMetadataBatch(SVC, freeze({"b": "123"}), False, None, (PERSISTENT.key, EPHEMERAL.key))
    assert refusal(over, current, limits=limits) == (
        400,
        "metadata of instance 127.0.0.1:80:unknown:DEFAULT would be 9 bytes, "
        "over the limit of 8 (max_instance_metadata_bytes)",
    )
    within = replace(over, metadata=freeze({"b": "12"}))
    assert route_write(within, current, limits=limits) == Routed(
        replace(within, targets=(EPHEMERAL.key,)), replace(within, targets=(PERSISTENT.key,))
    )
    removal = replace(over, remove=True)
    assert route_write(removal, current, limits=limits).raft is not None  # a removal is never limited


def test_ephemeral_writes_are_left_to_the_registrys_own_limits():
    full = service(EPHEMERAL, PERSISTENT)
    register = RegisterInstance(SVC, replace(EPHEMERAL, port=99))
    assert route_write(register, full, services_held=3, **LIMITS) == Routed(register, None)
    assert route_write(register, None, services_held=3, **LIMITS) == Routed(register, None)


# -- every write has a route -------------------------------------------------------------------

EXAMPLES: dict[type, list[Command]] = {
    RegisterInstance: [RegisterInstance(SVC, EPHEMERAL), RegisterInstance(SVC, PERSISTENT)],
    DeregisterInstance: [DeregisterInstance(SVC, EPHEMERAL.key), DeregisterInstance(SVC, PERSISTENT.key)],
    UpdateInstance: [UpdateInstance(SVC, EPHEMERAL, False), UpdateInstance(SVC, PERSISTENT, False)],
    PatchInstance: [PatchInstance(SVC, IP, 80, "DEFAULT", None), PatchInstance(SVC, IP, 81, "DEFAULT", None)],
    BeatInstance: [BeatInstance(SVC, EPHEMERAL.key, None), BeatInstance(SVC, key(82), replace(PERSISTENT, port=82))],
    MarkUnhealthy: [MarkUnhealthy(SVC, EPHEMERAL.key)],
    ExpireInstance: [ExpireInstance(SVC, EPHEMERAL.key)],
    CreateService: [CREATE],
    UpdateService: [UPDATE],
    DeleteService: [DELETE],
    RemoveEmptyService: [RemoveEmptyService(SVC, 1)],
    UpdateMetadataBatch: [batch("ephemeral"), batch("persist"), batch(None, EPHEMERAL.key, PERSISTENT.key)],
    UpdateCluster: [CLUSTER],
    SetInstanceHealth: [SetInstanceHealth(SVC, IP, 80, "DEFAULT", True), SetInstanceHealth(SVC, IP, 81, "DEFAULT", True)],
}  # fmt: skip


# The service each write is routed against: one that holds both kinds, unless it must not.
SERVICE_FOR: dict[type, Service | None] = {CreateService: None, DeleteService: service(PERSISTENT)}


@pytest.mark.parametrize("kind", get_args(Command), ids=lambda kind: kind.__name__)
def test_every_write_has_a_route_and_what_goes_to_raft_is_an_entry_raft_takes(kind):
    for command in EXAMPLES[kind]:
        current = SERVICE_FOR.get(kind, service(EPHEMERAL, PERSISTENT))
        routed = route_write(command, current)
        assert (routed.registry, routed.raft) != (None, None), command
        if routed.raft is not None:  # a persistent entry: no ephemeral instance or key in it
            assert decode_operation(encode_operation(routed.raft, 1)) == (routed.raft, 1)
