"""UDP push bookkeeping: subscribers, coalescing, packets, acks, retries. Pure.

No sockets, threads or clock: time comes in as `now_ms` (wall-clock milliseconds) and every
entry point returns `Effects`, the datagrams to send and what happened, for the push actor to
carry out and record. The packet is Nacos 1.x's: `{"type":"dom","data":"<list JSON>",
"lastRefTime":<sequence>}`, gzip-compressed when 1024 bytes or more; the ack is
`{"type":"push-ack","lastRefTime":<sequence as number or string>}` from the subscriber's address.
"""

from __future__ import annotations

import gzip
import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import orjson

from nacos_actors.model import Service, ServiceKey

GZIP_THRESHOLD = 1024  # Nacos compresses a packet of this many bytes or more
MAX_DATAGRAM = 65507  # the largest UDP/IPv4 payload; the clients read up to 64 KiB
_COOLING, _ACK, _EXPIRY = 0, 1, 2  # kinds of timer in the one heap


class SubscriberKey(NamedTuple):
    """One subscriber: a service and cluster list as queried, from one UDP address."""

    service: ServiceKey
    clusters: str
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class Subscription:
    """What a list query that carries `udpPort` tells the pusher. `clusters_text` is echoed;
    `java_client` selects the grouped `dom` the Java (and Node) clients expect."""

    key: SubscriberKey
    clusters: tuple[str, ...]
    agent: str
    app: str
    java_client: bool


@dataclass(frozen=True, slots=True)
class PushConfig:
    """`window_ms`: changes of one service within it make one push (0 pushes every change).
    `subscriber_ttl_ms`: a subscriber that has not polled for this long is dropped.
    A packet not acked within `ack_timeout_ms` is resent, waiting twice as long each time, up
    to `max_sends` sends in all; then it is counted as failed."""

    window_ms: int = 5
    subscriber_ttl_ms: int = 10_000
    ack_timeout_ms: int = 1_000
    max_sends: int = 3


@dataclass(frozen=True, slots=True)
class Datagram:
    address: str
    port: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class PushStats:
    """Counters since start. A push is one packet to one subscriber (resends not counted);
    it ends acked, failed (no ack after every send, or too large for UDP) or superseded (a
    newer packet for the same subscriber replaced it). Costs are ack round trips in ms."""

    subscribers: int = 0
    total: int = 0
    acked: int = 0
    failed: int = 0
    superseded: int = 0
    awaiting_ack: int = 0
    pending_services: int = 0
    cost_total_ms: int = 0
    cost_max_ms: int = 0
    malformed: int = 0
    unmatched: int = 0

    @property
    def average_cost_ms(self) -> float:
        return self.cost_total_ms / self.acked if self.acked else 0.0


@dataclass(slots=True)
class Effects:
    """What one entry point did: datagrams to send now, and outcomes to record."""

    sends: list[Datagram] = field(default_factory=list)
    first_sends: int = 0
    resends: int = 0
    delays_ns: list[int] = field(default_factory=list)  # per first send: when its change was applied
    acked_costs_ms: list[int] = field(default_factory=list)
    failed: list[SubscriberKey] = field(default_factory=list)
    oversized: list[SubscriberKey] = field(default_factory=list)
    superseded: int = 0
    expired: list[SubscriberKey] = field(default_factory=list)
    malformed: int = 0
    unmatched: int = 0


Renderer = Callable[[Service | None, ServiceKey, str, tuple[str, ...], bool, int], bytes]
"""(snapshot or None, service key, clusters text, clusters, java client, now ms) -> list JSON bytes."""


@dataclass(slots=True)
class _Subscriber:
    subscription: Subscription
    last_poll_ms: int


@dataclass(slots=True)
class _Pending:
    subscriber: SubscriberKey
    payload: bytes
    sends: int
    first_sent_ms: int
    due_ms: int


def encode_packet(data: bytes, sequence: int) -> bytes:
    """Nacos's push packet around one list answer; gzip when 1024 bytes or more."""
    envelope = orjson.dumps({"type": "dom", "data": data.decode(), "lastRefTime": sequence})
    if len(envelope) >= GZIP_THRESHOLD:
        return gzip.compress(envelope, compresslevel=6, mtime=0)
    return envelope


def parse_ack(payload: bytes) -> int | None:
    """The sequence a `push-ack` datagram acknowledges, or None when it is not a valid ack."""
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or document.get("type") != "push-ack":
        return None
    sequence = document.get("lastRefTime")
    if isinstance(sequence, str) and sequence.isascii() and sequence.isdigit() and len(sequence) <= 20:
        return int(sequence)
    if isinstance(sequence, int) and not isinstance(sequence, bool) and sequence >= 0:
        return sequence
    return None


class PushCore:
    """Subscribers by service, coalescing per service, packets awaiting their ack.

    Runs on the push actor's thread only. `render` builds the list JSON a subscriber's own query
    would get; `first_sequence` seeds the packet sequence numbers (`lastRefTime` in the packet).
    """

    def __init__(self, config: PushConfig, render: Renderer, first_sequence: int) -> None:
        self.config = config
        self._render = render
        self._sequence = first_sequence
        self._subscribers: dict[ServiceKey, dict[SubscriberKey, _Subscriber]] = {}
        self._subscriber_count = 0
        self._cooling_until: dict[ServiceKey, int] = {}
        self._dirty: dict[ServiceKey, tuple[Service | None, int]] = {}
        self._pending: dict[tuple[str, int, int], _Pending] = {}
        self._latest: dict[SubscriberKey, tuple[str, int, int]] = {}
        self._timers: list[tuple[int, int, object]] = []
        self._stats = PushStats()

    # -- inputs ----------------------------------------------------------------------------

    def subscribe(self, subscription: Subscription, now_ms: int) -> Effects:
        """A list query with `udpPort` arrived: add the subscriber or refresh its poll time."""
        effects = Effects()
        key = subscription.key
        by_key = self._subscribers.setdefault(key.service, {})
        known = by_key.get(key)
        if known is not None:
            known.subscription = subscription
            known.last_poll_ms = now_ms
            return effects
        by_key[key] = _Subscriber(subscription, now_ms)
        self._subscriber_count += 1
        self._at(now_ms + self.config.subscriber_ttl_ms + 1, _EXPIRY, key)
        return effects

    def service_changed(
        self, key: ServiceKey, snapshot: Service | None, now_ms: int, applied_ns: int, effects: Effects | None = None
    ) -> Effects:
        """A service changed: push now, or, within the window since the last push, once the
        window ends (with the latest snapshot by then). Adds to `effects` when given."""
        effects = Effects() if effects is None else effects
        if not self._subscribers.get(key):
            return effects
        if now_ms < self._cooling_until.get(key, now_ms):
            earlier = self._dirty.get(key)
            self._dirty[key] = (snapshot, applied_ns if earlier is None else earlier[1])
            return effects
        self._push(key, snapshot, now_ms, applied_ns, effects)
        return effects

    def receive(self, payload: bytes, address: str, port: int, now_ms: int) -> Effects:
        """A datagram arrived on the push socket: match an ack, or count it unmatched or malformed."""
        effects = Effects()
        sequence = parse_ack(payload)
        if sequence is None:
            effects.malformed += 1
            return effects
        pending = self._pending.pop((address, port, sequence), None)
        if pending is None:
            effects.unmatched += 1
            return effects
        if self._latest.get(pending.subscriber) == (address, port, sequence):
            del self._latest[pending.subscriber]
        effects.acked_costs_ms.append(now_ms - pending.first_sent_ms)
        return effects

    def due(self, now_ms: int) -> Effects:
        """Everything whose time has come: coalesced pushes, resends, give-ups, expiries."""
        effects = Effects()
        while self._timers and self._timers[0][0] <= now_ms:
            deadline, kind, key = heapq.heappop(self._timers)
            if kind == _COOLING:
                self._cooling_done(key, deadline, now_ms, effects)  # type: ignore[arg-type]
            elif kind == _ACK:
                self._ack_due(key, deadline, now_ms, effects)  # type: ignore[arg-type]
            else:
                self._expiry_due(key, now_ms, effects)  # type: ignore[arg-type]
        return effects

    def record(self, effects: Effects) -> PushStats:
        """Fold one Effects into the counters; returns the stats as of now."""
        s = self._stats
        self._stats = PushStats(
            subscribers=self._subscriber_count,
            total=s.total + effects.first_sends + len(effects.oversized),
            acked=s.acked + len(effects.acked_costs_ms),
            failed=s.failed + len(effects.failed) + len(effects.oversized),
            superseded=s.superseded + effects.superseded,
            awaiting_ack=len(self._pending),
            pending_services=len(self._dirty),
            cost_total_ms=s.cost_total_ms + sum(effects.acked_costs_ms),
            cost_max_ms=max([s.cost_max_ms, *effects.acked_costs_ms]),
            malformed=s.malformed + effects.malformed,
            unmatched=s.unmatched + effects.unmatched,
        )
        return self._stats

    # -- views -----------------------------------------------------------------------------

    def next_deadline(self) -> int | None:
        """When `due` next has something to do (it may find the entry stale), or None."""
        return self._timers[0][0] if self._timers else None

    def subscriptions(self, namespace: str | None = None) -> list[Subscription]:
        """Every live subscription, or those of one namespace."""
        return [
            s.subscription
            for service, by_key in self._subscribers.items()
            if namespace is None or service.namespace == namespace
            for s in by_key.values()
        ]

    # -- internals -------------------------------------------------------------------------

    def _at(self, deadline: int, kind: int, key: object) -> None:
        heapq.heappush(self._timers, (deadline, kind, key))

    def _push(self, key: ServiceKey, snapshot: Service | None, now_ms: int, applied_ns: int, effects: Effects) -> None:
        held = self._dirty.pop(key, None)  # this push carries a newer state than any held back
        if held is not None:
            applied_ns = min(applied_ns, held[1])
        if self.config.window_ms > 0:
            until = now_ms + self.config.window_ms
            self._cooling_until[key] = until
            self._at(until, _COOLING, key)
        rendered: dict[tuple[str, bool], bytes] = {}
        ttl = self.config.subscriber_ttl_ms
        by_key = self._subscribers.get(key, {})
        for subscriber_key, subscriber in list(by_key.items()):
            if now_ms - subscriber.last_poll_ms > ttl:
                self._drop(subscriber_key, effects)
                continue
            sub = subscriber.subscription
            shape = (subscriber_key.clusters, sub.java_client)
            data = rendered.get(shape)
            if data is None:
                data = rendered[shape] = self._render(
                    snapshot, key, subscriber_key.clusters, sub.clusters, sub.java_client, now_ms
                )
            self._send_new(subscriber_key, data, now_ms, applied_ns, effects)

    def _send_new(self, subscriber: SubscriberKey, data: bytes, now_ms: int, applied_ns: int, effects: Effects) -> None:
        sequence = self._sequence
        self._sequence += 1
        payload = encode_packet(data, sequence)
        previous = self._latest.pop(subscriber, None)
        if previous is not None and self._pending.pop(previous, None) is not None:
            effects.superseded += 1
        if len(payload) > MAX_DATAGRAM:
            effects.oversized.append(subscriber)
            return
        ack_key = (subscriber.address, subscriber.port, sequence)
        due = now_ms + self.config.ack_timeout_ms
        self._pending[ack_key] = _Pending(subscriber, payload, 1, now_ms, due)
        self._latest[subscriber] = ack_key
        self._at(due, _ACK, ack_key)
        effects.sends.append(Datagram(subscriber.address, subscriber.port, payload))
        effects.first_sends += 1
        effects.delays_ns.append(applied_ns)

    def _cooling_done(self, key: ServiceKey, deadline: int, now_ms: int, effects: Effects) -> None:
        if self._cooling_until.get(key) != deadline:
            return
        del self._cooling_until[key]
        dirty = self._dirty.pop(key, None)
        if dirty is not None and self._subscribers.get(key):
            self._push(key, dirty[0], now_ms, dirty[1], effects)

    def _ack_due(self, ack_key: tuple[str, int, int], deadline: int, now_ms: int, effects: Effects) -> None:
        pending = self._pending.get(ack_key)
        if pending is None or pending.due_ms != deadline:
            return
        subscriber = self._subscribers.get(pending.subscriber.service, {}).get(pending.subscriber)
        lapsed = subscriber is None or now_ms - subscriber.last_poll_ms > self.config.subscriber_ttl_ms
        if pending.sends >= self.config.max_sends or lapsed:
            del self._pending[ack_key]
            if self._latest.get(pending.subscriber) == ack_key:
                del self._latest[pending.subscriber]
            effects.failed.append(pending.subscriber)
            return
        pending.sends += 1
        pending.due_ms = now_ms + self.config.ack_timeout_ms * 2 ** (pending.sends - 1)
        self._at(pending.due_ms, _ACK, ack_key)
        effects.sends.append(Datagram(ack_key[0], ack_key[1], pending.payload))
        effects.resends += 1

    def _expiry_due(self, key: SubscriberKey, now_ms: int, effects: Effects) -> None:
        subscriber = self._subscribers.get(key.service, {}).get(key)
        if subscriber is None:
            return
        if now_ms - subscriber.last_poll_ms > self.config.subscriber_ttl_ms:
            self._drop(key, effects)
        else:
            self._at(subscriber.last_poll_ms + self.config.subscriber_ttl_ms + 1, _EXPIRY, key)

    def _drop(self, key: SubscriberKey, effects: Effects) -> None:
        by_key = self._subscribers.get(key.service)
        if by_key is None or by_key.pop(key, None) is None:
            return
        if not by_key:
            del self._subscribers[key.service]
            self._cooling_until.pop(key.service, None)
            self._dirty.pop(key.service, None)
        self._subscriber_count -= 1
        effects.expired.append(key)


class PushBoard:
    """Where the push actor publishes its latest PushStats for other threads (metrics, HTTP).

    Only the push actor assigns `stats`, always a whole frozen value.
    """

    __slots__ = ("stats",)

    def __init__(self) -> None:
        self.stats = PushStats()
