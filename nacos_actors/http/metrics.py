"""Metrics endpoints, Prometheus service discovery, and the per-request duration timer.

- GET {context}/actuator/prometheus (Nacos's path) and GET /metrics (outside the context path):
  the node's metrics in the Prometheus text format 0.0.4.
- GET {context}/prometheus, .../prometheus/namespaceId/{namespaceId} and
  .../prometheus/namespaceId/{namespaceId}/service/{service}: Prometheus HTTP service
  discovery of the registered instances, in Nacos 2.2+'s shape, written as it is rendered.

Runs on the event loop thread; the exposition is generated on the loop's default executor (it
reads /proc), everything else on the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiohttp import web

from nacos_actors.http.front import front_of, json_stream
from nacos_actors.http.params.names import check_service_name, parse_namespace
from nacos_actors.http.routing import AddRoute
from nacos_actors.metrics import CONTENT_TYPE
from nacos_actors.model import Service, ServiceKey
from nacos_actors.render.prometheus import prometheus_target_parts


async def prometheus(request: web.Request) -> web.Response:
    """GET {context}/actuator/prometheus and GET /metrics: every metric, text format 0.0.4."""
    metrics = front_of(request).metrics
    body = await asyncio.get_running_loop().run_in_executor(None, metrics.exposition)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _targets(request: web.Request, services: Iterable[Service]) -> web.StreamResponse:
    """The SD answer for `services`, ordered by namespace and grouped name, written as it is
    rendered (see json_stream)."""
    return await json_stream(request, prometheus_target_parts(sorted(services, key=_key)))


def _key(service: Service) -> ServiceKey:
    return service.key


async def service_discovery(request: web.Request) -> web.StreamResponse:
    """GET {context}/prometheus: a target group per instance of every namespace (Nacos 2.2+)."""
    front = front_of(request)
    return await _targets(request, (s for namespace in front.namespaces() for s in front.services_in(namespace)))


async def service_discovery_namespace(request: web.Request) -> web.StreamResponse:
    """GET {context}/prometheus/namespaceId/{namespaceId}: one namespace's instances ([] if none)."""
    namespace = parse_namespace(request.match_info["namespaceId"], "namespaceId")
    return await _targets(request, front_of(request).services_in(namespace))


async def service_discovery_service(request: web.Request) -> web.StreamResponse:
    """GET .../namespaceId/{namespaceId}/service/{service}: the instances of every service of that
    bare name (any group) in the namespace, as Nacos matches it ([] if none)."""
    namespace = parse_namespace(request.match_info["namespaceId"], "namespaceId")
    name = check_service_name(request.match_info["service"], "service")
    return await _targets(request, (s for s in front_of(request).services_in(namespace) if s.bare_name == name))


def add_routes(add: AddRoute, prefix: str) -> None:
    """Mount the metrics endpoints (and /metrics outside the context path) and the SD endpoints."""
    add("GET", f"{prefix}/actuator/prometheus", prometheus)
    add("GET", "/metrics", prometheus)
    add("GET", f"{prefix}/prometheus", service_discovery)
    add("GET", f"{prefix}/prometheus/namespaceId/{{namespaceId}}", service_discovery_namespace)
    add("GET", f"{prefix}/prometheus/namespaceId/{{namespaceId}}/service/{{service}}", service_discovery_service)
