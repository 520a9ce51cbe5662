"""Limits on the node's HTTP connections, kept at the transport level on the event loop.

aiohttp bounds the size of a request line and of headers, but not how many connections stay
open nor how long a client may take: 2,000 idle connections and 200 that sent their headers a
byte at a time were all held, and past the process's open-file limit the node stopped
accepting anyone, logging nothing. Here every accepted connection passes a `GuardedConnection`
that sits between the transport and aiohttp's `RequestHandler`:

- **max_connections**: at most that many are open. A connection that arrives when the node is
  full takes the place of the one that has waited longest without a request in progress (idle,
  or still sending its headers), which is closed; when every open connection is in the middle
  of a request, the newcomer is answered `503 Service Unavailable` and closed at once. Idle
  connections therefore cannot lock clients out. Both are counted and logged at most once per
  interval.
- **header_timeout_ms**: from the first byte of a request, its headers must be complete within
  this; else the client gets `408 Request Timeout` and the connection is closed (a slowloris).
- **idle_timeout_ms**: a connection with no request in progress and none begun (just accepted,
  or after an answer) is closed after this.

A sweep on the loop (`call_later`, a few times per shortest timeout, at most once a second)
checks every open connection; a request costs a few dict operations. Loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from nacos_actors.metrics import ConnectionMetrics

log = logging.getLogger(__name__)

# A connection's state: waiting for a request, receiving a request's headers, in a request.
IDLE, HEADERS, IN_REQUEST = 0, 1, 2
LOG_INTERVAL_S = 10.0  # each kind of limit logs at most one line per interval
SWEEP_MAX_INTERVAL_S = 1.0
SWEEP_MIN_INTERVAL_S = 0.05


def _plain_response(status: str, text: str) -> bytes:
    body = text.encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


REFUSED = _plain_response("503 Service Unavailable", "too many connections, please try again later")
HEADER_TIMEOUT = _plain_response("408 Request Timeout", "the request headers did not arrive in time")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How many connections may be open, and how long a request's headers and an idle
    connection may take (seconds)."""

    max_connections: int
    header_timeout_s: float
    idle_timeout_s: float


class RateLimitedLog:
    """Logs a WARNING at most once per `interval_s`, saying how many events it stands for. Loop thread."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._next_at = 0.0
        self._unlogged = 0

    def warning(self, message: str, *args: Any) -> None:
        self._unlogged += 1
        now = self._clock()
        if now < self._next_at:
            return
        also = f" ({self._unlogged - 1} more like it since the last such line)" if self._unlogged > 1 else ""
        log.warning(message + also, *args)
        self._unlogged = 0
        self._next_at = now + self._interval_s


class GuardedConnection(asyncio.Protocol):
    """One accepted connection: refused when the node is full of busy connections, else handed
    to a fresh aiohttp RequestHandler. Tells its guard when a request's first byte arrives;
    `state` (IDLE, HEADERS or IN_REQUEST) and `since` (loop time it entered that state) are
    what the guard judges it by. Loop thread."""

    __slots__ = ("_admitted", "_guard", "_inner", "since", "state", "transport")

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard
        self._inner: web.RequestHandler | None = None
        self._admitted = False
        self.transport: asyncio.Transport | None = None
        self.state = IDLE
        self.since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self._guard.admit(self):
            self.close(REFUSED)
            return
        self._admitted = True
        self._inner = self._guard.make_handler()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.state == IDLE:
            self._guard.headers_begin(self)
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None  # type: ignore[func-returns-value]

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._admitted:
            self._admitted = False
            self._guard.release(self)
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.connection_lost(exc)

    def close(self, answer: bytes | None) -> None:
        """Close the connection, after `answer` when given."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if answer is not None:
                transport.write(answer)
            transport.close()

    def peer(self) -> str:
        name = self.transport.get_extra_info("peername") if self.transport is not None else None
        return f"{name[0]}:{name[1]}" if isinstance(name, tuple) and len(name) >= 2 else "?"


class ConnectionGuard:
    """Every HTTP connection of the node, under `limits`: `protocol` is the factory to listen
    with (`loop.create_server`); `start` begins the sweep, `stop` ends it. It wraps `server`'s
    request handler to learn when each request starts and ends. The open count is exported as
    `nacos_actors_connections_open`; what the limits do is counted and logged at most once per
    interval for each kind. Loop thread only."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        server: web.Server,
        limits: ConnectionLimits,
        metrics: ConnectionMetrics,
    ) -> None:
        self.loop = loop
        self.limits = limits
        self._server = server
        self._metrics = metrics
        self._open: set[GuardedConnection] = set()
        # Open connections not in a request, the one waiting longest first (a dict keeps order).
        self._waiting: dict[GuardedConnection, None] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        shortest = min(limits.header_timeout_s, limits.idle_timeout_s)
        self._sweep_every = min(SWEEP_MAX_INTERVAL_S, max(SWEEP_MIN_INTERVAL_S, shortest / 4))
        self._refusals = RateLimitedLog()
        self._evictions = RateLimitedLog()
        self._slow_headers = RateLimitedLog()
        server.request_handler = self._tracked(server.request_handler)
        metrics.open.source = self.open_count

    def protocol(self) -> GuardedConnection:
        return GuardedConnection(self)

    def open_count(self) -> int:
        return len(self._open)

    def make_handler(self) -> web.RequestHandler:
        return self._server()

    def admit(self, connection: GuardedConnection) -> bool:
        """Count `connection` in, closing the connection waiting longest to make room when the
        node is full; False (counted, logged) when every open connection is in a request."""
        if len(self._open) >= self.limits.max_connections:
            if not self._waiting:
                self._metrics.rejected_max_connections.inc()
                self._refusals.warning(
                    "refused a connection from %s: all %d open connections are in a request (max_connections)",
                    connection.peer(),
                    len(self._open),
                )
                return False
            oldest = next(iter(self._waiting))
            self._forget(oldest)
            self._metrics.rejected_evicted.inc()
            self._evictions.warning(
                "closed the connection from %s, waiting for %.1f s, for a new one: %d are open (max_connections)",
                oldest.peer(),
                self.loop.time() - oldest.since,
                self.limits.max_connections,
            )
            oldest.close(None)
        connection.state, connection.since = IDLE, self.loop.time()
        self._open.add(connection)
        self._waiting[connection] = None
        return True

    def headers_begin(self, connection: GuardedConnection) -> None:
        """The first byte of a request arrived on an idle connection."""
        connection.state, connection.since = HEADERS, self.loop.time()
        if connection in self._waiting:  # it has waited the least now: to the back
            del self._waiting[connection]
            self._waiting[connection] = None

    def release(self, connection: GuardedConnection) -> None:
        self._forget(connection)

    def _forget(self, connection: GuardedConnection) -> None:
        self._open.discard(connection)
        self._waiting.pop(connection, None)

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self._sweep_every, self._sweep)

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _sweep(self) -> None:
        now = self.loop.time()
        header_deadline = now - self.limits.header_timeout_s
        idle_deadline = now - self.limits.idle_timeout_s
        for connection in list(self._waiting):
            if connection.state == HEADERS and connection.since <= header_deadline:
                self._forget(connection)
                self._metrics.rejected_header_timeout.inc()
                self._slow_headers.warning(
                    "closed the connection from %s: its request headers took over %d ms (header_timeout_ms)",
                    connection.peer(),
                    round(self.limits.header_timeout_s * 1000),
                )
                connection.close(HEADER_TIMEOUT)
            elif connection.state == IDLE and connection.since <= idle_deadline:
                self._forget(connection)
                self._metrics.idle_closed.inc()
                connection.close(None)
        self._sweeper = self.loop.call_later(self._sweep_every, self._sweep)

    def _tracked(
        self, handle: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
        """`handle` marking its connection busy while a request is handled (never swept or
        evicted) and waiting again from its answer on."""
        loop, open_, waiting = self.loop, self._open, self._waiting

        async def tracked(request: web.BaseRequest) -> web.StreamResponse:
            transport = request.transport
            connection = transport.get_protocol() if transport is not None else None
            if type(connection) is not GuardedConnection:
                return await handle(request)
            connection.state = IN_REQUEST
            waiting.pop(connection, None)
            try:
                return await handle(request)
            finally:
                connection.state, connection.since = IDLE, loop.time()
                if connection in open_:
                    waiting[connection] = None

        return tracked
