"""PushActor: UDP push of service changes to subscribers, with acks and bounded resends."""

from __future__ import annotations

import logging
import socket
import threading
from time import monotonic_ns, perf_counter
from typing import Any, Callable, assert_never

import pykka

from nacos_actors.actors.base import NodeActor
from nacos_actors.clock import wall_clock_ms
from nacos_actors.core.push import Effects, PushBoard, PushCore
from nacos_actors.logs import event
from nacos_actors.messages import (
    DatagramReceived,
    Ping,
    PushMessage,
    QuerySubscribers,
    ServicesChanged,
    Subscribe,
    Tick,
)
from nacos_actors.metrics import NodeMetrics
from nacos_actors.settings import join_host_port

log = logging.getLogger(__name__)
RECEIVE_POLL_S = 0.2  # how often the receiver thread looks whether the actor is stopping


def open_push_socket(host: str) -> socket.socket:
    """An unconnected UDP socket on an ephemeral port of `host` (IPv4, or IPv6 for an IPv6 host)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((host, 0))
    except OSError:
        sock.close()
        raise
    sock.settimeout(RECEIVE_POLL_S)
    return sock


class PushActor(NodeActor):
    """Owns the push socket and the PushCore. Runs on its own pykka thread.

    Learns subscribers from Subscribe messages (list queries with udpPort), changes from the
    registry (it watches it), acks from a receiver thread that reads the socket and tells each
    datagram here, and time from an Alarm. Sends from this thread; a send error is counted and
    the packet left to its resend schedule, so one bad subscriber never holds up another.
    Publishes its counters on `board` after every message.
    """

    NAME = "push"

    def __init__(
        self,
        core: PushCore,
        sock: socket.socket,
        board: PushBoard,
        metrics: NodeMetrics,
        on_fatal: Callable[[BaseException], None],
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        super().__init__(metrics, on_fatal, clock)
        self.core = core
        self._socket = sock
        self._board = board
        self._push = metrics.push
        self._receiver = threading.Thread(target=self._receive_loop, name="push-receiver", daemon=True)
        self._stopping = threading.Event()
        self._seconds = {
            kind: metrics.message_seconds(self.NAME, kind)
            for kind in (ServicesChanged, Subscribe, DatagramReceived, Tick, QuerySubscribers)
        }

    @property
    def address(self) -> tuple[str, int]:
        return self._socket.getsockname()[:2]

    def on_start(self) -> None:
        super().on_start()
        self._receiver.start()
        log.info("push socket on udp %s", join_host_port(*self.address))

    def _release(self) -> None:
        super()._release()
        self._stopping.set()
        if self._receiver.is_alive():
            self._receiver.join()
        self._socket.close()

    def on_receive(self, message: Any) -> Any:
        received: PushMessage = message
        started = perf_counter()
        match received:
            case ServicesChanged(changes, applied_ns):
                now = self._clock()
                effects = Effects()
                for change in changes:
                    self.core.service_changed(change.key, change.snapshot, now, applied_ns, effects)
                self._carry_out(effects)
            case Subscribe(subscription):
                self._carry_out(self.core.subscribe(subscription, self._clock()))
            case DatagramReceived(payload, address, port):
                self._carry_out(self.core.receive(payload, address, port, self._clock()))
            case Tick():
                self._carry_out(self.core.due(self._clock()))
            case QuerySubscribers(namespace, reply):
                reply.resolve((tuple(self.core.subscriptions(namespace)),))
            case Ping():
                return "pong"
            case _:
                assert_never(received)
        self._seconds[type(received)].observe(perf_counter() - started)
        return None

    def _carry_out(self, effects: Effects) -> None:
        push = self._push
        for datagram in effects.sends:
            try:
                self._socket.sendto(datagram.payload, (datagram.address, datagram.port))
            except OSError as error:
                push.send_errors.inc()
                log.debug("push to %s failed: %s", join_host_port(datagram.address, datagram.port), error)
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
            _log_give_up(key, self.core.config.max_sends, "no ack")
        for key in effects.oversized:
            _log_give_up(key, 0, "the packet is too large for UDP")
        self._board.stats = self.core.record(effects)
        self._alarm.set(self.core.next_deadline())

    def _receive_loop(self) -> None:
        """The receiver thread: every datagram on the push socket becomes a DatagramReceived."""
        sock = self._socket
        while not self._stopping.is_set():
            try:
                payload, source = sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            try:
                self.actor_ref.tell(DatagramReceived(payload, source[0], source[1]))
            except pykka.ActorDeadError:
                return


def _log_give_up(key: Any, sends: int, reason: str) -> None:
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
