"""A service's two halves in the registry: the persistent half Raft commits (apply_definitions,
load_definitions) merged with the ephemeral half the registry writes and Distro replicates.
Neither overwrites the other: a Distro state never touches the local persistent half, a
persistent change never moves the ephemeral stamp Distro compares, and the counters always
match the map, whatever the interleaving."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, note, settings
from hypothesis import strategies as st

from nacos_actors.core.definitions import DefinitionCore
from nacos_actors.core.registry import (
    NO_LIMITS,
    RegistryCore,
    Rejected,
    definition_of,
    persistent_half_only,
    with_definition,
    without_definition,
)
from nacos_actors.messages import (
    CreateService,
    DefinitionChange,
    DeleteService,
    DeregisterInstance,
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
    Definition,
    Dropped,
    Instance,
    Selector,
    Service,
    ServiceKey,
    Tombstone,
    freeze,
    instance_map,
    stamp_of,
)
from tests.core.combined import LocalRegistry

SVC = ServiceKey("public", "DEFAULT_GROUP@@orders")
IP = "127.0.0.1"
NONE_CHECKER = ClusterConfig(freeze({"type": "NONE"}))


def ephemeral(port: int = 80, **fields) -> Instance:
    return Instance(IP, port, instance_id=f"e{port}", **fields)


def persistent(port: int = 90, **fields) -> Instance:
    return Instance(IP, port, ephemeral=False, instance_id=f"p{port}", **fields)


def definition(*instances: Instance, **fields) -> Definition:
    return Definition(SVC, instance_map(instances), **fields)


def state(revision: int, *instances: Instance, modified_ms: int = 0, **fields) -> Service:
    """A service state as a peer sends it."""
    return Service(SVC, instance_map(instances), revision=revision, modified_ms=modified_ms or revision * 100, **fields)


def ports(service: Service | None) -> list[tuple[int, bool]]:
    return [] if service is None else sorted((k.port, k.ephemeral) for k in service.instances)


def assert_consistent(core: RegistryCore) -> None:
    """The counters match the map, and every snapshot joins its halves as with_definition does."""
    services = list(core.all_services())
    assert core.service_count == len(services) == sum(len(s) for s in core.namespaces.values())
    assert core.instance_count == sum(len(s.instances) for s in services)
    for service in services:
        held = service.definition
        persistent_keys = {k for k in service.instances if not k.ephemeral}
        assert persistent_keys == (set(held.instances) if held is not None else set())
        assert all(service.instances[k] is i for k, i in (held.instances.items() if held else ()))
        expected = Definition(service.key) if held is None else held
        assert (service.protect_threshold, service.metadata, service.selector, service.explicit, service.clusters) == (
            expected.protect_threshold, expected.metadata, expected.selector, expected.explicit, expected.clusters,
        )  # fmt: skip


# -- the persistent half in and out ------------------------------------------------------------


def test_a_definition_makes_a_service_with_its_settings_and_instances():
    core = RegistryCore()
    given_definition = definition(persistent(), protect_threshold=0.5, explicit=True, modified_ms=700)
    (change,) = core.apply_definitions([DefinitionChange(SVC, given_definition, touched=(persistent().key,))])
    service = core.service(SVC)
    assert change.snapshot is service and change.touched == {persistent().key}
    assert service.definition is given_definition and ports(service) == [(90, False)]
    assert (service.protect_threshold, service.explicit) == (0.5, True)
    assert (service.revision, service.modified_ms, service.last_ref_ms) == (0, 0, 700)
    assert not service.has_ephemeral_half
    assert_consistent(core)


def test_a_definition_joins_the_ephemeral_half_and_leaves_its_stamp():
    core = RegistryCore()
    core.apply(RegisterInstance(SVC, ephemeral()), 1_000)
    before = core.service(SVC)
    core.apply_definitions([DefinitionChange(SVC, definition(persistent(), metadata=freeze({"k": "v"}), modified_ms=5))])
    after = core.service(SVC)
    assert ports(after) == [(80, True), (90, False)] and dict(after.metadata) == {"k": "v"}
    assert stamp_of(after) == stamp_of(before) and after.last_ref_ms == 1_000
    assert after.has_ephemeral_half
    assert_consistent(core)


def test_the_next_definition_replaces_the_persistent_half_whole():
    core = RegistryCore()
    core.apply(RegisterInstance(SVC, ephemeral()), 1_000)
    core.apply_definitions([DefinitionChange(SVC, definition(persistent(90), persistent(91), explicit=True))])
    (change,) = core.apply_definitions([DefinitionChange(SVC, definition(persistent(91)), touched=(persistent(90).key,))])
    assert ports(core.service(SVC)) == [(80, True), (91, False)] and not core.service(SVC).explicit
    assert change.touched == {persistent(90).key}
    assert_consistent(core)


def test_the_same_definition_again_changes_nothing():
    core = RegistryCore()
    held = definition(persistent())
    core.apply_definitions([DefinitionChange(SVC, held)])
    snapshot = core.service(SVC)
    assert core.apply_definitions([DefinitionChange(SVC, held)]) == ()
    assert core.service(SVC) is snapshot


def test_losing_the_persistent_half_keeps_the_ephemeral_one():
    core = RegistryCore()
    core.apply(RegisterInstance(SVC, ephemeral()), 1_000)
    core.apply_definitions([DefinitionChange(SVC, definition(persistent(), explicit=True))])
    (change,) = core.apply_definitions([DefinitionChange(SVC, None)])
    service = core.service(SVC)
    assert ports(service) == [(80, True)] and service.definition is None and not service.explicit
    assert change.touched == {persistent().key}  # every persistent instance left
    assert_consistent(core)


def test_a_service_held_only_by_its_persistent_half_goes_with_it():
    core = RegistryCore()
    core.apply_definitions([DefinitionChange(SVC, definition(persistent()))])
    (change,) = core.apply_definitions([DefinitionChange(SVC, None)])
    assert change.snapshot is None and core.service(SVC) is None
    assert (core.service_count, core.instance_count) == (0, 0)
    assert core.apply_definitions([DefinitionChange(SVC, None)]) == ()  # nothing left to lose


def test_load_definitions_makes_a_raft_snapshot_every_persistent_half():
    core = RegistryCore()
    other = ServiceKey("dev", "g@@billing")
    kept = definition(persistent(90))
    core.apply_definitions([DefinitionChange(SVC, kept), DefinitionChange(other, Definition(other, explicit=True))])
    core.apply(RegisterInstance(other, ephemeral()), 1_000)
    third = ServiceKey("public", "g@@new")
    changes = core.load_definitions([kept, Definition(third, protect_threshold=0.3)])
    assert {c.key for c in changes} == {other, third} and all(c.touched is None for c in changes)
    assert core.service(SVC).definition is kept  # unchanged: not among the changes
    assert core.service(other).definition is None and ports(core.service(other)) == [(80, True)]
    assert core.service(third).protect_threshold == 0.3
    assert_consistent(core)


# -- Distro never overwrites the local persistent half ------------------------------------------


def test_a_replicated_state_keeps_the_local_persistent_half_forced_or_not():
    for force in (False, True):
        core = RegistryCore()
        local = definition(persistent(90), protect_threshold=0.5)
        core.apply_definitions([DefinitionChange(SVC, local)])
        # The peer's state carries another persistent half (or none): only its ephemeral one counts.
        theirs = Definition(SVC, instance_map([persistent(99)]), explicit=True)
        assert core.apply_replicated(state(3, ephemeral(), persistent(99), definition=theirs), force).value is True
        service = core.service(SVC)
        assert service.definition is local and ports(service) == [(80, True), (90, False)]
        assert service.protect_threshold == 0.5 and not service.explicit
        assert (service.revision, service.modified_ms) == (3, 300)
        core.apply_replicated(state(4, ephemeral(81)), force)
        assert core.service(SVC).definition is local and ports(core.service(SVC)) == [(81, True), (90, False)]
        assert_consistent(core)


def test_a_replicated_state_without_a_local_persistent_half_brings_none():
    core = RegistryCore()
    core.apply_replicated(state(2, ephemeral(), persistent(), definition=definition(persistent())), False)
    service = core.service(SVC)
    assert service.definition is None and ports(service) == [(80, True)]
    assert_consistent(core)


def test_a_tombstone_clears_only_the_ephemeral_half():
    for force in (False, True):
        core = RegistryCore()
        local = definition(persistent())
        core.apply_replicated(state(2, ephemeral()), False)
        core.apply_definitions([DefinitionChange(SVC, local)])
        applied = core.apply_replicated(Tombstone(SVC, 3), force)
        service = core.service(SVC)
        assert applied.value is True and applied.changed is service
        assert service.definition is local and ports(service) == [(90, False)]
        assert service.revision == 3 and core.tombstones[SVC] == 3  # later states are ordered after it
        assert core.apply_replicated(state(3, ephemeral(81)), False).value is False
        assert core.apply_replicated(state(4, ephemeral(81)), False).value is True
        assert_consistent(core)


def test_a_dropped_clears_only_the_ephemeral_half_at_its_stamp():
    core = RegistryCore()
    local = definition(persistent())
    core.apply_replicated(state(2, ephemeral()), False)
    core.apply_definitions([DefinitionChange(SVC, local)])
    assert core.apply_replicated(Dropped(SVC, (2, 999)), False).value is False
    assert core.apply_replicated(Dropped(SVC, (2, 200)), False).value is True
    service = core.service(SVC)
    assert service.definition is local and ports(service) == [(90, False)] and service.revision == 0
    assert not service.has_ephemeral_half
    assert_consistent(core)


def test_replace_all_keeps_every_persistent_half():
    core = RegistryCore()
    only_raft = ServiceKey("public", "g@@raft-only")
    both = definition(persistent(90))
    core.apply_definitions([DefinitionChange(SVC, both), DefinitionChange(only_raft, Definition(only_raft, explicit=True))])
    core.apply(RegisterInstance(SVC, ephemeral(80)), 1_000)
    gone = ServiceKey("public", "g@@gone")
    core.apply(RegisterInstance(gone, ephemeral(80)), 1_000)
    peer_only = ServiceKey("dev", "g@@peer")
    held, went = core.replace_all(
        [state(7, ephemeral(81), persistent(99)), Service(peer_only, instance_map([ephemeral()]), revision=1)]
    )
    assert {s.key for s in held} == {SVC, only_raft, peer_only} and went == [gone]
    assert core.service(SVC).definition is both and ports(core.service(SVC)) == [(81, True), (90, False)]
    assert core.service(SVC).revision == 7
    assert core.service(only_raft).explicit and core.service(only_raft).revision == 0
    assert core.service(peer_only).definition is None
    assert_consistent(core)


# -- deleting services and the ephemeral stamp, through the whole registry ------------------------


def test_delete_service_removes_an_empty_service_entirely():
    for made_by in ("raft", "registry", "both"):
        local = LocalRegistry()
        if made_by in ("raft", "both"):
            local.apply(CreateService(SVC, 0.0, freeze({}), NO_SELECTOR), 1)
        if made_by in ("registry", "both"):
            local.apply(RegisterInstance(SVC, ephemeral()), 2)
            local.apply(DeregisterInstance(SVC, ephemeral().key), 3)
        local.apply(DeleteService(SVC), 4)
        assert local.service(SVC) is None and local.registry.service_count == 0, made_by
        assert SVC not in local.definitions.definitions and local.registry.tombstones[SVC] >= 1
        assert local.changes[-1].snapshot is None


def test_delete_service_is_refused_while_either_half_holds_an_instance():
    local = LocalRegistry()
    for instance in (ephemeral(), persistent()):
        local.apply(RegisterInstance(SVC, instance), 1)
        try:
            local.apply(DeleteService(SVC), 2)
        except Rejected as refused:
            assert refused.status == 400 and "is not empty" in refused.message
        else:
            raise AssertionError("deleted a service holding an instance")
        local.apply(DeregisterInstance(SVC, instance.key), 3)
    local.apply(DeleteService(SVC), 4)
    assert local.service(SVC) is None


def test_a_persistent_change_never_moves_the_ephemeral_stamp():
    local = LocalRegistry()
    local.apply(RegisterInstance(SVC, ephemeral()), 1_000)
    stamp = stamp_of(local.service(SVC))
    for now, command in enumerate(
        [
            RegisterInstance(SVC, persistent()),
            UpdateInstance(SVC, persistent(weight=2.0), True),
            UpdateService(SVC, 0.5, freeze({"k": "v"}), Selector("label", "a=b")),
            UpdateCluster(SVC, "DEFAULT", NONE_CHECKER),
            SetInstanceHealth(SVC, IP, 90, "DEFAULT", False),
            UpdateMetadataBatch(SVC, freeze({"m": "1"}), False, "persist", ()),
            DeregisterInstance(SVC, persistent().key),
        ],
        start=2_000,
    ):
        before = local.service(SVC)
        local.apply(command, now)
        after = local.service(SVC)
        assert after is not before, command
        assert stamp_of(after) == stamp, command
        assert after.last_ref_ms == now, command
    # An ephemeral write moves it, and only it.
    local.apply(SetInstanceHealth(SVC, IP, 80, "DEFAULT", False), 9_000)
    assert stamp_of(local.service(SVC)) == (stamp[0] + 1, 9_000)


def test_the_empty_service_cleanup_leaves_a_service_with_a_persistent_half():
    local = LocalRegistry()
    local.apply(RegisterInstance(SVC, ephemeral()), 1)
    local.apply(UpdateService(SVC, 0.5, None, None), 2)
    local.apply(DeregisterInstance(SVC, ephemeral().key), 3)
    assert local.apply(RemoveEmptyService(SVC, local.service(SVC).revision), 4) is False
    assert local.service(SVC).protect_threshold == 0.5


# -- the halves as values -------------------------------------------------------------------------


def test_with_definition_and_its_inverses():
    held = definition(persistent(90), protect_threshold=0.5, clusters=freeze({"c": NONE_CHECKER}))
    ephemeral_half = state(3, ephemeral(80))
    joined = with_definition(ephemeral_half, held)
    assert ports(joined) == [(80, True), (90, False)] and joined.clusters == held.clusters
    assert stamp_of(joined) == stamp_of(ephemeral_half) and joined.definition is held
    apart = without_definition(joined)
    assert ports(apart) == [(80, True)] and apart.definition is None and apart.protect_threshold == 0.0
    assert with_definition(ephemeral_half, None) is ephemeral_half  # nothing to take away
    alone = persistent_half_only(held, 4)
    assert ports(alone) == [(90, False)] and alone.revision == 4 and alone.modified_ms == 0


def test_definition_of_reads_the_persistent_half_an_older_data_file_held():
    plain = state(2, ephemeral())
    assert definition_of(plain) is None
    for fields in (
        {"explicit": True},
        {"protect_threshold": 0.5},
        {"metadata": freeze({"k": "v"})},
        {"selector": Selector("label", "a=b")},
        {"clusters": freeze({"c": NONE_CHECKER})},
    ):
        found = definition_of(replace(plain, **fields))
        assert found is not None and not found.instances, fields
    old = state(2, ephemeral(), persistent(), explicit=True, modified_ms=1_234)
    found = definition_of(old)
    assert list(found.instances) == [persistent().key] and found.explicit and found.modified_ms == 1_234


# -- any interleaving: counters and halves stay right --------------------------------------------

KEYS = [SVC, ServiceKey("dev", "g@@billing")]
EPHEMERAL_PORTS = [80, 81]
PERSISTENT_PORTS = [90, 91]

ephemeral_writes = st.one_of(
    st.builds(lambda s, p, w: RegisterInstance(s, ephemeral(p, weight=w)), st.sampled_from(KEYS),
              st.sampled_from(EPHEMERAL_PORTS), st.sampled_from([1.0, 2.0])),
    st.builds(lambda s, p: DeregisterInstance(s, ephemeral(p).key), st.sampled_from(KEYS),
              st.sampled_from(EPHEMERAL_PORTS)),
    st.builds(lambda s: RemoveEmptyService(s, -1), st.sampled_from(KEYS)),  # at the current revision
)  # fmt: skip
persistent_writes = st.one_of(
    st.builds(lambda s, p, w: RegisterInstance(s, persistent(p, weight=w)), st.sampled_from(KEYS),
              st.sampled_from(PERSISTENT_PORTS), st.sampled_from([1.0, 2.0])),
    st.builds(lambda s, p: DeregisterInstance(s, persistent(p).key), st.sampled_from(KEYS),
              st.sampled_from(PERSISTENT_PORTS)),
    st.builds(lambda s: CreateService(s, 0.0, freeze({}), NO_SELECTOR), st.sampled_from(KEYS)),
    st.builds(lambda s, t: UpdateService(s, t, None, None), st.sampled_from(KEYS), st.sampled_from([0.0, 0.5])),
    st.builds(DeleteService, st.sampled_from(KEYS)),
    st.builds(lambda s: UpdateCluster(s, "DEFAULT", NONE_CHECKER), st.sampled_from(KEYS)),
)  # fmt: skip
replicated_states = st.one_of(
    st.builds(
        lambda s, revision, listed, carried: Service(
            s, instance_map(listed), revision=revision, modified_ms=revision * 10,
            definition=Definition(s, instance_map(i for i in listed if not i.ephemeral)) if carried else None,
        ),
        st.sampled_from(KEYS), st.integers(0, 12),
        st.lists(st.one_of(st.sampled_from(EPHEMERAL_PORTS).map(ephemeral),
                           st.sampled_from(PERSISTENT_PORTS).map(persistent)), max_size=3),
        st.booleans(),
    ),
    st.builds(Tombstone, st.sampled_from(KEYS), st.integers(0, 12)),
    st.builds(lambda s, revision: Dropped(s, (revision, revision * 10)), st.sampled_from(KEYS), st.integers(0, 12)),
)  # fmt: skip
steps = st.one_of(
    st.tuples(st.just("write"), st.one_of(ephemeral_writes, persistent_writes)),
    st.tuples(st.just("replicated"), replicated_states, st.booleans()),
    st.tuples(st.just("replace_all"), st.lists(replicated_states.filter(lambda s: isinstance(s, Service)),
                                                max_size=2, unique_by=lambda s: s.key)),
    st.tuples(st.just("load_definitions")),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(steps, max_size=40))
def test_counters_and_halves_stay_right_whatever_the_interleaving(plan):
    local = LocalRegistry()
    core, raft = local.registry, local.definitions
    now = 1_000
    for step in plan:
        now += 7
        note(f"{step}")
        if step[0] == "write":
            command = step[1]
            if isinstance(command, RemoveEmptyService):
                current = core.service(command.service)
                command = RemoveEmptyService(command.service, current.revision if current else 0)
            try:
                local.apply(command, now)
            except Rejected:
                pass
        elif step[0] == "replicated":
            core.apply_replicated(step[1], step[2])
        elif step[0] == "replace_all":
            core.replace_all(step[1])
        else:
            # A Raft snapshot of this member's own definitions: nothing may change.
            assert core.load_definitions(raft.all()) == ()
        assert_consistent(core)
        # The persistent halves are exactly what this member's Raft committed.
        assert {s.key: s.definition for s in core.all_services() if s.definition is not None} == raft.definitions


def test_a_fresh_definition_core_and_registry_agree_on_nothing_held():
    assert RegistryCore().load_definitions(DefinitionCore(NO_LIMITS).all()) == ()
