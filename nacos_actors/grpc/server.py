"""The gRPC server of the Nacos 2.x protocol, on the node's event loop beside aiohttp.

`GrpcServer` listens on `grpc_port` (grpc.aio), with the two services `/Request/request`
(unary) and `/BiRequestStream/requestBiStream` (bidirectional). They are registered as a generic
handler over raw bytes rather than through the generated servicer, so that a Payload that does
not parse is ours to answer (an ErrorResponse naming the problem) instead of grpcio's INTERNAL,
and no servicer can raise out of a call: every failure becomes an ErrorResponse.

The connection table (nacos_actors.core.connections) is the loop-side state of the streams;
this module is its thin adapter: it feeds it what arrives with the time, carries out what it
answers (writes on streams, evictions, beats) and keeps one `loop.call_at` timer for its next
deadline. The naming requests (nacos_actors.grpc.naming) write through the front like the v1
handlers do. `async_send` is the bridge's StreamSink: the push driver's server requests are
queued per connection (bounded by `grpc_stream_queue`) and written by the stream's own task.

Event loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import grpc
from grpc import aio

from nacos_actors.bridge import ActorUnavailable
from nacos_actors.core.connections import (
    ALREADY_SET_UP,
    ConnectionConfig,
    ConnectionTable,
    Effects,
)
from nacos_actors.core.registry import Rejected
from nacos_actors.core.streams import ConnectionSummary, StreamPush
from nacos_actors.core.values import clip, printable
from nacos_actors.grpc import codec, naming
from nacos_actors.grpc.codec import PayloadError, Received
from nacos_actors.http.front import Front
from nacos_actors.http.params.base import ParamError
from nacos_actors.messages import PUSH, GrpcConnectionClosed, GrpcPushAnswered
from nacos_actors.metrics import GrpcMetrics
from nacos_actors.settings import Settings, join_host_port

log = logging.getLogger(__name__)
REQUEST_METHOD = "/Request/request"
STREAM_METHOD = "/BiRequestStream/requestBiStream"
SERVER_CHECK = "ServerCheckRequest"
CONNECTION_SETUP = "ConnectionSetupRequest"
CLIENT_DETECTION_RESPONSE = "ClientDetectionResponse"
NOTIFY_SUBSCRIBER_RESPONSE = "NotifySubscriberResponse"
# Python's client pings every 60 s; grpcio's server would answer pings more often than every
# 5 minutes with GOAWAY too_many_pings. These accept a ping every 10 s, with or without calls.
MIN_PING_INTERVAL_MS = 10_000
MAX_CLIENT_TEXT = 256
_END = b""


class GrpcBindError(OSError):
    """The gRPC port cannot be bound (another process holds it)."""


def server_options(settings: Settings) -> list[tuple[str, Any]]:
    """The grpc.aio server options: no SO_REUSEPORT (a second node must fail to bind, not share
    the port), the inbound message bound, and keep-alive pings clients send accepted."""
    return [
        ("grpc.so_reuseport", 0),
        ("grpc.max_receive_message_length", settings.grpc_max_receive_bytes),
        ("grpc.max_send_message_length", -1),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_ping_strikes", 0),
    ]


def connection_address(peer: str) -> tuple[str, str, int]:
    """(connection id, remote IP, remote port) of grpcio's peer text (`ipv4:127.0.0.1:55256`,
    `ipv6:[::1]:55256`): the id is `ip_port`, the same for a client channel's calls and stream."""
    _, _, address = peer.partition(":")
    host, _, port_text = address.rpartition(":")
    host = host.strip("[]") or address
    port = int(port_text) if port_text.isdigit() else 0
    return f"{host}_{port}", host, port


@dataclass(slots=True)
class _Stream:
    """A connection's open stream: its generation, and its bounded queue of Payload bytes to
    write (`_END` ends the stream; `abort` then says with which status)."""

    generation: int
    queue: asyncio.Queue[bytes]
    abort: grpc.StatusCode | None = None
    version: str = ""
    version_label: str | None = None


class GrpcServer:
    """The node's gRPC server and connection layer (see the module docstring).

    `attach(front)` before `async_start`; `async_stop(grace_s)` stops listening, gives calls in
    flight `grace_s`, then cancels them. Loop thread only."""

    def __init__(self, settings: Settings, metrics: GrpcMetrics, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.metrics = metrics
        self.loop = loop
        self.table = ConnectionTable(
            ConnectionConfig(
                max_connections=settings.grpc_max_connections,
                max_instances=settings.grpc_max_instances_per_connection,
                max_subscriptions=settings.grpc_max_subscriptions_per_connection,
                detect_idle_ms=settings.grpc_detect_idle_ms,
                detect_timeout_ms=settings.grpc_detect_timeout_ms,
            )
        )
        self.front: Front | None = None
        self.port: int | None = None
        self._server: aio.Server | None = None
        self._streams: dict[str, _Stream] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: int | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handlers: dict[str, Callable[[naming.Call], Awaitable[bytes]]] = {}
        self._stopping = False

    # -- life -------------------------------------------------------------------------------

    def attach(self, front: Front) -> None:
        """Serve `front`'s registry; its `connections` become this table's summaries (and
        Nacos's `longConnection` gauge its size)."""
        self.front = front
        front.connections = self.summaries
        front.metrics.monitor.long_connections = self.table.__len__
        self._handlers = naming.handlers(front, self.table, self)

    async def async_start(self, host: str, port: int) -> int:
        """Listen on host:port; answers the port bound. GrpcBindError when it is taken."""
        server = aio.server(options=server_options(self.settings))
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "Request", {"request": grpc.unary_unary_rpc_method_handler(self._unary)}
                ),
                grpc.method_handlers_generic_handler(
                    "BiRequestStream", {"requestBiStream": grpc.stream_stream_rpc_method_handler(self._stream)}
                ),
            )
        )
        address = join_host_port(host, port)
        try:
            bound = int(server.add_insecure_port(address))
        except RuntimeError as error:
            raise GrpcBindError(f"cannot listen for gRPC on {address}: {error}") from None
        if not bound:
            raise GrpcBindError(f"cannot listen for gRPC on {address}: the port is taken")
        await server.start()
        self._server = server
        self.port = bound
        log.info("gRPC (Nacos 2.x/3.x clients) on %s", join_host_port(host, bound))
        return bound

    async def async_stop(self, grace_s: float) -> None:
        """Stop listening, end every stream, give calls in flight `grace_s`, then cancel them."""
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for stream in self._streams.values():
            _put(stream.queue, _END)
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def summaries(self) -> Sequence[ConnectionSummary]:
        return self.table.summaries()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run `coroutine` as a task the server keeps (cancelled when it stops)."""
        task = self.loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def now_ms(self) -> int:
        assert self.front is not None
        return self.front.clock()

    # -- the StreamSink ---------------------------------------------------------------------

    def async_send(self, pushes: Sequence[StreamPush]) -> None:
        """Queue each push on its connection's stream; drop it (counted) when the connection is
        gone or its queue is full. Loop thread."""
        for push in pushes:
            stream = self._streams.get(push.connection_id)
            if stream is None or not _put(stream.queue, codec.encode_raw(push.type, push.body)):
                self.metrics.stream_dropped.inc()

    # -- unary ------------------------------------------------------------------------------

    async def _unary(self, data: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
        started = perf_counter()
        kind = codec.ERROR_RESPONSE
        try:
            received = codec.decode(data)
            kind = received.type
            answer, ok = await self._answer(received, context.peer()), True
        except PayloadError as error:
            answer, ok = codec.error_response(error.code, error.message), False
        except ParamError as error:
            answer, ok = codec.error_response(codec.INVALID_PARAM, error.message), False
        except Rejected as error:
            answer, ok = codec.error_response(error.status, error.message), False
        except ActorUnavailable as error:
            answer, ok = (
                codec.error_response(codec.OVER_THRESHOLD, f"server is busy, please try again later: {error}"),
                False,
            )
        except Exception as error:
            self._count_bug()
            log.exception("bug: gRPC %s failed", codec.safe(kind))
            answer, ok = codec.error_response(codec.SERVER_ERROR, f"caused: {clip(str(error), 200)}"), False
        ok_count, error_count, seconds = self.metrics.request(kind)
        (ok_count if ok else error_count).inc()
        seconds.observe(perf_counter() - started)
        return answer

    def _count_bug(self) -> None:
        if self.front is not None:
            self.front.metrics.exceptions_request.inc()

    async def _answer(self, received: Received, peer: str) -> bytes:
        """The response to one unary request (an ErrorResponse raises PayloadError)."""
        front = self.front
        assert front is not None
        if not front.serving:
            raise PayloadError(codec.INVALID_SERVER_STATUS, "Server is starting, please try later.")
        connection_id, _, _ = connection_address(peer)
        if received.type == SERVER_CHECK:
            return codec.success(
                "ServerCheckResponse", {"connectionId": connection_id, "supportAbilityNegotiation": False}
            )
        handler = self._handlers.get(received.type)
        if handler is None:
            raise PayloadError(codec.NO_HANDLER, codec.NO_HANDLER_MESSAGE)
        if not self.table.active(connection_id, self.now_ms()):
            raise PayloadError(codec.UN_REGISTER, "Connection is unregistered.")
        return await handler(naming.Call(connection_id, received))

    # -- the stream -------------------------------------------------------------------------

    async def _stream(self, requests: AsyncIterator[bytes], context: aio.ServicerContext[bytes, bytes]) -> None:
        connection_id, remote_ip, remote_port = connection_address(context.peer())
        generation = self.table.opened(connection_id, remote_ip, remote_port, self.now_ms())
        if generation is None:
            self.metrics.refused.inc()
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many gRPC connections (grpc_max_connections)")
            return
        previous = self._streams.get(connection_id)
        stream = _Stream(generation, asyncio.Queue(self.settings.grpc_stream_queue))
        if previous is not None:
            stream.version, stream.version_label = previous.version, previous.version_label
            previous.version_label = None
            _put(previous.queue, _END)
        self._streams[connection_id] = stream
        self._arm()
        reader = self.loop.create_task(self._read(connection_id, stream, requests))
        try:
            while True:
                data = await stream.queue.get()
                if not data:
                    break
                await context.write(data)
        finally:
            reader.cancel()
            self._ended(connection_id, stream)
        if stream.abort is not None:
            await context.abort(stream.abort, "the server evicted this connection: it did not answer")

    async def _read(self, connection_id: str, stream: _Stream, requests: AsyncIterator[bytes]) -> None:
        try:
            async for data in requests:
                self._on_stream_message(connection_id, stream, data)
        except (asyncio.CancelledError, aio.AioRpcError):
            pass
        except Exception:
            log.exception("bug: reading the gRPC stream of %s failed", connection_id)
        _put(stream.queue, _END)

    def _on_stream_message(self, connection_id: str, stream: _Stream, data: bytes) -> None:
        try:
            received = codec.decode(data)
        except PayloadError as error:
            log.debug("gRPC stream of %s: %s", connection_id, error.message)
            return
        now = self.now_ms()
        kind = received.type
        body = received.body
        if kind == CONNECTION_SETUP:
            version = printable(_text(body.get("clientVersion")))
            labels = body.get("labels")
            labels = (
                {printable(clip(str(k), 64)): printable(clip(str(v), 128)) for k, v in labels.items()}
                if isinstance(labels, dict)
                else {}
            )
            tenant = printable(clip(_text(body.get("tenant")), 128))
            client_ip = printable(clip(received.client_ip, 64))
            outcome = self.table.set_up(connection_id, version, tenant, dict(list(labels.items())[:32]), client_ip, now)
            if outcome != ALREADY_SET_UP and stream.version_label is None and self.table.is_set_up(connection_id):
                stream.version = version
                stream.version_label = self.metrics.connected(version)
            self._arm()
            return
        self.table.active(connection_id, now)
        ok = body.get("resultCode") == codec.SUCCESS
        request_id = _text(body.get("requestId"))
        if kind == CLIENT_DETECTION_RESPONSE:
            self.table.answered_detection(connection_id, request_id, ok, now)
        elif kind == NOTIFY_SUBSCRIBER_RESPONSE:
            front = self.front
            if front is not None and front.push_enabled:
                front.bridge.async_tell(PUSH, GrpcPushAnswered(connection_id, request_id, ok))

    def _ended(self, connection_id: str, stream: _Stream) -> None:
        if self._streams.get(connection_id) is stream:
            del self._streams[connection_id]
            self._carry_out(self.table.ended(connection_id, stream.generation))
        if stream.version_label is not None:
            self.metrics.disconnected(stream.version, stream.version_label)
            stream.version_label = None

    # -- effects and time -------------------------------------------------------------------

    def _carry_out(self, effects: Effects) -> None:
        if effects.pushes:
            self.async_send(effects.pushes)
        front = self.front
        for closed in effects.closed:
            self.metrics.closed[closed.reason].inc()
            stream = self._streams.pop(closed.connection_id, None)
            if stream is not None:
                if closed.reason != "ended":
                    stream.abort = grpc.StatusCode.UNAVAILABLE
                    log.info("evicted gRPC connection %s (%s)", closed.connection_id, closed.reason)
                _put(stream.queue, _END)
                if stream.version_label is not None:
                    self.metrics.disconnected(stream.version, stream.version_label)
                    stream.version_label = None
            # A stopping node keeps its clients' instances: they reconnect elsewhere and
            # register again, or expire like any silent instance.
            if front is not None and not self._stopping:
                if front.push_enabled and closed.was_set_up:
                    front.bridge.async_tell(PUSH, GrpcConnectionClosed(closed.connection_id))
                for service, instance in closed.instances:
                    self.spawn(naming.async_remove(front, service, instance.key))
        if front is not None and not self._stopping:
            for service, instance in effects.beats:
                self.spawn(naming.async_beat(front, service, instance))

    def _arm(self) -> None:
        """Keep one timer, at the table's next deadline."""
        deadline = self.table.next_deadline()
        if deadline == self._timer_deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_deadline = deadline
        if deadline is not None:
            delay = max(0.0, (deadline - self.now_ms()) / 1000)
            self._timer = self.loop.call_at(self.loop.time() + delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline = None
        self._carry_out(self.table.due(self.now_ms()))
        self._arm()

    def changed(self) -> None:
        """The naming handlers changed the table (a register schedules a beat): re-arm."""
        self._arm()


def _text(value: Any) -> str:
    return clip(value, MAX_CLIENT_TEXT) if isinstance(value, str) else ""


def _put(queue: asyncio.Queue[bytes], data: bytes) -> bool:
    try:
        queue.put_nowait(data)
    except asyncio.QueueFull:
        if not data:
            # A full queue still ends: drop one queued write to make room for the end.
            queue.get_nowait()
            queue.put_nowait(data)
            return True
        return False
    return True
