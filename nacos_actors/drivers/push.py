"""PushDriver: push of service changes to subscribers, over UDP (1.x clients) and over gRPC
streams (2.x clients), with acks and bounded resends."""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import monotonic_ns
from typing import ClassVar, NamedTuple, assert_never

from nacos_actors.core.grpc_push import GrpcEffects, GrpcPushCore
from nacos_actors.core.push import Effects, GiveUpReport, GrpcSubscriberKey, PushBoard, PushCore
from nacos_actors.drivers.outbox import Outbox
from nacos_actors.logs import event
from nacos_actors.messages import (
    PUSH,
    ActorName,
    DatagramsReceived,
    GrpcConnectionClosed,
    GrpcPushAnswered,
    GrpcSubscribe,
    GrpcUnsubscribe,
    PushMessage,
    QuerySubscribers,
    ServicesChanged,
    Subscribe,
    Tick,
)
from nacos_actors.metrics import NodeMetrics
from nacos_actors.model import Service, ServiceKey
from nacos_actors.settings import join_host_port

log = logging.getLogger(__name__)


class PushCores(NamedTuple):
    """The push actor's two cores: UDP subscribers (1.x clients) and gRPC ones (2.x clients)."""

    udp: PushCore
    grpc: GrpcPushCore


class PushDriver:
    """Feeds the PushCore subscribers (list queries with udpPort), the datagrams that reach the
    push socket (and says when they are handled, which frees the socket's bound); feeds the
    GrpcPushCore the gRPC subscriptions (with the service's current snapshot, read from
    `lookup`), unsubscriptions, closed connections and answers; feeds both the registry's
    changes (it watches the registry) and Ticks. Hands what the cores answer to the Outbox
    (datagrams to the push socket, stream requests to the gRPC connections, both on the event
    loop), records the outcomes, logs the give-up reports (one at once, then a summary per
    interval, per transport), and publishes the counters and where UDP subscriptions are
    refused on `board` after every message. Runs on the push actor's thread."""

    NAME: ClassVar[ActorName] = PUSH

    def __init__(
        self,
        cores: PushCores,
        board: PushBoard,
        outbox: Outbox,
        metrics: NodeMetrics,
        lookup: Callable[[ServiceKey], Service | None],
    ) -> None:
        self.core = cores.udp
        self.grpc = cores.grpc
        self._board = board
        self._outbox = outbox
        self._push = metrics.push
        self._lookup = lookup

    def start(self, now_ms: int) -> None:
        self._outbox.wake_at(self.NAME, self._next_deadline())

    def stop(self) -> None:
        pass

    def handle(self, message: object, now_ms: int) -> object:
        received: PushMessage = message  # type: ignore[assignment]  # what may arrive; the match covers it
        match received:
            case ServicesChanged(changes, applied_ns):
                effects, grpc = Effects(), GrpcEffects()
                for change in changes:
                    self.core.service_changed(change.key, change.snapshot, now_ms, applied_ns, effects)
                watched = [change for change in changes if self.grpc.watches(change.key)]
                for change in watched:
                    self.grpc.service_changed(change.key, change.snapshot, now_ms, applied_ns, grpc)
                # Most changes have no gRPC subscriber: nothing of the gRPC side moved to record.
                self._carry_out(effects, grpc if watched else None)
            case Subscribe(subscription):
                self._carry_out(self.core.subscribe(subscription, now_ms))
            case DatagramsReceived(datagrams, handled):
                effects = Effects()
                for datagram in datagrams:
                    self.core.receive(datagram.payload, datagram.address, datagram.port, now_ms, effects)
                handled.resolve(len(datagrams))
                self._carry_out(effects)
            case Tick():
                self._carry_out(self.core.due(now_ms), self.grpc.due(now_ms))
            case QuerySubscribers(namespace, reply):
                reply.resolve((*self.core.subscriptions(namespace), *self.grpc.subscriptions(namespace)))
            case GrpcSubscribe(subscription):
                snapshot = self._lookup(subscription.service)
                self._carry_out(grpc=self.grpc.subscribe(subscription, snapshot, now_ms))
            case GrpcUnsubscribe(connection_id, service, clusters_text):
                self._carry_out(grpc=self.grpc.unsubscribe(connection_id, service, clusters_text))
            case GrpcConnectionClosed(connection_id):
                self._carry_out(grpc=self.grpc.connection_closed(connection_id))
            case GrpcPushAnswered(connection_id, request_id, ok):
                self._carry_out(grpc=self.grpc.answered(connection_id, request_id, ok, now_ms))
            case _:
                assert_never(received)
        return None

    def _next_deadline(self) -> int | None:
        deadlines = [d for d in (self.core.next_deadline(), self.grpc.next_deadline()) if d is not None]
        return min(deadlines, default=None)

    def _carry_out(self, effects: Effects | None = None, grpc: GrpcEffects | None = None) -> None:
        board = self._board
        if effects is not None:
            self._carry_out_udp(effects)
            board.udp = self.core.record(effects)
        if grpc is not None:
            self._carry_out_grpc(grpc)
            board.grpc = self.grpc.record(grpc)
        board.stats = board.grpc.combined_with(board.udp)
        self._outbox.wake_at(self.NAME, self._next_deadline())

    def _carry_out_udp(self, effects: Effects) -> None:
        push = self._push
        if effects.sends:
            self._outbox.send_datagrams(effects.sends)
        if effects.delays_ns:
            sent_ns = monotonic_ns()
            for applied_ns in effects.delays_ns:
                push.delay_seconds.observe((sent_ns - applied_ns) / 1e9)
        push.sends_first.inc(effects.first_sends)
        push.sends_retry.inc(effects.resends)
        for cost in effects.acked_costs_ms:
            push.ack_seconds.observe(cost / 1000)
        push.acked.inc(len(effects.acked_costs_ms))
        push.failed.inc(len(effects.failed) + len(effects.oversized))
        push.superseded.inc(effects.superseded)
        push.dropped.inc(effects.dropped)
        push.datagrams_ack.inc(len(effects.acked_costs_ms))
        push.datagrams_unmatched.inc(effects.unmatched)
        push.datagrams_malformed.inc(effects.malformed)
        for reason in effects.refused:
            push.subscriptions_refused[reason].inc()
        for report in effects.give_ups:
            log_give_up(report)
        if effects.refusing_changed:
            self._board.refusing = self.core.refusing()

    def _carry_out_grpc(self, effects: GrpcEffects) -> None:
        grpc = self._push.grpc
        if effects.pushes:
            self._outbox.send_to_streams(effects.pushes)
        if effects.delays_ns:
            sent_ns = monotonic_ns()
            for applied_ns in effects.delays_ns:
                grpc.delay_seconds.observe((sent_ns - applied_ns) / 1e9)
        for cost in effects.acked_costs_ms:
            grpc.ack_seconds.observe(cost / 1000)
        grpc.sent.inc(effects.first_sends)
        grpc.resent.inc(effects.resends)
        grpc.acked.inc(len(effects.acked_costs_ms))
        grpc.failed.inc(len(effects.failed))
        grpc.superseded.inc(effects.superseded)
        grpc.dropped.inc(effects.dropped)
        grpc.abandoned.inc(effects.abandoned)
        grpc.unmatched.inc(effects.unmatched)
        for reason in effects.refused:
            grpc.subscriptions_refused[reason].inc()
        for report in effects.give_ups:
            log_give_up(report)


def log_give_up(report: GiveUpReport) -> None:
    """One INFO line: a push given up (the first in a quiet interval), or the summary of those
    given up since (how many, by reason, and the first of them)."""
    key = report.example
    where: dict[str, object]
    if isinstance(key, GrpcSubscriberKey):
        target, where = f"gRPC connection {key.connection_id}", {"connection": key.connection_id}
    else:
        target, where = join_host_port(key.address, key.port), {"address": key.address, "port": key.port}
    fields = event(
        "push_give_up",
        namespace=key.service.namespace,
        service=key.service.name,
        **where,
        sends=report.sends,
        count=report.count,
        reasons=dict(report.reasons),
    )
    if report.since_ms is None:
        ((reason, _),) = report.reasons
        log.info(
            "push of %s (namespace %s) to %s given up after %d sends: %s",
            key.service.name,
            key.service.namespace,
            target,
            report.sends,
            reason,
            extra=fields,
        )
        return
    reasons = ", ".join(f"{reason}: {count}" for reason, count in report.reasons)
    log.info(
        "%d more pushes given up since the last report (%s); the first: %s (namespace %s) to %s after %d sends",
        report.count,
        reasons,
        key.service.name,
        key.service.namespace,
        target,
        report.sends,
        extra=fields,
    )
