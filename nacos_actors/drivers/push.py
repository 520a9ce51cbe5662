"""PushDriver: UDP push of service changes to subscribers, with acks and bounded resends."""

from __future__ import annotations

import logging
from time import monotonic_ns
from typing import ClassVar, assert_never

from nacos_actors.core.push import Effects, PushBoard, PushCore, SubscriberKey
from nacos_actors.drivers.outbox import Outbox
from nacos_actors.logs import event
from nacos_actors.messages import (
    PUSH,
    ActorName,
    DatagramReceived,
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
    watches the registry), the datagrams that reach the push socket and Ticks; hands the
    datagrams the core answers to the Outbox (the socket lives on the event loop), records the
    outcomes, logs each give-up, and publishes the counters on `board` after every message.
    Runs on the push actor's thread."""

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
            case DatagramReceived(payload, address, port):
                self._carry_out(self.core.receive(payload, address, port, now_ms))
            case Tick():
                self._carry_out(self.core.due(now_ms))
            case QuerySubscribers(namespace, reply):
                reply.resolve(tuple(self.core.subscriptions(namespace)))
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
        push.datagrams_ack.inc(len(effects.acked_costs_ms))
        push.datagrams_unmatched.inc(effects.unmatched)
        push.datagrams_malformed.inc(effects.malformed)
        for key in effects.failed:
            log_give_up(key, self.core.config.max_sends, "no ack")
        for key in effects.oversized:
            log_give_up(key, 0, "the packet is too large for UDP")
        self._board.stats = self.core.record(effects)
        self._outbox.wake_at(self.NAME, self.core.next_deadline())


def log_give_up(key: SubscriberKey, sends: int, reason: str) -> None:
    """One INFO line: a push to a subscriber was given up after `sends` sends."""
    target = join_host_port(key.address, key.port)
    log.info(
        "push of %s (namespace %s) to %s given up after %d sends: %s",
        key.service.name,
        key.service.namespace,
        target,
        sends,
        reason,
        extra=event(
            "push_give_up",
            namespace=key.service.namespace,
            service=key.service.name,
            address=key.address,
            port=key.port,
            sends=sends,
            reason=reason,
        ),
    )
