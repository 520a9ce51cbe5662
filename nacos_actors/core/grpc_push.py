"""gRPC push bookkeeping: subscriptions of Nacos 2.x clients and their limits, coalescing,
NotifySubscriberRequest bodies, answers, resends and give-up reports. Pure.

A separate core from the UDP one (`core/push.py`) because almost nothing of the bookkeeping is
shared: a gRPC subscriber is a (connection, service, clusters) with no poll to expire it (its
connection ending removes it), an answer names the push it answers by `requestId`, each push
goes to one subscriber (no packet shared by address), and what is sent is a stream request, not
a datagram. Both cores take the same registry changes with the same coalescing window; the push
driver feeds both. What the two share (the give-up report, and `GrpcSubscriberKey` and
`GrpcPushStats`, which the report and the PushBoard name) lives in `core/push.py`.

- On a subscription the subscriber gets the current state at once (Nacos 2.x pushes to a new
  subscriber on `ServiceSubscribedEvent`), and again after every change of the service.
- One render per change and shape: subscribers with the same `clusters` text share one
  rendered serviceInfo (the text is echoed in `serviceInfo.clusters`, which the clients key
  their cache by); each subscriber's body is that shared JSON spliced after its own
  `requestId`, never rendered again.
- `requestId` is a decimal string from a counter (Java's `PushAckIdGenerator`), unique per
  send. A push not answered within `ack_timeout_ms`, or answered with a failure, is sent again
  with a new id, as Nacos retries a failed push as a new task: a late answer to the earlier
  send then matches nothing, so one push never ends twice. After `max_sends` sends it is given
  up.
- A subscriber has at most one push awaiting its answer: a newer state supersedes the older
  push. At most `max_pending` pushes await answers; beyond that the oldest is dropped.
- Refusals over the limits (per connection, per service, in all) are counted; the connection
  layer has already answered the subscription, so such a client simply gets no pushes.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import orjson

from nacos_actors.core.push import GiveUpLog, GiveUpReport, GrpcPushStats, GrpcSubscriberKey
from nacos_actors.core.streams import GrpcSubscription, StreamPush
from nacos_actors.model import Service, ServiceKey, split_grouped_name

NOTIFY_SUBSCRIBER = "NotifySubscriberRequest"
NO_ANSWER = "no answer"
FAILED_ANSWER = "the client answered with a failure"
QUEUE_FULL = "too many pushes awaiting their answer"
MAX_REQUEST_ID_DIGITS = 20
GrpcRefusalReason = Literal["total", "connection", "service"]
GRPC_REFUSAL_REASONS: tuple[GrpcRefusalReason, ...] = ("total", "connection", "service")
_COOLING, _ANSWER, _SUMMARY = 0, 1, 2  # kinds of timer in the one heap
_BODY_HEAD = b'{"headers":{},"requestId":"'


@dataclass(frozen=True, slots=True)
class GrpcPushConfig:
    """`window_ms`: changes of one service within it make one push (0 pushes every change).
    A push not answered within `ack_timeout_ms` (or answered with a failure) is sent again with
    a new requestId, up to `max_sends` sends in all; then it is given up. The limits bound the
    subscriptions per connection, per service and in all, and the pushes awaiting answers."""

    window_ms: int = 5
    ack_timeout_ms: int = 5_000
    max_sends: int = 3
    max_subscribers_per_connection: int = 1_024
    max_subscribers_per_service: int = 10_000
    max_subscribers: int = 100_000
    max_pending: int = 65_536
    give_up_log_interval_ms: int = 60_000


@dataclass(slots=True)
class GrpcEffects:
    """What one entry point did: stream requests to write now, and outcomes to record."""

    pushes: list[StreamPush] = field(default_factory=list)
    first_sends: int = 0
    resends: int = 0
    delays_ns: list[int] = field(default_factory=list)  # per first send caused by a change
    acked_costs_ms: list[int] = field(default_factory=list)
    failed: list[GrpcSubscriberKey] = field(default_factory=list)
    superseded: int = 0
    dropped: int = 0
    abandoned: int = 0
    unmatched: int = 0
    refused: list[GrpcRefusalReason] = field(default_factory=list)
    give_ups: list[GiveUpReport] = field(default_factory=list)


ServiceInfoRenderer = Callable[[Service | None, ServiceKey, str, tuple[str, ...], int], bytes]
"""(snapshot or None, service key, clusters text, clusters, now ms) -> serviceInfo JSON bytes."""


@dataclass(slots=True)
class _Pending:
    """One push awaiting its answer: the body after its requestId (shared by every subscriber
    of one render), how often it was sent, when first, and when its current send times out."""

    subscriber: GrpcSubscriberKey
    request_id: int
    body_tail: bytes
    sends: int
    first_sent_ms: int
    due_ms: int


def body_tail(key: ServiceKey, service_info: bytes) -> bytes:
    """A NotifySubscriberRequest body from just after its requestId's value: the service as a
    client names it (namespace, bare name, group; Java's server leaves these three unset, the
    clients read only `serviceInfo`) and the rendered serviceInfo."""
    group, bare = split_grouped_name(key.name)
    names = orjson.dumps({"namespace": key.namespace, "serviceName": bare, "groupName": group})
    return b'",' + names[1:-1] + b',"serviceInfo":' + service_info + b',"module":"naming"}'


def notify_body(request_id: int, tail: bytes) -> bytes:
    """The whole body: the fixed head, the requestId, the tail (see `body_tail`)."""
    return _BODY_HEAD + str(request_id).encode() + tail


def parse_request_id(text: str) -> int | None:
    """The push id an answer echoes, or None when it cannot be one of ours."""
    if 0 < len(text) <= MAX_REQUEST_ID_DIGITS and text.isascii() and text.isdigit():
        return int(text)
    return None


class GrpcPushCore:
    """gRPC subscriptions by service (within their limits), coalescing per service, pushes
    awaiting answers, give-up reports.

    Runs on the push actor's thread only. `render` builds the serviceInfo JSON of a service as
    selected for one subscription (all instances, with the protect threshold);
    `first_request_id` is the first requestId handed out.
    """

    def __init__(self, config: GrpcPushConfig, render: ServiceInfoRenderer, first_request_id: int = 1) -> None:
        self.config = config
        self._render = render
        self._next_id = first_request_id
        self._subscriptions: dict[ServiceKey, dict[GrpcSubscriberKey, GrpcSubscription]] = {}
        self._by_connection: dict[str, set[GrpcSubscriberKey]] = {}
        self._subscriber_count = 0
        self._cooling_until: dict[ServiceKey, int] = {}
        self._dirty: dict[ServiceKey, tuple[Service | None, int]] = {}
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._pending_order: deque[tuple[str, int]] = deque()
        self._latest: dict[GrpcSubscriberKey, int] = {}  # the request id of each pending push
        self._timers: list[tuple[int, int, object]] = []
        self._give_ups = GiveUpLog(config.give_up_log_interval_ms)
        self._stats = GrpcPushStats()

    # -- inputs ----------------------------------------------------------------------------

    def subscribe(self, subscription: GrpcSubscription, snapshot: Service | None, now_ms: int) -> GrpcEffects:
        """A client subscribed (again): add it when no limit is reached (else count the
        refusal), then push it `snapshot`, the service's current state."""
        effects = GrpcEffects()
        key = GrpcSubscriberKey(subscription.connection_id, subscription.service, subscription.clusters_text)
        by_key = self._subscriptions.get(key.service)
        if by_key is None or key not in by_key:
            reason = self._over_limit(key, by_key)
            if reason is not None:
                effects.refused.append(reason)
                return effects
            if by_key is None:
                by_key = self._subscriptions[key.service] = {}
            self._by_connection.setdefault(key.connection_id, set()).add(key)
            self._subscriber_count += 1
        by_key[key] = subscription
        info = self._render(snapshot, key.service, key.clusters_text, subscription.clusters, now_ms)
        self._send(key, body_tail(key.service, info), now_ms, effects)
        return effects

    def unsubscribe(self, connection_id: str, service: ServiceKey, clusters_text: str) -> GrpcEffects:
        """A client unsubscribed: forget the subscription; its pending push is abandoned."""
        effects = GrpcEffects()
        self._forget(GrpcSubscriberKey(connection_id, service, clusters_text), effects)
        return effects

    def connection_closed(self, connection_id: str) -> GrpcEffects:
        """A connection ended: forget its subscriptions; their pending pushes are abandoned (not
        failures: nobody is left to answer)."""
        effects = GrpcEffects()
        for key in list(self._by_connection.get(connection_id, ())):
            self._forget(key, effects)
        return effects

    def service_changed(
        self,
        key: ServiceKey,
        snapshot: Service | None,
        now_ms: int,
        applied_ns: int,
        effects: GrpcEffects | None = None,
    ) -> GrpcEffects:
        """A service changed: push now, or, within the window since the last push, once the
        window ends (with the latest snapshot by then). Adds to `effects` when given."""
        effects = GrpcEffects() if effects is None else effects
        if not self._subscriptions.get(key):
            return effects
        if now_ms < self._cooling_until.get(key, now_ms):
            earlier = self._dirty.get(key)
            self._dirty[key] = (snapshot, applied_ns if earlier is None else earlier[1])
            return effects
        self._push(key, snapshot, now_ms, applied_ns, effects)
        return effects

    def watches(self, key: ServiceKey) -> bool:
        """Whether any connection subscribes to `key` (else `service_changed` changes nothing)."""
        return bool(self._subscriptions.get(key))

    def answered(self, connection_id: str, request_id: str, ok: bool, now_ms: int) -> GrpcEffects:
        """A client answered a push: acked when `ok`, else sent again (or given up after its
        last send), as on a time-out. An answer for no pending push is counted unmatched."""
        effects = GrpcEffects()
        number = parse_request_id(request_id)
        pending = self._pending.get((connection_id, number)) if number is not None else None
        if pending is None:
            effects.unmatched += 1
            return effects
        if ok:
            self._end(pending)
            effects.acked_costs_ms.append(now_ms - pending.first_sent_ms)
        else:
            self._retry(pending, FAILED_ANSWER, now_ms, effects)
        return effects

    def due(self, now_ms: int) -> GrpcEffects:
        """Everything whose time has come: coalesced pushes, resends and give-ups, the give-up
        summary."""
        effects = GrpcEffects()
        while self._timers and self._timers[0][0] <= now_ms:
            deadline, kind, key = heapq.heappop(self._timers)
            if kind == _COOLING:
                self._cooling_done(key, deadline, now_ms, effects)  # type: ignore[arg-type]
            elif kind == _ANSWER:
                self._answer_due(key, deadline, now_ms, effects)  # type: ignore[arg-type]
            else:
                self._summary_due(deadline, now_ms, effects)
        return effects

    def record(self, effects: GrpcEffects) -> GrpcPushStats:
        """Fold one GrpcEffects into the counters; returns the stats as of now."""
        s = self._stats
        self._stats = GrpcPushStats(
            subscribers=self._subscriber_count,
            total=s.total + effects.first_sends,
            resent=s.resent + effects.resends,
            acked=s.acked + len(effects.acked_costs_ms),
            failed=s.failed + len(effects.failed),
            superseded=s.superseded + effects.superseded,
            dropped=s.dropped + effects.dropped,
            abandoned=s.abandoned + effects.abandoned,
            awaiting_ack=len(self._pending),
            pending_services=len(self._dirty),
            cost_total_ms=s.cost_total_ms + sum(effects.acked_costs_ms),
            cost_max_ms=max([s.cost_max_ms, *effects.acked_costs_ms]),
            unmatched=s.unmatched + effects.unmatched,
            refused=s.refused + len(effects.refused),
        )
        return self._stats

    # -- views -----------------------------------------------------------------------------

    def next_deadline(self) -> int | None:
        """When `due` next has something to do (it may find the entry stale), or None."""
        return self._timers[0][0] if self._timers else None

    def subscriptions(self, namespace: str | None = None) -> list[GrpcSubscription]:
        """Every subscription, or those of one namespace."""
        return [
            subscription
            for service, by_key in self._subscriptions.items()
            if namespace is None or service.namespace == namespace
            for subscription in by_key.values()
        ]

    @property
    def pending_count(self) -> int:
        """Pushes awaiting their answer."""
        return len(self._pending)

    # -- internals: subscriptions ----------------------------------------------------------

    def _at(self, deadline: int, kind: int, key: object) -> None:
        heapq.heappush(self._timers, (deadline, kind, key))

    def _over_limit(
        self, key: GrpcSubscriberKey, by_key: dict[GrpcSubscriberKey, GrpcSubscription] | None
    ) -> GrpcRefusalReason | None:
        config = self.config
        if self._subscriber_count >= config.max_subscribers:
            return "total"
        if len(self._by_connection.get(key.connection_id, ())) >= config.max_subscribers_per_connection:
            return "connection"
        if by_key is not None and len(by_key) >= config.max_subscribers_per_service:
            return "service"
        return None

    def _forget(self, key: GrpcSubscriberKey, effects: GrpcEffects) -> None:
        by_key = self._subscriptions.get(key.service)
        if by_key is None or by_key.pop(key, None) is None:
            return
        if not by_key:
            del self._subscriptions[key.service]
            self._cooling_until.pop(key.service, None)
            self._dirty.pop(key.service, None)
        of_connection = self._by_connection[key.connection_id]
        of_connection.discard(key)
        if not of_connection:
            del self._by_connection[key.connection_id]
        self._subscriber_count -= 1
        request_id = self._latest.get(key)
        if request_id is not None:
            self._end(self._pending[(key.connection_id, request_id)])
            effects.abandoned += 1

    # -- internals: pushes -----------------------------------------------------------------

    def _push(
        self, key: ServiceKey, snapshot: Service | None, now_ms: int, applied_ns: int, effects: GrpcEffects
    ) -> None:
        """One render per `clusters` text of the service's subscribers; one push to each."""
        held = self._dirty.pop(key, None)  # this push carries a newer state than any held back
        if held is not None:
            applied_ns = min(applied_ns, held[1])
        if self.config.window_ms > 0:
            until = now_ms + self.config.window_ms
            self._cooling_until[key] = until
            self._at(until, _COOLING, key)
        tails: dict[str, bytes] = {}
        for subscriber, subscription in list(self._subscriptions.get(key, {}).items()):
            tail = tails.get(subscriber.clusters_text)
            if tail is None:
                info = self._render(snapshot, key, subscriber.clusters_text, subscription.clusters, now_ms)
                tail = tails[subscriber.clusters_text] = body_tail(key, info)
            self._send(subscriber, tail, now_ms, effects)
            effects.delays_ns.append(applied_ns)

    def _send(self, subscriber: GrpcSubscriberKey, tail: bytes, now_ms: int, effects: GrpcEffects) -> None:
        """A first send of a new push to `subscriber`: its pending older push is superseded; at
        the bound, the oldest pending push is dropped first."""
        previous = self._latest.get(subscriber)
        if previous is not None:
            self._end(self._pending[(subscriber.connection_id, previous)])
            effects.superseded += 1
        elif len(self._pending) >= self.config.max_pending:
            self._drop_oldest(now_ms, effects)
        request_id = self._new_id()
        pending = _Pending(subscriber, request_id, tail, 1, now_ms, now_ms + self.config.ack_timeout_ms)
        self._await(pending)
        effects.pushes.append(StreamPush(subscriber.connection_id, NOTIFY_SUBSCRIBER, notify_body(request_id, tail)))
        effects.first_sends += 1

    def _new_id(self) -> int:
        request_id = self._next_id
        self._next_id += 1
        return request_id

    def _await(self, pending: _Pending) -> None:
        key = (pending.subscriber.connection_id, pending.request_id)
        self._pending[key] = pending
        order = self._pending_order
        order.append(key)
        if len(order) > 2 * len(self._pending) + 64:  # ended pushes leave stale keys behind
            self._pending_order = deque(k for k in order if k in self._pending)
        self._latest[pending.subscriber] = pending.request_id
        self._at(pending.due_ms, _ANSWER, key)

    def _end(self, pending: _Pending) -> None:
        """`pending` no longer awaits an answer (its ending is counted by the caller)."""
        del self._pending[(pending.subscriber.connection_id, pending.request_id)]
        if self._latest.get(pending.subscriber) == pending.request_id:
            del self._latest[pending.subscriber]

    def _drop_oldest(self, now_ms: int, effects: GrpcEffects) -> None:
        order = self._pending_order
        while order:
            oldest = self._pending.get(order.popleft())
            if oldest is not None:
                self._end(oldest)
                effects.dropped += 1
                self._gave_up(oldest.subscriber, QUEUE_FULL, oldest.sends, now_ms, effects)
                return

    def _retry(self, pending: _Pending, reason: str, now_ms: int, effects: GrpcEffects) -> None:
        """Send `pending` again with a new requestId, or give it up after its last send."""
        self._end(pending)
        if pending.sends >= self.config.max_sends:
            effects.failed.append(pending.subscriber)
            self._gave_up(pending.subscriber, reason, pending.sends, now_ms, effects)
            return
        request_id = self._new_id()
        pending.request_id = request_id
        pending.sends += 1
        pending.due_ms = now_ms + self.config.ack_timeout_ms
        self._await(pending)
        subscriber = pending.subscriber
        body = notify_body(request_id, pending.body_tail)
        effects.pushes.append(StreamPush(subscriber.connection_id, NOTIFY_SUBSCRIBER, body))
        effects.resends += 1

    def _answer_due(self, key: tuple[str, int], deadline: int, now_ms: int, effects: GrpcEffects) -> None:
        pending = self._pending.get(key)
        if pending is None or pending.due_ms != deadline:
            return
        self._retry(pending, NO_ANSWER, now_ms, effects)

    def _cooling_done(self, key: ServiceKey, deadline: int, now_ms: int, effects: GrpcEffects) -> None:
        if self._cooling_until.get(key) != deadline:
            return
        del self._cooling_until[key]
        dirty = self._dirty.pop(key, None)
        if dirty is not None and self._subscriptions.get(key):
            self._push(key, dirty[0], now_ms, dirty[1], effects)

    # -- internals: give-up reports --------------------------------------------------------

    def _gave_up(
        self, subscriber: GrpcSubscriberKey, reason: str, sends: int, now_ms: int, effects: GrpcEffects
    ) -> None:
        self._report(*self._give_ups.gave_up(subscriber, reason, sends, now_ms), effects)

    def _summary_due(self, deadline: int, now_ms: int, effects: GrpcEffects) -> None:
        self._report(*self._give_ups.summary_due(deadline, now_ms), effects)

    def _report(self, report: GiveUpReport | None, next_summary_ms: int | None, effects: GrpcEffects) -> None:
        if report is not None:
            effects.give_ups.append(report)
        if next_summary_ms is not None:
            self._at(next_summary_ms, _SUMMARY, None)
