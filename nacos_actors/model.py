"""Immutable registry values: keys, instances and service snapshots.

Every object here is built once by the thread that creates it and never changed afterwards, so
any thread may read it without a lock. Instances and services may be weakly referenced: the
caches of rendered bytes (nacos_actors.render) recognise a snapshot or an instance by identity
without keeping it alive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

from immutables import Map

DEFAULT_NAMESPACE = "public"
DEFAULT_GROUP = "DEFAULT_GROUP"
DEFAULT_CLUSTER = "DEFAULT"
DEFAULT_APP = "DEFAULT"
GROUP_SEPARATOR = "@@"

HEART_BEAT_INTERVAL_KEY = "preserved.heart.beat.interval"
HEART_BEAT_TIMEOUT_KEY = "preserved.heart.beat.timeout"
IP_DELETE_TIMEOUT_KEY = "preserved.ip.delete.timeout"
INSTANCE_ID_GENERATOR_KEY = "preserved.instance.id.generator"
DEFAULT_HEART_BEAT_INTERVAL_MS = 5000
DEFAULT_HEART_BEAT_TIMEOUT_MS = 15000
DEFAULT_IP_DELETE_TIMEOUT_MS = 30000

EMPTY_METADATA: Mapping[Any, Any] = MappingProxyType({})
EMPTY_INSTANCES: Map[Any, Any] = Map()
K = TypeVar("K")
V = TypeVar("V")


def freeze(mapping: Mapping[K, V]) -> Mapping[K, V]:
    """A read-only copy of `mapping` (shares the empty singleton when there is nothing)."""
    return MappingProxyType(dict(mapping)) if mapping else EMPTY_METADATA


def instance_map(instances: Iterable[Instance]) -> Map[InstanceKey, Instance]:
    """The persistent map of a service's instances, by key."""
    return Map((instance.key, instance) for instance in instances)


_LISTING_ORDER = attrgetter("ip", "port", "cluster", "ephemeral")


def in_order(instances: Iterable[Instance]) -> list[Instance]:
    """Instances in the order every answer lists them: by ip, port, cluster, persistent first.

    A service's instances are a hash-ordered map (see Service); this order is the same on every
    node and in every process.
    """
    return sorted(instances, key=_LISTING_ORDER)


def grouped_name(group: str, name: str) -> str:
    """Nacos's storage form of a service name: `group@@name`."""
    return f"{group}{GROUP_SEPARATOR}{name}"


def split_grouped_name(grouped: str) -> tuple[str, str]:
    """(group, bare name) of a grouped service name that passed validation."""
    group, _, name = grouped.partition(GROUP_SEPARATOR)
    return group, name


class ServiceKey(NamedTuple):
    """Where a service lives: namespace id and grouped name."""

    namespace: str
    name: str


class InstanceKey(NamedTuple):
    """An instance's identity inside one service (Nacos's datum key plus the ephemeral flag)."""

    ip: str
    port: int
    cluster: str
    ephemeral: bool

    def datum_key(self) -> str:
        """Nacos's `ip:port:unknown:cluster` identity string."""
        return f"{self.ip}:{self.port}:unknown:{self.cluster}"


def millis_from_metadata(metadata: Mapping[str, str], key: str, default: int) -> int:
    """A preserved timing value in ms; Nacos falls back to the default unless it is all digits."""
    raw = metadata.get(key)
    return int(raw) if raw is not None and raw.isdigit() else default


def metadata_size(metadata: Mapping[str, str]) -> int:
    """The size of metadata as its limits count it: the UTF-8 bytes of every key and value."""
    total = 0
    for key, value in metadata.items():
        total += len(key) if key.isascii() else len(key.encode())
        total += len(value) if value.isascii() else len(value.encode())
    return total


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Instance:
    """One registered instance. Equality covers every field the wire shows."""

    ip: str
    port: int
    cluster: str = DEFAULT_CLUSTER
    weight: float = 1.0
    healthy: bool = True
    enabled: bool = True
    ephemeral: bool = True
    metadata: Mapping[str, str] = field(default_factory=lambda: EMPTY_METADATA)
    app: str = DEFAULT_APP
    marked: bool = False
    instance_id: str = ""

    @property
    def key(self) -> InstanceKey:
        return InstanceKey(self.ip, self.port, self.cluster, self.ephemeral)

    @property
    def beat_interval_ms(self) -> int:
        return millis_from_metadata(self.metadata, HEART_BEAT_INTERVAL_KEY, DEFAULT_HEART_BEAT_INTERVAL_MS)

    @property
    def beat_timeout_ms(self) -> int:
        return millis_from_metadata(self.metadata, HEART_BEAT_TIMEOUT_KEY, DEFAULT_HEART_BEAT_TIMEOUT_MS)

    @property
    def delete_timeout_ms(self) -> int:
        return millis_from_metadata(self.metadata, IP_DELETE_TIMEOUT_KEY, DEFAULT_IP_DELETE_TIMEOUT_MS)


def default_instance_id(key: InstanceKey, service_name: str) -> str:
    """Nacos's simple instance id: `ip#port#cluster#group@@service`."""
    return f"{key.ip}#{key.port}#{key.cluster}#{service_name}"


@dataclass(frozen=True, slots=True)
class Selector:
    """A service's instance selector: type `none`, or `label` with an expression (stored, echoed)."""

    type: str = "none"
    expression: str = ""


NO_SELECTOR = Selector()

TCP_CHECKER = "TCP"
HTTP_CHECKER = "HTTP"
MYSQL_CHECKER = "MYSQL"
NONE_CHECKER = "NONE"
HEALTH_CHECKER_TYPES = (TCP_CHECKER, HTTP_CHECKER, MYSQL_CHECKER, NONE_CHECKER)
DEFAULT_CHECK_PORT = 80


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """A cluster's health-check settings, as PUT /v1/ns/cluster sets them (Nacos's Cluster).

    `health_checker` is the checker's JSON object with its `type` and Nacos's fields for that
    type (scalars only), read-only; `health_checker_type` reads the type. Only a `NONE`
    checker lets PUT /v1/ns/health/instance set an instance's health by hand. Immutable: safe
    to read on any thread.
    """

    health_checker: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({"type": TCP_CHECKER}))
    check_port: int = DEFAULT_CHECK_PORT
    use_instance_port: bool = True
    metadata: Mapping[str, str] = field(default_factory=lambda: EMPTY_METADATA)

    @property
    def health_checker_type(self) -> str:
        return str(self.health_checker["type"])


# What a cluster that was never configured behaves as (Nacos creates clusters with a TCP checker).
DEFAULT_CLUSTER_CONFIG = ClusterConfig()


@dataclass(frozen=True, slots=True)
class Definition:
    """The persistent half of a service, as Raft replicates it: its settings (threshold,
    metadata, selector, whether POST /v1/ns/service made it), its configured clusters and its
    persistent instances (`ephemeral=False`). Every member applies the same Raft entries in the
    same order, so each builds an equal Definition: `modified_ms` is the proposer's clock
    carried in the entry, `index` the Raft log index of the last entry that changed it.
    Immutable: safe to read on any thread."""

    key: ServiceKey
    instances: Map[InstanceKey, Instance] = EMPTY_INSTANCES
    protect_threshold: float = 0.0
    metadata: Mapping[str, str] = field(default_factory=lambda: EMPTY_METADATA)
    selector: Selector = NO_SELECTOR
    explicit: bool = False
    clusters: Mapping[str, ClusterConfig] = field(default_factory=lambda: EMPTY_METADATA)
    modified_ms: int = 0
    index: int = 0


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class Service:
    """An immutable snapshot of one service; a write builds a new one and swaps it in.

    It joins two halves. The ephemeral half (ephemeral instances, `revision`, `modified_ms`)
    is written by the registry and replicated by Distro from the service's responsible member;
    the persistent half is `definition`, replicated by Raft, and the settings fields below copy
    it (defaults when there is none). `instances` holds both kinds.

    `instances` is a persistent map (HAMT) of each InstanceKey to its Instance: a write makes
    the next map in O(log n), sharing the rest, where copying a dict cost O(n) to build and again
    to free. Its order is the keys' hash order, not registration order. `revision` grows by
    one per applied change; `modified_ms` is the wall-clock time of the last change (served as
    `lastRefTime`). `explicit` is true when the service was created by POST /v1/ns/service.
    `clusters` holds the clusters configured by PUT /v1/ns/cluster; any other cluster behaves as
    DEFAULT_CLUSTER_CONFIG. Snapshots compare by identity: two are the same state only if they
    are the same object (the front's list memo relies on it).
    """

    key: ServiceKey
    instances: Map[InstanceKey, Instance] = EMPTY_INSTANCES
    protect_threshold: float = 0.0
    metadata: Mapping[str, str] = field(default_factory=lambda: EMPTY_METADATA)
    selector: Selector = NO_SELECTOR
    explicit: bool = False
    revision: int = 0
    modified_ms: int = 0
    clusters: Mapping[str, ClusterConfig] = field(default_factory=lambda: EMPTY_METADATA)
    definition: Definition | None = None

    @property
    def last_ref_ms(self) -> int:
        """When either half last changed (served as `lastRefTime`)."""
        definition = self.definition
        return self.modified_ms if definition is None else max(self.modified_ms, definition.modified_ms)

    @property
    def has_ephemeral_half(self) -> bool:
        """Whether the registry (not only Raft) holds this service: an ephemeral write made or
        changed it, or it holds an ephemeral instance."""
        definition = self.definition
        return definition is None or self.revision > 0 or len(self.instances) > len(definition.instances)

    @property
    def group(self) -> str:
        return split_grouped_name(self.key.name)[0]

    @property
    def bare_name(self) -> str:
        return split_grouped_name(self.key.name)[1]

    def cluster_names(self) -> list[str]:
        """Names of the clusters that hold at least one instance, sorted."""
        return sorted({key.cluster for key in self.instances})

    def known_cluster_names(self) -> list[str]:
        """Names of the clusters that hold an instance or are configured, sorted."""
        return sorted({key.cluster for key in self.instances}.union(self.clusters))

    def has_cluster(self, name: str) -> bool:
        """Whether the cluster is configured or holds at least one instance."""
        return name in self.clusters or any(key.cluster == name for key in self.instances)

    def cluster_config(self, name: str) -> ClusterConfig:
        """The cluster's configuration; the TCP default when it was never configured."""
        return self.clusters.get(name, DEFAULT_CLUSTER_CONFIG)


Stamp = tuple[int, int]
"""A service state's version as replication compares it: (revision, modified_ms)."""


def stamp_of(service: Service) -> Stamp:
    return (service.revision, service.modified_ms)


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A deleted service as replication carries it: its key and the revision its deletion had."""

    key: ServiceKey
    revision: int


@dataclass(frozen=True, slots=True)
class Dropped:
    """Verify's finding that the owner no longer has a service: delete it if it is still at
    `stamp` (revision, modified_ms), the version the finding was made on."""

    key: ServiceKey
    stamp: Stamp


ReplicatedState = Service | Tombstone | Dropped
"""What replication carries for one service: its state, its deletion, or verify's drop."""
