"""The instance list: the body of GET /v1/ns/instance/list (the 1.x shape plus the 2.x fields)
and of every push packet, with Nacos's host selection (protect threshold, healthyOnly) and
checksum.

Two caches keep it cheap. `instance_list` memoizes whole answers (gzip-compressed when the
client takes it) per snapshot and query shape in `Service.memo`, so it runs on the event loop
thread only. Both it and `list_body` render hosts through a RenderedInstances, which reuses
what an unchanged Instance rendered to; each renderer owns its own (the HTTP front one for the
loop, the push path its own), so no two threads share one.
"""

from __future__ import annotations

import gzip
import hashlib
from typing import Any

import orjson

from nacos_actors.model import (
    DEFAULT_GROUP,
    INSTANCE_ID_GENERATOR_KEY,
    Instance,
    Service,
    ServiceKey,
    in_order,
    split_grouped_name,
)

DEFAULT_CACHE_MILLIS = 3000
# Query shapes memoized per snapshot; beyond this (odd `clusters` spellings) answers are rendered.
MAX_MEMOIZED_SHAPES = 16
# A list answer this large or more goes gzip-compressed to a client that accepts it (the Java and
# Node clients send `Accept-Encoding: gzip,deflate,sdch`): a 100-instance answer shrinks about
# tenfold, and writing 39 KB to the socket cost more than the rest of the request.
GZIP_MIN_BYTES = 1024
GZIP_LEVEL = 1  # JSON this repetitive compresses ~10x even at the fastest level
# Instances a RenderedInstances holds before it starts afresh: about 0.5 KB each, so ~70 MB.
RENDERED_INSTANCES = 1 << 17


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


class RenderedInstances:
    """Rendered parts of instances, by identity: a write copies a service but keeps the Instance
    objects it did not change, so re-rendering a 100-instance list after one register renders
    one host, not a hundred. One owner, one thread at a time: the HTTP front holds one for the
    event loop, the push path its own. Cleared when it grows past `limit` entries (a registry
    with more instances than that in use renders some hosts afresh, as it would without it)."""

    __slots__ = ("_by_id", "_limit")

    def __init__(self, limit: int = RENDERED_INSTANCES) -> None:
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
            fragment = rendered.hosts[shape] = orjson.Fragment(orjson.dumps(list_host(instance, healthy, service_name)))
        return fragment


def list_checksum(service: Service, rendered: RenderedInstances) -> str:
    """Nacos's list checksum: MD5 over the sorted `ip:port_weight_healthy_cluster,` strings."""
    parts = sorted(rendered.of(i).checksum_part for i in service.instances.values())
    return hashlib.md5("".join(parts).encode()).hexdigest()


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
    rendered: RenderedInstances,
) -> tuple[bytes, bool]:
    """The body of GET /v1/ns/instance/list, and whether it is gzip-compressed: only when the
    client accepts gzip and the JSON is GZIP_MIN_BYTES or more.

    Memoized per snapshot and query shape, so an unchanged service costs a dict lookup.
    Event loop thread only (it writes `Service.memo`).
    """
    if service is None:
        body = list_body(None, key, clusters_text, clusters, healthy_only, java_client, cache_millis, now_ms, rendered)
        return body, False
    shape = ("list", clusters_text, healthy_only, java_client, cache_millis, accepts_gzip)
    cached = service.memo.get(shape)
    if cached is None:
        body = list_body(
            service, key, clusters_text, clusters, healthy_only, java_client, cache_millis, now_ms, rendered
        )
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
    rendered: RenderedInstances | None = None,
) -> bytes:
    """The instance/list JSON, rendered afresh (no memo): any thread, with its own `rendered`.

    Without `rendered` every host is rendered anew (the same bytes, several times the cost for
    a large service): a caller that renders repeatedly keeps one RenderedInstances and passes it.
    """
    if service is None:
        return orjson.dumps(_list_document(key, clusters_text, cache_millis, now_ms, "", {}, [], False, java_client))
    if rendered is None:
        rendered = RenderedInstances()
    host_name = key.name if java_client else split_grouped_name(key.name)[1]
    selected, protected = select_hosts(service, clusters, healthy_only)
    hosts = [rendered.host(instance, healthy, host_name) for instance, healthy in selected]
    document = _list_document(
        key,
        clusters_text,
        cache_millis,
        service.modified_ms,
        list_checksum(service, rendered),
        dict(service.metadata),
        hosts,
        protected,
        java_client,
    )
    return orjson.dumps(document)


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
