"""The persistent half's core (DefinitionCore): each persistent command's rules as Raft applies
it, determinism (members fed the same entries end equal) and idempotence (an entry applied a
second time right after changes nothing)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from nacos_actors.core.definitions import DefinitionApplied, DefinitionCore
from nacos_actors.core.registry import NO_LIMITS, RegistryLimits
from nacos_actors.messages import (
    ApplyProbeVerdict,
    CreateService,
    DeleteService,
    DeregisterInstance,
    ImportDefinition,
    Ok,
    PatchInstance,
    Refused,
    RegisterInstance,
    SetInstanceHealth,
    UpdateCluster,
    UpdateInstance,
    UpdateMetadataBatch,
    UpdateService,
)
from nacos_actors.model import (
    INSTANCE_ID_GENERATOR_KEY,
    NO_SELECTOR,
    ClusterConfig,
    Definition,
    Instance,
    InstanceKey,
    Selector,
    ServiceKey,
    freeze,
    instance_map,
)

SVC = ServiceKey("public", "DEFAULT_GROUP@@orders")
OTHER = ServiceKey("public", "DEFAULT_GROUP@@billing")
IP = "127.0.0.1"
NONE_CHECKER = ClusterConfig(freeze({"type": "NONE"}))
TCP_CHECKER = ClusterConfig()
SNOWFLAKE = freeze({INSTANCE_ID_GENERATOR_KEY: "snowflake"})


def persistent(port: int = 80, **fields) -> Instance:
    return Instance(IP, port, ephemeral=False, **fields)


def key(port: int = 80, cluster: str = "DEFAULT") -> InstanceKey:
    return InstanceKey(IP, port, cluster, False)


class Raft:
    """A DefinitionCore fed entries in log order, as the Raft driver feeds it."""

    def __init__(self, limits: RegistryLimits = NO_LIMITS) -> None:
        self.core = DefinitionCore(limits)
        self.index = 0

    def apply(self, command, now_ms: int = 1_000) -> DefinitionApplied:
        self.index += 1
        return self.core.apply(command, now_ms, self.index)

    def ok(self, command, now_ms: int = 1_000):
        """The value of an entry that must be applied."""
        done = self.apply(command, now_ms)
        assert isinstance(done.outcome, Ok), done.outcome
        return done.outcome.value

    def refused(self, command, now_ms: int = 1_000) -> Refused:
        """The refusal of an entry that must be refused; it changes nothing."""
        before = dict(self.core.definitions)
        done = self.apply(command, now_ms)
        assert isinstance(done.outcome, Refused), done.outcome
        assert done.change is None and self.core.definitions == before
        return done.outcome

    def definition(self, service: ServiceKey = SVC) -> Definition:
        return self.core.definitions[service]

    def instance(self, port: int = 80, cluster: str = "DEFAULT", service: ServiceKey = SVC) -> Instance:
        return self.definition(service).instances[key(port, cluster)]


# -- instances ---------------------------------------------------------------------------------


def test_registering_makes_the_definition_and_answers_the_instance_with_its_id():
    raft = Raft()
    done = raft.apply(RegisterInstance(SVC, persistent(weight=2.0)), 1_000)
    stored = raft.instance()
    assert done.outcome == Ok(stored) and stored.instance_id == "127.0.0.1#80#DEFAULT#DEFAULT_GROUP@@orders"
    assert done.change.key == SVC and done.change.definition is raft.definition()
    assert done.change.touched == (key(),) and not done.change.deleted_service
    assert (raft.definition().modified_ms, raft.definition().index) == (1_000, 1)
    assert not raft.definition().explicit and raft.core.instance_count == 1


def test_an_ephemeral_instance_is_refused():
    raft = Raft()
    refused = raft.refused(RegisterInstance(SVC, Instance(IP, 80)))
    assert (refused.status, refused.message) == (400, "an ephemeral instance is not Raft's to store")
    assert raft.refused(UpdateInstance(SVC, Instance(IP, 80), False)).status == 400


def test_registering_again_resets_every_field_but_the_id_and_unchanged_is_no_change():
    raft = Raft()
    raft.ok(RegisterInstance(SVC, persistent(weight=5.0, metadata=freeze({"a": "b"}))))
    first = raft.instance()
    assert raft.ok(RegisterInstance(SVC, persistent())) == raft.instance()
    assert (raft.instance().weight, dict(raft.instance().metadata)) == (1.0, {})
    assert raft.instance().instance_id == first.instance_id
    index = raft.definition().index
    done = raft.apply(RegisterInstance(SVC, persistent()), 2_000)
    assert done == DefinitionApplied(Ok(raft.instance()), None) and raft.definition().index == index


def test_update_of_a_missing_instance_is_refused_only_when_it_must_exist():
    raft = Raft()
    refused = raft.refused(UpdateInstance(SVC, persistent(), True))
    assert (refused.status, refused.message) == (400, "instance not exist: 127.0.0.1:80:unknown:DEFAULT")
    assert raft.ok(UpdateInstance(SVC, persistent(weight=3.0), False)).weight == 3.0
    assert raft.ok(UpdateInstance(SVC, persistent(weight=4.0), True)).weight == 4.0


def test_deregistering_removes_the_instance_and_a_missing_one_is_no_change():
    raft = Raft()
    assert raft.apply(DeregisterInstance(SVC, key())) == DefinitionApplied(Ok(None), None)
    raft.ok(RegisterInstance(SVC, persistent(80)))
    raft.ok(RegisterInstance(SVC, persistent(81)))
    done = raft.apply(DeregisterInstance(SVC, key(80)))
    assert done.outcome == Ok(None) and done.change.touched == (key(80),)
    assert list(raft.definition().instances) == [key(81)] and raft.core.instance_count == 1
    raft.ok(DeregisterInstance(SVC, key(81)))
    assert SVC in raft.core.definitions and not raft.definition().instances  # the service stays


def test_a_patch_changes_only_the_given_fields_of_an_existing_instance():
    raft = Raft()
    refused = raft.refused(PatchInstance(SVC, IP, 80, "DEFAULT", False, weight=2.0))
    assert (refused.status, refused.message) == (400, "instance not found")
    raft.ok(RegisterInstance(SVC, persistent(weight=3.0, metadata=freeze({"a": "1"}), app="shop")))
    first = raft.instance()
    patched = raft.ok(PatchInstance(SVC, IP, 80, "DEFAULT", False, healthy=False, metadata=freeze({"b": "2"})))
    assert patched == replace(first, healthy=False, metadata=freeze({"b": "2"}))
    assert raft.refused(PatchInstance(SVC, IP, 80, "c1", False, weight=1.0)).message == "instance not found"


def test_snowflake_ids_are_the_smallest_free_integers():
    raft = Raft()
    for port in (80, 81, 82):
        raft.ok(RegisterInstance(SVC, persistent(port, metadata=SNOWFLAKE)))
    raft.ok(DeregisterInstance(SVC, key(81)))
    raft.ok(RegisterInstance(SVC, persistent(83, metadata=SNOWFLAKE)))
    assert sorted(i.instance_id for i in raft.definition().instances.values()) == ["0", "1", "2"]
    assert raft.instance(83).instance_id == "1"
    raft.ok(RegisterInstance(SVC, persistent(83, metadata=SNOWFLAKE, weight=2.0)))
    assert raft.instance(83).instance_id == "1"  # a re-registration keeps its id


# -- services ----------------------------------------------------------------------------------


def test_create_service_makes_an_explicit_definition_once():
    raft = Raft()
    raft.ok(CreateService(SVC, 0.5, freeze({"k": "v"}), Selector("label", "a=b")), 1_000)
    made = raft.definition()
    assert (made.protect_threshold, dict(made.metadata), made.selector, made.explicit) == (
        0.5, {"k": "v"}, Selector("label", "a=b"), True,
    )  # fmt: skip
    refused = raft.refused(CreateService(SVC, 0.1, freeze({}), NO_SELECTOR))
    assert (refused.status, refused.message) == (
        400,
        "specified service already exists, serviceName : DEFAULT_GROUP@@orders",
    )


def test_update_service_sets_the_threshold_and_keeps_what_is_not_given():
    raft = Raft()
    raft.ok(CreateService(SVC, 0.5, freeze({"k": "v"}), Selector("label", "a=b")))
    raft.ok(UpdateService(SVC, 0.2, None, None))
    updated = raft.definition()
    assert (updated.protect_threshold, dict(updated.metadata), updated.selector) == (
        0.2, {"k": "v"}, Selector("label", "a=b"),
    )  # fmt: skip
    raft.ok(UpdateService(SVC, 0.3, freeze({}), NO_SELECTOR))
    assert (dict(raft.definition().metadata), raft.definition().selector) == ({}, NO_SELECTOR)
    assert raft.definition().explicit


def test_update_service_makes_the_definition_of_a_service_only_the_registry_held():
    """The edge checked that the service exists (an ephemeral registration made it)."""
    raft = Raft()
    raft.ok(UpdateService(SVC, 0.4, freeze({"m": "1"}), None))
    assert (raft.definition().protect_threshold, raft.definition().explicit) == (0.4, False)


def test_delete_service_refuses_persistent_instances_and_removes_an_empty_definition():
    raft = Raft()
    raft.ok(RegisterInstance(SVC, persistent()))
    refused = raft.refused(DeleteService(SVC))
    assert (refused.status, refused.message) == (
        400,
        "Service DEFAULT_GROUP@@orders is not empty, can't be delete. Please unregister instance first",
    )
    raft.ok(DeregisterInstance(SVC, key()))
    done = raft.apply(DeleteService(SVC))
    assert done.outcome == Ok(None) and done.change == (SVC, None, True, ())
    assert SVC not in raft.core.definitions and raft.core.instance_count == 0


def test_delete_service_without_a_definition_still_tells_the_registry():
    """The service may be held only by its ephemeral half: the registry drops it if empty."""
    done = Raft().apply(DeleteService(SVC))
    assert done.outcome == Ok(None) and done.change.definition is None and done.change.deleted_service


def test_update_cluster_sets_one_config_and_an_unchanged_one_is_no_change():
    raft = Raft()
    assert raft.ok(UpdateCluster(SVC, "c1", NONE_CHECKER)) == NONE_CHECKER  # makes the definition
    raft.ok(UpdateCluster(SVC, "c2", TCP_CHECKER))
    raft.ok(UpdateCluster(SVC, "c1", TCP_CHECKER))
    assert dict(raft.definition().clusters) == {"c1": TCP_CHECKER, "c2": TCP_CHECKER}
    same = ClusterConfig(freeze({"type": "TCP"}))
    assert raft.apply(UpdateCluster(SVC, "c2", same)) == DefinitionApplied(Ok(same), None)


# -- health by hand and metadata batches -------------------------------------------------------


def test_manual_health_is_taken_only_under_a_none_checker():
    raft = Raft()
    raft.ok(RegisterInstance(SVC, persistent(cluster="c1")))
    for config in (None, TCP_CHECKER):
        if config is not None:
            raft.ok(UpdateCluster(SVC, "c1", config))
        refused = raft.refused(SetInstanceHealth(SVC, IP, 80, "c1", False))
        assert (refused.status, refused.message) == (400, "health check is still working, service: DEFAULT_GROUP@@orders")
    raft.ok(UpdateCluster(SVC, "c1", NONE_CHECKER))
    assert raft.ok(SetInstanceHealth(SVC, IP, 80, "c1", False)).healthy is False
    assert raft.instance(cluster="c1").healthy is False
    assert raft.apply(SetInstanceHealth(SVC, IP, 80, "c1", False)).change is None  # already so


def test_manual_health_of_no_persistent_instance_changes_nothing():
    raft = Raft()
    assert raft.apply(SetInstanceHealth(SVC, IP, 80, "DEFAULT", False)) == DefinitionApplied(Ok(None), None)
    raft.ok(UpdateCluster(SVC, "DEFAULT", NONE_CHECKER))
    assert raft.apply(SetInstanceHealth(SVC, IP, 81, "DEFAULT", False)) == DefinitionApplied(Ok(None), None)


# -- probe verdicts ----------------------------------------------------------------------------

HTTP_CHECKER = ClusterConfig(freeze({"type": "HTTP", "path": "/health", "headers": "", "expectedResponseCode": 200}))


def verdict(healthy: bool, checker: str = "TCP", port: int = 80, cluster: str = "DEFAULT") -> ApplyProbeVerdict:
    return ApplyProbeVerdict(SVC, IP, port, cluster, healthy, checker)


def test_a_probe_verdict_sets_the_health_under_the_checker_that_probed():
    raft = Raft()
    raft.ok(RegisterInstance(SVC, persistent()))
    done = raft.apply(verdict(False), now_ms=2_000)
    assert isinstance(done.outcome, Ok) and done.change is not None
    assert done.change.touched == (key(),)
    assert raft.instance().healthy is False
    assert raft.definition().modified_ms == 2_000 and raft.definition().index == 2
    raft.ok(UpdateCluster(SVC, "c1", HTTP_CHECKER))
    raft.ok(RegisterInstance(SVC, persistent(cluster="c1")))
    assert raft.apply(verdict(False, "HTTP", cluster="c1")).change is not None
    assert raft.instance(cluster="c1").healthy is False
    assert raft.apply(verdict(True, "HTTP", cluster="c1")).change is not None
    assert raft.instance(cluster="c1").healthy is True


def test_a_probe_verdict_that_raced_a_change_of_checker_changes_nothing():
    raft = Raft()
    raft.ok(RegisterInstance(SVC, persistent(cluster="c1")))  # c1 unconfigured: TCP
    for config, checker in ((None, "HTTP"), (HTTP_CHECKER, "TCP"), (NONE_CHECKER, "TCP"), (TCP_CHECKER, "MYSQL")):
        if config is not None:
            raft.ok(UpdateCluster(SVC, "c1", config))
        before = raft.definition()
        assert raft.apply(verdict(False, checker, cluster="c1")) == DefinitionApplied(Ok(None), None)
        assert raft.definition() is before


def test_a_probe_verdict_on_a_missing_or_marked_instance_changes_nothing():
    raft = Raft()
    assert raft.apply(verdict(False)) == DefinitionApplied(Ok(None), None)  # no definition
    assert SVC not in raft.core.definitions
    raft.ok(RegisterInstance(SVC, persistent(81)))
    assert raft.apply(verdict(False)) == DefinitionApplied(Ok(None), None)  # no instance at port 80
    raft.ok(RegisterInstance(SVC, persistent(marked=True)))
    assert raft.apply(verdict(False)) == DefinitionApplied(Ok(None), None)
    assert raft.instance().healthy is True


def test_a_probe_verdict_is_idempotent():
    raft = Raft()
    raft.ok(RegisterInstance(SVC, persistent(healthy=False)))
    assert raft.apply(verdict(False)) == DefinitionApplied(Ok(None), None)  # already so
    first = raft.apply(verdict(True), now_ms=3_000)
    after = raft.definition()
    assert first.change is not None and raft.instance().healthy is True
    assert raft.apply(verdict(True), now_ms=4_000) == DefinitionApplied(Ok(None), None)
    assert raft.definition() is after


def test_a_metadata_batch_by_kind_takes_every_persistent_instance():
    raft = Raft()
    raft.ok(RegisterInstance(SVC, persistent(81, metadata=freeze({"a": "1"}))))
    raft.ok(RegisterInstance(SVC, persistent(80)))
    names = raft.ok(UpdateMetadataBatch(SVC, freeze({"b": "2"}), False, "persist", ()))
    assert names == ("127.0.0.1:80:unknown:DEFAULT:persist", "127.0.0.1:81:unknown:DEFAULT:persist")
    assert dict(raft.instance(81).metadata) == {"a": "1", "b": "2"} and dict(raft.instance(80).metadata) == {"b": "2"}
    assert raft.apply(UpdateMetadataBatch(SVC, freeze({"c": "3"}), False, "ephemeral", ())) == (Ok(()), None)
    raft.ok(UpdateMetadataBatch(SVC, freeze({"a": ""}), True, "persist", ()))
    assert dict(raft.instance(81).metadata) == {"b": "2"}


def test_a_metadata_batch_by_targets_takes_only_those_it_finds():
    raft = Raft()
    raft.ok(RegisterInstance(SVC, persistent(80)))
    raft.ok(RegisterInstance(SVC, persistent(81)))
    names = raft.ok(UpdateMetadataBatch(SVC, freeze({"t": "1"}), False, None, (key(81), key(99))))
    assert names == ("127.0.0.1:81:unknown:DEFAULT:persist",)
    assert dict(raft.instance(81).metadata) == {"t": "1"} and dict(raft.instance(80).metadata) == {}
    assert raft.apply(UpdateMetadataBatch(OTHER, freeze({"t": "1"}), False, "persist", ())) == (Ok(()), None)
    assert raft.apply(UpdateMetadataBatch(SVC, freeze({"t": "1"}), False, None, (key(99),))) == (Ok(()), None)


# -- import from an earlier version's data file -------------------------------------------------


def test_import_is_put_if_absent():
    raft = Raft()
    old = Definition(SVC, instance_map([persistent()]), protect_threshold=0.5, explicit=True, modified_ms=500)
    done = raft.apply(ImportDefinition(old))
    assert done.outcome == Ok(True) and raft.definition() == replace(old, index=1)
    assert raft.core.instance_count == 1
    assert raft.apply(ImportDefinition(replace(old, protect_threshold=0.9))) == DefinitionApplied(Ok(False), None)
    raft.ok(DeregisterInstance(SVC, key()))
    assert raft.apply(ImportDefinition(old)).outcome == Ok(False)  # imported once only
    assert not raft.definition().instances


# -- limits ------------------------------------------------------------------------------------

LIMITS = RegistryLimits(max_instances_per_service=2, max_services_per_namespace=1, max_instance_metadata_bytes=8)


def test_instances_per_service():
    raft = Raft(LIMITS)
    raft.ok(RegisterInstance(SVC, persistent(80)))
    raft.ok(RegisterInstance(SVC, persistent(81)))
    refused = raft.refused(RegisterInstance(SVC, persistent(82)))
    assert "holds 2 instances" in refused.message and "max_instances_per_service" in refused.message
    raft.ok(RegisterInstance(SVC, persistent(81, weight=2.0)))  # a replace is fine
    raft.ok(DeregisterInstance(SVC, key(80)))
    raft.ok(RegisterInstance(SVC, persistent(82)))


@pytest.mark.parametrize(
    "command",
    [
        RegisterInstance(OTHER, persistent()),
        UpdateInstance(OTHER, persistent(), False),
        CreateService(OTHER, 0.0, freeze({}), NO_SELECTOR),
        UpdateService(OTHER, 0.0, None, None),
        UpdateCluster(OTHER, "DEFAULT", NONE_CHECKER),
        ImportDefinition(Definition(OTHER)),
    ],
    ids=lambda command: type(command).__name__,
)
def test_services_per_namespace(command):
    raft = Raft(LIMITS)
    raft.ok(CreateService(SVC, 0.0, freeze({}), NO_SELECTOR))
    refused = raft.refused(command)
    assert "namespace public already holds 1 services" in refused.message
    raft.ok(replace(command, service=ServiceKey("dev", OTHER.name)) if hasattr(command, "service") else
            ImportDefinition(Definition(ServiceKey("dev", OTHER.name))))  # another namespace  # fmt: skip
    raft.ok(DeleteService(SVC))
    raft.ok(command)


def test_a_metadata_merge_past_the_limit_changes_nothing():
    raft = Raft(LIMITS)
    raft.ok(RegisterInstance(SVC, persistent(80, metadata=freeze({"a": "1234"}))))
    raft.ok(RegisterInstance(SVC, persistent(81)))
    refused = raft.refused(UpdateMetadataBatch(SVC, freeze({"b": "123"}), False, "persist", ()))
    assert "would be 9 bytes" in refused.message and "max_instance_metadata_bytes" in refused.message
    raft.ok(UpdateMetadataBatch(SVC, freeze({"b": "12"}), False, "persist", ()))  # 8 bytes: fine
    raft.ok(UpdateMetadataBatch(SVC, freeze({"a": ""}), True, "persist", ()))  # removal: never limited


# -- clock and log index -----------------------------------------------------------------------


def test_modified_time_is_the_proposers_clock_and_never_goes_back():
    raft = Raft()
    raft.ok(RegisterInstance(SVC, persistent(80)), 1_000)
    raft.ok(RegisterInstance(SVC, persistent(81)), 900)  # another proposer, its clock behind
    assert (raft.definition().modified_ms, raft.definition().index) == (1_001, 2)
    raft.ok(UpdateService(SVC, 0.5, None, None), 5_000)
    assert (raft.definition().modified_ms, raft.definition().index) == (5_000, 3)
    raft.apply(DeregisterInstance(SVC, key(99)), 9_000)  # no change: neither moves
    assert (raft.definition().modified_ms, raft.definition().index) == (5_000, 3)


def test_settings_or_metadata_that_change_nothing_move_neither():
    raft = Raft()
    raft.ok(CreateService(SVC, 0.5, freeze({"k": "v"}), NO_SELECTOR), 1_000)
    raft.ok(RegisterInstance(SVC, persistent(metadata=freeze({"a": "1"}))), 1_000)
    held = raft.definition()
    assert raft.apply(UpdateService(SVC, 0.5, freeze({"k": "v"}), None), 2_000) == (Ok(None), None)
    names = ("127.0.0.1:80:unknown:DEFAULT:persist",)
    assert raft.apply(UpdateMetadataBatch(SVC, freeze({"a": "1"}), False, "persist", ()), 2_000) == (Ok(names), None)
    assert raft.apply(UpdateMetadataBatch(SVC, freeze({"b": ""}), True, "persist", ()), 2_000) == (Ok(names), None)
    assert raft.definition() is held


def test_load_replaces_everything_and_recounts():
    raft = Raft()
    raft.ok(RegisterInstance(SVC, persistent(80)))
    snapshot = raft.core.all()
    other = Raft()
    other.ok(RegisterInstance(OTHER, persistent(80)))
    other.ok(RegisterInstance(OTHER, persistent(81)))
    other.core.load(snapshot)
    assert other.core.definitions == raft.core.definitions and other.core.instance_count == 1


# -- any sequence of entries: determinism and idempotence --------------------------------------

SERVICES = [SVC, ServiceKey("dev", "DEFAULT_GROUP@@orders")]
PORTS = [80, 81]
CLUSTERS = ["DEFAULT", "c1"]

instances = st.builds(
    Instance,
    ip=st.just(IP),
    port=st.sampled_from(PORTS),
    cluster=st.sampled_from(CLUSTERS),
    weight=st.sampled_from([1.0, 2.0]),
    healthy=st.booleans(),
    enabled=st.booleans(),
    ephemeral=st.just(False),
    metadata=st.sampled_from([freeze({}), freeze({"v": "1"}), SNOWFLAKE]),
)
keys = st.builds(lambda port, cluster: key(port, cluster), st.sampled_from(PORTS), st.sampled_from(CLUSTERS))
small_metadata = st.sampled_from([freeze({}), freeze({"m": "1"}), freeze({"m": "2"})])
services = st.sampled_from(SERVICES)
entries = st.one_of(
    st.builds(RegisterInstance, services, instances),
    st.builds(UpdateInstance, services, instances, st.booleans()),
    st.builds(DeregisterInstance, services, keys),
    st.builds(
        lambda service, k, weight, healthy, patch_metadata: PatchInstance(
            service, k.ip, k.port, k.cluster, False, weight=weight, healthy=healthy, metadata=patch_metadata
        ),
        services, keys, st.sampled_from([None, 3.0]), st.sampled_from([None, True, False]),
        st.none() | small_metadata,
    ),
    st.builds(CreateService, services, st.sampled_from([0.0, 0.5]), small_metadata, st.just(NO_SELECTOR)),
    st.builds(UpdateService, services, st.sampled_from([0.0, 0.5]), st.none() | small_metadata,
              st.sampled_from([None, NO_SELECTOR, Selector("label", "a=b")])),
    st.builds(DeleteService, services),
    st.builds(UpdateCluster, services, st.sampled_from(CLUSTERS), st.sampled_from([NONE_CHECKER, TCP_CHECKER])),
    st.builds(lambda service, k, healthy: SetInstanceHealth(service, k.ip, k.port, k.cluster, healthy),
              services, keys, st.booleans()),
    st.builds(UpdateMetadataBatch, services, small_metadata, st.booleans(), st.sampled_from([None, "persist"]),
              st.lists(keys, max_size=2).map(tuple)),
    st.builds(lambda service, k, healthy, checker: ApplyProbeVerdict(
        service, k.ip, k.port, k.cluster, healthy, checker),
        services, keys, st.booleans(), st.sampled_from(["TCP", "HTTP", "NONE"])),
    st.builds(lambda service, listed, threshold: ImportDefinition(
        Definition(service, instance_map(listed), protect_threshold=threshold, modified_ms=10)),
        services, st.lists(instances, max_size=2), st.sampled_from([0.0, 0.5])),
)  # fmt: skip
timed_entries = st.lists(st.tuples(entries, st.integers(0, 3_000)), max_size=40)


def assert_counts_match(core: DefinitionCore) -> None:
    assert core.instance_count == sum(len(d.instances) for d in core.definitions.values())
    assert all(key == definition.key for key, definition in core.definitions.items())
    assert all(not k.ephemeral for d in core.definitions.values() for k in d.instances)


@settings(max_examples=200, deadline=None)
@given(timed_entries)
def test_members_fed_the_same_entries_end_equal(log):
    first, second = DefinitionCore(NO_LIMITS), DefinitionCore(NO_LIMITS)
    for index, (command, now_ms) in enumerate(log, start=1):
        assert first.apply(command, now_ms, index) == second.apply(command, now_ms, index)
    assert first.definitions == second.definitions
    assert first.all() == second.all()
    assert_counts_match(first)


@settings(max_examples=300, deadline=None)
@given(timed_entries)
def test_an_entry_applied_a_second_time_right_after_changes_nothing(log):
    """What Raft may do after a restart or a snapshot: apply an entry it applied already."""
    core = DefinitionCore(NO_LIMITS)
    for index, (command, now_ms) in enumerate(log, start=1):
        core.apply(command, now_ms, index)
        after_once = dict(core.definitions)
        again = core.apply(command, now_ms, index)
        note(f"entry {index}: {command} again: {again}")
        assert core.definitions == after_once
        assert again.change is None or (again.change.definition is None and isinstance(command, DeleteService))
        assert_counts_match(core)
