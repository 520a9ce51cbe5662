"""Registry snapshots and the peer protocol's bodies, as msgpack.

The snapshot is the on-disk form under --data-dir and what a starting node pulls from a peer;
the peer bodies are Distro batches, verify digests and member reports. Pure: bytes in, values
out. Decoding checks every field's type and raises CodecError on anything malformed, so a
damaged file or body never reaches the registry. Version 2 added the services' cluster
configs; version-1 documents (no clusters) are still read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from nacos_actors.model import (
    HEALTH_CHECKER_TYPES,
    ClusterConfig,
    Instance,
    Selector,
    Service,
    ServiceKey,
    Tombstone,
    freeze,
    instance_map,
)

# The peer endpoints these bodies travel to, under the context path (served by
# nacos_actors.http.cluster, called through nacos_actors.peers).
REPORT_PATH = "/v1/core/cluster/report"
DATUM_PATH = "/v1/ns/distro/datum"
CHECKSUM_PATH = "/v1/ns/distro/checksum"
SNAPSHOT_PATH = "/v1/ns/distro/datums"

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


class CodecError(ValueError):
    """Bytes that are not a snapshot this version can read."""


def _instance_record(instance: Instance) -> list[Any]:
    return [
        instance.ip,
        instance.port,
        instance.cluster,
        instance.weight,
        instance.healthy,
        instance.enabled,
        instance.ephemeral,
        dict(instance.metadata),
        instance.app,
        instance.marked,
        instance.instance_id,
    ]


def _service_record(service: Service) -> list[Any]:
    return [
        service.key.namespace,
        service.key.name,
        service.protect_threshold,
        dict(service.metadata),
        [service.selector.type, service.selector.expression],
        service.explicit,
        service.revision,
        service.modified_ms,
        [_instance_record(i) for i in service.instances.values()],
        [_cluster_record(name, config) for name, config in service.clusters.items()],
    ]


def _cluster_record(name: str, config: ClusterConfig) -> list[Any]:
    return [name, dict(config.health_checker), config.check_port, config.use_instance_port, dict(config.metadata)]


def encode_services(services: Iterable[Service]) -> bytes:
    """Every given snapshot, in one msgpack document."""
    return _pack({"version": FORMAT_VERSION, "services": [_service_record(s) for s in services]})


def _expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CodecError(f"{what}: unexpected {type(value).__name__}")
    return value


def _strings(value: Any, what: str) -> dict[str, str]:
    mapping: dict[str, str] = _expect(value, dict, what)
    for k, v in mapping.items():
        _expect(k, str, what)
        _expect(v, str, what)
    return mapping


def _decode_instance(record: Any) -> Instance:
    fields = _expect(record, list, "instance")
    if len(fields) != 11:
        raise CodecError("instance: wrong number of fields")
    ip, port, cluster, weight, healthy, enabled, ephemeral, metadata, app, marked, instance_id = fields
    return Instance(
        ip=_expect(ip, str, "instance ip"),
        port=_expect(port, int, "instance port"),
        cluster=_expect(cluster, str, "instance cluster"),
        weight=float(_expect(weight, (int, float), "instance weight")),
        healthy=_expect(healthy, bool, "instance healthy"),
        enabled=_expect(enabled, bool, "instance enabled"),
        ephemeral=_expect(ephemeral, bool, "instance ephemeral"),
        metadata=freeze(_strings(metadata, "instance metadata")),
        app=_expect(app, str, "instance app"),
        marked=_expect(marked, bool, "instance marked"),
        instance_id=_expect(instance_id, str, "instance id"),
    )


def _decode_cluster(record: Any) -> tuple[str, ClusterConfig]:
    fields = _expect(record, list, "cluster")
    if len(fields) != 5:
        raise CodecError("cluster: wrong number of fields")
    name, checker, check_port, use_instance_port, metadata = fields
    checker = _expect(checker, dict, "cluster health checker")
    for key, value in checker.items():
        _expect(key, str, "cluster health checker")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
            raise CodecError(f"cluster health checker: unexpected {type(value).__name__}")
    checker_type = _expect(checker.get("type"), str, "cluster health checker type")
    if checker_type not in HEALTH_CHECKER_TYPES:
        raise CodecError(f"cluster health checker type: unknown {checker_type!r}")
    config = ClusterConfig(
        health_checker=freeze(checker),
        check_port=_expect(check_port, int, "cluster check port"),
        use_instance_port=_expect(use_instance_port, bool, "cluster use instance port"),
        metadata=freeze(_strings(metadata, "cluster metadata")),
    )
    return _expect(name, str, "cluster name"), config


def _decode_service(record: Any, version: int) -> Service:
    fields = _expect(record, list, "service")
    if len(fields) != (9 if version == 1 else 10):
        raise CodecError("service: wrong number of fields")
    namespace, name, threshold, metadata, selector, explicit, revision, modified_ms, instances = fields[:9]
    clusters = [] if version == 1 else [_decode_cluster(c) for c in _expect(fields[9], list, "service clusters")]
    selector_fields = _expect(selector, list, "service selector")
    if len(selector_fields) != 2:
        raise CodecError("service selector: wrong number of fields")
    decoded = [_decode_instance(i) for i in _expect(instances, list, "service instances")]
    return Service(
        key=ServiceKey(_expect(namespace, str, "namespace"), _expect(name, str, "service name")),
        instances=instance_map(decoded),
        protect_threshold=float(_expect(threshold, (int, float), "protect threshold")),
        metadata=freeze(_strings(metadata, "service metadata")),
        selector=Selector(
            _expect(selector_fields[0], str, "selector type"), _expect(selector_fields[1], str, "selector expression")
        ),
        explicit=_expect(explicit, bool, "service explicit"),
        revision=_expect(revision, int, "service revision"),
        modified_ms=_expect(modified_ms, int, "service modified time"),
        clusters=freeze(dict(clusters)),
    )


def _document(data: bytes, what: str) -> dict[Any, Any]:
    try:
        document = msgpack.unpackb(data, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as error:
        raise CodecError(f"not a msgpack document: {error}") from None
    found: dict[Any, Any] = _expect(document, dict, what)
    return found


def _version(document: Mapping[Any, Any], what: str) -> int:
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise CodecError(f"{what} version {version!r} is not one of {READABLE_VERSIONS}")
    return version


def decode_services(data: bytes) -> list[Service]:
    """The snapshots in a document made by encode_services; CodecError when malformed."""
    document = _document(data, "snapshot")
    version = _version(document, "snapshot")
    return [_decode_service(record, version) for record in _expect(document.get("services"), list, "services")]


# -- the peer protocol ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyncBatch:
    """A Distro batch: the latest state of some services from `sender`; `force` for a repair."""

    sender: str
    force: bool
    states: tuple[Service | Tombstone, ...]


def encode_batch(sender: str, states: Iterable[Service | Tombstone], force: bool) -> bytes:
    services, tombstones = [], []
    for state in states:
        if isinstance(state, Tombstone):
            tombstones.append([state.key.namespace, state.key.name, state.revision])
        else:
            services.append(_service_record(state))
    return _pack(
        {"version": FORMAT_VERSION, "sender": sender, "force": force, "services": services, "tombstones": tombstones}
    )


def _key_fields(record: Any, size: int, what: str) -> list[Any]:
    fields: list[Any] = _expect(record, list, what)
    if len(fields) != size:
        raise CodecError(f"{what}: wrong number of fields")
    _expect(fields[0], str, f"{what} namespace")
    _expect(fields[1], str, f"{what} service name")
    for value in fields[2:]:
        _expect(value, int, what)
    return fields


def decode_batch(data: bytes) -> SyncBatch:
    """A batch made by encode_batch; CodecError when malformed or empty."""
    document = _document(data, "batch")
    version = _version(document, "batch")
    services = [_decode_service(r, version) for r in _expect(document.get("services"), list, "services")]
    tombstones = [
        Tombstone(ServiceKey(f[0], f[1]), f[2])
        for f in (_key_fields(r, 3, "tombstone") for r in _expect(document.get("tombstones"), list, "tombstones"))
    ]
    if not services and not tombstones:
        raise CodecError("batch: no services")
    return SyncBatch(
        _expect(document.get("sender"), str, "sender"),
        _expect(document.get("force"), bool, "force"),
        (*services, *tombstones),
    )


@dataclass(frozen=True, slots=True)
class Digests:
    """Verify's message: the stamps of the services `sender` owns, and its healthy view."""

    sender: str
    healthy: tuple[str, ...]
    stamps: Mapping[ServiceKey, tuple[int, int]]


def encode_digests(sender: str, healthy: Iterable[str], stamps: Iterable[tuple[ServiceKey, tuple[int, int]]]) -> bytes:
    rows = [[key.namespace, key.name, revision, modified] for key, (revision, modified) in stamps]
    return _pack({"version": FORMAT_VERSION, "sender": sender, "healthy": list(healthy), "digests": rows})


def decode_digests(data: bytes) -> Digests:
    document = _document(data, "digests")
    _version(document, "digests")
    healthy = tuple(_expect(a, str, "healthy member") for a in _expect(document.get("healthy"), list, "healthy"))
    stamps = {
        ServiceKey(f[0], f[1]): (f[2], f[3])
        for f in (_key_fields(r, 4, "digest") for r in _expect(document.get("digests"), list, "digests"))
    }
    return Digests(_expect(document.get("sender"), str, "sender"), healthy, stamps)


def encode_keys(keys: Iterable[ServiceKey]) -> bytes:
    """The answer to digests: the services the receiver wants sent again."""
    return _pack({"version": FORMAT_VERSION, "wanted": [[k.namespace, k.name] for k in keys]})


def decode_keys(data: bytes) -> tuple[ServiceKey, ...]:
    document = _document(data, "wanted keys")
    _version(document, "wanted keys")
    return tuple(
        ServiceKey(f[0], f[1])
        for f in (_key_fields(r, 2, "key") for r in _expect(document.get("wanted"), list, "wanted"))
    )


@dataclass(frozen=True, slots=True)
class MemberReport:
    """A member's word about itself: its address and state (in a report, or in the answer)."""

    address: str
    state: str


def encode_report(address: str, state: str) -> bytes:
    return _pack({"version": FORMAT_VERSION, "address": address, "state": state})


def decode_report(data: bytes, states: Iterable[str]) -> MemberReport:
    document = _document(data, "report")
    _version(document, "report")
    state = _expect(document.get("state"), str, "state")
    if state not in tuple(states):
        raise CodecError(f"state: unknown {state[:32]!r}")
    return MemberReport(_expect(document.get("address"), str, "address"), state)


def _pack(document: object) -> bytes:
    packed: bytes = msgpack.packb(document)
    return packed
