"""The aiohttp application: every route under the error contract (nacos_actors.http.routing),
the body limit, the OpenAPI document. Runs on the event loop thread."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from nacos_actors.http import cluster, health_api, metrics, naming_v1, naming_v2, naming_v3, operator, raft_api
from nacos_actors.http.front import FRONT_KEY, Front
from nacos_actors.http.routing import Routes


def openapi_document() -> bytes:
    """The OpenAPI 3 document shipped with the package."""
    return resources.files("nacos_actors.http").joinpath("openapi.json").read_bytes()


def build_app(front: Front) -> web.Application:
    """An application serving the node's API under its context path."""
    app = web.Application(client_max_size=front.settings.max_body_bytes)
    app[FRONT_KEY] = front
    prefix = front.settings.context_path
    routes = Routes(app, front, cluster.forwarding if front.cluster is not None else None)
    naming_v1.add_routes(routes.add, prefix)
    naming_v2.add_routes(routes.add, prefix)
    naming_v3.add_routes(routes.add, prefix)
    health_api.add_routes(routes.add, prefix)
    operator.add_routes(routes.add, prefix)
    cluster.add_routes(routes.add, prefix, with_peers=front.cluster is not None)
    metrics.add_routes(routes.add, prefix)
    raft_api.add_routes(routes.add, prefix)
    document = openapi_document()

    async def serve_openapi(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    routes.add("GET", f"{prefix}/openapi.json", serve_openapi)
    routes.finish()
    return app
