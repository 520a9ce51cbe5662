"""UDP push bookkeeping: subscribers and their limits, coalescing, packets, acks, retries,
give-up reports, and which datagrams the socket may hand over. Pure.

No sockets, threads or clock: time comes in as `now_ms` (wall-clock milliseconds) and every
entry point returns `Effects`, the datagrams to send and what happened, for the push actor to
carry out and record. The packet is Nacos 1.x's: `{"type":"dom","data":"<list JSON>",
"lastRefTime":<sequence>}`, gzip-compressed when 1024 bytes or more; the ack is
`{"type":"push-ack","lastRefTime":<sequence as number or string>}` from the subscriber's address.

Limits, so that no client can make push expensive:

- Subscribers: at most `max_subscribers_per_address` from one address, `max_subscribers_per_service`
  of one service and `max_subscribers` in all. A subscription over a limit is not added (it is
  counted, and the client keeps polling; its list answers are unchanged).
- One packet per change and shape: subscribers whose own query would get the same list (same
  `clusters` text, same client kind) share one packet, rendered and compressed once, with one
  `lastRefTime`. The Java and Node clients only echo `lastRefTime` in their ack, so an ack is
  matched by (address, port, lastRefTime): unique, since one address and port subscribe to a
  service and shape at most once.
- Packets awaiting their ack (what resends work through) are at most `max_pending`: a newer
  packet for a subscriber supersedes its older one, and beyond the bound the oldest packet's
  subscribers are dropped first (counted).
- Give-ups are reported once at once, then once per `give_up_log_interval_ms` as a summary.
- `ReceiveGate`: a datagram larger than any ack is dropped unread, and at most a bounded number
  are on their way to the push actor at a time.
"""

from __future__ import annotations

import gzip
import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import orjson

from nacos_actors.model import Service, ServiceKey

GZIP_THRESHOLD = 1024  # Nacos compresses a packet of this many bytes or more
MAX_DATAGRAM = 65507  # the largest UDP/IPv4 payload; the clients read up to 64 KiB
# The clients' acks are about 70 bytes (`{"type": "push-ack", "lastRefTime":"<long>", "data":""}`);
# anything larger is not an ack to a packet of ours and is dropped without being read.
MAX_ACK_BYTES = 512
_COOLING, _ACK, _EXPIRY, _SUMMARY = 0, 1, 2, 3  # kinds of timer in the one heap

NO_ACK = "no ack"
LEFT = "the subscriber stopped polling"
TOO_LARGE = "the packet is too large for UDP"
QUEUE_FULL = "too many pushes awaiting their ack"
RefusalReason = Literal["total", "address", "service"]
REFUSAL_REASONS: tuple[RefusalReason, ...] = ("total", "address", "service")


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
    to `max_sends` sends in all; then it is counted as failed. The limits are the module's."""

    window_ms: int = 5
    subscriber_ttl_ms: int = 10_000
    ack_timeout_ms: int = 1_000
    max_sends: int = 3
    max_subscribers_per_address: int = 1_024
    max_subscribers_per_service: int = 10_000
    max_subscribers: int = 100_000
    max_pending: int = 65_536
    give_up_log_interval_ms: int = 60_000


@dataclass(frozen=True, slots=True)
class Datagram:
    address: str
    port: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class PushStats:
    """Counters since start. A push is one packet to one subscriber (resends not counted);
    it ends acked, failed (no ack after every send, the subscriber left, or too large for UDP),
    superseded (a newer packet for the same subscriber replaced it) or dropped (too many were
    awaiting their ack). `refused` counts subscriptions over a limit. Costs are ack round trips
    in ms."""

    subscribers: int = 0
    total: int = 0
    acked: int = 0
    failed: int = 0
    superseded: int = 0
    dropped: int = 0
    awaiting_ack: int = 0
    pending_services: int = 0
    cost_total_ms: int = 0
    cost_max_ms: int = 0
    malformed: int = 0
    unmatched: int = 0
    refused: int = 0

    @property
    def average_cost_ms(self) -> float:
        return self.cost_total_ms / self.acked if self.acked else 0.0


# Shared with the gRPC core (core/grpc_push.py), which imports this module.


class GrpcSubscriberKey(NamedTuple):
    """One gRPC subscription: a service and cluster list as the client named them, on one
    connection."""

    connection_id: str
    service: ServiceKey
    clusters_text: str


@dataclass(frozen=True, slots=True)
class GrpcPushStats:
    """Counters since start. A push is one NotifySubscriberRequest to one subscriber (resends
    not counted in `total`); it ends acked, failed (no successful answer after every send),
    superseded (a newer state for the same subscription replaced it), dropped (too many were
    awaiting answers) or abandoned (its connection closed or it unsubscribed first).
    `unmatched` counts answers for no push awaiting one, `refused` subscriptions over a limit.
    Costs are answer round trips in ms."""

    subscribers: int = 0
    total: int = 0
    resent: int = 0
    acked: int = 0
    failed: int = 0
    superseded: int = 0
    dropped: int = 0
    abandoned: int = 0
    awaiting_ack: int = 0
    pending_services: int = 0
    cost_total_ms: int = 0
    cost_max_ms: int = 0
    unmatched: int = 0
    refused: int = 0

    @property
    def average_cost_ms(self) -> float:
        return self.cost_total_ms / self.acked if self.acked else 0.0

    def combined_with(self, udp: PushStats) -> PushStats:
        """Both transports' pushes as one PushStats: what Nacos's counters (push state,
        nacos_monitor) show. An abandoned gRPC push counts as neither success nor failure."""
        return PushStats(
            subscribers=udp.subscribers + self.subscribers,
            total=udp.total + self.total,
            acked=udp.acked + self.acked,
            failed=udp.failed + self.failed,
            superseded=udp.superseded + self.superseded,
            dropped=udp.dropped + self.dropped,
            awaiting_ack=udp.awaiting_ack + self.awaiting_ack,
            pending_services=udp.pending_services + self.pending_services,
            cost_total_ms=udp.cost_total_ms + self.cost_total_ms,
            cost_max_ms=max(udp.cost_max_ms, self.cost_max_ms),
            malformed=udp.malformed,
            unmatched=udp.unmatched + self.unmatched,
            refused=udp.refused + self.refused,
        )


@dataclass(frozen=True, slots=True)
class GiveUpReport:
    """Pushes given up, for one log line: at once (`since_ms` None: the first in a quiet
    interval, `count` 1), or the summary of those since `since_ms`, by reason, with the first
    as an example (`sends` its sends): a UDP subscriber, or a gRPC one (`GrpcPushCore` reports
    the same way)."""

    count: int
    reasons: tuple[tuple[str, int], ...]
    example: SubscriberKey | GrpcSubscriberKey
    sends: int
    since_ms: int | None = None


class GiveUpLog:
    """Which give-up reports to make: the first give-up of a quiet interval at once, the others
    summed up into one summary at the interval's end (`give_up_log_interval_ms`). Shared by the
    UDP and gRPC push cores; each keeps the summary's deadline in its own timer heap."""

    __slots__ = ("_example", "_interval_ms", "_quiet_until_ms", "_reasons")

    def __init__(self, interval_ms: int) -> None:
        self._interval_ms = interval_ms
        self._quiet_until_ms = 0  # no report is due before this: give-ups are summed up
        self._reasons: dict[str, int] = {}
        self._example: tuple[SubscriberKey | GrpcSubscriberKey, int] | None = None

    def gave_up(
        self, subscriber: SubscriberKey | GrpcSubscriberKey, reason: str, sends: int, now_ms: int
    ) -> tuple[GiveUpReport | None, int | None]:
        """A push was given up: the report to make now (None: it is summed up), and the
        deadline a summary is then due at (None: none newly due)."""
        if now_ms >= self._quiet_until_ms and not self._reasons:
            self._quiet_until_ms = now_ms + self._interval_ms
            return GiveUpReport(1, ((reason, 1),), subscriber, sends), self._quiet_until_ms
        self._reasons[reason] = self._reasons.get(reason, 0) + 1
        if self._example is None:
            self._example = (subscriber, sends)
        return None, None

    def summary_due(self, deadline: int, now_ms: int) -> tuple[GiveUpReport | None, int | None]:
        """The summary timer at `deadline` rang: the summary to make (None: nothing was summed,
        or the timer is stale), and the deadline of the next one."""
        if deadline != self._quiet_until_ms or not self._reasons or self._example is None:
            return None, None
        example, sends = self._example
        reasons = tuple(sorted(self._reasons.items()))
        report = GiveUpReport(sum(self._reasons.values()), reasons, example, sends, deadline - self._interval_ms)
        self._reasons, self._example = {}, None
        self._quiet_until_ms = now_ms + self._interval_ms
        return report, self._quiet_until_ms


@dataclass(frozen=True, slots=True)
class Refusing:
    """Where new subscriptions are refused now: these addresses and services are at their limit,
    or every subscriber slot is taken (`full`). The front reads it to tell such a client to poll
    at the polling pace."""

    addresses: frozenset[str] = frozenset()
    services: frozenset[ServiceKey] = frozenset()
    full: bool = False

    def refuses(self, address: str, service: ServiceKey) -> bool:
        return self.full or address in self.addresses or service in self.services


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
    dropped: int = 0
    expired: list[SubscriberKey] = field(default_factory=list)
    malformed: int = 0
    unmatched: int = 0
    refused: list[RefusalReason] = field(default_factory=list)
    refusing_changed: bool = False
    give_ups: list[GiveUpReport] = field(default_factory=list)


Renderer = Callable[[Service | None, ServiceKey, str, tuple[str, ...], bool, int], bytes]
"""(snapshot or None, service key, clusters text, clusters, java client, now ms) -> list JSON bytes."""


@dataclass(slots=True)
class _Subscriber:
    subscription: Subscription
    last_poll_ms: int


@dataclass(slots=True)
class _Packet:
    """One packet of one change and shape, and the subscribers that have not acked it yet (by
    the address and port their ack comes from)."""

    sequence: int
    payload: bytes
    sends: int
    first_sent_ms: int
    due_ms: int
    waiting: dict[tuple[str, int], SubscriberKey]


def encode_packet(data: bytes, sequence: int) -> bytes:
    """Nacos's push packet around one list answer; gzip when 1024 bytes or more."""
    envelope = orjson.dumps({"type": "dom", "data": data.decode(), "lastRefTime": sequence})
    if len(envelope) >= GZIP_THRESHOLD:
        return gzip.compress(envelope, compresslevel=6, mtime=0)
    return envelope


def parse_ack(payload: bytes) -> int | None:
    """The sequence a `push-ack` datagram acknowledges, or None when it is not a valid ack."""
    if len(payload) > MAX_ACK_BYTES:
        return None
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


class ReceiveGate:
    """Which datagrams arriving on the push socket go to the push actor: none larger than an ack
    (dropped unread), and at most `max_in_flight` told but not yet handled (beyond that, dropped).
    One thread: the event loop's, where the socket is."""

    __slots__ = ("in_flight", "max_in_flight")

    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    def admit(self, size: int) -> Literal["ok", "oversized", "overflow"]:
        """Whether a datagram of `size` bytes goes on (it then counts as in flight)."""
        if size > MAX_ACK_BYTES:
            return "oversized"
        if self.in_flight >= self.max_in_flight:
            return "overflow"
        self.in_flight += 1
        return "ok"

    def handled(self, count: int) -> None:
        """The push actor handled `count` of the datagrams in flight."""
        self.in_flight = max(0, self.in_flight - count)


class PushCore:
    """Subscribers by service (within their limits), coalescing per service, packets awaiting
    their ack, give-up reports.

    Runs on the push actor's thread only. `render` builds the list JSON a subscriber's own query
    would get; `first_sequence` seeds the packet sequence numbers (`lastRefTime` in the packet).
    """

    def __init__(self, config: PushConfig, render: Renderer, first_sequence: int) -> None:
        self.config = config
        self._render = render
        self._sequence = first_sequence
        self._subscribers: dict[ServiceKey, dict[SubscriberKey, _Subscriber]] = {}
        self._subscriber_count = 0
        self._per_address: dict[str, int] = {}
        self._full_addresses: set[str] = set()
        self._full_services: set[ServiceKey] = set()
        self._cooling_until: dict[ServiceKey, int] = {}
        self._dirty: dict[ServiceKey, tuple[Service | None, int]] = {}
        self._packets: dict[int, _Packet] = {}
        self._packet_order: deque[int] = deque()
        self._latest: dict[SubscriberKey, int] = {}
        self._awaiting = 0
        self._timers: list[tuple[int, int, object]] = []
        self._give_ups = GiveUpLog(config.give_up_log_interval_ms)
        self._stats = PushStats()

    # -- inputs ----------------------------------------------------------------------------

    def subscribe(self, subscription: Subscription, now_ms: int) -> Effects:
        """A list query with `udpPort` arrived: refresh the subscriber's poll time, or add it when
        no limit is reached (else count the refusal)."""
        effects = Effects()
        key = subscription.key
        by_key = self._subscribers.get(key.service)
        known = by_key.get(key) if by_key is not None else None
        if known is not None:
            known.subscription = subscription
            known.last_poll_ms = now_ms
            return effects
        reason = self._over_limit(key, by_key)
        if reason is not None:
            effects.refused.append(reason)
            return effects
        if by_key is None:
            by_key = self._subscribers[key.service] = {}
        by_key[key] = _Subscriber(subscription, now_ms)
        self._count(key, len(by_key), +1, effects)
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

    def receive(self, payload: bytes, address: str, port: int, now_ms: int, effects: Effects | None = None) -> Effects:
        """A datagram arrived on the push socket: match an ack, or count it unmatched or
        malformed. Adds to `effects` when given."""
        effects = Effects() if effects is None else effects
        sequence = parse_ack(payload)
        if sequence is None:
            effects.malformed += 1
            return effects
        packet = self._packets.get(sequence)
        subscriber = packet.waiting.pop((address, port), None) if packet is not None else None
        if packet is None or subscriber is None:
            effects.unmatched += 1
            return effects
        self._awaiting -= 1
        if self._latest.get(subscriber) == sequence:
            del self._latest[subscriber]
        if not packet.waiting:
            del self._packets[sequence]
        effects.acked_costs_ms.append(now_ms - packet.first_sent_ms)
        return effects

    def due(self, now_ms: int) -> Effects:
        """Everything whose time has come: coalesced pushes, resends, give-ups and their
        summary, expiries."""
        effects = Effects()
        while self._timers and self._timers[0][0] <= now_ms:
            deadline, kind, key = heapq.heappop(self._timers)
            if kind == _COOLING:
                self._cooling_done(key, deadline, now_ms, effects)  # type: ignore[arg-type]
            elif kind == _ACK:
                self._ack_due(key, deadline, now_ms, effects)  # type: ignore[arg-type]
            elif kind == _EXPIRY:
                self._expiry_due(key, now_ms, effects)  # type: ignore[arg-type]
            else:
                self._summary_due(deadline, now_ms, effects)
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
            dropped=s.dropped + effects.dropped,
            awaiting_ack=self._awaiting,
            pending_services=len(self._dirty),
            cost_total_ms=s.cost_total_ms + sum(effects.acked_costs_ms),
            cost_max_ms=max([s.cost_max_ms, *effects.acked_costs_ms]),
            malformed=s.malformed + effects.malformed,
            unmatched=s.unmatched + effects.unmatched,
            refused=s.refused + len(effects.refused),
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

    def refusing(self) -> Refusing:
        """Where new subscriptions are refused now."""
        return Refusing(
            frozenset(self._full_addresses),
            frozenset(self._full_services),
            self._subscriber_count >= self.config.max_subscribers,
        )

    # -- internals: subscribers ------------------------------------------------------------

    def _at(self, deadline: int, kind: int, key: object) -> None:
        heapq.heappush(self._timers, (deadline, kind, key))

    def _over_limit(self, key: SubscriberKey, by_key: dict[SubscriberKey, _Subscriber] | None) -> RefusalReason | None:
        config = self.config
        if self._subscriber_count >= config.max_subscribers:
            return "total"
        if self._per_address.get(key.address, 0) >= config.max_subscribers_per_address:
            return "address"
        if by_key is not None and len(by_key) >= config.max_subscribers_per_service:
            return "service"
        return None

    def _count(self, key: SubscriberKey, of_service: int, delta: int, effects: Effects) -> None:
        """Count a subscriber in (`delta` +1) or out (-1); `of_service` is the service's count now.
        Notes in `effects` when an address, a service or the whole table reaches or leaves its
        limit."""
        config = self.config
        was_full = self._subscriber_count >= config.max_subscribers
        self._subscriber_count += delta
        per_address = self._per_address.get(key.address, 0) + delta
        if per_address:
            self._per_address[key.address] = per_address
        else:
            self._per_address.pop(key.address, None)
        changed = was_full != (self._subscriber_count >= config.max_subscribers)
        changed |= _mark(self._full_addresses, key.address, per_address >= config.max_subscribers_per_address)
        changed |= _mark(self._full_services, key.service, of_service >= config.max_subscribers_per_service)
        effects.refusing_changed |= changed

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
        self._count(key, len(by_key), -1, effects)
        effects.expired.append(key)

    # -- internals: packets ----------------------------------------------------------------

    def _push(self, key: ServiceKey, snapshot: Service | None, now_ms: int, applied_ns: int, effects: Effects) -> None:
        """One packet per shape of the service's subscribers, each sent to every subscriber of
        that shape."""
        held = self._dirty.pop(key, None)  # this push carries a newer state than any held back
        if held is not None:
            applied_ns = min(applied_ns, held[1])
        if self.config.window_ms > 0:
            until = now_ms + self.config.window_ms
            self._cooling_until[key] = until
            self._at(until, _COOLING, key)
        packets: dict[tuple[str, bool], _Packet | None] = {}
        ttl = self.config.subscriber_ttl_ms
        by_key = self._subscribers.get(key, {})
        for subscriber_key, subscriber in list(by_key.items()):
            if now_ms - subscriber.last_poll_ms > ttl:
                self._drop(subscriber_key, effects)
                continue
            sub = subscriber.subscription
            shape = (subscriber_key.clusters, sub.java_client)
            # A packet this push made for the shape is reused, unless the bound on pending
            # pushes dropped its last subscriber meanwhile (it is no longer known: acks to it
            # would match nothing).
            if shape in packets and self._still_known(packets[shape]):
                packet = packets[shape]
            else:
                data = self._render(snapshot, key, subscriber_key.clusters, sub.clusters, sub.java_client, now_ms)
                packet = packets[shape] = self._new_packet(data, now_ms)
            self._supersede(subscriber_key, effects)
            if packet is None:
                effects.oversized.append(subscriber_key)
                self._gave_up(subscriber_key, TOO_LARGE, 0, now_ms, effects)
                continue
            self._await(packet, subscriber_key, now_ms, effects)
            effects.sends.append(Datagram(subscriber_key.address, subscriber_key.port, packet.payload))
            effects.first_sends += 1
            effects.delays_ns.append(applied_ns)
        for packet in packets.values():
            if packet is not None and not packet.waiting:  # every subscriber of it dropped again
                self._packets.pop(packet.sequence, None)

    def _still_known(self, packet: _Packet | None) -> bool:
        """Whether a packet of this push may take more subscribers: it is awaiting acks (or it
        is None, too large for any)."""
        return packet is None or packet.sequence in self._packets

    def _new_packet(self, data: bytes, now_ms: int) -> _Packet | None:
        """A packet for one list answer (None when it is too large for UDP), awaiting acks."""
        sequence = self._sequence
        self._sequence += 1
        payload = encode_packet(data, sequence)
        if len(payload) > MAX_DATAGRAM:
            return None
        due = now_ms + self.config.ack_timeout_ms
        packet = self._packets[sequence] = _Packet(sequence, payload, 1, now_ms, due, {})
        self._packet_order.append(sequence)
        self._at(due, _ACK, sequence)
        return packet

    def _supersede(self, subscriber: SubscriberKey, effects: Effects) -> None:
        """A newer packet goes to `subscriber`: its unacked older one is no longer resent."""
        previous = self._latest.pop(subscriber, None)
        packet = self._packets.get(previous) if previous is not None else None
        if packet is not None and packet.waiting.pop((subscriber.address, subscriber.port), None) is not None:
            self._awaiting -= 1
            effects.superseded += 1
            if not packet.waiting:
                del self._packets[packet.sequence]

    def _await(self, packet: _Packet, subscriber: SubscriberKey, now_ms: int, effects: Effects) -> None:
        """`subscriber` awaits `packet`'s ack; at the bound, the oldest packet loses one first."""
        if self._awaiting >= self.config.max_pending:
            self._drop_oldest(packet, now_ms, effects)
        packet.waiting[(subscriber.address, subscriber.port)] = subscriber
        self._latest[subscriber] = packet.sequence
        self._awaiting += 1

    def _drop_oldest(self, filling: _Packet, now_ms: int, effects: Effects) -> None:
        """One subscriber of the oldest packet awaiting acks no longer awaits it (`filling`, the
        packet being sent, stays known even when that empties it)."""
        order = self._packet_order
        while order and order[0] not in self._packets:
            order.popleft()
        oldest = self._packets[order[0]] if order else None
        if oldest is None or not oldest.waiting:
            return
        _, subscriber = oldest.waiting.popitem()
        self._awaiting -= 1
        if self._latest.get(subscriber) == oldest.sequence:
            del self._latest[subscriber]
        if not oldest.waiting and oldest is not filling:
            del self._packets[oldest.sequence]
        effects.dropped += 1
        self._gave_up(subscriber, QUEUE_FULL, oldest.sends, now_ms, effects)

    def _cooling_done(self, key: ServiceKey, deadline: int, now_ms: int, effects: Effects) -> None:
        if self._cooling_until.get(key) != deadline:
            return
        del self._cooling_until[key]
        dirty = self._dirty.pop(key, None)
        if dirty is not None and self._subscribers.get(key):
            self._push(key, dirty[0], now_ms, dirty[1], effects)

    def _ack_due(self, sequence: int, deadline: int, now_ms: int, effects: Effects) -> None:
        """Resend a packet to those of its subscribers that have not acked it and still poll;
        give it up for the others, and for everyone after its last send."""
        packet = self._packets.get(sequence)
        if packet is None or packet.due_ms != deadline:
            return
        last_send = packet.sends >= self.config.max_sends
        ttl = self.config.subscriber_ttl_ms
        resends = []
        for ack_from, subscriber_key in list(packet.waiting.items()):
            subscriber = self._subscribers.get(subscriber_key.service, {}).get(subscriber_key)
            lapsed = subscriber is None or now_ms - subscriber.last_poll_ms > ttl
            if last_send or lapsed:
                del packet.waiting[ack_from]
                self._awaiting -= 1
                if self._latest.get(subscriber_key) == sequence:
                    del self._latest[subscriber_key]
                effects.failed.append(subscriber_key)
                self._gave_up(subscriber_key, LEFT if lapsed else NO_ACK, packet.sends, now_ms, effects)
            else:
                resends.append(Datagram(subscriber_key.address, subscriber_key.port, packet.payload))
        if not packet.waiting:
            del self._packets[sequence]
            return
        packet.sends += 1
        packet.due_ms = now_ms + self.config.ack_timeout_ms * 2 ** (packet.sends - 1)
        self._at(packet.due_ms, _ACK, sequence)
        effects.sends.extend(resends)
        effects.resends += len(resends)

    # -- internals: give-up reports --------------------------------------------------------

    def _gave_up(self, subscriber: SubscriberKey, reason: str, sends: int, now_ms: int, effects: Effects) -> None:
        self._report(*self._give_ups.gave_up(subscriber, reason, sends, now_ms), effects)

    def _summary_due(self, deadline: int, now_ms: int, effects: Effects) -> None:
        self._report(*self._give_ups.summary_due(deadline, now_ms), effects)

    def _report(self, report: GiveUpReport | None, next_summary_ms: int | None, effects: Effects) -> None:
        if report is not None:
            effects.give_ups.append(report)
        if next_summary_ms is not None:
            self._at(next_summary_ms, _SUMMARY, None)


def _mark(members: set[Any], member: Any, present: bool) -> bool:
    """Add or remove `member`; whether the set changed."""
    if present == (member in members):
        return False
    if present:
        members.add(member)
    else:
        members.discard(member)
    return True


class PushBoard:
    """Where the push actor publishes its latest counters and where it refuses UDP
    subscriptions, for other threads (metrics, HTTP).

    `stats` counts the pushes of both transports (what Nacos's counters show), `udp` and `grpc`
    each transport's own. Only the push actor assigns them, always a whole frozen value, `stats`
    last.
    """

    __slots__ = ("grpc", "refusing", "stats", "udp")

    def __init__(self) -> None:
        self.stats = PushStats()
        self.udp = PushStats()
        self.grpc = GrpcPushStats()
        self.refusing = Refusing()
