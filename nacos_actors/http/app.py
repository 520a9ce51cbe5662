"""The aiohttp application: routes, the error contract, the body limit, the OpenAPI document.

Error contract: a bad parameter is a 400 naming it (ParamError), a refused write is the
status the registry chose (Rejected), an unknown path is a 404, a body over the limit a 413,
a registry that does not answer a 503. Anything else is a bug: logged, counted
(nacos_exception_total), answered 500. Every request's duration is observed once, by route.
Runs on the event loop thread.
"""

from __future__ import annotations

import logging
from importlib import resources
from time import perf_counter
from typing import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from nacos_actors.bridge import ActorUnavailable
from nacos_actors.core.registry import Rejected
from nacos_actors.http import cluster, health_api, metrics, naming_v1, operator
from nacos_actors.http.front import FRONT_KEY, Front
from nacos_actors.http.metrics import RequestTimer
from nacos_actors.http.params import ParamError

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message)


def error_contract(front: Front) -> Middleware:
    """The middleware that answers by the error contract and times every request.

    Each answer (or raised HTTPException) is observed once in the request-duration histogram;
    an unexpected error is also counted in nacos_exception_total{name="requestFailed"}.
    """
    limit = front.settings.max_body_bytes
    timer = RequestTimer(front.metrics)
    request_failed = front.metrics.exceptions_request

    @web.middleware
    async def contract(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = perf_counter()
        response: web.StreamResponse
        if request.content_length is not None and request.content_length > limit:
            response = _text(413, f"request body is {request.content_length} bytes; the limit is {limit}")
            timer.async_observe(request, 413, perf_counter() - started)
            return response
        try:
            response = await handler(request)
        except ParamError as error:
            response = _text(error.status, error.message)
            if error.close_connection:
                response.force_close()
        except Rejected as refusal:
            response = _text(refusal.status, refusal.message)
        except ActorUnavailable as error:
            log.warning("registry unavailable for %s %s: %s", request.method, request.path, error)
            response = _text(503, f"server is busy, please try again later: {error}")
        except web.HTTPException as error:
            timer.async_observe(request, error.status, perf_counter() - started)
            raise
        except Exception as error:
            request_failed.inc()
            log.exception("bug: %s %s failed", request.method, request.path)
            response = _text(500, f"caused: {error};")
        timer.async_observe(request, response.status, perf_counter() - started)
        return response

    return contract


def openapi_document() -> bytes:
    """The OpenAPI 3 document shipped with the package."""
    return resources.files("nacos_actors.http").joinpath("openapi.json").read_bytes()


def build_app(front: Front) -> web.Application:
    """An application serving the node's API under its context path."""
    middlewares = [error_contract(front)]
    if front.cluster is not None:
        middlewares.append(cluster.starting_gate(front))
    app = web.Application(middlewares=middlewares, client_max_size=front.settings.max_body_bytes)
    app[FRONT_KEY] = front
    prefix = front.settings.context_path
    naming_v1.add_routes(app, prefix)
    health_api.add_routes(app, prefix)
    operator.add_routes(app, prefix)
    cluster.add_routes(app, prefix, with_peers=front.cluster is not None)
    metrics.add_routes(app, prefix)
    document = openapi_document()

    async def serve_openapi(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    app.router.add_route("GET", f"{prefix}/openapi.json", serve_openapi)
    return app
