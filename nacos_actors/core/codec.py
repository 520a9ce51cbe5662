"""Registry snapshots and the peer protocol's bodies, as msgpack.

The snapshot is the on-disk form under --data-dir and what a starting node pulls from a peer;
the peer bodies are Distro batches, verify digests and member reports. Pure: bytes in, values
out. Decoding checks every field's type, and every value by the rules a client's request
obeys (nacos_actors.core.values: names, addresses, ports, weights, metadata, checkers), and
raises CodecError naming the first entry that breaks one: a damaged file or body, or a peer
that sends what no client could have stored, never reaches the registry. Version 2 added the
services' cluster configs; version-1 documents (no clusters) are still read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, assert_never

import msgpack

from nacos_actors.core.probing import PROBE_KINDS
from nacos_actors.core.values import (
    SELECTOR_TYPES,
    InvalidValue,
    check_app,
    check_cluster,
    check_grouped_name,
    check_metadata,
    check_namespace,
    check_port,
    check_protect_threshold,
    check_selector_expression,
    check_text,
    check_weight,
    is_ip_literal,
    parse_health_checker,
    parse_ip,
    printable,
)
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
# Revisions and modified times: what a Java long holds, and never negative.
MAX_STAMP = 2**63 - 1
T = TypeVar("T")


class CodecError(ValueError):
    """Bytes that are not a snapshot this version can read, or that hold a value no client
    could have stored; the message names the first such entry."""


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


def _valid(rule: Callable[[Any, str], T], value: Any, field: str) -> T:
    """`rule(value, field)`, a value rule of nacos_actors.core.values; CodecError when broken."""
    try:
        return rule(value, field)
    except InvalidValue as error:
        raise CodecError(printable(str(error))) from None


def _strings(value: Any, what: str) -> Mapping[str, str]:
    mapping: dict[Any, Any] = _expect(value, dict, what)
    for k, v in mapping.items():
        _expect(k, str, what)
        _expect(v, str, what)
    return _valid(check_metadata, mapping, what)


def _stamp(value: Any, what: str) -> int:
    number: int = _expect(value, int, what)
    if not 0 <= number <= MAX_STAMP:
        raise CodecError(f"{what}: {number} is not in 0..{MAX_STAMP}")
    return number


def _decode_instance(record: Any) -> Instance:
    fields = _expect(record, list, "instance")
    if len(fields) != 11:
        raise CodecError("instance: wrong number of fields")
    ip, port, cluster, weight, healthy, enabled, ephemeral, metadata, app, marked, instance_id = fields
    return Instance(
        ip=_valid(parse_ip, _expect(ip, str, "instance ip"), "ip"),
        port=_valid(check_port, _expect(port, int, "instance port"), "port"),
        cluster=_valid(check_cluster, _expect(cluster, str, "instance cluster"), "cluster"),
        weight=_valid(check_weight, _expect(weight, (int, float), "instance weight"), "weight"),
        healthy=_expect(healthy, bool, "instance healthy"),
        enabled=_expect(enabled, bool, "instance enabled"),
        ephemeral=_expect(ephemeral, bool, "instance ephemeral"),
        metadata=_strings(metadata, "instance metadata"),
        app=_valid(check_app, _expect(app, str, "instance app"), "app"),
        marked=_expect(marked, bool, "instance marked"),
        instance_id=_valid(check_text, _expect(instance_id, str, "instance id"), "instance id"),
    )


def _decode_cluster(record: Any) -> tuple[str, ClusterConfig]:
    fields = _expect(record, list, "cluster")
    if len(fields) != 5:
        raise CodecError("cluster: wrong number of fields")
    name, checker, check_port_value, use_instance_port, metadata = fields
    name = _valid(check_cluster, _expect(name, str, "cluster name"), "cluster name")
    checker = _expect(checker, dict, "cluster health checker")
    for key, value in checker.items():
        _expect(key, str, "cluster health checker")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
            raise CodecError(f"cluster health checker: unexpected {type(value).__name__}")
    _expect(checker.get("type"), str, "cluster health checker type")
    config = ClusterConfig(
        health_checker=_valid(parse_health_checker, checker, "cluster health checker"),
        check_port=_valid(check_port, _expect(check_port_value, int, "cluster check port"), "check port"),
        use_instance_port=_expect(use_instance_port, bool, "cluster use instance port"),
        metadata=_strings(metadata, "cluster metadata"),
    )
    return name, config


def _decode_key(namespace: Any, name: Any, what: str) -> ServiceKey:
    """A stored service key: a namespace id and a `group@@name` as the edge makes them."""
    return ServiceKey(
        _valid(check_namespace, _expect(namespace, str, f"{what} namespace"), "namespace"),
        _valid(check_grouped_name, _expect(name, str, f"{what} service name"), "service name"),
    )


def _decode_service(record: Any, version: int) -> Service:
    fields = _expect(record, list, "service")
    if len(fields) != (9 if version == 1 else 10):
        raise CodecError("service: wrong number of fields")
    namespace, name, threshold, metadata, selector, explicit, revision, modified_ms, instances = fields[:9]
    key = _decode_key(namespace, name, "service")
    try:
        clusters = (
            [] if version == 1 else _each(_expect(fields[9], list, "service clusters"), _decode_cluster, "cluster")
        )
        selector_fields = _expect(selector, list, "service selector")
        if len(selector_fields) != 2:
            raise CodecError("service selector: wrong number of fields")
        selector_type = _expect(selector_fields[0], str, "selector type")
        if selector_type not in SELECTOR_TYPES:
            raise CodecError(f"selector type: unknown {printable(selector_type[:32])!r}")
        decoded = _each(_expect(instances, list, "service instances"), _decode_instance, "instance")
        return Service(
            key=key,
            instances=instance_map(decoded),
            protect_threshold=_valid(
                check_protect_threshold, _expect(threshold, (int, float), "protect threshold"), "protect threshold"
            ),
            metadata=_strings(metadata, "service metadata"),
            selector=Selector(
                selector_type,
                _valid(
                    check_selector_expression,
                    _expect(selector_fields[1], str, "selector expression"),
                    "selector expression",
                ),
            ),
            explicit=_expect(explicit, bool, "service explicit"),
            revision=_stamp(revision, "service revision"),
            modified_ms=_stamp(modified_ms, "service modified time"),
            clusters=freeze(dict(clusters)),
        )
    except CodecError as error:
        raise CodecError(f"{key.namespace}/{key.name}: {error}") from None


def _each(records: list[Any], decode: Callable[[Any], T], what: str) -> list[T]:
    """`decode` of every record; a CodecError names the record by its index."""
    decoded = []
    for index, record in enumerate(records):
        try:
            decoded.append(decode(record))
        except CodecError as error:
            raise CodecError(f"{what} {index}: {error}") from None
    return decoded


def _decode_services(records: Any, version: int) -> list[Service]:
    return _each(_expect(records, list, "services"), lambda record: _decode_service(record, version), "service")


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
    return _decode_services(document.get("services"), version)


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


def _keyed_rows(records: Any, label: str, size: int, what: str) -> list[tuple[ServiceKey, list[int]]]:
    """Rows of a service key (namespace, grouped name) and `size - 2` stamps; CodecError naming
    the first row that is malformed or holds a key no client could have made."""

    def row(record: Any) -> tuple[ServiceKey, list[int]]:
        fields: list[Any] = _expect(record, list, what)
        if len(fields) != size:
            raise CodecError(f"{what}: wrong number of fields")
        key = _decode_key(fields[0], fields[1], what)
        return key, [_stamp(value, what) for value in fields[2:]]

    return _each(_expect(records, list, label), row, what)


def decode_batch(data: bytes) -> SyncBatch:
    """A batch made by encode_batch; CodecError when malformed or empty."""
    document = _document(data, "batch")
    version = _version(document, "batch")
    services = _decode_services(document.get("services"), version)
    tombstones = [
        Tombstone(key, revision)
        for key, (revision,) in _keyed_rows(document.get("tombstones"), "tombstones", 3, "tombstone")
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
    """Verify's message: the stamps of the services `sender` owns, its healthy view, and when
    (its wall clock, ms) it took them: 0 from a sender that does not say."""

    sender: str
    healthy: tuple[str, ...]
    stamps: Mapping[ServiceKey, tuple[int, int]]
    made_ms: int = 0


def encode_digests(
    sender: str, healthy: Iterable[str], stamps: Iterable[tuple[ServiceKey, tuple[int, int]]], made_ms: int = 0
) -> bytes:
    rows = [[key.namespace, key.name, revision, modified] for key, (revision, modified) in stamps]
    return _pack(
        {"version": FORMAT_VERSION, "sender": sender, "healthy": list(healthy), "digests": rows, "made": made_ms}
    )


def decode_digests(data: bytes) -> Digests:
    document = _document(data, "digests")
    _version(document, "digests")
    healthy = tuple(_expect(a, str, "healthy member") for a in _expect(document.get("healthy"), list, "healthy"))
    stamps = {
        key: (revision, modified)
        for key, (revision, modified) in _keyed_rows(document.get("digests"), "digests", 4, "digest")
    }
    made_ms = _stamp(document.get("made", 0), "digests time")
    return Digests(_expect(document.get("sender"), str, "sender"), healthy, stamps, made_ms)


def encode_keys(keys: Iterable[ServiceKey]) -> bytes:
    """The answer to digests: the services the receiver wants sent again."""
    return _pack({"version": FORMAT_VERSION, "wanted": [[k.namespace, k.name] for k in keys]})


def decode_keys(data: bytes) -> tuple[ServiceKey, ...]:
    document = _document(data, "wanted keys")
    _version(document, "wanted keys")
    return tuple(key for key, _ in _keyed_rows(document.get("wanted"), "wanted", 2, "key"))


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


# -- Raft entries and snapshots -----------------------------------------------------------

OPERATION_VERSION = 1


def _definition_record(definition: Definition) -> list[Any]:
    return [
        definition.key.namespace,
        definition.key.name,
        definition.protect_threshold,
        dict(definition.metadata),
        [definition.selector.type, definition.selector.expression],
        definition.explicit,
        definition.modified_ms,
        definition.index,
        [_instance_record(i) for i in definition.instances.values()],
        [_cluster_record(name, config) for name, config in definition.clusters.items()],
    ]


def _decode_selector(value: Any) -> Selector:
    fields = _expect(value, list, "selector")
    if len(fields) != 2:
        raise CodecError("selector: wrong number of fields")
    selector_type = _expect(fields[0], str, "selector type")
    if selector_type not in SELECTOR_TYPES:
        raise CodecError(f"selector type: unknown {printable(selector_type[:32])!r}")
    expression = _valid(
        check_selector_expression, _expect(fields[1], str, "selector expression"), "selector expression"
    )
    return Selector(selector_type, expression)


def _threshold(value: Any) -> float:
    number = _expect(value, (int, float), "protect threshold")
    return float(_valid(check_protect_threshold, number, "protect threshold"))


def _persistent(instance: Instance) -> Instance:
    if instance.ephemeral:
        raise CodecError("instance: an ephemeral instance in a persistent entry")
    return instance


def _decode_definition(record: Any) -> Definition:
    fields = _expect(record, list, "definition")
    if len(fields) != 10:
        raise CodecError("definition: wrong number of fields")
    namespace, name, threshold, metadata, selector, explicit, modified_ms, index, instances, clusters = fields
    key = _decode_key(namespace, name, "definition")
    try:
        decoded = _each(_expect(instances, list, "definition instances"), _decode_instance, "instance")
        return Definition(
            key=key,
            instances=instance_map(_persistent(i) for i in decoded),
            protect_threshold=_threshold(threshold),
            metadata=_strings(metadata, "service metadata"),
            selector=_decode_selector(selector),
            explicit=_expect(explicit, bool, "definition explicit"),
            clusters=freeze(dict(_each(_expect(clusters, list, "definition clusters"), _decode_cluster, "cluster"))),
            modified_ms=_stamp(modified_ms, "definition modified time"),
            index=_stamp(index, "definition index"),
        )
    except CodecError as error:
        raise CodecError(f"{key.namespace}/{key.name}: {error}") from None


def encode_definitions(definitions: Iterable[Definition]) -> bytes:
    """Every definition, in one msgpack document (the state in a Raft snapshot)."""
    return _pack({"version": OPERATION_VERSION, "definitions": [_definition_record(d) for d in definitions]})


def decode_definitions(data: bytes) -> list[Definition]:
    """The definitions in a document made by encode_definitions; CodecError when malformed."""
    document = _document(data, "definitions")
    if document.get("version") != OPERATION_VERSION:
        raise CodecError(f"definitions version {document.get('version')!r} is not {OPERATION_VERSION}")
    return _each(_expect(document.get("definitions"), list, "definitions"), _decode_definition, "definition")


def _key_fields(service: ServiceKey) -> list[Any]:
    return [service.namespace, service.name]


def _optional(value: Any, decode: Callable[[Any], T]) -> T | None:
    return None if value is None else decode(value)


def encode_operation(command: PersistentCommand, now_ms: int) -> bytes:
    """One Raft entry: `command` as proposed at `now_ms`, versioned."""
    match command:
        case RegisterInstance(service, instance):
            kind, args = "register", [*_key_fields(service), _instance_record(instance)]
        case UpdateInstance(service, instance, must_exist):
            kind, args = "update", [*_key_fields(service), _instance_record(instance), must_exist]
        case DeregisterInstance(service, key):
            kind, args = "deregister", [*_key_fields(service), key.ip, key.port, key.cluster]
        case PatchInstance(service, ip, port, cluster, _, weight, healthy, enabled, metadata, app):
            patch_metadata = None if metadata is None else dict(metadata)
            kind, args = (
                "patch",
                [*_key_fields(service), ip, port, cluster, weight, healthy, enabled, patch_metadata, app],
            )
        case CreateService(service, threshold, metadata, selector):
            selector_fields = [selector.type, selector.expression]
            kind, args = "create_service", [*_key_fields(service), threshold, dict(metadata), selector_fields]
        case UpdateService(service, threshold, metadata, selector):
            kind, args = (
                "update_service",
                [
                    *_key_fields(service),
                    threshold,
                    None if metadata is None else dict(metadata),
                    None if selector is None else [selector.type, selector.expression],
                ],
            )
        case DeleteService(service):
            kind, args = "delete_service", _key_fields(service)
        case UpdateCluster(service, cluster, config):
            kind, args = "update_cluster", [*_key_fields(service), _cluster_record(cluster, config)]
        case SetInstanceHealth(service, ip, port, cluster, healthy):
            kind, args = "set_health", [*_key_fields(service), ip, port, cluster, healthy]
        case UpdateMetadataBatch(service, metadata, remove, batch_kind, targets):
            rows = [[k.ip, k.port, k.cluster] for k in targets]
            kind, args = "metadata_batch", [*_key_fields(service), dict(metadata), remove, batch_kind, rows]
        case ApplyProbeVerdict(service, ip, port, cluster, healthy, checker):
            kind, args = "probe_verdict", [*_key_fields(service), ip, port, cluster, healthy, checker]
        case ImportDefinition(definition):
            kind, args = "import", [_definition_record(definition)]
        case _:
            assert_never(command)
    return _pack({"version": OPERATION_VERSION, "kind": kind, "at": now_ms, "args": args})


_OPERATION_ARITY = {
    "register": 3,
    "update": 4,
    "deregister": 5,
    "patch": 10,
    "create_service": 5,
    "update_service": 5,
    "delete_service": 2,
    "update_cluster": 3,
    "set_health": 6,
    "metadata_batch": 6,
    "probe_verdict": 7,
    "import": 1,
}


def decode_operation(data: bytes) -> tuple[PersistentCommand, int]:
    """The command and proposer's clock of a Raft entry; CodecError when malformed or holding
    a value no client could have sent (entries are checked like any peer's body)."""
    document = _document(data, "operation")
    if document.get("version") != OPERATION_VERSION:
        raise CodecError(f"operation version {document.get('version')!r} is not {OPERATION_VERSION}")
    kind = _expect(document.get("kind"), str, "operation kind")
    arity = _OPERATION_ARITY.get(kind)
    if arity is None:
        raise CodecError(f"operation kind: unknown {printable(kind[:32])!r}")
    args = _expect(document.get("args"), list, "operation args")
    if len(args) != arity:
        raise CodecError(f"{kind}: wrong number of fields")
    now_ms = _stamp(document.get("at"), "operation time")
    if kind == "import":
        return ImportDefinition(_decode_definition(args[0])), now_ms
    service = _decode_key(args[0], args[1], kind)
    return _decode_command(kind, service, args[2:]), now_ms


def _ip(value: Any) -> str:
    return _valid(parse_ip, _expect(value, str, "ip"), "ip")


def _port(value: Any) -> int:
    return _valid(check_port, _expect(value, int, "port"), "port")


def _cluster_name(value: Any) -> str:
    return _valid(check_cluster, _expect(value, str, "cluster"), "cluster")


def _decode_probe_verdict(service: ServiceKey, args: list[Any]) -> ApplyProbeVerdict:
    """A probe verdict names an IP literal (instances registered by host name are not probed)
    and a checker that probes."""
    ip, port, cluster, healthy, checker = args
    address = _ip(ip)
    if not is_ip_literal(address):
        raise CodecError(f"probe verdict ip: not an IP address {printable(address[:64])!r}")
    checker = _expect(checker, str, "probe verdict checker")
    if checker not in PROBE_KINDS:
        raise CodecError(f"probe verdict checker: unknown {printable(checker[:32])!r}")
    return ApplyProbeVerdict(
        service, address, _port(port), _cluster_name(cluster), _expect(healthy, bool, "healthy"), checker
    )


def _decode_command(kind: str, service: ServiceKey, args: list[Any]) -> PersistentCommand:
    if kind == "register":
        return RegisterInstance(service, _persistent(_decode_instance(args[0])))
    if kind == "update":
        return UpdateInstance(service, _persistent(_decode_instance(args[0])), _expect(args[1], bool, "must exist"))
    if kind == "deregister":
        return DeregisterInstance(service, InstanceKey(_ip(args[0]), _port(args[1]), _cluster_name(args[2]), False))
    if kind == "patch":
        ip, port, cluster, weight, healthy, enabled, metadata, app = args
        return PatchInstance(
            service,
            _ip(ip),
            _port(port),
            _cluster_name(cluster),
            False,
            weight=_optional(weight, lambda v: _valid(check_weight, _expect(v, (int, float), "weight"), "weight")),
            healthy=_optional(healthy, lambda v: _expect(v, bool, "healthy")),
            enabled=_optional(enabled, lambda v: _expect(v, bool, "enabled")),
            metadata=_optional(metadata, lambda v: _strings(v, "instance metadata")),
            app=_optional(app, lambda v: _valid(check_app, _expect(v, str, "app"), "app")),
        )
    if kind == "create_service":
        threshold, metadata, selector = args
        return CreateService(
            service, _threshold(threshold), _strings(metadata, "service metadata"), _decode_selector(selector)
        )
    if kind == "update_service":
        threshold, metadata, selector = args
        return UpdateService(
            service,
            _threshold(threshold),
            _optional(metadata, lambda v: _strings(v, "service metadata")),
            _optional(selector, _decode_selector),
        )
    if kind == "delete_service":
        return DeleteService(service)
    if kind == "update_cluster":
        name, config = _decode_cluster(args[0])
        return UpdateCluster(service, name, config)
    if kind == "set_health":
        ip, port, cluster, healthy = args
        return SetInstanceHealth(
            service, _ip(ip), _port(port), _cluster_name(cluster), _expect(healthy, bool, "healthy")
        )
    if kind == "probe_verdict":
        return _decode_probe_verdict(service, args)
    metadata, remove, batch_kind, rows = args
    if batch_kind is not None and batch_kind not in ("ephemeral", "persist"):
        raise CodecError("metadata batch kind: unknown")
    targets = []
    for row in _expect(rows, list, "metadata batch targets"):
        fields = _expect(row, list, "metadata batch target")
        if len(fields) != 3:
            raise CodecError("metadata batch target: wrong number of fields")
        targets.append(InstanceKey(_ip(fields[0]), _port(fields[1]), _cluster_name(fields[2]), False))
    return UpdateMetadataBatch(
        service, _strings(metadata, "instance metadata"), _expect(remove, bool, "remove"), batch_kind, tuple(targets)
    )
