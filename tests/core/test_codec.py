"""Registry snapshots survive the msgpack round trip; damaged bytes are refused, never loaded."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nacos_actors.core.codec import FORMAT_VERSION, CodecError, decode_services, encode_services
from nacos_actors.core.registry import RegistryCore
from nacos_actors.messages import CreateService, RegisterInstance, UpdateCluster
from nacos_actors.model import ClusterConfig, Instance, InstanceKey, Selector, ServiceKey, freeze

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
    core = RegistryCore()
    core.apply(CreateService(ServiceKey("public", "g@@explicit"), threshold, freeze({"k": "v"}), Selector("label", "a=b")), 1)
    for n, (name, namespace, instance) in enumerate(writes):
        core.apply(RegisterInstance(ServiceKey(namespace, name), instance), n + 2)
    loaded = RegistryCore()
    loaded.load(decode_services(encode_services(core.all_services())))
    assert comparable(loaded) == comparable(core)


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
    core = RegistryCore()
    service = ServiceKey("public", "g@@svc")
    core.apply(RegisterInstance(service, Instance("127.0.0.1", 80)), 1)
    for n, config in enumerate(CLUSTER_CONFIGS):
        core.apply(UpdateCluster(service, f"c-{n}", config), 2 + n)
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
