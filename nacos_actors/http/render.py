"""Snapshots to Nacos JSON. Runs on the event loop thread (it alone writes `Service.memo`);
`list_body` is safe on any thread (the push actor renders its packets with it)."""

from __future__ import annotations

import gzip
import hashlib
import re
from typing import Any, Iterable

import orjson

from nacos_actors.core.push import PushStats, Subscription
from nacos_actors.model import (
    DEFAULT_GROUP,
    INSTANCE_ID_GENERATOR_KEY,
    Instance,
    Service,
    ServiceKey,
    in_order,
    split_grouped_name,
)
from nacos_actors.settings import join_host_port

DEFAULT_CACHE_MILLIS = 3000
# Query shapes memoized per snapshot; beyond this (odd `clusters` spellings) answers are rendered.
MAX_MEMOIZED_SHAPES = 16
# A list answer this large or more goes gzip-compressed to a client that accepts it (the Java and
# Node clients send `Accept-Encoding: gzip,deflate,sdch`): a 100-instance answer shrinks about
# tenfold, and writing 39 KB to the socket cost more than the rest of the request.
GZIP_MIN_BYTES = 1024
GZIP_LEVEL = 1  # JSON this repetitive compresses ~10x even at the fastest level
PROMETHEUS_TARGETS_MEMO = "prometheus_targets"
CLUSTER_LABEL = "__meta_clusterName"
CLUSTER_DEFAULT_PORT = 80  # Nacos's Cluster.defaultPort: shown, never set by any endpoint
_NOT_IN_LABEL_NAME = re.compile(r"[^A-Za-z0-9_]")


def dumps(document: Any) -> bytes:
    return orjson.dumps(document)


def _checksum(service: Service) -> str:
    """Nacos's list checksum: MD5 over the sorted `ip:port_weight_healthy_cluster,` strings."""
    parts = sorted(_RENDERED.of(i).checksum_part for i in service.instances.values())
    return hashlib.md5("".join(parts).encode()).hexdigest()


class _Rendered:
    """What one Instance renders to, kept while the instance lives on in snapshots: its checksum
    part, and its list host JSON per (reported health, service name)."""

    __slots__ = ("checksum_part", "hosts", "instance")

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.checksum_part = (
            f"{instance.ip}:{instance.port}_{instance.weight}_{str(instance.healthy).lower()}_{instance.cluster},"
        )
        self.hosts: dict[tuple[bool, str], orjson.Fragment] = {}


class _RenderedInstances:
    """Rendered parts of instances, by identity: a write copies a service but keeps the Instance
    objects it did not change, so re-rendering a 100-instance list after one register renders
    one host, not a hundred. Any thread (the push actor renders too): entries are only ever
    added whole, and a lost race renders the same bytes twice. Cleared when it grows past
    `limit` entries (about 0.5 KB each, so at most ~70 MB; a registry with more instances than
    that in use renders some hosts afresh, as it did without this cache)."""

    def __init__(self, limit: int = 1 << 17) -> None:
        self._limit = limit
        self._by_id: dict[int, _Rendered] = {}

    def of(self, instance: Instance) -> _Rendered:
        found = self._by_id.get(id(instance))
        if found is not None and found.instance is instance:
            return found
        if len(self._by_id) >= self._limit:
            self._by_id = {}
        made = self._by_id[id(instance)] = _Rendered(instance)
        return made

    def host(self, instance: Instance, healthy: bool, service_name: str) -> orjson.Fragment:
        rendered = self.of(instance)
        shape = (healthy, service_name)
        fragment = rendered.hosts.get(shape)
        if fragment is None:
            fragment = rendered.hosts[shape] = orjson.Fragment(dumps(list_host(instance, healthy, service_name)))
        return fragment


_RENDERED = _RenderedInstances()


def list_host(instance: Instance, healthy: bool, service_name: str) -> dict[str, Any]:
    """One host of an instance/list answer: every field the 1.x and 2.x clients read."""
    return {
        "ip": instance.ip,
        "port": instance.port,
        "valid": healthy,
        "healthy": healthy,
        "marked": instance.marked,
        "instanceId": instance.instance_id,
        "metadata": dict(instance.metadata),
        "enabled": instance.enabled,
        "weight": instance.weight,
        "clusterName": instance.cluster,
        "serviceName": service_name,
        "ephemeral": instance.ephemeral,
        "instanceHeartBeatInterval": instance.beat_interval_ms,
        "instanceHeartBeatTimeOut": instance.beat_timeout_ms,
        "ipDeleteTimeout": instance.delete_timeout_ms,
        "instanceIdGenerator": instance.metadata.get(INSTANCE_ID_GENERATOR_KEY, "simple"),
    }


def select_hosts(
    service: Service, clusters: tuple[str, ...], healthy_only: bool
) -> tuple[list[tuple[Instance, bool]], bool]:
    """(instance, reported health) pairs for a list query, and whether protection kicked in.

    Nacos's rule: candidates are the requested clusters' instances (disabled ones included);
    if healthy/total <= protectThreshold every instance is reported healthy. Then disabled
    instances are hidden, and with healthyOnly the unhealthy ones. Healthy hosts come first.
    """
    wanted = set(clusters)
    candidates = [i for i in in_order(service.instances.values()) if not wanted or i.cluster in wanted]
    healthy_count = sum(1 for i in candidates if i.healthy)
    protected = bool(candidates) and healthy_count / len(candidates) <= service.protect_threshold
    healthy = [(i, True) for i in candidates if i.enabled and (i.healthy or protected)]
    unhealthy = [] if healthy_only or protected else [(i, False) for i in candidates if i.enabled and not i.healthy]
    return healthy + unhealthy, protected


def instance_list(
    service: Service | None,
    key: ServiceKey,
    clusters_text: str,
    clusters: tuple[str, ...],
    healthy_only: bool,
    java_client: bool,
    cache_millis: int,
    now_ms: int,
    accepts_gzip: bool,
) -> tuple[bytes, bool]:
    """The body of GET /v1/ns/instance/list (the 1.x shape plus the 2.x fields), and whether it
    is gzip-compressed: only when the client accepts gzip and the JSON is GZIP_MIN_BYTES or more.

    Memoized per snapshot and query shape, so an unchanged service costs a dict lookup.
    Event loop thread only (it writes `Service.memo`).
    """
    if service is None:
        return list_body(None, key, clusters_text, clusters, healthy_only, java_client, cache_millis, now_ms), False
    shape = ("list", clusters_text, healthy_only, java_client, cache_millis, accepts_gzip)
    cached = service.memo.get(shape)
    if cached is None:
        body = list_body(service, key, clusters_text, clusters, healthy_only, java_client, cache_millis, now_ms)
        compressed = accepts_gzip and len(body) >= GZIP_MIN_BYTES
        cached = (gzip.compress(body, GZIP_LEVEL, mtime=0) if compressed else body, compressed)
        if len(service.memo) < MAX_MEMOIZED_SHAPES:
            service.memo[shape] = cached
    return cached


def list_body(
    service: Service | None,
    key: ServiceKey,
    clusters_text: str,
    clusters: tuple[str, ...],
    healthy_only: bool,
    java_client: bool,
    cache_millis: int,
    now_ms: int,
) -> bytes:
    """The instance/list JSON, rendered afresh (no memo): safe on any thread."""
    if service is None:
        return dumps(_list_document(key, clusters_text, cache_millis, now_ms, "", {}, [], False, java_client))
    host_name = key.name if java_client else split_grouped_name(key.name)[1]
    selected, protected = select_hosts(service, clusters, healthy_only)
    hosts = [_RENDERED.host(instance, healthy, host_name) for instance, healthy in selected]
    document = _list_document(
        key,
        clusters_text,
        cache_millis,
        service.modified_ms,
        _checksum(service),
        dict(service.metadata),
        hosts,
        protected,
        java_client,
    )
    return dumps(document)


def _list_document(
    key: ServiceKey,
    clusters_text: str,
    cache_millis: int,
    last_ref_time: int,
    checksum: str,
    metadata: dict[str, str],
    hosts: list[Any],
    protected: bool,
    java_client: bool,
) -> dict[str, Any]:
    group, bare = split_grouped_name(key.name)
    return {
        "dom": key.name if java_client else bare,
        "name": key.name,
        "groupName": group or DEFAULT_GROUP,
        "clusters": clusters_text,
        "cacheMillis": cache_millis,
        "lastRefTime": last_ref_time,
        "checksum": checksum,
        "useSpecifiedURL": False,
        "env": "",
        "metadata": metadata,
        "hosts": hosts,
        "allIPs": False,
        "reachProtectionThreshold": protected,
        "valid": True,
    }


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
        "lastBeat": last_beat_ms if last_beat_ms is not None else service.modified_ms,
        "marked": instance.marked,
        "app": instance.app,
        "instanceHeartBeatInterval": instance.beat_interval_ms,
        "instanceHeartBeatTimeOut": instance.beat_timeout_ms,
        "ipDeleteTimeout": instance.delete_timeout_ms,
        "instanceIdGenerator": instance.metadata.get(INSTANCE_ID_GENERATOR_KEY, "simple"),
    }


def subscriber(subscription: Subscription) -> dict[str, Any]:
    """One row of GET /v1/ns/service/subscribers (Nacos's Subscriber, plus port and cluster)."""
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


def push_state(stats: PushStats) -> dict[str, Any]:
    """GET /v1/ns/operator/push/state: Nacos's succeed/total/ratio, and our finer counts."""
    succeeded = stats.total - stats.failed
    return {
        "succeed": succeeded,
        "total": stats.total,
        "ratio": succeeded / stats.total if stats.total else 0,
        "failed": stats.failed,
        "acked": stats.acked,
        "superseded": stats.superseded,
        "awaitingAck": stats.awaiting_ack,
        "pendingTasks": stats.pending_services,
        "subscriberCount": stats.subscribers,
        "avgPushCost": stats.average_cost_ms,
        "maxPushCost": stats.cost_max_ms,
        "malformedDatagrams": stats.malformed,
        "unmatchedAcks": stats.unmatched,
        "reset": False,
    }


def cluster_entries(service: Service) -> list[dict[str, Any]]:
    """Every cluster that holds an instance or is configured, sorted by name, as Nacos's
    Cluster JSON: the checker object and metadata as stored (an unconfigured cluster shows the
    TCP default), `defaultCheckPort` and `useIPPort4Check` as PUT /v1/ns/cluster set them, and
    the console's `defCkport`/`defIPPort` spellings of the check port."""
    entries = []
    for name in service.known_cluster_names():
        config = service.cluster_config(name)
        entries.append(
            {
                "name": name,
                "serviceName": service.key.name,
                "healthChecker": dict(config.health_checker),
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


NACOS_VERSION = "1.4.8"  # the version a member shows in its extendInfo (the v1 API's Nacos)


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


def page(items: list[Any], page_no: int, page_size: int) -> list[Any]:
    start = (page_no - 1) * page_size
    return items[start : start + page_size] if start < len(items) else []


def sorted_services(services: Iterable[Service]) -> list[Service]:
    return sorted(services, key=lambda s: s.key.name)


# -- Prometheus HTTP service discovery (Nacos 2.2+: GET /nacos/prometheus) ----------------


def label_name(key: str) -> str:
    """A metadata key as a valid Prometheus label name.

    Nacos (2.4) replaces `.` and `-` by `_`; any other character outside [A-Za-z0-9_] is made
    `_` here too, and a leading digit (or an empty key) gets a `_` prefix, because one invalid
    label name makes Prometheus refuse the whole discovery answer.
    """
    name = _NOT_IN_LABEL_NAME.sub("_", key)
    return name if name and not name[0].isdigit() else "_" + name


def prometheus_target(instance: Instance) -> dict[str, Any]:
    """One HTTP SD target group: the instance's `ip:port` and its labels (Nacos's shape).

    Labels: `__meta_clusterName`, then each metadata key as a label name (label_name); when two
    keys map to the same name, or a key to `__meta_clusterName`, the first one stays.
    """
    labels = {CLUSTER_LABEL: instance.cluster}
    for key, value in instance.metadata.items():
        labels.setdefault(label_name(key), value)
    address = f"[{instance.ip}]:{instance.port}" if ":" in instance.ip else f"{instance.ip}:{instance.port}"
    return {"targets": [address], "labels": labels}


def prometheus_targets(service: Service) -> bytes:
    """The service's instances as comma-separated SD target-group JSON (b"" when none).

    Every instance is a target, healthy or not, enabled or not, ephemeral or persistent (as
    Nacos). Memoized per snapshot: an unchanged service costs a dict lookup.
    """
    cached = service.memo.get(PROMETHEUS_TARGETS_MEMO)
    if cached is None:
        cached = service.memo[PROMETHEUS_TARGETS_MEMO] = b",".join(
            dumps(prometheus_target(instance)) for instance in in_order(service.instances.values())
        )
    return cached


def prometheus_target_list(services: Iterable[Service]) -> bytes:
    """The JSON array of the target groups of every instance of `services`, in their order."""
    parts = [part for part in map(prometheus_targets, services) if part]
    return b"[" + b",".join(parts) + b"]"
