"""Registry snapshots, Raft entries and Raft snapshots survive the msgpack round trip; damaged
bytes are refused with a CodecError naming the problem, never loaded or applied."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import get_args

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nacos_actors.core.codec import (
    FORMAT_VERSION,
    OPERATION_VERSION,
    CodecError,
    decode_definitions,
    decode_operation,
    decode_services,
    encode_definitions,
    encode_operation,
    encode_services,
)
from nacos_actors.core.registry import RegistryCore
from nacos_actors.messages import (
    ApplyProbeVerdict,
    CreateService,
    DeleteService,
    DeregisterInstance,
    ImportDefinition,
    PatchInstance,
    PersistentCommand,
    RegisterInstance,
    SetInstanceHealth,
    UpdateCluster,
    UpdateInstance,
    UpdateMetadataBatch,
    UpdateService,
)
from nacos_actors.model import (
    ClusterConfig,
    Definition,
    Instance,
    InstanceKey,
    Selector,
    ServiceKey,
    freeze,
    instance_map,
)
from tests.core.combined import LocalRegistry
from tests.core.test_codec_peers import cluster_configs, free_text, service_keys
from tests.core.test_codec_peers import instances as any_instances

# What a client may store: free text has no control characters.
text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=8)
instances = st.builds(
    Instance,
    ip=st.sampled_from(["127.0.0.1", "::1", "localhost"]),
    port=st.integers(1, 65535),
    cluster=st.sampled_from(["DEFAULT", "c-1"]),
    weight=st.floats(0, 10000),
    healthy=st.booleans(),
    enabled=st.booleans(),
    ephemeral=st.booleans(),
    metadata=st.dictionaries(text, text, max_size=3).map(freeze),
    app=text,
    marked=st.booleans(),
)


def comparable(core: RegistryCore) -> list:
    return [
        (s.key, s.protect_threshold, dict(s.metadata), s.selector, s.explicit, s.revision, s.modified_ms,
         [(k, i) for k, i in s.instances.items()], dict(s.clusters))
        for s in core.all_services()
    ]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["a@@x", "b@@y"]), st.sampled_from(["public", "dev"]), instances), max_size=10),
    st.floats(0, 1),
)
def test_round_trip_keeps_every_service_and_instance(writes, threshold):
    local = LocalRegistry()
    local.apply(CreateService(ServiceKey("public", "g@@explicit"), threshold, freeze({"k": "v"}), Selector("label", "a=b")), 1)
    for n, (name, namespace, instance) in enumerate(writes):
        local.apply(RegisterInstance(ServiceKey(namespace, name), instance), n + 2)
    loaded = RegistryCore()
    loaded.load(decode_services(encode_services(local.registry.all_services())))
    assert comparable(loaded) == comparable(local.registry)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"version": 99, "services": []}),
        msgpack.packb({"version": 1, "services": [["public"]]}),
        msgpack.packb({"version": 1, "services": [["public", "a@@b", 0.0, {}, ["none", ""], False, 1, 1, [["127.0.0.1", "80"] + [None] * 9]]]}),
        msgpack.packb({"version": 1, "services": [["public", "a@@b", 0.0, {"k": 1}, ["none", ""], False, 1, 1, []]]}),
        msgpack.packb({"version": 1, "services": [["public", "a@@b", 0.0, {}, ["none", ""], False, True, 1, []]]}),
    ],
)
def test_malformed_snapshots_are_refused(data):
    with pytest.raises(CodecError):
        decode_services(data)


# -- cluster configs (format version 2) ------------------------------------------------------

CLUSTER_CONFIGS = [
    ClusterConfig(freeze({"type": "NONE"}), 80, True, freeze({})),
    ClusterConfig(
        freeze({"type": "HTTP", "path": "/health", "headers": "a:b", "expectedResponseCode": 204}),
        8081,
        False,
        freeze({"zone": "a"}),
    ),
    ClusterConfig(freeze({"type": "MYSQL", "user": "u", "cmd": "select 1"}), 3306, False, freeze({})),
    ClusterConfig(),
]


def test_cluster_configs_survive_the_round_trip():
    local = LocalRegistry()
    core = local.registry
    service = ServiceKey("public", "g@@svc")
    local.apply(RegisterInstance(service, Instance("127.0.0.1", 80)), 1)
    for n, config in enumerate(CLUSTER_CONFIGS):
        local.apply(UpdateCluster(service, f"c-{n}", config), 2 + n)
    data = encode_services(core.all_services())
    assert msgpack.unpackb(data)["version"] == FORMAT_VERSION == 2
    loaded = RegistryCore()
    loaded.load(decode_services(data))
    assert comparable(loaded) == comparable(core)
    assert dict(loaded.service(service).clusters) == {f"c-{n}": c for n, c in enumerate(CLUSTER_CONFIGS)}


def test_version_1_snapshots_still_load_without_clusters():
    instance = ["127.0.0.1", 80, "DEFAULT", 1.0, True, True, True, {"k": "v"}, "DEFAULT", False, "id-1"]
    record = ["public", "a@@b", 0.5, {}, ["none", ""], True, 3, 1000, [instance]]
    (service,) = decode_services(msgpack.packb({"version": 1, "services": [record]}))
    assert (service.key, service.protect_threshold, service.revision, service.modified_ms) == (
        ServiceKey("public", "a@@b"), 0.5, 3, 1000)
    assert dict(service.clusters) == {}
    assert service.instances[InstanceKey("127.0.0.1", 80, "DEFAULT", True)].instance_id == "id-1"
    assert service.cluster_config("DEFAULT").health_checker_type == "TCP"


def _v2(clusters: object) -> bytes:
    return msgpack.packb(
        {"version": 2, "services": [["public", "a@@b", 0.0, {}, ["none", ""], False, 1, 1, [], clusters]]}
    )


@pytest.mark.parametrize(
    "data",
    [
        msgpack.packb({"version": 2, "services": [["public", "a@@b", 0.0, {}, ["none", ""], False, 1, 1, []]]}),
        msgpack.packb({"version": 1, "services": [["public", "a@@b", 0.0, {}, ["none", ""], False, 1, 1, [], []]]}),
        msgpack.packb({"version": True, "services": []}),
        msgpack.packb({"version": 2.0, "services": []}),
        _v2({}),
        _v2([["c", {"type": "NONE"}, 80, True]]),
        _v2([[1, {"type": "NONE"}, 80, True, {}]]),
        _v2([["c", {"type": "BOGUS"}, 80, True, {}]]),
        _v2([["c", {"path": "/"}, 80, True, {}]]),
        _v2([["c", {"type": "HTTP", "path": ["/"]}, 80, True, {}]]),
        _v2([["c", {"type": "HTTP", "expectedResponseCode": True}, 80, True, {}]]),
        _v2([["c", {"type": "NONE"}, "80", True, {}]]),
        _v2([["c", {"type": "NONE"}, 80, 1, {}]]),
        _v2([["c", {"type": "NONE"}, 80, True, {"k": 1}]]),
    ],
)
def test_malformed_cluster_configs_are_refused(data):
    with pytest.raises(CodecError):
        decode_services(data)


# -- Raft entries (a persistent command and its proposer's clock) --------------------------------

persistent_instances = any_instances.map(lambda i: replace(i, ephemeral=False))
persistent_keys = st.builds(
    InstanceKey, st.sampled_from(["127.0.0.1", "::1", "host.example"]), st.integers(1, 65535),
    st.sampled_from(["DEFAULT", "c1"]), st.just(False),
)  # fmt: skip
metadata = st.dictionaries(free_text, free_text, max_size=3).map(freeze)
selectors = st.builds(Selector, st.sampled_from(["none", "label"]), free_text)
thresholds = st.floats(0, 1)
definitions = st.builds(
    Definition,
    key=service_keys,
    instances=st.lists(persistent_instances, max_size=3).map(instance_map),
    protect_threshold=thresholds,
    metadata=metadata,
    selector=selectors,
    explicit=st.booleans(),
    clusters=st.dictionaries(st.sampled_from(["DEFAULT", "c-1"]), cluster_configs, max_size=2).map(freeze),
    modified_ms=st.integers(0, 2**63 - 1),
    index=st.integers(0, 2**63 - 1),
)


COMMANDS_BY_KIND = {
    RegisterInstance: st.builds(RegisterInstance, service_keys, persistent_instances),
    UpdateInstance: st.builds(UpdateInstance, service_keys, persistent_instances, st.booleans()),
    DeregisterInstance: st.builds(DeregisterInstance, service_keys, persistent_keys),
    PatchInstance: st.builds(
        lambda service, key, weight, healthy, enabled, patch_metadata, app: PatchInstance(
            service, key.ip, key.port, key.cluster, False, weight, healthy, enabled, patch_metadata, app
        ),
        service_keys, persistent_keys, st.none() | st.floats(0, 10000), st.none() | st.booleans(),
        st.none() | st.booleans(), st.none() | metadata, st.none() | free_text,
    ),
    CreateService: st.builds(CreateService, service_keys, thresholds, metadata, selectors),
    UpdateService: st.builds(UpdateService, service_keys, thresholds, st.none() | metadata, st.none() | selectors),
    DeleteService: st.builds(DeleteService, service_keys),
    UpdateCluster: st.builds(UpdateCluster, service_keys, st.sampled_from(["DEFAULT", "c-1"]), cluster_configs),
    SetInstanceHealth: st.builds(
        lambda service, key, healthy: SetInstanceHealth(service, key.ip, key.port, key.cluster, healthy),
        service_keys, persistent_keys, st.booleans(),
    ),
    UpdateMetadataBatch: st.builds(
        UpdateMetadataBatch, service_keys, metadata, st.booleans(), st.sampled_from([None, "ephemeral", "persist"]),
        st.lists(persistent_keys, max_size=3).map(tuple),
    ),
    ApplyProbeVerdict: st.builds(
        lambda service, ip, port, cluster, healthy, checker: ApplyProbeVerdict(
            service, ip, port, cluster, healthy, checker
        ),
        service_keys, st.sampled_from(["127.0.0.1", "::1", "10.1.2.3"]), st.integers(1, 65535),
        st.sampled_from(["DEFAULT", "c1"]), st.booleans(), st.sampled_from(["TCP", "HTTP", "MYSQL"]),
    ),
    ImportDefinition: st.builds(ImportDefinition, definitions),
}  # fmt: skip


def test_every_persistent_command_has_a_round_trip_below():
    assert set(COMMANDS_BY_KIND) == set(get_args(PersistentCommand))


@pytest.mark.parametrize("kind", list(COMMANDS_BY_KIND), ids=lambda kind: kind.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data(), now_ms=st.integers(0, 2**63 - 1))
def test_every_persistent_command_survives_the_round_trip(kind, data, now_ms):
    command = data.draw(COMMANDS_BY_KIND[kind])
    assert decode_operation(encode_operation(command, now_ms)) == (command, now_ms)


@settings(max_examples=60, deadline=None)
@given(st.lists(definitions, max_size=4))
def test_definitions_survive_the_round_trip(held):
    assert decode_definitions(encode_definitions(held)) == held


def test_an_entry_is_a_versioned_msgpack_document():
    data = encode_operation(DeleteService(ServiceKey("public", "g@@svc")), 1_000)
    assert msgpack.unpackb(data) == {
        "version": OPERATION_VERSION,
        "kind": "delete_service",
        "at": 1_000,
        "args": ["public", "g@@svc"],
    }


SVC = ServiceKey("public", "g@@svc")


def _entry(command=None, **changes) -> bytes:
    """A valid entry's document with `changes` made to it, packed."""
    document = msgpack.unpackb(encode_operation(command or DeleteService(SVC), 1_000))
    document.update(changes)
    return msgpack.packb(document)


def _register_args(**instance_changes) -> list:
    record = ["127.0.0.1", 80, "DEFAULT", 1.0, True, True, False, {}, "DEFAULT", False, "id"]
    names = ["ip", "port", "cluster", "weight", "healthy", "enabled", "ephemeral", "metadata", "app", "marked", "id"]
    for name, value in instance_changes.items():
        record[names.index(name)] = value
    return ["public", "g@@svc", record]


def _verdict_args(**changes) -> list:
    record = {"namespace": "public", "name": "g@@svc", "ip": "127.0.0.1", "port": 80, "cluster": "DEFAULT",
              "healthy": False, "checker": "TCP"}  # fmt: skip
    record.update(changes)
    return list(record.values())


def test_a_probe_verdict_entry_names_its_instance_health_and_checker():
    verdict = ApplyProbeVerdict(SVC, "127.0.0.1", 80, "DEFAULT", False, "TCP")
    assert msgpack.unpackb(encode_operation(verdict, 5)) == {
        "version": OPERATION_VERSION,
        "kind": "probe_verdict",
        "at": 5,
        "args": _verdict_args(),
    }


@pytest.mark.parametrize(
    "data, words",
    [
        (b"\xc1", "not a msgpack document"),
        (msgpack.packb([1, 2]), "operation: unexpected list"),
        (_entry(version=2), "operation version 2 is not 1"),
        (_entry(version=None), "operation version None is not 1"),
        (_entry(kind="drop_table"), "operation kind: unknown 'drop_table'"),
        (_entry(kind=7), "operation kind: unexpected int"),
        (_entry(args=["public"]), "delete_service: wrong number of fields"),
        (_entry(args=["public", "g@@svc", "extra"]), "delete_service: wrong number of fields"),
        (_entry(kind="register", args=["public", "g@@svc"]), "register: wrong number of fields"),
        (_entry(args="public/g@@svc"), "operation args: unexpected str"),
        (_entry(at=-1), "operation time: -1 is not in 0.."),
        (_entry(at="now"), "operation time: unexpected str"),
        (_entry(args=["../etc", "g@@svc"]), "namespace"),
        (_entry(args=["public", "no-group"]), "service name"),
        (_entry(kind="register", args=_register_args(ephemeral=True)), "an ephemeral instance in a persistent entry"),
        (_entry(kind="register", args=_register_args(ip="not an ip!")), "ip"),
        (_entry(kind="register", args=_register_args(ip="999.1.1.1")), "not a valid IP address"),
        (_entry(kind="register", args=_register_args(port=0)), "port"),
        (_entry(kind="register", args=_register_args(port="80")), "instance port: unexpected str"),
        (_entry(kind="register", args=_register_args(weight=float("nan"))), "weight"),
        (_entry(kind="deregister", args=["public", "g@@svc", "1.2.3", 80, "DEFAULT"]), "not a valid IP address"),
        (_entry(kind="deregister", args=["public", "g@@svc", "127.0.0.1", 70000, "DEFAULT"]), "port"),
        (_entry(kind="set_health", args=["public", "g@@svc", "127.0.0.1", 80, "DEFAULT", "yes"]), "healthy"),
        (_entry(kind="metadata_batch", args=["public", "g@@svc", {}, False, "all", []]), "metadata batch kind"),
        (_entry(kind="metadata_batch", args=["public", "g@@svc", {}, False, None, [["127.0.0.1", 80]]]),
         "metadata batch target: wrong number of fields"),
        (_entry(kind="update_service", args=["public", "g@@svc", 1.5, None, None]), "protect threshold"),
        (_entry(kind="create_service", args=["public", "g@@svc", 0.0, {}, ["regex", ""]]), "selector type: unknown"),
        (_entry(kind="update_cluster", args=["public", "g@@svc", ["c", {"type": "BOGUS"}, 80, True, {}]]), "cluster"),
        (_entry(kind="import", args=[["public", "g@@svc"]]), "definition: wrong number of fields"),
        (_entry(kind="probe_verdict", args=["public", "g@@svc", "127.0.0.1", 80, "DEFAULT", True]),
         "probe_verdict: wrong number of fields"),
        (_entry(kind="probe_verdict", args=_verdict_args(ip="db.example")), "probe verdict ip: not an IP address"),
        (_entry(kind="probe_verdict", args=_verdict_args(ip="999.1.1.1")), "not a valid IP address"),
        (_entry(kind="probe_verdict", args=_verdict_args(ip=7)), "ip: unexpected int"),
        (_entry(kind="probe_verdict", args=_verdict_args(port=0)), "port"),
        (_entry(kind="probe_verdict", args=_verdict_args(cluster="a b")), "cluster"),
        (_entry(kind="probe_verdict", args=_verdict_args(healthy=1)), "healthy: unexpected int"),
        (_entry(kind="probe_verdict", args=_verdict_args(checker="NONE")), "probe verdict checker: unknown 'NONE'"),
        (_entry(kind="probe_verdict", args=_verdict_args(checker="tcp")), "probe verdict checker: unknown 'tcp'"),
        (_entry(kind="probe_verdict", args=_verdict_args(checker=None)), "probe verdict checker: unexpected NoneType"),
        (_entry(kind="probe_verdict", args=_verdict_args(namespace="../x")), "namespace"),
    ],
)  # fmt: skip
def test_malformed_entries_are_refused_naming_the_problem(data, words):
    with pytest.raises(CodecError, match=re.escape(words)):
        decode_operation(data)


def _definition_record(**changes) -> list:
    record = msgpack.unpackb(encode_definitions([Definition(SVC)]))["definitions"][0]
    fields = ["namespace", "name", "threshold", "metadata", "selector", "explicit", "modified", "index", "instances",
              "clusters"]  # fmt: skip
    for name, value in changes.items():
        record[fields.index(name)] = value
    return record


@pytest.mark.parametrize(
    "document, words",
    [
        ({"version": 2, "definitions": []}, "definitions version 2 is not 1"),
        ({"version": 1, "definitions": {}}, "definitions: unexpected dict"),
        ({"version": 1, "definitions": [_definition_record()[:9]]}, "definition 0: definition: wrong number of fields"),
        ({"version": 1, "definitions": [_definition_record(index=-3)]}, "definition index: -3 is not in 0.."),
        (
            {"version": 1, "definitions": [_definition_record(instances=[_register_args(ephemeral=True)[2]])]},
            "public/g@@svc: instance: an ephemeral instance in a persistent entry",
        ),
        (
            {"version": 1, "definitions": [_definition_record(instances=[_register_args(port=-1)[2]])]},
            "public/g@@svc: instance 0: 'port' must be in 1..65535, got -1.",
        ),
    ],
)
def test_malformed_definitions_are_refused_naming_the_problem(document, words):
    with pytest.raises(CodecError, match=re.escape(words)):
        decode_definitions(msgpack.packb(document))
