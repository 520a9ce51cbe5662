"""The Nacos JSON documents other than the instance list: an instance (the client's view and
the console's full server view), a service with its clusters, the console catalog, push
subscribers and push state, and cluster members. Each is a dict for `dumps`; pure functions of
the snapshot or counters they are given, safe on any thread."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

import orjson

from nacos_actors.core.push import GrpcPushStats, PushStats, Subscription
from nacos_actors.core.streams import GrpcSubscription
from nacos_actors.model import INSTANCE_ID_GENERATOR_KEY, Instance, Service, in_order
from nacos_actors.settings import join_host_port

CLUSTER_DEFAULT_PORT = 80  # Nacos's Cluster.defaultPort: shown, never set by any endpoint
NACOS_VERSION = "1.4.8"  # the version a member shows in its extendInfo (the v1 API's Nacos)
MASKED_PASSWORD = "******"  # what answers show of a MYSQL checker's `pwd` (Nacos shows it in clear)


def dumps(document: Any) -> bytes:
    return orjson.dumps(document)


ARRAY_BATCH = 256  # values per orjson call in json_array_parts


def json_array_parts(values: Iterable[Any], head: bytes = b"[", tail: bytes = b"]") -> Iterator[bytes]:
    """`head`, the JSON of each of `values` comma-separated, then `tail`: a JSON array (inside
    whatever `head` and `tail` open and close) rendered ARRAY_BATCH values at a time, as the
    parts are asked for, so a long array is never whole in memory."""
    yield head
    iterator = iter(values)
    separator = b""
    while batch := list(islice(iterator, ARRAY_BATCH)):
        yield separator
        yield orjson.dumps(batch)[1:-1]
        separator = b","
    yield tail


def instance_detail(service: Service, instance: Instance) -> dict[str, Any]:
    """GET /v1/ns/instance."""
    return {
        "service": service.key.name,
        "ip": instance.ip,
        "port": instance.port,
        "clusterName": instance.cluster,
        "weight": instance.weight,
        "healthy": instance.healthy,
        "instanceId": instance.instance_id,
        "metadata": dict(instance.metadata),
        "enabled": instance.enabled,
        "ephemeral": instance.ephemeral,
    }


INSTANCE_DETAIL_V2_FIELDS = ("ip", "port", "clusterName", "weight", "healthy", "instanceId", "metadata")


def instance_detail_v2(service: Service, instance: Instance) -> dict[str, Any]:
    """GET /v2/ns/instance: Nacos 2.x's InstanceDetailInfoVo (the grouped service name)."""
    detail = instance_detail(service, instance)
    return {"serviceName": service.key.name, **{name: detail[name] for name in INSTANCE_DETAIL_V2_FIELDS}}


def server_instance(service: Service, instance: Instance, last_beat_ms: int | None) -> dict[str, Any]:
    """The full server-side instance JSON of the console's catalog/instances."""
    return {
        "instanceId": instance.instance_id,
        "ip": instance.ip,
        "port": instance.port,
        "weight": instance.weight,
        "healthy": instance.healthy,
        "enabled": instance.enabled,
        "ephemeral": instance.ephemeral,
        "clusterName": instance.cluster,
        "serviceName": service.key.name,
        "metadata": dict(instance.metadata),
        "lastBeat": last_beat_ms if last_beat_ms is not None else service.last_ref_ms,
        "marked": instance.marked,
        "app": instance.app,
        "instanceHeartBeatInterval": instance.beat_interval_ms,
        "instanceHeartBeatTimeOut": instance.beat_timeout_ms,
        "ipDeleteTimeout": instance.delete_timeout_ms,
        "instanceIdGenerator": instance.metadata.get(INSTANCE_ID_GENERATOR_KEY, "simple"),
    }


def subscriber(subscription: Subscription | GrpcSubscription) -> dict[str, Any]:
    """One row of GET /v1/ns/service/subscribers (Nacos's Subscriber, plus port and cluster).
    A gRPC subscriber is shown as Nacos 2.x's SubscribeServiceRequestHandler makes it: its
    `clientIp` as both `addrStr` and `ip`, port 0, its client version as `agent`."""
    if isinstance(subscription, GrpcSubscription):
        return {
            "addrStr": subscription.client_ip,
            "agent": subscription.agent,
            "app": subscription.app,
            "ip": subscription.client_ip,
            "port": 0,
            "namespaceId": subscription.service.namespace,
            "serviceName": subscription.service.name,
            "cluster": subscription.clusters_text,
        }
    key = subscription.key
    return {
        "addrStr": join_host_port(key.address, key.port),
        "agent": subscription.agent,
        "app": subscription.app,
        "ip": key.address,
        "port": key.port,
        "namespaceId": key.service.namespace,
        "serviceName": key.service.name,
        "cluster": key.clusters,
    }


def push_state(stats: PushStats, grpc: GrpcPushStats | None = None) -> dict[str, Any]:
    """GET /v1/ns/operator/push/state: Nacos's succeed/total/ratio, and our finer counts, over
    the pushes of both transports (`stats`), with the gRPC pushes' own counts under `grpc`.

    Nacos 1.4 answers `succeed` = total - failed and `ratio` = succeed / total, so a push that
    is still awaiting its ack (or was superseded before one came) counts as a success: ratio 1.0
    while nothing was acknowledged. Here `succeed` is the pushes acknowledged, and `ratio` the
    share acknowledged of the pushes that ended acknowledged, failed or dropped (0 when none
    ended yet, as Nacos answers 0 before any push)."""
    decided = stats.acked + stats.failed + stats.dropped
    return {
        "succeed": stats.acked,
        "total": stats.total,
        "ratio": stats.acked / decided if decided else 0,
        "failed": stats.failed,
        "acked": stats.acked,
        "superseded": stats.superseded,
        "dropped": stats.dropped,
        "refusedSubscriptions": stats.refused,
        "awaitingAck": stats.awaiting_ack,
        "pendingTasks": stats.pending_services,
        "subscriberCount": stats.subscribers,
        "avgPushCost": stats.average_cost_ms,
        "maxPushCost": stats.cost_max_ms,
        "malformedDatagrams": stats.malformed,
        "unmatchedAcks": stats.unmatched,
        "reset": False,
        "grpc": grpc_push_state(grpc if grpc is not None else GrpcPushStats()),
    }


def grpc_push_state(stats: GrpcPushStats) -> dict[str, Any]:
    """The `grpc` block of push state: the pushes over gRPC streams alone."""
    return {
        "subscriberCount": stats.subscribers,
        "total": stats.total,
        "resent": stats.resent,
        "acked": stats.acked,
        "failed": stats.failed,
        "superseded": stats.superseded,
        "dropped": stats.dropped,
        "abandoned": stats.abandoned,
        "awaitingAck": stats.awaiting_ack,
        "pendingTasks": stats.pending_services,
        "refusedSubscriptions": stats.refused,
        "avgPushCost": stats.average_cost_ms,
        "maxPushCost": stats.cost_max_ms,
        "unmatchedAcks": stats.unmatched,
    }


def checker_json(checker: Mapping[str, Any]) -> dict[str, Any]:
    """A cluster's health checker as every answer shows it: the stored JSON object, except that
    a MYSQL checker's `pwd`, when it has one, reads MASKED_PASSWORD (Nacos shows it in clear;
    PUT /v1/ns/cluster takes the mask back as "keep the stored password")."""
    shown = dict(checker)
    if "pwd" in shown:
        shown["pwd"] = MASKED_PASSWORD
    return shown


def cluster_entries(service: Service) -> list[dict[str, Any]]:
    """Every cluster that holds an instance or is configured, sorted by name, as Nacos's
    Cluster JSON: the checker object (checker_json: its password masked) and metadata as stored
    (an unconfigured cluster shows the TCP default), `defaultCheckPort` and `useIPPort4Check`
    as PUT /v1/ns/cluster set them, and the console's `defCkport`/`defIPPort` spellings of the
    check port."""
    entries = []
    for name in service.known_cluster_names():
        config = service.cluster_config(name)
        entries.append(
            {
                "name": name,
                "serviceName": service.key.name,
                "healthChecker": checker_json(config.health_checker),
                "metadata": dict(config.metadata),
                "defaultPort": CLUSTER_DEFAULT_PORT,
                "defaultCheckPort": config.check_port,
                "useIPPort4Check": config.use_instance_port,
                "defCkport": config.check_port,
                "defIPPort": config.check_port,
            }
        )
    return entries


def selector_json(service: Service) -> dict[str, Any]:
    if service.selector.type == "label":
        return {"type": "label", "expression": service.selector.expression}
    return {"type": "none"}


def service_detail(service: Service) -> dict[str, Any]:
    """GET /v1/ns/service."""
    return {
        "namespaceId": service.key.namespace,
        "groupName": service.group,
        "name": service.bare_name,
        "protectThreshold": service.protect_threshold,
        "metadata": dict(service.metadata),
        "selector": selector_json(service),
        "clusters": cluster_entries(service),
    }


def catalog_service(service: Service) -> dict[str, Any]:
    """GET /v1/ns/catalog/service: Nacos's console view of a service, its settings under
    `service` and its clusters (checkers included, a password masked) under `clusters`."""
    return {
        "service": {
            "name": service.bare_name,
            "protectThreshold": service.protect_threshold,
            "groupName": service.group,
            "selector": selector_json(service),
            "metadata": dict(service.metadata),
        },
        "clusters": cluster_entries(service),
    }


def service_detail_v2(service: Service) -> dict[str, Any]:
    """GET /v2/ns/service: Nacos 2.x's ServiceDetailInfo, its clusters by name. A service is
    ephemeral unless it holds a persistent instance."""
    cluster_map = {
        entry["name"]: {
            "clusterName": entry["name"],
            "healthChecker": entry["healthChecker"],
            "metadata": entry["metadata"],
        }
        for entry in cluster_entries(service)
    }
    return {
        "namespace": service.key.namespace,
        "serviceName": service.bare_name,
        "groupName": service.group,
        "clusterMap": cluster_map,
        "metadata": dict(service.metadata),
        "protectThreshold": service.protect_threshold,
        "selector": selector_json(service),
        "ephemeral": all(key.ephemeral for key in service.instances),
    }


def catalog_summary(service: Service) -> dict[str, Any]:
    """One row of GET /v1/ns/catalog/services."""
    total = len(service.instances)
    healthy = sum(1 for i in service.instances.values() if i.healthy)
    triggered = total > 0 and healthy / total <= service.protect_threshold
    return {
        "name": service.bare_name,
        "groupName": service.group,
        "clusterCount": len(service.cluster_names()),
        "ipCount": total,
        "healthyInstanceCount": healthy,
        "triggerFlag": "true" if triggered else "false",
    }


def catalog_with_instances(service: Service) -> dict[str, Any]:
    """One item of GET /v1/ns/catalog/services?withInstances=true."""
    cluster_map: dict[str, Any] = {}
    for instance in in_order(service.instances.values()):
        hosts = cluster_map.setdefault(instance.cluster, {"hosts": []})["hosts"]
        hosts.append(
            {
                "ip": instance.ip,
                "port": instance.port,
                "valid": instance.healthy,
                "weight": instance.weight,
                "enabled": instance.enabled,
                "metadata": dict(instance.metadata),
            }
        )
    return {
        "serviceName": service.bare_name,
        "groupName": service.group,
        "metadata": dict(service.metadata),
        "clusterMap": cluster_map,
    }


def member(address: str, now_ms: int) -> dict[str, Any]:
    """A Nacos Member JSON for one node address (`host:port`)."""
    host, _, port_text = address.rpartition(":")
    port = int(port_text)
    return {
        "ip": host,
        "port": port,
        "state": "UP",
        "address": address,
        "failAccessCnt": 0,
        "extendInfo": {
            "raftPort": str(port - 1000),
            "site": "unknow",
            "adWeight": "0",
            "weight": "1",
            "version": NACOS_VERSION,
            "lastRefreshTime": now_ms,
        },
    }
