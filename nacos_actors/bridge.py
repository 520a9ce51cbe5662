"""Every crossing between the event loop and the actors, both ways, and the one ticker.

A node runs one asyncio loop (HTTP, the peer client, the push socket, the ticker) on the main
thread and one pykka thread per driver. Nothing else in the package crosses threads:

- **loop -> actor**: `LoopBridge` tells a driver's actor a message, by name. A request that
  wants an answer tells a message carrying a `LoopReply` (one answer) or, for writes, a
  `BatchReply` (the writes of one loop turn travel as one WriteBatch, answered by one callback);
  the driver resolves it from its thread with `call_soon_threadsafe`, and the request awaits a
  plain asyncio future. The loop never awaits a pykka future and never calls `.get()`: pykka's
  `Future.__await__` blocks the whole loop until the actor answers.
- **actor -> loop**: `ActorOutbox` carries out what drivers ask for (the Outbox port): tells to
  other actors, PeerCalls (made on the loop by the PeerLink, answered back as PeerAnswered),
  datagrams (sent by the loop's `PushEndpoint`, whose received datagrams go to the push driver,
  a bounded number at a time)
  health probes (run by the loop's prober, whose results go back to the probe driver) and
  wake-ups, which the loop's `Ticker` turns into Ticks with `call_at`.
- `DriverActor` is the only actor class: a pykka thread around one driver.
- `start_watchdog_thread` starts the shutdown watchdog, the only other thread a node starts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any, Generic, Protocol, TypeVar

import pykka

from nacos_actors.clock import wall_clock_ms
from nacos_actors.core.probing import ProbeTarget, unrun
from nacos_actors.core.push import Datagram, ReceiveGate
from nacos_actors.core.registry import Rejected
from nacos_actors.core.streams import StreamPush
from nacos_actors.drivers.outbox import Driver
from nacos_actors.messages import (
    PROBE,
    PUSH,
    ActorName,
    DatagramsReceived,
    Outcome,
    PeerAnswered,
    PeerCall,
    Ping,
    ProbesFinished,
    Refused,
    Tick,
)
from nacos_actors.metrics import NodeMetrics
from nacos_actors.peers import PeerError, PeerLink

log = logging.getLogger(__name__)

MAX_BATCH = 256
T = TypeVar("T")


class ActorUnavailable(Exception):
    """The actor did not answer in time, or is no longer running."""


# -- the actors ---------------------------------------------------------------------------


class ActorDirectory:
    """The running actors of a node by name. Filled by the lifecycle before anything is told;
    read from any thread."""

    def __init__(self) -> None:
        self._refs: dict[str, pykka.ActorRef[Any]] = {}
        self._wakers: dict[str, Callable[[], None]] = {}

    def add(self, name: ActorName, ref: pykka.ActorRef[Any], wake: Callable[[], None] | None = None) -> None:
        """Register a started actor; `wake` (any thread) is called after each message told to
        it: an actor that blocks on sockets between messages (the Raft actor's poller) returns
        to its mailbox at once."""
        self._refs[name] = ref
        if wake is not None:
            self._wakers[name] = wake

    def get(self, name: ActorName) -> pykka.ActorRef[Any] | None:
        return self._refs.get(name)

    def tell(self, name: ActorName, message: object) -> bool:
        """Tell the actor `name` a message; False when it is absent or has stopped. Any thread."""
        ref = self._refs.get(name)
        if ref is None:
            return False
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            return False
        wake = self._wakers.get(name)
        if wake is not None:
            wake()
        return True

    def refs(self) -> list[pykka.ActorRef[Any]]:
        return list(self._refs.values())


class DriverActor(pykka.ThreadingActor):
    """A pykka actor around one driver: each message goes to `driver.handle` with the wall clock
    read once, but a Ping, which the actor answers 'pong' itself (proof that it runs). Exports its mailbox depth and each message type's handling time. A message that
    raises is a bug: logged at ERROR, counted (nacos_exception_total{name="actorFailed"}) and
    reported through `on_fatal`, which stops the node so a supervisor restarts it rather than
    leaving it half alive. Once `halted` is set (the node is stopping and has saved what it
    keeps) every message still queued is dropped unread, so a stop waits for at most the message
    in hand, never for a backlog. Runs on its own pykka thread, a daemon thread: an actor stuck
    in a message cannot keep the process alive."""

    use_daemon_thread = True

    def __init__(
        self,
        driver: Driver,
        metrics: NodeMetrics,
        on_fatal: Callable[[BaseException], None],
        clock: Callable[[], int] = wall_clock_ms,
        halted: threading.Event | None = None,
    ) -> None:
        super().__init__()
        self.driver = driver
        self._metrics = metrics
        self._on_fatal = on_fatal
        self._clock = clock
        self._halted = halted if halted is not None else threading.Event()
        self._seconds: dict[type, Any] = {}

    def on_start(self) -> None:
        self._metrics.mailboxes.watch(self.driver.NAME, self.actor_ref)
        self.driver.start(self._clock())

    def on_receive(self, message: Any) -> Any:
        if self._halted.is_set():
            return None
        if type(message) is Ping:
            if message.reply is not None:
                message.reply.resolve("pong")
            return "pong"
        started = perf_counter()
        answer = self.driver.handle(message, self._clock())
        kind = type(message)
        timer = self._seconds.get(kind)
        if timer is None:
            timer = self._seconds[kind] = self._metrics.message_seconds(self.driver.NAME, kind)
        timer.observe(perf_counter() - started)
        return answer

    def on_stop(self) -> None:
        self._release()

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        self._release()
        self._metrics.exceptions_actor.inc()
        log.error("%s actor failed; stopping the node", self.driver.NAME, exc_info=exception_value)
        self._on_fatal(exception_value)

    def _release(self) -> None:
        self.driver.stop()
        self._metrics.mailboxes.forget(self.driver.NAME)


# -- actor -> loop ------------------------------------------------------------------------


class Ticker:
    """Wakes drivers: one `call_at` timer per driver on the loop, which tells its actor a Tick
    when the deadline (wall-clock ms) it last asked for comes, never before it by the wall
    clock. Loop thread only."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, actors: ActorDirectory, clock: Callable[[], int] = wall_clock_ms
    ) -> None:
        self._loop = loop
        self._actors = actors
        self._clock = clock
        self._timers: dict[ActorName, asyncio.TimerHandle] = {}

    def async_set(self, actor: ActorName, deadline_ms: int | None) -> None:
        """Replace `actor`'s wake-up with one at `deadline_ms` (None: none)."""
        timer = self._timers.pop(actor, None)
        if timer is not None:
            timer.cancel()
        if deadline_ms is None:
            return
        delay_s = max(0.0, (deadline_ms - self._clock()) / 1000)
        self._timers[actor] = self._loop.call_later(delay_s, self._ring, actor, deadline_ms)

    def _ring(self, actor: ActorName, deadline_ms: int) -> None:
        # The loop's timer runs on its monotonic clock and may fire a little before the wall
        # clock reaches the deadline. A Tick that early finds nothing due, and the driver asks
        # for the same deadline again, which its Outbox does not send twice: it would never be
        # woken. So an early timer waits out the rest.
        remaining_ms = deadline_ms - self._clock()
        if remaining_ms > 0:
            self._timers[actor] = self._loop.call_later(remaining_ms / 1000, self._ring, actor, deadline_ms)
            return
        self._timers.pop(actor, None)
        self._actors.tell(actor, Tick())

    def async_stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


class PushEndpoint(asyncio.DatagramProtocol):
    """The push socket, on the loop: sends what the push driver hands over, and tells it the
    datagrams that arrive (acks), those of one loop turn in one DatagramsReceived. Its
    ReceiveGate (nacos_actors.core.push) decides which go on: one larger than any ack is dropped
    unread, and while `max_in_flight` are on their way to the push driver (told, not yet
    handled) more are dropped; both are counted. A send error is counted and the packet left to
    its resend schedule. Loop thread."""

    def __init__(self, actors: ActorDirectory, metrics: NodeMetrics, max_in_flight: int) -> None:
        self._actors = actors
        push = metrics.push
        self._send_errors = push.send_errors
        self._oversized = push.datagrams_oversized
        self._overflow = push.datagrams_overflow
        self.gate = ReceiveGate(max_in_flight)
        self._arrived: list[Datagram] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handled: _Handled | None = None
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
        self._handled = _Handled(self._loop, self.gate.handled)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        verdict = self.gate.admit(len(data))
        if verdict == "oversized":
            self._oversized.inc()
        elif verdict == "overflow":
            self._overflow.inc()
        elif self._loop is not None:
            if not self._arrived:
                self._loop.call_soon(self._async_flush)
            self._arrived.append(Datagram(str(addr[0]), int(addr[1]), data))

    def _async_flush(self) -> None:
        arrived, self._arrived = self._arrived, []
        handled = self._handled
        if arrived and (handled is None or not self._actors.tell(PUSH, DatagramsReceived(tuple(arrived), handled))):
            self.gate.handled(len(arrived))

    def error_received(self, exc: Exception) -> None:
        log.debug("push socket error: %s", exc)

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def async_close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def async_send(self, datagrams: Sequence[Datagram]) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        for datagram in datagrams:
            try:
                transport.sendto(datagram.payload, (datagram.address, datagram.port))
            except OSError as error:
                self._send_errors.inc()
                log.debug("push to %s:%d failed: %s", datagram.address, datagram.port, error)


class _Handled:
    """The Reply of a DatagramsReceived: the push driver resolves it, on its thread, with how
    many datagrams it handled; `release` (the endpoint's gate) learns it on the loop."""

    __slots__ = ("_loop", "_release")

    def __init__(self, loop: asyncio.AbstractEventLoop, release: Callable[[int], None]) -> None:
        self._loop = loop
        self._release = release

    def resolve(self, value: int) -> None:
        try:
            self._loop.call_soon_threadsafe(self._release, value)
        except RuntimeError:  # the loop closed: the node stops
            pass

    def fail(self, error: BaseException) -> None:
        pass


async def async_open_push_endpoint(
    host: str, actors: ActorDirectory, metrics: NodeMetrics, max_in_flight: int
) -> PushEndpoint:
    """A PushEndpoint on an ephemeral UDP port of `host` (IPv4, or IPv6 for an IPv6 host) that
    lets at most `max_in_flight` received datagrams be on their way to the push driver."""
    loop = asyncio.get_running_loop()
    _, endpoint = await loop.create_datagram_endpoint(
        lambda: PushEndpoint(actors, metrics, max_in_flight), local_addr=(host, 0)
    )
    return endpoint


class StreamSink(Protocol):
    """Where server requests for gRPC clients' streams go: the connection layer on the loop."""

    def async_send(self, pushes: Sequence[StreamPush]) -> None:
        """Write each push on its connection's stream; drop those whose connection is gone.
        Event loop thread."""


class ProbeSink(Protocol):
    """Where health probes go: the prober on the loop (nacos_actors.probes.Prober)."""

    def async_start(self, probes: Sequence[ProbeTarget]) -> None:
        """Start each probe; its result goes back to the probe driver. Event loop thread."""


class ActorOutbox:
    """The Outbox of a real node's drivers: carries out their effects from their own threads
    onto the loop (`call_soon_threadsafe`) or straight into another actor's mailbox. A wake-up
    crosses only when a driver's wish changed. Without a loop, or once it is closed, what needs
    it is dropped (a PeerCall is answered as failed at once)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None,
        actors: ActorDirectory,
        ticker: Ticker | None = None,
        peers: PeerLink | None = None,
        push: PushEndpoint | None = None,
        streams: StreamSink | None = None,
        prober: ProbeSink | None = None,
    ) -> None:
        self._loop = loop
        self._streams = streams
        self._prober = prober
        self._actors = actors
        self._ticker = ticker
        self._peers = peers
        self._push = push
        self._wishes: dict[ActorName, int | None] = {}

    def tell(self, actor: ActorName, message: object) -> None:
        self._actors.tell(actor, message)

    def wake_at(self, actor: ActorName, deadline_ms: int | None) -> None:
        # Each driver writes only its own entry, from its own thread.
        if self._wishes.get(actor, -1) == deadline_ms:
            return
        self._wishes[actor] = deadline_ms
        if self._ticker is not None:
            self._soon(self._ticker.async_set, actor, deadline_ms)

    def send_datagrams(self, datagrams: Sequence[Datagram]) -> None:
        if self._push is not None:
            self._soon(self._push.async_send, tuple(datagrams))

    def send_to_streams(self, pushes: Sequence[StreamPush]) -> None:
        if self._streams is not None:
            self._soon(self._streams.async_send, tuple(pushes))

    def start_probes(self, probes: Sequence[ProbeTarget]) -> None:
        if self._prober is None or not self._soon(self._prober.async_start, tuple(probes)):
            self._actors.tell(PROBE, ProbesFinished(tuple(unrun(probe) for probe in probes)))

    def call_peer(self, call: PeerCall) -> None:
        if self._peers is None or not self._soon(self._async_start_call, call):
            self._actors.tell(call.reply_to, PeerAnswered(call, None))

    def _soon(self, callback: Callable[..., None], *args: Any) -> bool:
        if self._loop is None:
            return False
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: the node is stopping
            return False
        return True

    def _async_start_call(self, call: PeerCall) -> None:
        assert self._peers is not None
        self._peers.async_spawn(self._async_call(call))

    async def _async_call(self, call: PeerCall) -> None:
        assert self._peers is not None
        try:
            status, body = await self._peers.async_call(
                call.method, call.peer, call.path, call.body, timeout_s=call.timeout_ms / 1000
            )
            answer = PeerAnswered(call, status, body)
        except PeerError as error:
            log.debug("%s %s to %s failed: %s", call.method, call.path, call.peer, error)
            answer = PeerAnswered(call, None, refused=error.refused)
        self._actors.tell(call.reply_to, answer)


# -- loop -> actor ------------------------------------------------------------------------


class LoopReply(Generic[T]):
    """A Reply that completes one asyncio future. Any thread, once; after `timeout` seconds an
    unanswered future fails with ActorUnavailable."""

    __slots__ = ("_future", "_loop", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[T], timeout: float) -> None:
        self._loop = loop
        self._future = future
        self._timer = loop.call_later(timeout, self._expire, timeout)

    def resolve(self, value: T) -> None:
        self._call(self._complete, value, None)

    def fail(self, error: BaseException) -> None:
        self._call(self._complete, None, error)

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed (the node stopped): nobody waits any more
            pass

    def _complete(self, value: T, error: BaseException | None) -> None:
        self._timer.cancel()
        if self._future.done():  # timed out and gone already
            return
        if error is not None:
            self._future.set_exception(error)
        else:
            self._future.set_result(value)

    def _expire(self, timeout: float) -> None:
        if not self._future.done():
            self._future.set_exception(ActorUnavailable(f"no answer within {timeout} s"))

    def async_cancel(self) -> None:
        """Nobody will answer (the message was never delivered): drop the timer. Loop thread."""
        self._timer.cancel()


class BatchReply:
    """The Reply of a WriteBatch: completes one asyncio future per batched request with its
    Outcome (a Refused becomes Rejected raised in that request). `fail` raises the same error
    in every request. One timer per batch (not one per request: `wait_for` cost microseconds a
    request) fails whatever is still unanswered with ActorUnavailable after `timeout` seconds.
    Any thread, once."""

    __slots__ = ("_futures", "_loop", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, futures: Sequence[asyncio.Future[Any]], timeout: float) -> None:
        self._loop = loop
        self._futures = futures
        self._timer = loop.call_later(timeout, self._expire, timeout)

    def resolve(self, outcomes: Sequence[Outcome]) -> None:
        self._call(outcomes, None)

    def fail(self, error: BaseException) -> None:
        self._call((), error)

    def _call(self, outcomes: Sequence[Outcome], error: BaseException | None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._complete, outcomes, error)
        except RuntimeError:  # the loop closed (the node stopped): nobody waits any more
            pass

    def _complete(self, outcomes: Sequence[Outcome], error: BaseException | None) -> None:
        self._timer.cancel()
        if error is not None:
            for future in self._futures:
                if not future.done():
                    future.set_exception(error)
            return
        for future, outcome in zip(self._futures, outcomes, strict=True):
            if future.done():  # the request timed out and went away already
                continue
            if isinstance(outcome, Refused):
                future.set_exception(Rejected(outcome.status, outcome.message))
            else:
                future.set_result(outcome.value)

    def _expire(self, timeout: float) -> None:
        for future in self._futures:
            if not future.done():
                future.set_exception(ActorUnavailable(f"no answer within {timeout} s"))


class WriteBatcher:
    """Gathers the writes issued during one loop turn and tells them to an actor as one message.

    Loop thread only. `make_message(commands, reply)` builds the actor's batch message.
    """

    def __init__(
        self,
        actors: ActorDirectory,
        actor: ActorName,
        make_message: Callable[[tuple[Any, ...], BatchReply], object],
        timeout: float,
    ) -> None:
        self._actors = actors
        self._actor = actor
        self._make_message = make_message
        self._timeout = timeout
        self._pending: list[tuple[Any, asyncio.Future[Any]]] = []

    async def async_submit(self, command: Any) -> Any:
        """Apply `command` on the actor; return its value, raise its refusal (Rejected) or
        ActorUnavailable."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._pending:
            loop.call_soon(self._async_flush, loop)
        self._pending.append((command, future))
        if len(self._pending) >= MAX_BATCH:
            self._async_flush(loop)
        return await future

    def _async_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        futures = [future for _, future in batch]
        message = self._make_message(tuple(c for c, _ in batch), BatchReply(loop, futures, self._timeout))
        if not self._actors.tell(self._actor, message):
            for future in futures:
                if not future.done():
                    future.set_exception(ActorUnavailable("the actor is not running"))


class LoopBridge:
    """What the event loop uses to reach the actors: `async_tell` (no answer), `async_ask` (one
    answer) and `writes` (registry commands, batched per loop turn). Loop thread only."""

    def __init__(self, actors: ActorDirectory, writes: WriteBatcher) -> None:
        self.actors = actors
        self.writes = writes

    def async_tell(self, actor: ActorName, message: object) -> bool:
        """Tell `actor` a message; False when it is absent or stopped (the caller carries on)."""
        return self.actors.tell(actor, message)

    async def async_ask(self, actor: ActorName, make_message: Callable[[LoopReply[T]], object], timeout: float) -> T:
        """Tell `actor` the message `make_message(reply)` builds and await the value it resolves
        `reply` with. Raises ActorUnavailable when it is not running or does not answer in time."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        reply = LoopReply(loop, future, timeout)
        if not self.actors.tell(actor, make_message(reply)):
            reply.async_cancel()
            raise ActorUnavailable(f"the {actor} actor is not running")
        return await future


def start_watchdog_thread(watch: Callable[[], None]) -> None:
    """Run `watch` on a daemon thread of its own: the shutdown watchdog, the one thread a node
    starts besides the loop and its actors (it must run when both may be stuck)."""
    threading.Thread(target=watch, name="shutdown-watchdog", daemon=True).start()
