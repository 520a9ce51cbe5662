"""How every route is mounted: the error contract and the request timer wrapped around each
handler once, at start-up, instead of an aiohttp middleware run per request.

Error contract (the v1 API's text/plain; a `nacos_api` handler's in Nacos's `{code, message,
data}` envelope, nacos_actors.http.envelope): a bad parameter is a 400 naming it (ParamError), a refused write is the status
the registry chose (Rejected), a body over the limit a 413 naming it (`max_body_bytes` for
clients, `peer_max_body_bytes` for the peer endpoints, which carry whole services), answered
instead of `100 Continue` when the client asks first, a registry that does not answer a 503, an
unknown path a 404 and a known path with another verb a 405. Anything else is a bug: logged,
counted (nacos_exception_total), answered 500. Every request's duration is observed once, by
route pattern, method and status.

Why not a middleware: aiohttp runs middlewares through a chain of wrappers per request, plus
one of its own whenever there is any; measured on a beat load, dropping them answered 20-30%
more requests per second. Wrapping each handler once keeps the contract and loses that cost.

Runs on the event loop thread.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

from aiohttp import HttpVersion11, hdrs, web

from nacos_actors.bridge import ActorUnavailable
from nacos_actors.core.registry import Rejected
from nacos_actors.http import envelope
from nacos_actors.http.front import ClusterFront, Front
from nacos_actors.http.params.base import ParamError, Params
from nacos_actors.metrics import UNMATCHED_ROUTE, NodeMetrics, method_label

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AddRoute = Callable[[str, str, Handler], None]
RaftOnly = Callable[[Params, Front], bool]
ExpectHandler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]
DISTRO_WRITE = "_nacos_actors_distro_write"
RAFT_ONLY_WHEN = "_nacos_actors_raft_only_when"
PEER_ENDPOINT = "_nacos_actors_peer_endpoint"
NACOS_API = "_nacos_actors_nacos_api"
STARTING = "this member is starting: it loads its data from a peer"


def distro_write(handler: Handler) -> Handler:
    """Mark a client write of one service: on a cluster member it is forwarded to the member
    responsible for the service (see nacos_actors.http.cluster.forwarding)."""
    setattr(handler, DISTRO_WRITE, True)
    return handler


def raft_only_when(predicate: RaftOnly) -> Callable[[Handler], Handler]:
    """Mark a `distro_write` handler whose request goes to Raft alone when `predicate(params,
    front)` holds: such a request is handled on the member it reached, never forwarded to the
    Distro owner. Raft takes it to its leader, and this member answers once it applied the
    write itself, so a read here sees it; forwarded, it would be answered once the owner had."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, RAFT_ONLY_WHEN, predicate)
        return handler

    return mark


def peer_endpoint(handler: Handler) -> Handler:
    """Mark an endpoint only cluster members call: its body may be up to `peer_max_body_bytes`
    (a Distro batch carries whole services) instead of the client limit `max_body_bytes`."""
    setattr(handler, PEER_ENDPOINT, True)
    return handler


def nacos_api(handler: Handler) -> Handler:
    """Mark a handler of the Nacos 2.x/3.x HTTP APIs: its refusals (a bad parameter, a refused
    write, a registry that does not answer) are answered in the `{code, message, data}`
    envelope with Nacos's ErrorCode, at the v1 API's HTTP status."""
    setattr(handler, NACOS_API, True)
    return handler


class RequestTimer:
    """Records each request's duration under its route pattern, method and status.

    Event loop thread only. Label children are looked up in plain dicts keyed by (route,
    method), then the status, so a request costs two dict lookups and one histogram observe.
    Requests no route matched share the route label `unmatched`; methods outside the usual
    verbs are `other`: the label values stay bounded whatever clients send.
    """

    __slots__ = ("_children", "_metrics")

    def __init__(self, metrics: NodeMetrics) -> None:
        self._metrics = metrics
        self._children: dict[tuple[str, str], dict[int, Any]] = {}

    def async_observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method_label(method))
        by_status = self._children.get(key)
        if by_status is None:
            by_status = self._children[key] = {}
        child = by_status.get(status)
        if child is None:
            child = by_status[status] = self._metrics.request_seconds_child(*key, status)
        child.observe(seconds)


def _gated(handler: Handler, cluster: ClusterFront) -> Handler:
    """`handler` answering 503 until the cluster member holds its data."""

    async def gated(request: web.Request) -> web.StreamResponse:
        if not cluster.serving:
            return _text(503, STARTING)
        return await handler(request)

    return gated


def _text(status: int, message: str) -> web.Response:
    # An echoed value may hold bytes that were not UTF-8 (lone surrogates): sent as escapes.
    body = message.encode("utf-8", "backslashreplace")
    return web.Response(status=status, body=body, content_type="text/plain", charset="utf-8")


class Routes:
    """Mounts handlers on `app` for `front`: `add(method, path, handler)`, then `finish()`.

    `forward` wraps a `distro_write` handler so that it forwards; given on a cluster member.
    """

    def __init__(self, app: web.Application, front: Front, forward: Callable[[Handler], Handler] | None) -> None:
        self._app = app
        self._front = front
        self._forward = forward
        self._timer = RequestTimer(front.metrics)
        self._limit = front.settings.max_body_bytes
        self._peer_limit = front.settings.peer_max_body_bytes
        self._request_failed = front.metrics.exceptions_request
        prefix = front.settings.context_path
        # What a cluster member answers before it holds its data: peers, probes, metrics, views.
        self._open_while_starting = (
            f"{prefix}/v1/core/",
            f"{prefix}/v1/ns/distro/",
            f"{prefix}/v1/ns/operator/",
            f"{prefix}/v1/ns/ops/",
            f"{prefix}/v2/ns/operator/",
            f"{prefix}/v2/ns/ops/",
            f"{prefix}/v1/console/health/",
            f"{prefix}/actuator/",
            f"{prefix}/openapi.json",
            "/metrics",
        )

    def add(self, method: str, path: str, handler: Handler) -> None:
        """Mount `handler`; on a cluster member a `distro_write` one forwards, and a client
        endpoint answers 503 until the member serves."""
        cluster = self._front.cluster
        peer_limit = self._peer_limit if getattr(handler, PEER_ENDPOINT, False) else None
        api = getattr(handler, NACOS_API, False)
        if cluster is not None:
            if self._forward is not None and getattr(handler, DISTRO_WRITE, False):
                handler = self._forward(handler)
            if not path.startswith(self._open_while_starting):
                handler = _gated(handler, cluster)
        resource = self._app.router.add_resource(path)
        route = resource.canonical
        resource.add_route(
            method,
            self._guarded(handler, route, method, peer_limit, api),
            expect_handler=self._expect(route, method, peer_limit),
        )

    def finish(self) -> None:
        """Mount the catch-all last: what no route matched is a 404, or a 405 when a route
        has the path with other verbs; both are timed under the route label `unmatched`."""
        router = self._app.router
        routes = list(router.resources())

        async def unmatched(request: web.Request) -> web.StreamResponse:
            allowed: set[str] = set()
            for resource in routes:
                _, methods = await resource.resolve(request)
                allowed |= methods
            if allowed:
                raise web.HTTPMethodNotAllowed(request.method, allowed)
            raise web.HTTPNotFound()

        router.add_route(
            "*",
            "/{path:.*}",
            self._guarded(unmatched, UNMATCHED_ROUTE, None),
            expect_handler=self._expect(UNMATCHED_ROUTE, None),
        )

    def _expect(self, route: str, method: str | None, peer_limit: int | None = None) -> ExpectHandler:
        """The answer to `Expect: 100-continue`, before the client sends its body: 413 (and
        close) when the announced Content-Length is over the limit (the peer one on a peer
        endpoint), so the body is never sent; else `100 Continue` (aiohttp's default, which
        continues whatever the length); 417 for any other expectation. Timed like the route's
        requests when it answers."""
        timer = self._timer
        limit = self._limit if peer_limit is None else peer_limit
        limit_name = "max_body_bytes" if peer_limit is None else "peer_max_body_bytes"

        async def expect(request: web.Request) -> web.StreamResponse | None:
            verb = method or request.method
            length = request.content_length
            if length is not None and length > limit:
                timer.async_observe(route, verb, 413, 0.0)
                response = _text(413, f"request body is {length} bytes; the limit ({limit_name}) is {limit}")
                response.force_close()
                return response
            if request.version != HttpVersion11:
                return None
            expectation = request.headers.get(hdrs.EXPECT, "")
            if expectation.lower() != "100-continue":
                timer.async_observe(route, verb, 417, 0.0)
                raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expectation[:64]}")
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the interim answer is not the response's start
            return None

        return expect

    def _guarded(
        self, handler: Handler, route: str, method: str | None, peer_limit: int | None = None, api: bool = False
    ) -> Handler:
        """`handler` under the error contract, timed as `route` and `method` (the request's own
        method when None). With `peer_limit` the body may be that large (a peer endpoint; the
        application's own limit is the client one). With `api` refusals are enveloped."""
        limit = self._limit if peer_limit is None else peer_limit
        limit_name = "max_body_bytes" if peer_limit is None else "peer_max_body_bytes"
        timer, request_failed = self._timer, self._request_failed

        async def guarded(request: web.Request) -> web.StreamResponse:
            started = perf_counter()
            verb = method or request.method
            length = request.content_length
            if length is not None and length > limit:
                timer.async_observe(route, verb, 413, perf_counter() - started)
                return _text(413, f"request body is {length} bytes; the limit ({limit_name}) is {limit}")
            if peer_limit is not None:
                request = request.clone(client_max_size=peer_limit)
            response: web.StreamResponse
            try:
                response = await handler(request)
            except ParamError as error:
                if api:
                    response = envelope.enveloped(error.status, envelope.param_error_code(error), error.message)
                else:
                    response = _text(error.status, error.message)
                if error.close_connection:
                    response.force_close()
            except Rejected as refusal:
                if api:
                    code = envelope.refusal_code(refusal.status, refusal.message)
                    response = envelope.enveloped(refusal.status, code, refusal.message)
                else:
                    response = _text(refusal.status, refusal.message)
            except ActorUnavailable as error:
                log.warning("registry unavailable for %s %s: %s", request.method, request.path, error)
                message = f"server is busy, please try again later: {error}"
                response = envelope.enveloped(503, envelope.SERVER_ERROR, message) if api else _text(503, message)
            except web.HTTPException as error:
                timer.async_observe(route, verb, error.status, perf_counter() - started)
                raise
            except Exception as error:
                request_failed.inc()
                log.exception("bug: %s %s failed", request.method, request.path)
                response = _text(500, f"caused: {error};")
            timer.async_observe(route, verb, response.status, perf_counter() - started)
            return response

        guarded.__name__ = getattr(handler, "__name__", "handler")
        guarded.__doc__ = handler.__doc__
        return guarded
