"""Operator and console endpoints: metrics, servers, switches, namespaces, health probes.

Runs on the event loop thread; reads only counters and snapshots.
"""

from __future__ import annotations

import os
from typing import Any

from aiohttp import web

from nacos_actors import __version__
from nacos_actors.http import cluster
from nacos_actors.http.front import front_of, json_response, request_params
from nacos_actors.http.params.base import boolean
from nacos_actors.http.routing import AddRoute
from nacos_actors.model import DEFAULT_NAMESPACE
from nacos_actors.render import views
from nacos_actors.render.lists import DEFAULT_CACHE_MILLIS
from nacos_actors.settings import Settings

SWITCH_DOMAIN = {
    "name": "00-00---000-NACOS_SWITCH_DOMAIN-000---00-00",
    "adWeightMap": {},
    "defaultPushCacheMillis": 10000,
    "clientBeatInterval": 5000,
    "defaultCacheMillis": DEFAULT_CACHE_MILLIS,
    "distroThreshold": 0.7,
    "healthCheckEnabled": True,
    "autoChangeHealthCheckEnabled": True,
    "distroEnabled": True,
    "enableStandalone": True,
    "pushEnabled": True,
    "checkTimes": 3,
    "httpHealthParams": {"max": 5000, "min": 500, "factor": 0.85},
    "tcpHealthParams": {"max": 5000, "min": 1000, "factor": 0.75},
    "mysqlHealthParams": {"max": 3000, "min": 2000, "factor": 0.65},
    "incrementalList": [],
    "serverStatusSynchronizationPeriodMillis": 2000,
    "serviceStatusSynchronizationPeriodMillis": 5000,
    "disableAddIP": False,
    "sendBeatOnly": False,
    "lightBeatEnabled": True,
    "limitedUrlMap": {},
    "distroServerExpiredMillis": 10000,
    "pushGoVersion": "0.1.0",
    "pushJavaVersion": "0.1.0",
    "pushPythonVersion": "0.4.3",
    "pushCVersion": "1.0.12",
    "pushCSharpVersion": "0.9.0",
    "enableAuthentication": False,
    "defaultInstanceEphemeral": True,
    "healthCheckWhiteList": [],
}


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


async def metrics(request: web.Request) -> web.Response:
    """GET /v1/ns/operator/metrics: `status: UP` and the counts (clients probe this)."""
    front = front_of(request)
    services = front.view.service_count
    instances = front.view.instance_count
    responsible_services, responsible_instances = cluster.responsible_counts(front)
    return json_response(
        views.dumps(
            {
                "status": "UP" if front.serving else "STARTING",
                "serviceCount": services,
                "instanceCount": instances,
                "raftNotifyTaskCount": 0,
                "responsibleServiceCount": responsible_services,
                "responsibleInstanceCount": responsible_instances,
                "cpu": 0.0,
                "load": load_average(),
                "mem": 0.0,
            }
        )
    )


async def servers(request: web.Request) -> web.Response:
    """GET /v1/ns/operator/servers[?healthy=true]: the members with their states (this node
    alone when standalone); `healthy=true` keeps those UP."""
    front = front_of(request)
    params = await request_params(request)
    healthy_only = boolean(params, False, "healthy")
    return json_response(views.dumps({"servers": cluster.member_rows(front, healthy_only)}))


async def switches(request: web.Request) -> web.Response:
    """GET /v1/ns/operator/switches: Nacos's switch domain, with this node's push and health settings."""
    return json_response(views.dumps(switch_document(front_of(request).settings)))


def switch_document(settings: Settings) -> dict[str, Any]:
    """Nacos's switch domain with this node's push and health settings (v1 and v2 answer it):
    `checkTimes` is health_check_times, the probe results in a row that change a verdict."""
    return {
        **SWITCH_DOMAIN,
        "defaultPushCacheMillis": settings.push_cache_ms,
        "healthCheckEnabled": settings.health_check_enabled,
        "checkTimes": settings.health_check_times,
        "pushEnabled": settings.push_enabled,
    }


async def push_state(request: web.Request) -> web.Response:
    """GET /v1/ns/operator/push/state: push counts (`detail` and `reset` are accepted; the
    counters are never reset, so they keep agreeing with the Prometheus figures)."""
    front = front_of(request)
    params = await request_params(request)
    boolean(params, False, "detail")
    boolean(params, False, "reset")
    document = views.push_state(front.push_board.stats, front.push_board.grpc)
    return json_response(views.dumps(document))


async def namespaces(request: web.Request) -> web.Response:
    """GET /v1/console/namespaces: public plus every namespace that holds a service."""
    front = front_of(request)
    data = [{"namespace": "", "namespaceShowName": "public", "quota": 200, "configCount": 0, "type": 0}]
    for namespace in sorted(front.namespaces()):
        if namespace != DEFAULT_NAMESPACE:
            data.append(
                {"namespace": namespace, "namespaceShowName": namespace, "quota": 200, "configCount": 0, "type": 2}
            )
    return json_response(views.dumps({"code": 200, "message": None, "data": data}))


async def readiness(request: web.Request) -> web.Response:
    """GET /v1/console/health/readiness: 200 once the node serves, 503 before."""
    front = front_of(request)
    if front.serving:
        return web.Response(text="OK")
    return web.Response(status=503, text="not ready")


async def liveness(request: web.Request) -> web.Response:
    """GET /v1/console/health/liveness: 200 while the process answers."""
    return web.Response(text="OK")


async def server_health(request: web.Request) -> web.Response:
    """ANY /v1/ns/health/server: Nacos's hello."""
    front = front_of(request)
    message = (
        f"Hello! I am Nacos-Naming and healthy! total services: {front.view.service_count}, "
        f"local port:{front.settings.port}"
    )
    return json_response(views.dumps({"msg": message, "version": __version__}))


def add_routes(add: AddRoute, prefix: str) -> None:
    for base in (f"{prefix}/v1/ns/operator", f"{prefix}/v1/ns/ops"):
        add("GET", f"{base}/metrics", metrics)
        add("GET", f"{base}/servers", servers)
        add("GET", f"{base}/switches", switches)
        add("GET", f"{base}/push/state", push_state)
    add("GET", f"{prefix}/v1/ns/health/server", server_health)
    add("GET", f"{prefix}/v1/console/namespaces", namespaces)
    add("GET", f"{prefix}/v1/console/health/readiness", readiness)
    add("GET", f"{prefix}/v1/console/health/liveness", liveness)
