"""The peer protocol's msgpack bodies (Distro batches, verify digests, wanted keys, member
reports): they survive the round trip, and anything malformed raises CodecError, never another
exception."""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nacos_actors.core.codec import (
    FORMAT_VERSION,
    CodecError,
    Digests,
    MemberReport,
    decode_batch,
    decode_digests,
    decode_keys,
    decode_report,
    encode_batch,
    encode_digests,
    encode_keys,
    encode_report,
)
from nacos_actors.core.members import REPORTED_STATES, STATES
from nacos_actors.core.registry import Tombstone
from nacos_actors.model import ClusterConfig, Instance, Selector, Service, ServiceKey, freeze, instance_map

SENDER = "127.0.0.1:8848"
HEALTHY = ("127.0.0.1:8848", "127.0.0.2:8848", "127.0.0.3:8848")

text = st.text(max_size=8)
# What a client may store: free text without control characters, names of their characters.
free_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=8)
names = st.from_regex(r"[0-9A-Za-z.:_-]{1,8}", fullmatch=True)
service_keys = st.builds(ServiceKey, st.sampled_from(["public", "dev", "a_b-1"]), names.map(lambda n: f"DEFAULT_GROUP@@{n}"))
instances = st.builds(
    Instance,
    ip=st.sampled_from(["127.0.0.1", "127.0.0.2", "::1", "host.example"]),
    port=st.integers(1, 65535),
    cluster=st.sampled_from(["DEFAULT", "c1"]),
    weight=st.floats(0, 10000),
    healthy=st.booleans(),
    enabled=st.booleans(),
    ephemeral=st.booleans(),
    metadata=st.dictionaries(free_text, free_text, max_size=3).map(freeze),
    app=free_text,
    marked=st.booleans(),
    instance_id=free_text,
)
cluster_configs = st.builds(
    ClusterConfig,
    health_checker=st.sampled_from(
        [{"type": "TCP"}, {"type": "NONE"}, {"type": "HTTP", "path": "/up", "headers": "", "expectedResponseCode": 200}]
    ).map(freeze),
    check_port=st.integers(1, 65535),
    use_instance_port=st.booleans(),
    metadata=st.dictionaries(free_text, free_text, max_size=2).map(freeze),
)
revisions = st.integers(0, 2**53)
services = st.builds(
    lambda key, listed, threshold, metadata, selector, explicit, revision, modified, clusters: Service(
        key=key,
        instances=instance_map(listed),
        protect_threshold=threshold,
        metadata=metadata,
        selector=selector,
        explicit=explicit,
        revision=revision,
        modified_ms=modified,
        clusters=freeze(clusters),
    ),
    service_keys,
    st.lists(instances, max_size=3),
    st.floats(0, 1),
    st.dictionaries(free_text, free_text, max_size=2).map(freeze),
    st.builds(Selector, st.sampled_from(["none", "label"]), free_text),
    st.booleans(),
    revisions,
    revisions,
    st.dictionaries(st.sampled_from(["DEFAULT", "c-1"]), cluster_configs, max_size=2),
)
tombstones = st.builds(Tombstone, service_keys, revisions)


def comparable(state: Service | Tombstone) -> Any:
    if isinstance(state, Tombstone):
        return state
    return (
        state.key,
        list(state.instances.items()),
        state.protect_threshold,
        dict(state.metadata),
        state.selector,
        state.explicit,
        state.revision,
        state.modified_ms,
        {
            name: (dict(c.health_checker), c.check_port, c.use_instance_port, dict(c.metadata))
            for name, c in state.clusters.items()
        },
    )


# -- round trips --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(services, max_size=3), st.lists(tombstones, max_size=3), st.booleans(), text)
def test_batch_round_trip_keeps_services_tombstones_and_force(sent_services, sent_tombstones, force, sender):
    if not sent_services and not sent_tombstones:
        sent_tombstones = [Tombstone(ServiceKey("public", "g@@x"), 1)]
    interleaved = [*sent_tombstones[:1], *sent_services, *sent_tombstones[1:]]
    batch = decode_batch(encode_batch(sender, interleaved, force))
    assert (batch.sender, batch.force) == (sender, force)
    # Services come first, then tombstones, each in the order sent.
    assert [comparable(s) for s in batch.states] == [comparable(s) for s in [*sent_services, *sent_tombstones]]
    for state in batch.states:
        if isinstance(state, Service):
            assert isinstance(state.metadata, MappingProxyType) or not state.metadata


def test_batch_of_one_service_round_trips_exactly():
    instance = Instance("127.0.0.1", 8080, weight=2.5, metadata=freeze({"k": "v"}), instance_id="id-1")
    service = Service(
        key=ServiceKey("public", "DEFAULT_GROUP@@orders"),
        instances=instance_map([instance]),
        protect_threshold=0.5,
        metadata=freeze({"owner": "team"}),
        selector=Selector("label", "a=b"),
        explicit=True,
        revision=7,
        modified_ms=1_700_000_000_000,
        clusters=freeze({"DEFAULT": ClusterConfig(check_port=9090)}),
    )
    batch = decode_batch(encode_batch(SENDER, [service], True))
    assert batch.force is True and len(batch.states) == 1
    assert comparable(batch.states[0]) == comparable(service)
    assert batch.states[0].instances[instance.key] == instance


@settings(max_examples=60, deadline=None)
@given(text, st.lists(text, max_size=4), st.dictionaries(service_keys, st.tuples(revisions, revisions), max_size=5))
def test_digests_round_trip(sender, healthy, stamps):
    decoded = decode_digests(encode_digests(sender, healthy, stamps.items()))
    assert decoded == Digests(sender, tuple(healthy), stamps)


def test_empty_digests_round_trip():
    assert decode_digests(encode_digests(SENDER, HEALTHY, [])) == Digests(SENDER, HEALTHY, {})


@settings(max_examples=60, deadline=None)
@given(st.lists(service_keys, max_size=5))
def test_keys_round_trip(keys):
    assert decode_keys(encode_keys(keys)) == tuple(keys)


@pytest.mark.parametrize("state", sorted(STATES))
def test_report_round_trip(state):
    assert decode_report(encode_report(SENDER, state), STATES) == MemberReport(SENDER, state)


# -- malformed bodies ---------------------------------------------------------------------------


def pack(**fields: Any) -> bytes:
    return msgpack.packb(fields)


GOOD_BATCH = msgpack.unpackb(encode_batch(SENDER, [Service(key=ServiceKey("public", "g@@a"))], False))
GOOD_SERVICE_RECORD = GOOD_BATCH["services"][0]

MALFORMED_BATCHES = [
    b"",
    b"\xc1",  # never used in msgpack
    b"\x92\x01",  # a list cut short
    msgpack.packb([1, 2]) + b"\x00",  # extra data
    msgpack.packb([1, 2]),
    msgpack.packb({1: 2}),
    pack(version=99, sender=SENDER, force=False, services=[], tombstones=[["public", "g@@a", 1]]),
    pack(version="2", sender=SENDER, force=False, services=[], tombstones=[["public", "g@@a", 1]]),
    pack(version=True, sender=SENDER, force=False, services=[], tombstones=[["public", "g@@a", 1]]),
    pack(sender=SENDER, force=False, services=[], tombstones=[["public", "g@@a", 1]]),  # no version
    pack(version=FORMAT_VERSION, sender=SENDER, force=False, services=[], tombstones=[]),  # empty
    pack(version=FORMAT_VERSION, force=False, services=[], tombstones=[["public", "g@@a", 1]]),  # no sender
    pack(version=FORMAT_VERSION, sender=SENDER, services=[], tombstones=[["public", "g@@a", 1]]),  # no force
    pack(version=FORMAT_VERSION, sender=SENDER, force=1, services=[], tombstones=[["public", "g@@a", 1]]),
    pack(version=FORMAT_VERSION, sender=7, force=False, services=[], tombstones=[["public", "g@@a", 1]]),
    pack(version=FORMAT_VERSION, sender=SENDER, force=False, services=[]),  # no tombstones
    pack(version=FORMAT_VERSION, sender=SENDER, force=False, tombstones=[["public", "g@@a", 1]]),  # no services
    pack(version=FORMAT_VERSION, sender=SENDER, force=False, services={}, tombstones=[]),
    pack(version=FORMAT_VERSION, sender=SENDER, force=False, services=[], tombstones=[["public", "g@@a"]]),
    pack(version=FORMAT_VERSION, sender=SENDER, force=False, services=[], tombstones=[["public", "g@@a", "1"]]),
    pack(version=FORMAT_VERSION, sender=SENDER, force=False, services=[], tombstones=[["public", "g@@a", True]]),
    pack(version=FORMAT_VERSION, sender=SENDER, force=False, services=[], tombstones=[[b"public", "g@@a", 1]]),
    pack(version=FORMAT_VERSION, sender=SENDER, force=False, services=[], tombstones=["public"]),
    pack(version=FORMAT_VERSION, sender=SENDER, force=False, services=[GOOD_SERVICE_RECORD[:-1]], tombstones=[]),
    pack(version=FORMAT_VERSION, sender=SENDER, force=False, services=[[None] * 10], tombstones=[]),
    pack(
        version=FORMAT_VERSION,
        sender=SENDER,
        force=False,
        services=[GOOD_SERVICE_RECORD[:6] + ["7"] + GOOD_SERVICE_RECORD[7:]],
        tombstones=[],
    ),
]


@pytest.mark.parametrize("data", MALFORMED_BATCHES)
def test_malformed_batches_are_refused(data):
    with pytest.raises(CodecError):
        decode_batch(data)


def test_a_good_service_record_is_accepted():
    body = pack(version=FORMAT_VERSION, sender=SENDER, force=False, services=[GOOD_SERVICE_RECORD], tombstones=[])
    assert decode_batch(body).states[0].key == ServiceKey("public", "g@@a")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgpack.packb("digests"),
        pack(version=0, sender=SENDER, healthy=[], digests=[]),
        pack(version=FORMAT_VERSION, healthy=[], digests=[]),  # no sender
        pack(version=FORMAT_VERSION, sender=SENDER, digests=[]),  # no healthy view
        pack(version=FORMAT_VERSION, sender=SENDER, healthy=[]),  # no digests
        pack(version=FORMAT_VERSION, sender=SENDER, healthy=[1], digests=[]),
        pack(version=FORMAT_VERSION, sender=SENDER, healthy="127.0.0.1:8848", digests=[]),
        pack(version=FORMAT_VERSION, sender=SENDER, healthy=[], digests=[["public", "g@@a", 1]]),
        pack(version=FORMAT_VERSION, sender=SENDER, healthy=[], digests=[["public", "g@@a", 1, 2.0]]),
        pack(version=FORMAT_VERSION, sender=SENDER, healthy=[], digests=[["public", "g@@a", 1, 2, 3]]),
        pack(version=FORMAT_VERSION, sender=SENDER, healthy=[], digests={"public": 1}),
    ],
)
def test_malformed_digests_are_refused(data):
    with pytest.raises(CodecError):
        decode_digests(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00",
        pack(version=FORMAT_VERSION),  # no keys
        pack(version=3, wanted=[]),
        pack(version=FORMAT_VERSION, wanted=[["public"]]),
        pack(version=FORMAT_VERSION, wanted=[["public", None]]),
        pack(version=FORMAT_VERSION, wanted=[["public", "g@@a", 1]]),
        pack(version=FORMAT_VERSION, wanted="public"),
    ],
)
def test_malformed_keys_are_refused(data):
    with pytest.raises(CodecError):
        decode_keys(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff",
        pack(version=FORMAT_VERSION, address=SENDER),  # no state
        pack(version=FORMAT_VERSION, state="UP"),  # no address
        pack(version=FORMAT_VERSION, address=SENDER, state="ISOLATION"),
        pack(version=FORMAT_VERSION, address=SENDER, state="up"),
        pack(version=FORMAT_VERSION, address=SENDER, state=1),
        pack(version=FORMAT_VERSION, address=None, state="UP"),
        pack(version=None, address=SENDER, state="UP"),
        pack(version=FORMAT_VERSION, address=SENDER, state="x" * 10_000),
    ],
)
def test_malformed_reports_are_refused(data):
    with pytest.raises(CodecError):
        decode_report(data, STATES)


def test_a_report_in_a_state_the_caller_does_not_accept_is_refused():
    with pytest.raises(CodecError):
        decode_report(encode_report(SENDER, "SUSPICIOUS"), REPORTED_STATES)
    assert decode_report(encode_report(SENDER, "UP"), iter(REPORTED_STATES)).state == "UP"


# -- nothing but CodecError, whatever arrives ---------------------------------------------------

DECODERS: dict[str, Callable[[bytes], Any]] = {
    "batch": decode_batch,
    "digests": decode_digests,
    "keys": decode_keys,
    "report": lambda data: decode_report(data, STATES),
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=6),
    st.binary(max_size=6),
    st.sampled_from([FORMAT_VERSION, 1, "public", "g@@a", SENDER, "UP", "TCP", "type"]),
)
structures = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(
            st.one_of(st.text(max_size=8), st.sampled_from(["version", "services", "tombstones"])), children, max_size=5
        ),
    ),
    max_leaves=25,
)


def decodes_or_refuses(decoder: Callable[[bytes], Any], data: bytes) -> None:
    try:
        decoder(data)
    except CodecError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(DECODERS)), st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_codec_error(name, data):
    decodes_or_refuses(DECODERS[name], data)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(DECODERS)), structures)
def test_arbitrary_structures_raise_only_codec_error(name, structure):
    decodes_or_refuses(DECODERS[name], msgpack.packb(structure))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(DECODERS)), st.dictionaries(st.integers(-5, 5), scalars, min_size=1, max_size=3))
def test_maps_with_non_string_keys_raise_only_codec_error(name, structure):
    with pytest.raises(CodecError):
        DECODERS[name](msgpack.packb(structure))


def valid_documents() -> dict[str, Any]:
    instance = Instance("127.0.0.1", 80, metadata=freeze({"k": "v"}))
    service = Service(
        key=ServiceKey("public", "g@@a"),
        instances=instance_map([instance]),
        metadata=freeze({"m": "1"}),
        clusters=freeze({"DEFAULT": ClusterConfig()}),
    )
    bodies = {
        "batch": encode_batch(SENDER, [service, Tombstone(ServiceKey("public", "g@@b"), 3)], False),
        "digests": encode_digests(SENDER, HEALTHY, [(ServiceKey("public", "g@@a"), (1, 2))]),
        "keys": encode_keys([ServiceKey("public", "g@@a")]),
        "report": encode_report(SENDER, "UP"),
    }
    return {name: msgpack.unpackb(body) for name, body in bodies.items()}


VALID = valid_documents()


def slots(value: Any, path: tuple = ()) -> list[tuple]:
    """Every place inside a decoded document: list indexes and map keys, at any depth."""
    found = [path]
    if isinstance(value, list):
        for index, item in enumerate(value):
            found += slots(item, (*path, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            found += slots(item, (*path, key))
    return found


def with_replaced(value: Any, path: tuple, replacement: Any, drop: bool) -> Any:
    if not path:
        return replacement
    head, rest = path[0], path[1:]
    if isinstance(value, list):
        copy: Any = list(value)
    else:
        copy = dict(value)
    if drop and not rest:
        del copy[head]
    else:
        copy[head] = with_replaced(value[head], rest, replacement, drop)
    return copy


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(VALID)), st.data(), structures, st.booleans())
def test_valid_bodies_with_one_part_damaged_raise_only_codec_error(name, data, replacement, drop):
    document = VALID[name]
    path = data.draw(st.sampled_from(slots(document)))
    damaged = with_replaced(document, path, replacement, drop and bool(path))
    decodes_or_refuses(DECODERS[name], msgpack.packb(damaged))


# -- values no client could store ----------------------------------------------------------------
# The probe of issue 14 pushed a batch whose instances had IP `not an ip!!`, ports 0 and -5, a
# NaN weight (served as `null`), namespace `../../etc` and a NUL in a service name; every one was
# stored and served. Peer bodies and data files obey the rules of client input now.


def _instance(**changes: Any) -> list[Any]:
    fields = dict(ip="127.0.0.1", port=80, cluster="DEFAULT", weight=1.0, healthy=True, enabled=True,
                  ephemeral=True, metadata={}, app="DEFAULT", marked=False, instance_id="id")
    fields.update(changes)
    return list(fields.values())


def _service(namespace: str = "public", name: str = "DEFAULT_GROUP@@svc", instances: list | None = None,
             **changes: Any) -> list[Any]:
    fields = dict(namespace=namespace, name=name, threshold=0.0, metadata={}, selector=["none", ""],
                  explicit=False, revision=1, modified_ms=1, instances=instances or [_instance()], clusters=[])
    fields.update(changes)
    return list(fields.values())


def _batch(*services: list[Any], tombstones: list | None = None) -> bytes:
    return pack(version=FORMAT_VERSION, sender=SENDER, force=True, services=list(services),
                tombstones=tombstones or [])


INVALID_VALUES = [
    # (the service record, words the CodecError must hold: the entry, the field, the value)
    (_service(instances=[_instance(ip="not an ip!!")]), "service 1: public/DEFAULT_GROUP@@svc: instance 0: 'ip'"),
    (_service(instances=[_instance(), _instance(port=0)]), "instance 1: 'port' must be in 1..65535, got 0"),
    (_service(instances=[_instance(port=-5)]), "'port' must be in 1..65535, got -5"),
    (_service(instances=[_instance(port=65536)]), "'port' must be in 1..65535, got 65536"),
    (_service(instances=[_instance(weight=float("nan"))]), "'weight' must be a finite number in 0..10000, got 'nan'"),
    (_service(instances=[_instance(weight=float("inf"))]), "'weight' must be a finite number"),
    (_service(instances=[_instance(weight=-1.0)]), "'weight' must be a finite number"),
    (_service(instances=[_instance(cluster="a b")]), "'cluster' must be 1..64 characters"),
    (_service(instances=[_instance(app="a" * 129)]), "'app' must be at most 128 characters"),
    (_service(namespace="../../etc"), "service 1: 'namespace' must be 1..128 characters of 0-9a-zA-Z_-, got '../../etc'"),
    (_service(namespace=""), "'namespace' must be 1..128"),
    (_service(name="DEFAULT_GROUP@@nul\x00name"), "'service name' must be 1..255 characters of 0-9a-zA-Z.:_-, got 'nul\\x00name'"),
    (_service(name="no-group"), "'service name' must be one 'group@@name', got 'no-group'"),
    (_service(name="a@@b@@c"), "'service name' must be one 'group@@name'"),
    (_service(name="@@b"), "'service name' must be 1..128 characters"),
    (_service(threshold=float("nan")), "'protect threshold' must be a finite number in 0..1"),
    (_service(threshold=2), "'protect threshold' must be a finite number in 0..1, got '2'"),
    (_service(selector=["regex", ".*"]), "selector type: unknown 'regex'"),
    (_service(revision=-1), "service revision: -1 is not in 0.."),
    (_service(modified_ms=2**63), "service modified time"),
    (_service(clusters=[["a b", {"type": "TCP"}, 80, True, {}]]), "cluster 0: 'cluster name' must be 1..64"),
    (_service(clusters=[["c", {"type": "TCP"}, 0, True, {}]]), "cluster 0: 'check port' must be in 1..65535, got 0"),
    (_service(clusters=[["c", {"type": "HTTP", "expectedResponseCode": 700}, 80, True, {}]]), "expectedResponseCode"),
]


@pytest.mark.parametrize("record, words", INVALID_VALUES, ids=[w[:40] for _, w in INVALID_VALUES])
def test_a_value_no_client_could_store_is_refused_naming_its_entry(record, words):
    with pytest.raises(CodecError) as refused:
        decode_batch(_batch(_service(name="DEFAULT_GROUP@@fine"), record))
    assert words in str(refused.value)
    assert str(refused.value).startswith("service 1: ")  # the first invalid entry, after a valid one


@pytest.mark.parametrize(
    "row, words",
    [
        (["../../etc", "g@@a", 1], "tombstone 0: 'namespace'"),
        (["public", "g@@a\x00", 1], "tombstone 0: 'service name'"),
        (["public", "g@@a", -1], "tombstone 0: tombstone: -1 is not in 0.."),
    ],
)
def test_a_tombstone_for_a_key_no_client_could_make_is_refused(row, words):
    with pytest.raises(CodecError) as refused:
        decode_batch(_batch(tombstones=[row]))
    assert words in str(refused.value)


def test_digests_and_wanted_keys_hold_valid_keys_only():
    with pytest.raises(CodecError, match="digest 0: 'namespace'"):
        decode_digests(pack(version=FORMAT_VERSION, sender=SENDER, healthy=[], digests=[["a/b", "g@@a", 1, 1]]))
    with pytest.raises(CodecError, match="key 0: 'service name'"):
        decode_keys(pack(version=FORMAT_VERSION, wanted=[["public", "g"]]))


def test_an_address_is_stored_as_the_edge_stores_it():
    (service,) = decode_batch(_batch(_service(instances=[_instance(ip="0:0::1")]))).states
    assert [key.ip for key in service.instances] == ["::1"]
