"""Metrics endpoints, Prometheus service discovery, and the per-request duration timer.

- GET {context}/actuator/prometheus (Nacos's path) and GET /metrics (outside the context path):
  the node's metrics in the Prometheus text format 0.0.4.
- GET {context}/prometheus, .../prometheus/namespaceId/{namespaceId} and
  .../prometheus/namespaceId/{namespaceId}/service/{service}: Prometheus HTTP service
  discovery of the registered instances, in Nacos 2.2+'s shape.

Runs on the event loop thread; the exposition is generated on the loop's default executor (it
reads /proc), everything else on the loop.
"""

from __future__ import annotations

import asyncio
from typing import Any, Iterable

from aiohttp import web

from nacos_actors.http import params as p
from nacos_actors.http import render
from nacos_actors.http.front import front_of, json_response
from nacos_actors.metrics import CONTENT_TYPE, UNMATCHED_ROUTE, NodeMetrics, method_label
from nacos_actors.model import Service, ServiceKey


class _ByStatus(dict[int, Any]):
    """One route's histogram children by status, with the labels to make a missing one."""

    __slots__ = ("route", "method")

    def __init__(self, route: str, method: str) -> None:
        super().__init__()
        self.route = route
        self.method = method


class RequestTimer:
    """Records each request's duration under its route's canonical path, method and status.

    Event loop thread only. Label children are looked up in plain dicts keyed by the matched
    route object, then the status, so a request costs two dict lookups and one histogram
    observe. Requests no route matched share the route label `unmatched`; methods outside the
    usual verbs are `other`: the label values stay bounded whatever clients send.
    """

    __slots__ = ("_metrics", "_by_route", "_unmatched")

    def __init__(self, metrics: NodeMetrics) -> None:
        self._metrics = metrics
        self._by_route: dict[object, _ByStatus] = {}
        self._unmatched: dict[str, _ByStatus] = {}

    def async_observe(self, request: web.Request, status: int, seconds: float) -> None:
        route = request.match_info.route
        children = self._by_route.get(route)
        if children is None:
            children = self._children_of(route, request.method)
        child = children.get(status)
        if child is None:
            child = children[status] = self._metrics.request_seconds_child(children.route, children.method, status)
        child.observe(seconds)

    def _children_of(self, route: web.AbstractRoute, method: str) -> _ByStatus:
        resource = route.resource
        if resource is None:  # no route matched: a fresh SystemRoute per request, never a key
            label = method_label(method)
            children = self._unmatched.get(label)
            if children is None:
                children = self._unmatched[label] = _ByStatus(UNMATCHED_ROUTE, label)
            return children
        children = self._by_route[route] = _ByStatus(resource.canonical, method_label(route.method))
        return children


async def prometheus(request: web.Request) -> web.Response:
    """GET {context}/actuator/prometheus and GET /metrics: every metric, text format 0.0.4."""
    metrics = front_of(request).metrics
    body = await asyncio.get_running_loop().run_in_executor(None, metrics.exposition)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def _targets(services: Iterable[Service]) -> web.Response:
    """The SD answer for `services`, ordered by namespace and grouped name."""
    return json_response(render.prometheus_target_list(sorted(services, key=_key)))


def _key(service: Service) -> ServiceKey:
    return service.key


async def service_discovery(request: web.Request) -> web.Response:
    """GET {context}/prometheus: a target group per instance of every namespace (Nacos 2.2+)."""
    front = front_of(request)
    return _targets(s for namespace in front.namespaces() for s in front.services_in(namespace))


async def service_discovery_namespace(request: web.Request) -> web.Response:
    """GET {context}/prometheus/namespaceId/{namespaceId}: one namespace's instances ([] if none)."""
    namespace = p.parse_namespace(request.match_info["namespaceId"], "namespaceId")
    return _targets(front_of(request).services_in(namespace))


async def service_discovery_service(request: web.Request) -> web.Response:
    """GET .../namespaceId/{namespaceId}/service/{service}: the instances of every service of that
    bare name (any group) in the namespace, as Nacos matches it ([] if none)."""
    namespace = p.parse_namespace(request.match_info["namespaceId"], "namespaceId")
    name = p.check_service_name(request.match_info["service"], "service")
    return _targets(s for s in front_of(request).services_in(namespace) if s.bare_name == name)


def add_routes(app: web.Application, prefix: str) -> None:
    """Mount the metrics endpoints (and /metrics outside the context path) and the SD endpoints."""
    app.router.add_route("GET", f"{prefix}/actuator/prometheus", prometheus)
    app.router.add_route("GET", "/metrics", prometheus)
    app.router.add_route("GET", f"{prefix}/prometheus", service_discovery)
    app.router.add_route("GET", f"{prefix}/prometheus/namespaceId/{{namespaceId}}", service_discovery_namespace)
    app.router.add_route(
        "GET", f"{prefix}/prometheus/namespaceId/{{namespaceId}}/service/{{service}}", service_discovery_service
    )
