"""The gRPC connections of one node: who is connected, what each registered and subscribed,
which ones to ask whether they are alive, and which to evict. Pure: no clock, no socket; time
comes in as `now_ms`, and what must happen comes out as values (`Effects`).

A connection is keyed by its peer address (grpcio's `context.peer()`, the same for a client
channel's unary calls and its stream). It exists from the moment its stream opens; it counts
as set up once its `ConnectionSetupRequest` arrived, and only then may it make naming requests.

Ownership of ephemeral instances: each (service, instance key) belongs to the connection that
registered it last. A later register of the same key by another connection takes it over, so
a reconnecting client's old connection closing late does not remove what the new one holds.
When a connection ends (its stream ended, or it was evicted) the instances it still owns are
answered, for the caller to deregister.

Liveness: a set-up connection silent for `detect_idle_ms` is sent a ClientDetectionRequest on
its stream; one that gives no successful answer within `detect_timeout_ms` is evicted. A stream
that opens and never sends its setup is evicted after `detect_idle_ms`. Each owned instance is
due for a beat every beat interval (its `preserved.heart.beat.interval`, else 5 s): the caller
beats it through the health path, so other members keep it alive too.

Every structure is bounded: connections by `max_connections`, instances and subscriptions per
connection by their limits. Event loop thread (the gRPC layer's state), but any one thread.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from nacos_actors.core.streams import ConnectionSummary, StreamPush
from nacos_actors.model import Instance, InstanceKey, ServiceKey

CLIENT_DETECTION_REQUEST = "ClientDetectionRequest"
# Why a connection ended, as the metrics and logs name it.
ENDED = "ended"
EVICTED_SILENT = "unanswered"
EVICTED_NO_SETUP = "no_setup"
OPEN = "open"
ALREADY_SET_UP = "already_set_up"
REFUSED_FULL = "max_connections"
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """The bounds and timings of the connection table (from the node's grpc_* settings)."""

    max_connections: int = 20_000
    max_instances: int = 10_000
    max_subscriptions: int = 10_000
    detect_idle_ms: int = 20_000
    detect_timeout_ms: int = 5_000


@dataclass(frozen=True, slots=True)
class ClosedConnection:
    """A connection that is gone: `reason` (ENDED, EVICTED_SILENT, EVICTED_NO_SETUP), the
    instances it still owned (to deregister), and whether it had subscribed to anything (the
    push actor is told either way)."""

    connection_id: str
    reason: str
    instances: tuple[tuple[ServiceKey, Instance], ...]
    was_set_up: bool


@dataclass(frozen=True, slots=True)
class Effects:
    """What the table asks of its adapter after a call: requests to write on streams, the
    connections to end (their streams are closed by the adapter; their instances deregistered),
    and the owned instances due for a beat."""

    pushes: tuple[StreamPush, ...] = ()
    closed: tuple[ClosedConnection, ...] = ()
    beats: tuple[tuple[ServiceKey, Instance], ...] = ()


NO_EFFECTS = Effects()


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """What a BatchInstanceRequest means for its connection's set in one service: the
    instances to register (all the given ones) and the keys it owned there and no longer
    lists (to deregister)."""

    register: tuple[Instance, ...]
    deregister: tuple[InstanceKey, ...]


@dataclass(slots=True)
class _Connection:
    connection_id: str
    remote_ip: str
    remote_port: int
    opened_ms: int
    generation: int
    last_active_ms: int
    set_up: bool = False
    client_version: str = ""
    namespace: str = ""
    client_ip: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    detecting: str | None = None
    owned: dict[tuple[ServiceKey, InstanceKey], Instance] = field(default_factory=dict)
    subscribed: set[tuple[ServiceKey, str]] = field(default_factory=set)
    # The owned slots with a beat in the timer heap (one each, whatever re-registers).
    beating: set[tuple[ServiceKey, InstanceKey]] = field(default_factory=set)


# Kinds of timer entries in the one heap.
_IDLE = 0
_DETECT_TIMEOUT = 1
_BEAT = 2


class ConnectionTable:
    """The table of live gRPC connections and what they own (see the module docstring)."""

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self._connections: dict[str, _Connection] = {}
        self._owners: dict[tuple[ServiceKey, InstanceKey], str] = {}
        self._timers: list[tuple[int, int, int, str, str, tuple[ServiceKey, InstanceKey] | None]] = []
        self._sequence = 0
        self._generations = 0

    # -- queries ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._connections)

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._connections

    def is_set_up(self, connection_id: str) -> bool:
        connection = self._connections.get(connection_id)
        return connection is not None and connection.set_up

    def client_ip(self, connection_id: str) -> str:
        """The connection's `clientIp` as it said at setup, else its peer address ("" when gone)."""
        connection = self._connections.get(connection_id)
        if connection is None:
            return ""
        return connection.client_ip or connection.remote_ip

    def client_version(self, connection_id: str) -> str:
        connection = self._connections.get(connection_id)
        return connection.client_version if connection is not None else ""

    def owner_of(self, service: ServiceKey, key: InstanceKey) -> str | None:
        return self._owners.get((service, key))

    def owned(self, connection_id: str) -> dict[tuple[ServiceKey, InstanceKey], Instance]:
        connection = self._connections.get(connection_id)
        return dict(connection.owned) if connection is not None else {}

    def versions(self) -> dict[str, int]:
        """Set-up connections by client version text."""
        counts: dict[str, int] = {}
        for connection in self._connections.values():
            if connection.set_up:
                counts[connection.client_version] = counts.get(connection.client_version, 0) + 1
        return counts

    def summaries(self) -> tuple[ConnectionSummary, ...]:
        """Every set-up connection as the views show it, by connection id."""
        return tuple(
            ConnectionSummary(
                connection_id=c.connection_id,
                client_ip=c.client_ip or c.remote_ip,
                remote_ip=c.remote_ip,
                remote_port=c.remote_port,
                client_version=c.client_version,
                namespace=c.namespace,
                labels=c.labels,
                connected_ms=c.opened_ms,
                last_active_ms=c.last_active_ms,
                published=tuple(sorted(c.owned)),
                subscribed=tuple(sorted(c.subscribed)),
            )
            for c in sorted(self._connections.values(), key=lambda c: c.connection_id)
            if c.set_up
        )

    # -- the stream -------------------------------------------------------------------------

    def opened(self, connection_id: str, remote_ip: str, remote_port: int, now_ms: int) -> int | None:
        """A stream opened on `connection_id`: its generation (the token `ended` must bring), or
        None when the table is full (the caller ends the stream with RESOURCE_EXHAUSTED). A
        second stream on a live connection replaces the first, which keeps what it owns."""
        self._generations += 1
        existing = self._connections.get(connection_id)
        if existing is not None:
            existing.generation = self._generations
            existing.last_active_ms = now_ms
            return existing.generation
        if len(self._connections) >= self.config.max_connections:
            return None
        self._connections[connection_id] = _Connection(
            connection_id, remote_ip, remote_port, now_ms, self._generations, now_ms
        )
        self._schedule(now_ms + self.config.detect_idle_ms, _IDLE, connection_id)
        return self._generations

    def set_up(
        self,
        connection_id: str,
        client_version: str,
        namespace: str,
        labels: Mapping[str, str],
        client_ip: str,
        now_ms: int,
    ) -> str:
        """The connection's ConnectionSetupRequest: OPEN once accepted, ALREADY_SET_UP for a
        repeat (its first words stand), UNKNOWN when its stream is gone."""
        connection = self._connections.get(connection_id)
        if connection is None:
            return UNKNOWN
        connection.last_active_ms = now_ms
        if connection.set_up:
            return ALREADY_SET_UP
        connection.set_up = True
        connection.client_version = client_version
        connection.namespace = namespace
        connection.labels = tuple(sorted(labels.items()))
        connection.client_ip = client_ip
        return OPEN

    def active(self, connection_id: str, now_ms: int) -> bool:
        """Any request or answer from the connection: whether it is set up (else a unary call
        gets 301 and the client reconnects)."""
        connection = self._connections.get(connection_id)
        if connection is None:
            return False
        connection.last_active_ms = now_ms
        return connection.set_up

    def answered_detection(self, connection_id: str, request_id: str, ok: bool, now_ms: int) -> None:
        """The client's ClientDetectionResponse: a success ends the wait for it."""
        connection = self._connections.get(connection_id)
        if connection is None:
            return
        if ok:
            connection.last_active_ms = now_ms
            if connection.detecting == request_id:
                connection.detecting = None

    def ended(self, connection_id: str, generation: int) -> Effects:
        """The stream of `generation` ended (a later stream on the same connection is left
        alone): the connection is gone."""
        connection = self._connections.get(connection_id)
        if connection is None or connection.generation != generation:
            return NO_EFFECTS
        return Effects(closed=(self._close(connection, ENDED),))

    # -- instances and subscriptions --------------------------------------------------------

    def may_register(self, connection_id: str, service: ServiceKey, key: InstanceKey) -> bool:
        """Whether the connection may own one more instance (re-registering one it owns is fine)."""
        connection = self._connections.get(connection_id)
        if connection is None:
            return False
        return (service, key) in connection.owned or len(connection.owned) < self.config.max_instances

    def registered(self, connection_id: str, service: ServiceKey, instance: Instance, now_ms: int) -> bool:
        """The connection registered `instance` (written): it owns it now, taken over from any
        other connection. False when the connection is gone meanwhile (the caller removes the
        instance again)."""
        connection = self._connections.get(connection_id)
        if connection is None:
            return False
        slot = (service, instance.key)
        previous = self._owners.get(slot)
        if previous is not None and previous != connection_id:
            other = self._connections.get(previous)
            if other is not None:
                other.owned.pop(slot, None)
        connection.owned[slot] = instance
        self._owners[slot] = connection_id
        if slot not in connection.beating:
            connection.beating.add(slot)
            self._schedule(now_ms + instance.beat_interval_ms, _BEAT, connection_id, slot)
        return True

    def deregistered(self, connection_id: str, service: ServiceKey, key: InstanceKey) -> None:
        """The connection deregistered `key`: it owns it no more (nor does anyone)."""
        slot = (service, key)
        connection = self._connections.get(connection_id)
        if connection is not None:
            connection.owned.pop(slot, None)
        if self._owners.get(slot) == connection_id:
            del self._owners[slot]

    def batch_plan(self, connection_id: str, service: ServiceKey, instances: Iterable[Instance]) -> BatchPlan | None:
        """What replacing the connection's set in `service` with `instances` takes; None when
        the connection is gone or the new set would pass max_instances."""
        connection = self._connections.get(connection_id)
        if connection is None:
            return None
        chosen = {instance.key: instance for instance in instances}
        kept_elsewhere = sum(1 for owned_service, _ in connection.owned if owned_service != service)
        if kept_elsewhere + len(chosen) > self.config.max_instances:
            return None
        dropped = tuple(
            key for owned_service, key in sorted(connection.owned) if owned_service == service and key not in chosen
        )
        return BatchPlan(tuple(chosen.values()), dropped)

    def subscribed(self, connection_id: str, service: ServiceKey, clusters_text: str) -> bool:
        """Add a subscription; False when the connection is gone or at max_subscriptions."""
        connection = self._connections.get(connection_id)
        if connection is None:
            return False
        slot = (service, clusters_text)
        if slot not in connection.subscribed and len(connection.subscribed) >= self.config.max_subscriptions:
            return False
        connection.subscribed.add(slot)
        return True

    def unsubscribed(self, connection_id: str, service: ServiceKey, clusters_text: str) -> None:
        connection = self._connections.get(connection_id)
        if connection is not None:
            connection.subscribed.discard((service, clusters_text))

    # -- time -------------------------------------------------------------------------------

    def next_deadline(self) -> int | None:
        return self._timers[0][0] if self._timers else None

    def due(self, now_ms: int) -> Effects:
        """Everything due by `now_ms`: detection requests to send, connections to evict, owned
        instances to beat (each rescheduled one interval later)."""
        pushes: list[StreamPush] = []
        closed: list[ClosedConnection] = []
        beats: list[tuple[ServiceKey, Instance]] = []
        config = self.config
        while self._timers and self._timers[0][0] <= now_ms:
            deadline, _, kind, connection_id, request_id, slot = heapq.heappop(self._timers)
            connection = self._connections.get(connection_id)
            if connection is None:
                continue
            if kind == _BEAT:
                assert slot is not None
                instance = connection.owned.get(slot)
                if instance is None:
                    connection.beating.discard(slot)
                else:
                    beats.append((slot[0], instance))
                    self._schedule(max(now_ms, deadline + instance.beat_interval_ms), _BEAT, connection_id, slot)
            elif kind == _IDLE:
                if not connection.set_up:
                    closed.append(self._close(connection, EVICTED_NO_SETUP))
                    continue
                idle_until = connection.last_active_ms + config.detect_idle_ms
                if idle_until > now_ms or connection.detecting is not None:
                    self._schedule(max(idle_until, now_ms + 1), _IDLE, connection_id)
                    continue
                self._sequence += 1
                detect_id = f"detect-{self._sequence}"
                connection.detecting = detect_id
                pushes.append(StreamPush(connection_id, CLIENT_DETECTION_REQUEST, detection_body(detect_id)))
                self._schedule(now_ms + config.detect_timeout_ms, _DETECT_TIMEOUT, connection_id, None, detect_id)
            elif connection.detecting == request_id:
                closed.append(self._close(connection, EVICTED_SILENT))
            else:
                self._schedule(connection.last_active_ms + config.detect_idle_ms, _IDLE, connection_id)
        return Effects(tuple(pushes), tuple(closed), tuple(beats))

    # -- inside -----------------------------------------------------------------------------

    def _schedule(
        self,
        deadline: int,
        kind: int,
        connection_id: str,
        slot: tuple[ServiceKey, InstanceKey] | None = None,
        request_id: str = "",
    ) -> None:
        self._sequence += 1
        heapq.heappush(self._timers, (deadline, self._sequence, kind, connection_id, request_id, slot))

    def _close(self, connection: _Connection, reason: str) -> ClosedConnection:
        del self._connections[connection.connection_id]
        instances = []
        for slot, instance in sorted(connection.owned.items(), key=lambda item: item[0]):
            if self._owners.get(slot) == connection.connection_id:
                del self._owners[slot]
                instances.append((slot[0], instance))
        if not self._connections:
            self._timers.clear()
        return ClosedConnection(connection.connection_id, reason, tuple(instances), connection.set_up)


def detection_body(request_id: str) -> bytes:
    """The JSON of a ClientDetectionRequest (`headers` present: the Rust client needs it)."""
    return b'{"headers":{},"requestId":"%s","module":"internal"}' % request_id.encode()
