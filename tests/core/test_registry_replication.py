"""The registry core's replication side: ordering replicated states by revision, tombstones and
verify's drops, `state_of` and `replace_all`, and replicas converging whatever the delivery order.
Distro carries the ephemeral halves; persistent writes reach every member through Raft (here each
member's one-member Raft replays the origin's committed entries, tests.core.combined)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, note, settings
from hypothesis import strategies as st

from nacos_actors.core.codec import decode_batch, encode_batch
from nacos_actors.core.registry import Dropped, RegistryCore, Rejected, Tombstone, without_definition
from nacos_actors.messages import (
    CreateService,
    DeleteService,
    DeregisterInstance,
    RegisterInstance,
    RemoveEmptyService,
    UpdateCluster,
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
    stamp_of,
)
from tests.core.combined import LocalRegistry

SVC = ServiceKey("public", "DEFAULT_GROUP@@orders")
OTHER = ServiceKey("dev", "g@@billing")


def instance(port: int, ip: str = "127.0.0.1") -> Instance:
    return Instance(ip, port)


def state(revision: int, modified_ms: int, *ports: int, key: ServiceKey = SVC) -> Service:
    """A service state as a peer would send it."""
    instances = instance_map(replace(i, instance_id=f"id-{i.port}") for i in (instance(p) for p in ports))
    return Service(key=key, instances=instances, revision=revision, modified_ms=modified_ms)


def ports(core: RegistryCore, key: ServiceKey = SVC) -> list[int] | None:
    found = core.service(key)
    return None if found is None else sorted(k.port for k in found.instances)


def assert_counts_match(core: RegistryCore) -> None:
    services = list(core.all_services())
    assert core.service_count == len(services)
    assert core.instance_count == sum(len(s.instances) for s in services)


# -- services -----------------------------------------------------------------------------------


def test_a_newer_revision_replaces_the_held_state():
    core = RegistryCore()
    assert core.apply_replicated(state(1, 100, 80), False).value is True
    applied = core.apply_replicated(state(2, 200, 80, 81), False)
    assert applied.value is True and applied.changed is core.service(SVC)
    assert ports(core) == [80, 81]
    assert (core.service(SVC).revision, core.service(SVC).modified_ms) == (2, 200)
    assert applied.touched == ()
    assert_counts_match(core)


def test_an_older_or_equal_revision_is_ignored():
    core = RegistryCore()
    core.apply_replicated(state(3, 300, 80), False)
    held = core.service(SVC)
    for stale in (state(2, 999, 81), state(3, 301, 82), state(0, 0)):
        applied = core.apply_replicated(stale, False)
        assert applied.value is False and applied.changed is None
    assert core.service(SVC) is held


def test_force_replaces_whatever_the_revision():
    core = RegistryCore()
    core.apply_replicated(state(5, 500, 80, 81), False)
    assert core.apply_replicated(state(2, 200, 82), True).value is True
    assert ports(core) == [82] and core.service(SVC).revision == 2
    assert_counts_match(core)


def test_an_identical_stamp_is_a_no_op_even_forced():
    core = RegistryCore()
    core.apply_replicated(state(4, 400, 80), False)
    held = core.service(SVC)
    applied = core.apply_replicated(state(4, 400, 80), True)
    assert applied.value is False and applied.changed is None
    assert core.service(SVC) is held


def test_a_replicated_state_is_published_as_it_came():
    """Snapshots carry no per-node cache (the front's list memo knows them by identity), so the
    state a peer sent needs no copy."""
    core = RegistryCore()
    sent = state(1, 100, 80)
    core.apply_replicated(sent, False)
    assert core.service(SVC) is sent


def replay(origin: LocalRegistry, replica: LocalRegistry) -> None:
    """Commit on `replica` the Raft entries `origin` committed that it has not yet."""
    for command, at in origin.entries[len(replica.entries) :]:
        try:
            replica.propose(command, at)
        except Rejected:
            pass


def test_a_new_explicit_service_replicates_through_raft_not_distro():
    origin = LocalRegistry()
    origin.apply(CreateService(SVC, 0.5, freeze({"k": "v"}), NO_SELECTOR), 100)
    replica = LocalRegistry()
    # Distro's copy carries no persistent half: the replica keeps its own (none yet).
    replica.registry.apply_replicated(origin.registry.state_of(SVC), False)
    assert replica.service(SVC) is None or replica.service(SVC).definition is None
    replay(origin, replica)
    assert dict(replica.service(SVC).metadata) == {"k": "v"} and replica.service(SVC).explicit
    assert replica.service(SVC).definition == origin.service(SVC).definition


# -- tombstones ---------------------------------------------------------------------------------


def test_a_newer_tombstone_deletes_and_is_remembered():
    core = RegistryCore()
    core.apply_replicated(state(3, 300, 80, 81), False)
    applied = core.apply_replicated(Tombstone(SVC, 4), False)
    assert applied.value is True and applied.deleted == SVC
    assert core.service(SVC) is None and core.tombstones[SVC] == 4
    assert core.state_of(SVC) == Tombstone(SVC, 4)
    assert_counts_match(core)
    assert (core.service_count, core.instance_count) == (0, 0)


def test_an_old_tombstone_is_ignored_unless_forced():
    core = RegistryCore()
    core.apply_replicated(state(3, 300, 80), False)
    assert core.apply_replicated(Tombstone(SVC, 3), False).value is False
    assert core.apply_replicated(Tombstone(SVC, 1), False).value is False
    assert ports(core) == [80]
    assert core.apply_replicated(Tombstone(SVC, 1), True).value is True
    assert core.service(SVC) is None
    assert_counts_match(core)


def test_a_tombstone_for_an_absent_service_orders_later_states():
    core = RegistryCore()
    assert core.apply_replicated(Tombstone(SVC, 5), False).value is False
    assert core.tombstones[SVC] == 5
    assert core.apply_replicated(state(4, 400, 80), False).value is False  # from before the deletion
    assert core.service(SVC) is None
    assert core.apply_replicated(state(6, 600, 81), False).value is True  # made again after it
    assert ports(core) == [81] and SVC not in core.tombstones
    assert_counts_match(core)


def test_tombstones_keep_the_highest_revision():
    core = RegistryCore()
    core.apply_replicated(Tombstone(SVC, 7), False)
    core.apply_replicated(Tombstone(SVC, 3), False)
    assert core.tombstones[SVC] == 7


def test_a_late_older_tombstone_lets_no_deleted_state_come_back():
    core = RegistryCore()
    core.apply_replicated(Tombstone(SVC, 7), False)  # the second life's deletion
    core.apply_replicated(Tombstone(SVC, 3), False)  # the first life's, late
    assert core.apply_replicated(state(5, 500, 80), False).value is False  # the second life, gone
    assert core.service(SVC) is None


def test_dropped_deletes_only_at_the_exact_stamp():
    core = RegistryCore()
    core.apply_replicated(state(3, 300, 80), False)
    for other_stamp in ((3, 301), (2, 300), (4, 300)):
        assert core.apply_replicated(Dropped(SVC, other_stamp), False).value is False
        assert ports(core) == [80]
    assert core.apply_replicated(Dropped(OTHER, (3, 300)), False).value is False
    applied = core.apply_replicated(Dropped(SVC, (3, 300)), False)
    assert applied.value is True and applied.deleted == SVC and core.service(SVC) is None
    assert isinstance(core.state_of(SVC), Tombstone)
    assert_counts_match(core)


def test_a_service_deleted_and_made_again_continues_after_its_tombstone():
    origin = LocalRegistry()
    origin.apply(RegisterInstance(SVC, instance(80)), 100)
    origin.apply(DeregisterInstance(SVC, InstanceKey("127.0.0.1", 80, "DEFAULT", True)), 110)
    before = origin.registry.state_of(SVC)
    origin.apply(DeleteService(SVC), 120)  # through Raft: it holds only an ephemeral half
    tombstone = origin.registry.state_of(SVC)
    assert isinstance(tombstone, Tombstone) and tombstone.revision > before.revision
    origin.apply(RegisterInstance(SVC, instance(81)), 130)
    again = origin.registry.state_of(SVC)
    assert isinstance(again, Service) and again.revision > tombstone.revision

    # Any replica, whatever order the three states arrive in, ends with the service made again.
    for order in ((before, tombstone, again), (again, tombstone, before), (tombstone, again, before)):
        replica = RegistryCore()
        for sent in order:
            replica.apply_replicated(sent, False)
        assert ports(replica) == [81] and replica.service(SVC).revision == again.revision
        assert_counts_match(replica)


def test_an_explicit_service_made_again_replicates_over_its_tombstone():
    origin = LocalRegistry()
    origin.apply(CreateService(SVC, 0.0, freeze({}), NO_SELECTOR), 100)
    first = origin.registry.state_of(SVC)
    origin.apply(DeleteService(SVC), 110)
    tombstone = origin.registry.state_of(SVC)
    origin.apply(CreateService(SVC, 0.3, freeze({"life": "2"}), NO_SELECTOR), 120)
    again = origin.registry.state_of(SVC)
    # A service made again carries on from its tombstone, as one made by a registration does.
    assert again.revision >= tombstone.revision > first.revision
    # Raft brings the persistent half; whatever Distro also delivers, in any order and before
    # or after it, never takes it away.
    for order in ((first, tombstone, again), (tombstone, again, first), (again, first, tombstone)):
        for raft_first in (True, False):
            replica = LocalRegistry()
            if raft_first:
                replay(origin, replica)
            for sent in order:
                replica.registry.apply_replicated(sent, False)
            replay(origin, replica)
            assert replica.service(SVC) is not None, order
            assert dict(replica.service(SVC).metadata) == {"life": "2"}


def test_a_service_made_again_through_raft_takes_the_states_sent_after_its_tombstone():
    """Whether the tombstone reaches the replica before or after the entry that made the service
    again, the origin's next states count as newer there."""
    origin = LocalRegistry()
    origin.apply(RegisterInstance(SVC, instance(80)), 100)
    origin.apply(DeregisterInstance(SVC, InstanceKey("127.0.0.1", 80, "DEFAULT", True)), 110)
    origin.apply(RemoveEmptyService(SVC, origin.service(SVC).revision), 120)
    tombstone = origin.registry.state_of(SVC)
    origin.apply(CreateService(SVC, 0.0, freeze({}), NO_SELECTOR), 130)
    assert origin.service(SVC).revision == tombstone.revision  # carries on from its deletion
    origin.apply(RegisterInstance(SVC, instance(81)), 140)
    for tombstone_first in (True, False):
        replica = LocalRegistry()
        if tombstone_first:
            replica.registry.apply_replicated(tombstone, False)
        replay(origin, replica)
        replica.registry.apply_replicated(tombstone, False)
        assert replica.registry.apply_replicated(origin.registry.state_of(SVC), False).value is True
        assert ports(replica.registry) == ports(origin.registry) == [81]
        assert replica.service(SVC).revision == origin.service(SVC).revision > tombstone.revision


def test_state_of_is_the_snapshot_or_a_tombstone():
    core = RegistryCore()
    assert core.state_of(SVC) == Tombstone(SVC, 0)
    core.apply(RegisterInstance(SVC, instance(80)), 100)
    assert core.state_of(SVC) is core.service(SVC)
    core.apply(DeregisterInstance(SVC, InstanceKey("127.0.0.1", 80, "DEFAULT", True)), 110)
    revision = core.service(SVC).revision
    assert core.apply(RemoveEmptyService(SVC, revision), 120).value is True
    assert core.state_of(SVC) == Tombstone(SVC, revision + 1)


def test_replace_all_answers_held_services_and_vanished_keys():
    local = LocalRegistry()
    core = local.registry
    core.apply(RegisterInstance(SVC, instance(80)), 100)
    core.apply(RegisterInstance(OTHER, instance(81)), 100)
    third = ServiceKey("public", "g@@gone")
    local.apply(CreateService(third, 0.0, freeze({}), NO_SELECTOR), 100)
    local.apply(DeleteService(third), 101)
    held, gone = core.replace_all([state(9, 900, 90, 91), state(1, 10, key=ServiceKey("public", "g@@new"))])
    assert sorted(s.key for s in held) == sorted([SVC, ServiceKey("public", "g@@new")])
    assert gone == [OTHER]
    assert ports(core) == [90, 91] and core.service(OTHER) is None
    assert core.tombstones == {}
    assert_counts_match(core)
    assert (core.service_count, core.instance_count) == (2, 2)


# -- replicas converge whatever the delivery order ----------------------------------------------

KEYS = [SVC, OTHER]
ADDRESSES = [("127.0.0.1", 80), ("127.0.0.2", 80), ("127.0.0.1", 81)]

commands = st.one_of(
    st.builds(
        RegisterInstance,
        st.sampled_from(KEYS),
        st.builds(
            lambda address, weight, metadata, ephemeral: Instance(
                address[0], address[1], weight=weight, metadata=metadata, ephemeral=ephemeral
            ),
            st.sampled_from(ADDRESSES),
            st.sampled_from([1.0, 2.0]),
            st.sampled_from([freeze({}), freeze({"v": "2"})]),
            st.booleans(),
        ),
    ),
    st.builds(
        DeregisterInstance,
        st.sampled_from(KEYS),
        st.builds(lambda a, ephemeral: InstanceKey(a[0], a[1], "DEFAULT", ephemeral), st.sampled_from(ADDRESSES),
                  st.booleans()),
    ),
    st.builds(
        CreateService,
        st.sampled_from(KEYS),
        st.just(0.0),
        st.sampled_from([freeze({}), freeze({"m": "1"})]),
        st.just(NO_SELECTOR),
    ),
    st.builds(
        UpdateService, st.sampled_from(KEYS), st.just(0.5), st.sampled_from([None, freeze({"m": "2"})]), st.none()
    ),
    st.builds(DeleteService, st.sampled_from(KEYS)),
    st.sampled_from(KEYS).map(lambda key: RemoveEmptyService(key, -1)),  # the revision is filled in at apply time
)  # fmt: skip


def comparable_service(service: Service) -> tuple:
    return (
        dict(service.instances),
        service.revision,
        service.modified_ms,
        dict(service.metadata),
        service.explicit,
        service.definition,
    )


def comparable(core: RegistryCore) -> dict:
    return {s.key: comparable_service(s) for s in core.all_services()}


def assert_halves_match_raft(member: LocalRegistry) -> None:
    """Every service's persistent half is the definition its member's Raft committed."""
    held = {s.key: s.definition for s in member.registry.all_services() if s.definition is not None}
    assert held == member.definitions.definitions


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(commands, st.integers(0, 5)), max_size=30), st.randoms(use_true_random=False))
def test_a_replica_converges_whatever_the_order_and_duplicates(steps, rng):
    """Distro's states arrive shuffled and some twice; Raft's entries in their order, each before
    any state the origin sent after committing it (a state never outruns the entries before it)."""
    origin, replica = LocalRegistry(), LocalRegistry()
    sent: list[tuple[int, Service | Tombstone]] = []  # (entries committed before it, state)
    now = 1_000
    for command, step in steps:
        now += step
        if isinstance(command, RemoveEmptyService):
            current = origin.service(command.service)
            command = RemoveEmptyService(command.service, current.revision if current else 0)
        written = len(origin.written)
        try:
            origin.apply(command, now)
        except Rejected:
            continue
        # Distro sends what the registry's own writes changed; a change through Raft reaches
        # every member by Raft.
        for key in origin.written[written:]:
            sent.append((len(origin.entries), origin.registry.state_of(key)))
    deliveries = sent + rng.sample(sent, len(sent) // 2)
    rng.shuffle(deliveries)
    note(f"steps: {steps}")
    note(f"deliveries (entries before each, state): {deliveries}")
    committed = 0
    while deliveries or committed < len(origin.entries):
        if committed < len(origin.entries) and (not deliveries or deliveries[0][0] > committed or rng.random() < 0.5):
            command, at = origin.entries[committed]
            committed += 1
            try:
                replica.propose(command, at)
            except Rejected:
                pass
        else:
            replica.registry.apply_replicated(deliveries.pop(0)[1], False)
        assert_counts_match(replica.registry)
        assert_halves_match_raft(replica)
    for key in set(origin.written):
        replica.registry.apply_replicated(origin.registry.state_of(key), False)
    assert comparable(replica.registry) == comparable(origin.registry)
    assert replica.definitions.definitions == origin.definitions.definitions
    assert_counts_match(replica.registry)


def test_a_peers_state_brings_only_its_ephemeral_half():
    """Found by the Raft simulation (tests/sim/test_raft_sim.py): a member holding no persistent
    half for a service took the settings a peer's state carries on the wire (the sender's
    threshold, metadata and clusters, not yet or no longer committed here) and kept them: verify
    compares only the ephemeral stamp, and a later deletion of the persistent half left them in
    place. Settings, like persistent instances, are Raft's to give."""
    sender = LocalRegistry()
    sender.apply(RegisterInstance(SVC, instance(80)), 100)
    sender.apply(UpdateService(SVC, 0.5, freeze({"k": "v"}), NO_SELECTOR), 110)
    sender.apply(UpdateCluster(SVC, "c", ClusterConfig(check_port=81)), 120)
    sender.apply(RegisterInstance(SVC, Instance("127.0.0.9", 90, ephemeral=False)), 130)
    (sent,) = decode_batch(encode_batch("127.0.0.1:8848", [sender.registry.state_of(SVC)], False)).states
    assert sent.definition is None and dict(sent.metadata) == {"k": "v"}  # what the wire carries

    behind = RegistryCore()  # its Raft has not applied the settings yet
    assert behind.apply_replicated(sent, False).value is True
    held = behind.service(SVC)
    assert (held.protect_threshold, dict(held.metadata), dict(held.clusters)) == (0.0, {}, {})
    assert ports(behind) == [80] and held.definition is None
    assert stamp_of(held) == stamp_of(sent)

    # The same without a persistent instance in the state (the path that kept everything).
    sender.apply(DeregisterInstance(SVC, InstanceKey("127.0.0.9", 90, "DEFAULT", False)), 140)
    sender.apply(RegisterInstance(SVC, instance(81)), 150)
    (sent,) = decode_batch(encode_batch("127.0.0.1:8848", [sender.registry.state_of(SVC)], False)).states
    assert behind.apply_replicated(sent, False).value is True
    held = behind.service(SVC)
    assert (held.protect_threshold, dict(held.metadata), dict(held.clusters)) == (0.0, {}, {})
    assert ports(behind) == [80, 81] and stamp_of(held) == stamp_of(sent)


def test_without_definition_drops_the_settings_a_decoded_service_carries():
    """A data file of an earlier version holds settings with the ephemeral half: the half it
    loads keeps none of them (they go to Raft)."""
    loaded = replace(state(2, 200, 80), protect_threshold=0.4, metadata=freeze({"k": "v"}), explicit=True)
    half = without_definition(loaded)
    assert (half.protect_threshold, dict(half.metadata), half.explicit) == (0.0, {}, False)
    assert sorted(k.port for k in half.instances) == [80] and stamp_of(half) == stamp_of(loaded)
    plain = state(2, 200, 80)
    assert without_definition(plain) is plain
