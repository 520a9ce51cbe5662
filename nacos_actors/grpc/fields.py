"""The fields of the naming requests, read from a body (a JSON object, nulls dropped) with the
same value rules as the v1 edge (nacos_actors.core.values through nacos_actors.http.params). A
bad field is a ParamError naming it (answered as an ErrorResponse with errorCode 400), and the
request then stores nothing. `null`, like an absent field, takes its default: the namespace is
`public` when empty, the group DEFAULT_GROUP, the cluster DEFAULT. Pure functions (loop thread).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nacos_actors.core.values import MAX_WEIGHT, type_name
from nacos_actors.http.params.base import ParamError, Params, number, parse_integer
from nacos_actors.http.params.instances import parse_ip
from nacos_actors.http.params.metadata import INSTANCE_METADATA_LIMIT, metadata_object, within_limit
from nacos_actors.http.params.names import (
    check_cluster,
    check_group,
    cluster_list,
    grouped_service_name,
    parse_namespace,
)
from nacos_actors.model import (
    DEFAULT_CLUSTER,
    DEFAULT_GROUP,
    DEFAULT_NAMESPACE,
    Instance,
    InstanceKey,
    ServiceKey,
    default_instance_id,
    freeze,
)

MAX_INT32 = 2**31 - 1


def text(body: Mapping[str, Any], name: str, field: str | None = None) -> str | None:
    """A string field; None when absent or null; a 400 when it is another JSON type."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ParamError(f"Param '{field or name}' must be a string, got {type_name(value)}.")
    return value


def flag(body: Mapping[str, Any], default: bool, *names: str) -> bool:
    """A boolean field (the first of `names` given); the default when absent or null."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise ParamError(f"Param '{name}' must be true or false, got {type_name(value)}.")
        return value
    return default


def whole(body: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name)
    return default if value is None else parse_integer(value, name, low, high)


def namespace(body: Mapping[str, Any], name: str = "namespace") -> str:
    raw = text(body, name)
    return DEFAULT_NAMESPACE if not raw else parse_namespace(raw, name)


def group(body: Mapping[str, Any]) -> str:
    raw = text(body, "groupName")
    return DEFAULT_GROUP if not raw else check_group(raw, "groupName")


def service_key(body: Mapping[str, Any]) -> ServiceKey:
    """The service a naming request names: namespace, serviceName (required), groupName."""
    space = namespace(body)
    raw = text(body, "serviceName")
    if not raw:
        raise ParamError("Param 'serviceName' is required.")
    return ServiceKey(space, grouped_service_name(raw, group(body)))


def clusters(body: Mapping[str, Any], name: str) -> tuple[str, tuple[str, ...]]:
    """A comma list of clusters (`clusters` of a subscribe, `cluster` of a query): the text as
    sent ("" when absent) and the names, sorted and unique."""
    raw = text(body, name)
    if not raw:
        return "", ()
    _, names = cluster_list(Params({"clusters": raw}))
    for part in names:
        check_cluster(part, name)
    return raw, names


def instance(
    body: Mapping[str, Any], service: ServiceKey, ephemeral: bool, metadata_limit: int, field: str = "instance"
) -> Instance:
    """The instance object of a request, with Nacos's defaults and the simple instance id.
    An InstanceRequest's instance must not say `ephemeral: false` (that is
    PersistentInstanceRequest's); a persistent one is stored persistent whatever it says."""
    raw = body.get(field)
    if not isinstance(raw, dict):
        raise ParamError(f"Param '{field}' is required: a JSON object with ip and port.")
    return instance_from(raw, service, ephemeral, metadata_limit, field)


def instance_from(
    raw: Mapping[str, Any], service: ServiceKey, ephemeral: bool, metadata_limit: int, field: str
) -> Instance:
    """One instance object (`field` names it in messages)."""
    said = raw.get("ephemeral")
    if said is not None and not isinstance(said, bool):
        raise ParamError(f"Param '{field}.ephemeral' must be true or false, got {type_name(said)}.")
    if ephemeral and said is False:
        raise ParamError(f"Param '{field}.ephemeral' must be true here: use PersistentInstanceRequest.")
    address = parse_ip(raw.get("ip"), f"{field}.ip")
    port = parse_integer(raw.get("port"), f"{field}.port", 1, 65535)
    cluster_name = text(raw, "clusterName", f"{field}.clusterName")
    cluster_name = DEFAULT_CLUSTER if not cluster_name else check_cluster(cluster_name, f"{field}.clusterName")
    weight_value = raw.get("weight")
    weight = 1.0 if weight_value is None else number(weight_value, f"{field}.weight", 0.0, MAX_WEIGHT)
    raw_metadata = raw.get("metadata")
    metadata = freeze({}) if raw_metadata is None else metadata_object(raw_metadata, f"{field}.metadata")
    within_limit(metadata, metadata_limit, INSTANCE_METADATA_LIMIT, f"{field}.metadata")
    key = InstanceKey(address, port, cluster_name, ephemeral)
    return Instance(
        ip=address,
        port=port,
        cluster=cluster_name,
        weight=weight,
        healthy=_nested_flag(raw, "healthy", field),
        enabled=_nested_flag(raw, "enabled", field),
        ephemeral=ephemeral,
        metadata=metadata,
        instance_id=default_instance_id(key, service.name),
    )


def _nested_flag(raw: Mapping[str, Any], name: str, field: str) -> bool:
    value = raw.get(name)
    if value is None:
        return True
    if not isinstance(value, bool):
        raise ParamError(f"Param '{field}.{name}' must be true or false, got {type_name(value)}.")
    return value


def instances(body: Mapping[str, Any], service: ServiceKey, metadata_limit: int, limit: int) -> tuple[Instance, ...]:
    """The `instances` array of a BatchInstanceRequest (ephemeral), at most `limit` of them."""
    raw = body.get("instances")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ParamError(f"Param 'instances' must be a JSON array, got {type_name(raw)}.")
    if len(raw) > limit:
        raise ParamError(f"Param 'instances' holds {len(raw)} instances, over the limit of {limit}.")
    found = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ParamError(f"Param 'instances[{index}]' must be a JSON object.")
        found.append(instance_from(item, service, True, metadata_limit, f"instances[{index}]"))
    return tuple(found)
