"""Registry snapshots as msgpack: the on-disk form under --data-dir (and, later, for peers).

Pure: bytes in, values out. Decoding checks every field's type and raises CodecError on
anything malformed, so a damaged file or body never reaches the registry.
"""

from __future__ import annotations

from typing import Any, Iterable

import msgpack

from nacos_actors.model import Instance, Selector, Service, ServiceKey, freeze

FORMAT_VERSION = 1


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
    ]


def encode_services(services: Iterable[Service]) -> bytes:
    """Every given snapshot, in one msgpack document."""
    return msgpack.packb({"version": FORMAT_VERSION, "services": [_service_record(s) for s in services]})


def _expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CodecError(f"{what}: unexpected {type(value).__name__}")
    return value


def _strings(value: Any, what: str) -> dict[str, str]:
    mapping = _expect(value, dict, what)
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


def _decode_service(record: Any) -> Service:
    fields = _expect(record, list, "service")
    if len(fields) != 9:
        raise CodecError("service: wrong number of fields")
    namespace, name, threshold, metadata, selector, explicit, revision, modified_ms, instances = fields
    selector_fields = _expect(selector, list, "service selector")
    if len(selector_fields) != 2:
        raise CodecError("service selector: wrong number of fields")
    decoded = [_decode_instance(i) for i in _expect(instances, list, "service instances")]
    return Service(
        key=ServiceKey(_expect(namespace, str, "namespace"), _expect(name, str, "service name")),
        instances=freeze({i.key: i for i in decoded}),
        protect_threshold=float(_expect(threshold, (int, float), "protect threshold")),
        metadata=freeze(_strings(metadata, "service metadata")),
        selector=Selector(_expect(selector_fields[0], str, "selector type"), _expect(selector_fields[1], str, "selector expression")),
        explicit=_expect(explicit, bool, "service explicit"),
        revision=_expect(revision, int, "service revision"),
        modified_ms=_expect(modified_ms, int, "service modified time"),
    )


def decode_services(data: bytes) -> list[Service]:
    """The snapshots in a document made by encode_services; CodecError when malformed."""
    try:
        document = msgpack.unpackb(data, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as error:
        raise CodecError(f"not a msgpack document: {error}") from None
    document = _expect(document, dict, "snapshot")
    if document.get("version") != FORMAT_VERSION:
        raise CodecError(f"snapshot version {document.get('version')!r} is not {FORMAT_VERSION}")
    return [_decode_service(record) for record in _expect(document.get("services"), list, "services")]
