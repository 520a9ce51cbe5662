"""PushDriver: UDP push of service changes to subscribers, with acks and bounded resends."""

from __future__ import annotations

import logging
from time import monotonic_ns
from typing import ClassVar, assert_never

from nacos_actors.core.push import Effects, GiveUpReport, PushBoard, PushCore
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
from nacos_actors.settings import join_host_port

log = logging.getLogger(__name__)


class PushDriver:
    """Feeds the PushCore subscribers (list queries with udpPort), the registry's changes (it
    watches the registry), the datagrams that reach the push socket (and says when they are
    handled, which frees the socket's bound) and Ticks; hands the datagrams the core answers to
    the Outbox (the socket lives on the event loop), records the outcomes, logs the give-up
    reports the core makes (one at once, then a summary per interval), and publishes the
    counters and where subscriptions are refused on `board` after every message. Runs on the
    push actor's thread."""

    NAME: ClassVar[ActorName] = PUSH

    def __init__(self, core: PushCore, board: PushBoard, outbox: Outbox, metrics: NodeMetrics) -> None:
        self.core = core
        self._board = board
        self._outbox = outbox
        self._push = metrics.push

    def start(self, now_ms: int) -> None:
        self._outbox.wake_at(self.NAME, self.core.next_deadline())

    def stop(self) -> None:
        pass

    def handle(self, message: object, now_ms: int) -> object:
        received: PushMessage = message  # type: ignore[assignment]  # what may arrive; the match covers it
        match received:
            case ServicesChanged(changes, applied_ns):
                effects = Effects()
                for change in changes:
                    self.core.service_changed(change.key, change.snapshot, now_ms, applied_ns, effects)
                self._carry_out(effects)
            case Subscribe(subscription):
                self._carry_out(self.core.subscribe(subscription, now_ms))
            case DatagramsReceived(datagrams, handled):
                effects = Effects()
                for datagram in datagrams:
                    self.core.receive(datagram.payload, datagram.address, datagram.port, now_ms, effects)
                handled.resolve(len(datagrams))
                self._carry_out(effects)
            case Tick():
                self._carry_out(self.core.due(now_ms))
            case QuerySubscribers(namespace, reply):
                reply.resolve(tuple(self.core.subscriptions(namespace)))
            case GrpcSubscribe() | GrpcUnsubscribe() | GrpcConnectionClosed() | GrpcPushAnswered():
                pass  # gRPC push: not built yet
            case _:
                assert_never(received)
        return None

    def _carry_out(self, effects: Effects) -> None:
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
        self._board.stats = self.core.record(effects)
        self._outbox.wake_at(self.NAME, self.core.next_deadline())


def log_give_up(report: GiveUpReport) -> None:
    """One INFO line: a push given up (the first in a quiet interval), or the summary of those
    given up since (how many, by reason, and the first of them)."""
    key = report.example
    target = join_host_port(key.address, key.port)
    fields = event(
        "push_give_up",
        namespace=key.service.namespace,
        service=key.service.name,
        address=key.address,
        port=key.port,
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
