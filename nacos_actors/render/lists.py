"""The instance list: the body of GET /v1/ns/instance/list (the 1.x shape plus the 2.x fields)
and of every push packet, with Nacos's host selection (protect threshold, healthyOnly) and
checksum.

Two caches keep it cheap, both bounded and neither keeping a dead snapshot or instance alive.
`instance_list` memoizes whole answers (gzip-compressed when the client takes it) in a
ListMemo: node-wide, least recently used out first, bounded in bytes, owned by the HTTP front
on the event loop thread. Both it and `list_body` render hosts through a RenderedInstances,
which reuses what a live Instance rendered to; each renderer owns its own (the HTTP front one
for the loop, the push path its own), so no two threads share one.

Every byte string a cache keeps is exact-size (`exact`): orjson's output buffer holds about
4 KB however short the JSON, so 100k memoized small answers held 400 MB.
"""

from __future__ import annotations

import gzip
import hashlib
import weakref
from collections import OrderedDict, deque
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
# A list answer this large or more goes gzip-compressed to a client that accepts it (the Java and
# Node clients send `Accept-Encoding: gzip,deflate,sdch`): a 100-instance answer shrinks about
# tenfold, and writing 39 KB to the socket cost more than the rest of the request.
GZIP_MIN_BYTES = 1024
GZIP_LEVEL = 1  # JSON this repetitive compresses ~10x even at the fastest level
# What a RenderedInstances entry costs beside its host JSON (measured with tracemalloc: about
# 600 bytes for an instance with one rendered host), and each further host shape.
RENDERED_ENTRY_OVERHEAD = 384
RENDERED_HOST_OVERHEAD = 256
# What a ListMemo entry costs beside its body: the entry, its key tuple and the ordered dict's
# node (measured with tracemalloc: about 330 bytes).
MEMO_ENTRY_OVERHEAD = 384
# An answer larger than this share of the memo's bytes is not memoized: one entry must not
# push out everything else.
MEMO_LARGEST_SHARE = 8


def exact(data: bytes) -> bytes:
    """`data` copied into a bytes object of its own length (see the module docstring)."""
    return bytes(memoryview(data))


class _Rendered(weakref.ref[Instance]):
    """What one live Instance renders to: its checksum part, and its list host JSON per
    (reported health, service name). A weak reference: the instance's death removes it."""

    __slots__ = ("checksum_part", "hosts", "key")

    def __init__(self, instance: Instance, forget: Any) -> None:
        # weakref.ref.__new__ made the reference; its __init__ adds nothing.
        self.key = id(instance)
        self.checksum_part = (
            f"{instance.ip}:{instance.port}_{instance.weight}_{str(instance.healthy).lower()}_{instance.cluster},"
        )
        self.hosts: dict[tuple[bool, str], orjson.Fragment] = {}


class RenderedInstances:
    """Rendered parts of live instances, by identity: a write copies a service but keeps the
    Instance objects it did not change, so re-rendering a 100-instance list after one register
    renders one host, not a hundred.

    Entries are weak references: an instance no snapshot holds any more (deregistered, replaced)
    is forgotten when it is freed, on whichever thread frees it (a single dict pop, atomic under
    the GIL), so the cache never keeps its metadata alive. Measured against strong references
    with a byte bound, this costs about 100 ns more per newly rendered instance and saves the
    identity check on every hit. One owner, one thread at a time renders: the HTTP front holds
    one for the event loop, the push path its own.

    Bounded in bytes: it counts what it renders (host JSON and overheads; entries freed with
    their instance are not subtracted, which would take a write from another thread) and
    starts afresh once that passes `max_bytes` (0: no bound).
    """

    __slots__ = ("_by_id", "_forget", "max_bytes", "rendered_bytes")

    def __init__(self, max_bytes: int = 0) -> None:
        self.max_bytes = max_bytes
        self.rendered_bytes = 0
        self._by_id: dict[int, _Rendered] = {}
        self._forget = self._forget_dead  # one bound method for every entry

    def _forget_dead(self, entry: _Rendered) -> None:
        self._by_id.pop(entry.key, None)

    def __len__(self) -> int:
        return len(self._by_id)

    def of(self, instance: Instance) -> _Rendered:
        # An entry is dropped before its instance's memory is freed, so an id found here is
        # this very instance's.
        found = self._by_id.get(id(instance))
        if found is not None:
            return found
        self._count(RENDERED_ENTRY_OVERHEAD)
        made = self._by_id[id(instance)] = _Rendered(instance, self._forget)
        return made

    def host(self, instance: Instance, healthy: bool, service_name: str) -> orjson.Fragment:
        rendered = self.of(instance)
        shape = (healthy, service_name)
        fragment = rendered.hosts.get(shape)
        if fragment is None:
            json = exact(orjson.dumps(list_host(instance, healthy, service_name)))
            self._count(len(json) + RENDERED_HOST_OVERHEAD)
            fragment = rendered.hosts[shape] = orjson.Fragment(json)
        return fragment

    def _count(self, cost: int) -> None:
        """Count `cost` bytes about to be added; start afresh first when they would pass the
        bound (what callers hold stays valid: entries are only dropped from the map)."""
        self.rendered_bytes += cost
        if self.max_bytes and self.rendered_bytes > self.max_bytes:
            self._by_id = {}
            self.rendered_bytes = cost


ListShape = tuple[ServiceKey, tuple[str, ...], bool, bool, int, bool]
"""A list query as the memo keys it: service, clusters (sorted, unique), healthyOnly, Java
client, cacheMillis, gzip accepted. Every spelling of the same query maps to one shape."""


class _Answer(weakref.ref[Service]):
    """A memoized answer: the snapshot it was rendered from (weakly), the `clusters` text it
    echoes, its body and whether that is gzip-compressed, and what it costs the memo."""

    __slots__ = ("body", "clusters_text", "compressed", "cost", "shape")

    def __new__(cls, service: Service, died: Any, *_: Any) -> _Answer:
        return super().__new__(cls, service, died)

    def __init__(
        self, service: Service, died: Any, shape: ListShape, clusters_text: str, body: bytes, compressed: bool
    ) -> None:
        self.shape = shape
        self.clusters_text = clusters_text
        self.body = body
        self.compressed = compressed
        self.cost = len(body) + len(clusters_text) + MEMO_ENTRY_OVERHEAD


class ListMemo:
    """Rendered instance/list answers of every service, one per query shape, bounded in bytes.

    Keyed by ListShape, so spellings of one query (cluster order, duplicates, blanks, defaults)
    share one entry: the answer of the spelling that filled it (the `clusters` echo is the
    query's own text, which clients key their caches by); other spellings are rendered afresh
    and not kept. An entry answers only for the snapshot it was rendered from; a newer snapshot's
    answer replaces it, and when the snapshot dies (the service changed or was deleted) the entry
    is dropped at the next `put`. Least recently used entries go first once the bodies pass
    `max_bytes`; an answer over `max_bytes / MEMO_LARGEST_SHARE` is never kept; `max_bytes` 0
    keeps nothing. Event loop thread only (a dying snapshot's callback only appends to a deque).
    """

    __slots__ = ("_dead", "_died", "_entries", "bytes", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[ListShape, _Answer] = OrderedDict()
        self._dead: deque[_Answer] = deque()
        self._died = self._dead.append  # runs on whichever thread frees a snapshot

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, shape: ListShape, service: Service, clusters_text: str) -> _Answer | None:
        """The answer memoized for `shape` if it was rendered from `service` for `clusters_text`."""
        found = self._entries.get(shape)
        if found is None or found() is not service or found.clusters_text != clusters_text:
            return None
        self._entries.move_to_end(shape)
        return found

    def put(self, shape: ListShape, service: Service, clusters_text: str, body: bytes, compressed: bool) -> None:
        """Keep an answer just rendered (`body` exact-size: see `exact`), unless a current one
        for another spelling holds the shape."""
        self._drop_dead()
        found = self._entries.get(shape)
        if found is not None:
            if found() is service:
                return
            self._remove(found)
        if (len(body) + MEMO_ENTRY_OVERHEAD) * MEMO_LARGEST_SHARE > self.max_bytes:
            return
        entry = _Answer(service, self._died, shape, clusters_text, body, compressed)
        self._entries[shape] = entry
        self.bytes += entry.cost
        while self.bytes > self.max_bytes:
            self._remove(next(iter(self._entries.values())))

    def _remove(self, entry: _Answer) -> None:
        del self._entries[entry.shape]
        self.bytes -= entry.cost

    def _drop_dead(self) -> None:
        dead = self._dead
        while dead:
            entry = dead.popleft()
            if self._entries.get(entry.shape) is entry:
                self._remove(entry)


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
    memo: ListMemo,
) -> tuple[bytes, bool]:
    """The body of GET /v1/ns/instance/list, and whether it is gzip-compressed: only when the
    client accepts gzip and the JSON is GZIP_MIN_BYTES or more. `clusters` must be sorted and
    unique (as the list query parser makes them).

    Memoized in `memo`, so a repeated query of an unchanged service costs one lookup.
    Event loop thread only (the memo and `rendered` are the loop's).
    """
    if service is None:
        body = list_body(None, key, clusters_text, clusters, healthy_only, java_client, cache_millis, now_ms, rendered)
        return body, False
    shape = (key, clusters, healthy_only, java_client, cache_millis, accepts_gzip)
    found = memo.get(shape, service, clusters_text)
    if found is not None:
        return found.body, found.compressed
    body = list_body(service, key, clusters_text, clusters, healthy_only, java_client, cache_millis, now_ms, rendered)
    compressed = accepts_gzip and len(body) >= GZIP_MIN_BYTES
    body = gzip.compress(body, GZIP_LEVEL, mtime=0) if compressed else exact(body)
    memo.put(shape, service, clusters_text, body, compressed)
    return body, compressed


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
        service.last_ref_ms,
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
