"""The aiohttp application: routes, the error contract, the body limit, the OpenAPI document.

Error contract: a bad parameter is a 400 naming it (ParamError), a refused write is the
status the registry chose (Rejected), an unknown path is a 404, a body over the limit a 413,
a registry that does not answer a 503. Anything else is a bug: logged, answered 500.
Runs on the event loop thread.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Awaitable, Callable

from aiohttp import web

from nacos_actors.bridge import ActorUnavailable
from nacos_actors.core.registry import Rejected
from nacos_actors.http import naming_v1, operator
from nacos_actors.http.front import FRONT_KEY, Front
from nacos_actors.http.params import ParamError

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message)


@web.middleware
async def error_contract(request: web.Request, handler: Handler) -> web.StreamResponse:
    limit = request.app[FRONT_KEY].settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return _text(413, f"request body is {request.content_length} bytes; the limit is {limit}")
    try:
        return await handler(request)
    except ParamError as error:
        response = _text(error.status, error.message)
        if error.close_connection:
            response.force_close()
        return response
    except Rejected as refusal:
        return _text(refusal.status, refusal.message)
    except ActorUnavailable as error:
        log.warning("registry unavailable for %s %s: %s", request.method, request.path, error)
        return _text(503, f"server is busy, please try again later: {error}")
    except web.HTTPException:
        raise
    except Exception as error:
        log.exception("bug: %s %s failed", request.method, request.path)
        return _text(500, f"caused: {error};")


def openapi_document() -> bytes:
    """The OpenAPI 3 document shipped with the package."""
    return resources.files("nacos_actors.http").joinpath("openapi.json").read_bytes()


def build_app(front: Front) -> web.Application:
    """An application serving the node's API under its context path."""
    app = web.Application(middlewares=[error_contract], client_max_size=front.settings.max_body_bytes)
    app[FRONT_KEY] = front
    prefix = front.settings.context_path
    naming_v1.add_routes(app, prefix)
    operator.add_routes(app, prefix)
    document = openapi_document()

    async def serve_openapi(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    app.router.add_route("GET", f"{prefix}/openapi.json", serve_openapi)
    return app
