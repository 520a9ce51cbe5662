"""Cluster configs and manual health: UpdateCluster and SetInstanceHealth, routed as the edge routes
them (cluster configs and persistent instances' health through a one-member Raft)."""

from __future__ import annotations

import pytest

from nacos_actors.core.registry import Rejected
from nacos_actors.messages import (
    CreateService,
    DeleteService,
    RegisterInstance,
    RemoveEmptyService,
    SetInstanceHealth,
    UpdateCluster,
)
from nacos_actors.model import (
    DEFAULT_CLUSTER_CONFIG,
    NO_SELECTOR,
    ClusterConfig,
    Instance,
    InstanceKey,
    ServiceKey,
    freeze,
)
from tests.core.combined import LocalRegistry

SVC = ServiceKey("public", "DEFAULT_GROUP@@demo")
IP = "127.0.0.1"
NONE = ClusterConfig(freeze({"type": "NONE"}), 80, True, freeze({}))
HTTP = ClusterConfig(
    freeze({"type": "HTTP", "path": "/health", "headers": "", "expectedResponseCode": 200}),
    8081,
    False,
    freeze({"zone": "a"}),
)


def core_with(*instances: Instance) -> LocalRegistry:
    core = LocalRegistry()
    core.apply(CreateService(SVC, 0.0, freeze({}), NO_SELECTOR), 1)
    for n, instance in enumerate(instances):
        core.apply(RegisterInstance(SVC, instance), 2 + n)
    return core


def health(core: LocalRegistry, healthy: bool, port: int = 80, cluster: str = "DEFAULT", now: int = 100):
    return core.apply(SetInstanceHealth(SVC, IP, port, cluster, healthy), now)


# -- UpdateCluster -----------------------------------------------------------------------------


def test_unconfigured_clusters_behave_as_tcp_defaults():
    service = core_with(Instance(IP, 80)).service(SVC)
    assert dict(service.clusters) == {}
    assert service.cluster_config("DEFAULT") is DEFAULT_CLUSTER_CONFIG
    assert (DEFAULT_CLUSTER_CONFIG.health_checker_type, dict(DEFAULT_CLUSTER_CONFIG.health_checker)) == (
        "TCP",
        {"type": "TCP"},
    )
    assert (DEFAULT_CLUSTER_CONFIG.check_port, DEFAULT_CLUSTER_CONFIG.use_instance_port) == (80, True)


def test_update_cluster_creates_an_entry_for_a_cluster_without_instances():
    core = core_with(Instance(IP, 80))
    before = core.service(SVC)
    value = core.apply(UpdateCluster(SVC, "c-1", HTTP), 50)
    after = core.service(SVC)
    assert value == HTTP and core.changes[-1].snapshot is after
    assert after.cluster_config("c-1") == HTTP
    assert after.known_cluster_names() == ["DEFAULT", "c-1"]
    assert after.cluster_names() == ["DEFAULT"]  # still only the clusters holding instances
    assert after.has_cluster("c-1") and not after.has_cluster("other")
    # A persistent change: the ephemeral stamp (what Distro compares) stays, the definition's moves.
    assert (after.revision, after.modified_ms) == (before.revision, before.modified_ms)
    assert after.definition.modified_ms == after.last_ref_ms == 50
    assert after.instances == before.instances


def test_update_cluster_replaces_the_whole_config_and_keeps_other_clusters():
    core = core_with()
    core.apply(UpdateCluster(SVC, "a", HTTP), 10)
    core.apply(UpdateCluster(SVC, "b", NONE), 11)
    core.apply(UpdateCluster(SVC, "a", NONE), 12)
    service = core.service(SVC)
    assert dict(service.clusters) == {"a": NONE, "b": NONE}
    # Created, then three changes: all persistent, so Raft's index moves and the ephemeral
    # revision stays at 0.
    assert (service.definition.index, service.revision) == (4, 0)


def test_an_unchanged_cluster_config_publishes_nothing():
    core = core_with()
    core.apply(UpdateCluster(SVC, "a", HTTP), 10)
    before = core.service(SVC)
    same = ClusterConfig(freeze(dict(HTTP.health_checker)), 8081, False, freeze({"zone": "a"}))
    changes = len(core.changes)
    assert core.apply(UpdateCluster(SVC, "a", same), 11) == HTTP
    assert len(core.changes) == changes and core.service(SVC) is before


def test_update_cluster_of_a_missing_service_is_a_400():
    core = LocalRegistry()
    with pytest.raises(Rejected) as refused:
        core.apply(UpdateCluster(SVC, "DEFAULT", NONE), 1)
    assert (refused.value.status, refused.value.message) == (400, "service not found:DEFAULT_GROUP@@demo")
    assert core.service(SVC) is None and core.registry.service_count == 0
    assert core.entries == []  # refused at the edge, never proposed


def test_a_held_snapshot_never_sees_a_cluster_change():
    core = core_with(Instance(IP, 80))
    held = core.service(SVC)
    core.apply(UpdateCluster(SVC, "DEFAULT", NONE), 10)
    core.apply(SetInstanceHealth(SVC, IP, 80, "DEFAULT", False), 11)
    assert dict(held.clusters) == {}
    assert held.instances[InstanceKey(IP, 80, "DEFAULT", True)].healthy is True
    assert core.service(SVC).instances[InstanceKey(IP, 80, "DEFAULT", True)].healthy is False


def test_a_configured_but_empty_service_can_still_be_deleted_but_is_not_cleaned():
    core = core_with()
    core.apply(UpdateCluster(SVC, "DEFAULT", NONE), 10)
    revision = core.service(SVC).revision
    assert core.apply(RemoveEmptyService(SVC, revision - 1), 11) is False  # changed since
    # The empty-service cleaner removes only what the registry alone holds: a service with a
    # persistent half is Raft's, deleted by DeleteService.
    assert core.apply(RemoveEmptyService(SVC, revision), 11) is False
    core.apply(DeleteService(SVC), 12)
    assert core.service(SVC) is None


# -- SetInstanceHealth -------------------------------------------------------------------------


def test_health_is_refused_while_the_checker_is_not_none():
    core = core_with(Instance(IP, 80))
    for config in (None, HTTP):
        if config is not None:
            core.apply(UpdateCluster(SVC, "DEFAULT", config), 10)
        before = core.service(SVC)
        with pytest.raises(Rejected) as refused:
            health(core, False)
        assert (refused.value.status, refused.value.message) == (
            400,
            "health check is still working, service: DEFAULT_GROUP@@demo",
        )
        assert core.service(SVC) is before


def test_health_is_set_once_the_checker_is_none_and_bumps_the_revision():
    core = core_with(Instance(IP, 80))
    core.apply(UpdateCluster(SVC, "DEFAULT", NONE), 10)
    before = core.service(SVC)
    answer = health(core, False, now=20)
    after = core.service(SVC)
    assert answer.healthy is False and core.changes[-1].snapshot is after
    assert (after.revision, after.modified_ms) == (before.revision + 1, 20)
    assert after.instances[InstanceKey(IP, 80, "DEFAULT", True)].instance_id == "127.0.0.1#80#DEFAULT#DEFAULT_GROUP@@demo"
    back = health(core, True, now=30)
    assert back.healthy is True and core.service(SVC).revision == before.revision + 2


def test_setting_the_health_it_already_has_publishes_nothing():
    core = core_with(Instance(IP, 80))
    core.apply(UpdateCluster(SVC, "DEFAULT", NONE), 10)
    before = core.service(SVC)
    changes = len(core.changes)
    assert health(core, True).healthy is True
    assert len(core.changes) == changes and core.service(SVC) is before


def test_the_persistent_instance_is_preferred_then_the_ephemeral_one():
    core = core_with(Instance(IP, 80, ephemeral=True), Instance(IP, 80, ephemeral=False))
    core.apply(UpdateCluster(SVC, "DEFAULT", NONE), 10)
    assert health(core, False).ephemeral is False
    instances = core.service(SVC).instances
    assert instances[InstanceKey(IP, 80, "DEFAULT", False)].healthy is False
    assert instances[InstanceKey(IP, 80, "DEFAULT", True)].healthy is True

    only_ephemeral = core_with(Instance(IP, 80, ephemeral=True))
    only_ephemeral.apply(UpdateCluster(SVC, "DEFAULT", NONE), 10)
    assert health(only_ephemeral, False).ephemeral is True


def test_only_the_named_cluster_is_searched_and_its_checker_decides():
    core = core_with(Instance(IP, 80, cluster="a"), Instance(IP, 80, cluster="b"))
    core.apply(UpdateCluster(SVC, "a", NONE), 10)
    health(core, False, cluster="a")
    with pytest.raises(Rejected, match="still working"):
        health(core, False, cluster="b")  # b is still on the TCP default
    instances = core.service(SVC).instances
    assert instances[InstanceKey(IP, 80, "a", True)].healthy is False
    assert instances[InstanceKey(IP, 80, "b", True)].healthy is True


def test_a_marked_instance_takes_the_manual_health_too():
    core = core_with(Instance(IP, 80, marked=True))
    core.apply(UpdateCluster(SVC, "DEFAULT", NONE), 10)
    assert health(core, False).healthy is False


def test_no_instance_at_that_address_changes_nothing():
    core = core_with(Instance(IP, 80))
    core.apply(UpdateCluster(SVC, "DEFAULT", NONE), 10)
    before = core.service(SVC)
    changes = len(core.changes)
    assert health(core, False, port=81) is None
    assert len(core.changes) == changes and core.service(SVC) is before


def test_a_configured_cluster_without_instances_answers_nothing_changed():
    core = core_with()
    core.apply(UpdateCluster(SVC, "DEFAULT", NONE), 10)
    assert health(core, False) is None


def test_a_missing_service_is_a_404():
    core = LocalRegistry()
    with pytest.raises(Rejected) as refused:
        health(core, False)
    assert (refused.value.status, refused.value.message) == (404, "service DEFAULT_GROUP@@demo is not found!")
    assert core.service(SVC) is None


def test_a_missing_cluster_is_a_404():
    core = core_with(Instance(IP, 80))
    before = core.service(SVC)
    with pytest.raises(Rejected) as refused:
        health(core, False, cluster="other")
    assert (refused.value.status, refused.value.message) == (
        404,
        "cluster other is not found in service DEFAULT_GROUP@@demo!",
    )
    assert core.service(SVC) is before
