"""What a request says about instances: an address (`ip`, IPv4, IPv6 or a host name), `port`,
`weight`, `app`; a whole instance to register or update, or the key of one; the validated
queries of the two requests clients repeat (instance/list and beat, see QueryMemo); a beat's
target and the instance a full beat describes; the targets of a metadata batch. A bad value is
a ParamError naming the parameter. Pure functions (event loop thread)."""

from __future__ import annotations

from typing import Any, NamedTuple

from nacos_actors.core import values
from nacos_actors.core.values import MAX_APP_LENGTH, MAX_WEIGHT
from nacos_actors.http.params.base import (
    ParamError,
    Params,
    at_the_edge,
    boolean,
    integer,
    number,
    parse_integer,
    required,
)
from nacos_actors.http.params.metadata import json_value, metadata, metadata_object
from nacos_actors.http.params.names import check_cluster, cluster, cluster_list, service_key
from nacos_actors.model import (
    DEFAULT_APP,
    DEFAULT_CLUSTER,
    Instance,
    InstanceKey,
    ServiceKey,
    default_instance_id,
    freeze,
)

parse_ip = at_the_edge(values.parse_ip)
check_app = at_the_edge(values.check_app)
check_text = at_the_edge(values.check_text)


def ip(params: Params) -> str:
    return parse_ip(required(params, "ip"), "ip")


def port(params: Params, name: str = "port") -> int:
    return integer(params, name, None, 1, 65535)


def weight(params: Params) -> float:
    raw = params.get("weight")
    return 1.0 if raw is None else number(raw, "weight", 0.0, MAX_WEIGHT)


def app(params: Params) -> str:
    raw = params.get("app")
    return DEFAULT_APP if raw is None else check_app(raw, "app")


def instance(params: Params, service: ServiceKey) -> Instance:
    """The instance a register/update request describes, with Nacos's defaults. It carries the
    simple instance id the registry would give a new one in `service` (saving the registry actor
    a copy of it); the registry still decides the id."""
    address, number, cluster_name = ip(params), port(params), cluster(params)
    return Instance(
        ip=address,
        port=number,
        cluster=cluster_name,
        weight=weight(params),
        healthy=boolean(params, True, "healthy"),
        enabled=boolean(params, True, "enabled", "enable"),
        ephemeral=boolean(params, True, "ephemeral"),
        metadata=metadata(params) or freeze({}),
        app=app(params),
        instance_id=default_instance_id(InstanceKey(address, number, cluster_name, True), service.name),
    )


def instance_key(params: Params) -> InstanceKey:
    return InstanceKey(ip(params), port(params), cluster(params), boolean(params, True, "ephemeral"))


class ListQuery(NamedTuple):
    """The parameters of GET /v1/ns/instance/list, validated."""

    service: ServiceKey
    clusters_text: str
    clusters: tuple[str, ...]
    healthy_only: bool
    udp_port: int
    client_ip: str | None
    app: str


def list_query(
    params: Params, clusters_name: str = "clusters", udp_port_name: str = "udpPort", client_ip_name: str = "clientIP"
) -> ListQuery:
    """Validate an instance/list query (a push subscriber's `app`: text, kept to 128 characters).
    The 2.x list names the clusters `clusterName`, the UDP port `port` and the client `ip`."""
    service = service_key(params)
    clusters_text, clusters = cluster_list(params, clusters_name)
    healthy_only = boolean(params, False, "healthyOnly")
    udp_port = integer(params, udp_port_name, 0, 0, 65535)
    client_ip = params.get(client_ip_name)
    if client_ip is not None:
        client_ip = parse_ip(client_ip, client_ip_name)
    app_name = check_text(params.get("app") or "", "app")[:MAX_APP_LENGTH]
    return ListQuery(service, clusters_text, clusters, healthy_only, udp_port, client_ip, app_name)


def beat(params: Params) -> dict[str, Any] | None:
    """The `beat` JSON object of a full beat; None for a light beat (no `beat` at all)."""
    if params.get("beat") is None:
        return None
    document = json_value(params, "beat")
    if not isinstance(document, dict):
        raise ParamError("Param 'beat' must be a JSON object.")
    return document


class BeatQuery(NamedTuple):
    """The parameters of PUT /v1/ns/instance/beat, validated: see `beat_target`."""

    service: ServiceKey
    key: InstanceKey
    from_beat: Instance | None


def beat_query(params: Params) -> BeatQuery:
    service = service_key(params)
    return BeatQuery(service, *beat_target(params))


def beat_target(params: Params) -> tuple[InstanceKey, Instance | None]:
    """The instance a beat names and, for a full beat, the instance to register if it is unknown.

    A full beat's JSON `ip`, `port` and `cluster` override the parameters; a light beat names an
    ephemeral instance by `ip`, `port` and `clusterName`.
    """
    document = beat(params)
    default_cluster = cluster(params)
    if document is None:
        return InstanceKey(ip(params), port(params), default_cluster, True), None
    raw_ip = params.get("ip")
    from_beat = beat_instance(
        document,
        default_cluster,
        None if raw_ip is None else parse_ip(raw_ip, "ip"),
        None if params.get("port") is None else port(params),
    )
    return from_beat.key, from_beat


def beat_instance(document: Any, default_cluster: str, param_ip: str | None, param_port: int | None) -> Instance:
    """The instance a full beat describes (`beat` JSON overrides ip/port/cluster params)."""
    if not isinstance(document, dict):
        raise ParamError("Param 'beat' must be a JSON object.")
    raw_ip = document.get("ip", param_ip)
    raw_port = document.get("port", param_port)
    if raw_ip is None:
        raise ParamError("Param 'beat' must carry 'ip' (or give param 'ip').")
    if raw_port is None:
        raise ParamError("Param 'beat' must carry 'port' (or give param 'port').")
    raw_cluster = document.get("cluster") or default_cluster
    if not isinstance(raw_cluster, str):
        raise ParamError("Param 'beat' field 'cluster' must be a string.")
    raw_metadata = document.get("metadata")
    ephemeral = document.get("ephemeral", True)
    if not isinstance(ephemeral, bool):
        raise ParamError("Param 'beat' field 'ephemeral' must be true or false.")
    return Instance(
        ip=parse_ip(raw_ip, "beat.ip"),
        port=parse_integer(raw_port, "beat.port", 1, 65535),
        cluster=check_cluster(raw_cluster, "beat.cluster"),
        weight=number(document.get("weight", 1.0), "beat.weight", 0.0, MAX_WEIGHT),
        ephemeral=ephemeral,
        metadata=freeze({}) if raw_metadata is None else metadata_object(raw_metadata, "beat.metadata"),
    )


def instance_targets(document: Any) -> tuple[InstanceKey, ...]:
    """The `instances` JSON array of metadata/batch: `[{ip, port, clusterName, ephemeral}]`."""
    if not isinstance(document, list):
        raise ParamError("Param 'instances' must be a JSON array of {ip, port, clusterName, ephemeral}.")
    targets = []
    for item in document:
        if not isinstance(item, dict):
            raise ParamError("Param 'instances' items must be JSON objects.")
        raw_cluster = item.get("clusterName") or DEFAULT_CLUSTER
        ephemeral = item.get("ephemeral", True)
        if not isinstance(raw_cluster, str) or not isinstance(ephemeral, bool):
            raise ParamError("Param 'instances' items need a string clusterName and a boolean ephemeral.")
        targets.append(
            InstanceKey(
                parse_ip(item.get("ip"), "instances.ip"),
                parse_integer(item.get("port"), "instances.port", 1, 65535),
                check_cluster(raw_cluster, "instances.clusterName"),
                ephemeral,
            )
        )
    return tuple(targets)
