"""Cluster health-check settings and manual instance health (Nacos 1.4 ClusterController and
HealthController): `PUT /v1/ns/cluster`, `PUT /v1/ns/health/instance` (also `PUT /v1/ns/health`).

Each handler parses every parameter once (nacos_actors.http.params), then sends one write
(nacos_actors.http.front.Front.write): a cluster config and a persistent instance's health go
through Raft, handled on the member the request reached; an ephemeral instance's health goes
to the registry of the service's Distro owner. Runs on the event loop thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from nacos_actors.http.front import Front, front_of, ok, request_params
from nacos_actors.http.params import instances, metadata, names
from nacos_actors.http.params.base import ParamError, Params, required, required_boolean
from nacos_actors.http.routing import AddRoute, distro_write, raft_only_when
from nacos_actors.messages import SetInstanceHealth, UpdateCluster
from nacos_actors.model import ClusterConfig, InstanceKey, ServiceKey, freeze
from nacos_actors.render.views import MASKED_PASSWORD


def sets_persistent_health(params: Params, front: Front) -> bool:
    """Health set on an instance this member holds as persistent (as route_write decides)."""
    service = front.service(names.service_key(params))
    if service is None:
        return False
    key = InstanceKey(instances.ip(params), instances.port(params), names.cluster(params, "clusterName"), False)
    return key in service.instances


async def update_cluster(request: web.Request) -> web.Response:
    """PUT /v1/ns/cluster: set a cluster's checker, check port, port choice and metadata.

    `clusterName`, `serviceName`, `checkPort`, `useInstancePort4Check` and `healthChecker` are
    required; `metadata` replaces the cluster's metadata (absent: emptied, as Nacos; at most
    max_service_metadata_bytes). The service must exist (400 `service not found:<name>`); the cluster is created if it has no
    entry yet. A MYSQL checker whose `pwd` is the mask answers show keeps the stored password
    (keep_stored_password).
    """
    front = front_of(request)
    params = await request_params(request)
    service = names.service_key(params)
    cluster = names.check_cluster(required(params, "clusterName"), "clusterName")
    check_port = instances.port(params, "checkPort")
    use_instance_port = required_boolean(params, "useInstancePort4Check")
    checker = keep_stored_password(metadata.health_checker(params), front, service, cluster)
    cluster_metadata = metadata.within_limit(
        metadata.metadata(params) or freeze({}),
        front.settings.max_service_metadata_bytes,
        metadata.SERVICE_METADATA_LIMIT,
    )
    config = ClusterConfig(
        health_checker=checker,
        check_port=check_port,
        use_instance_port=use_instance_port,
        metadata=cluster_metadata,
    )
    await front.write(UpdateCluster(service, cluster, config))
    return ok()


def keep_stored_password(
    checker: Mapping[str, Any], front: Front, service: ServiceKey, cluster: str
) -> Mapping[str, Any]:
    """`checker`, but when its `pwd` is MASKED_PASSWORD (what GET /v1/ns/service shows of a
    password: a console that edits a cluster sends back what it was shown) the password this
    member holds for that cluster instead; a 400 naming `healthChecker.pwd` when it holds none.
    So a password, once set, is never in an answer and never lost by an edit; `******` itself
    cannot be a password."""
    if checker.get("pwd") != MASKED_PASSWORD:
        return checker
    current = front.service(service)
    stored = current.cluster_config(cluster).health_checker.get("pwd") if current is not None else None
    if stored is None:
        raise ParamError(
            f"Param 'healthChecker.pwd' is the mask '{MASKED_PASSWORD}', which keeps the stored password, "
            f"but cluster {cluster} has none."
        )
    return freeze({**checker, "pwd": stored})


@distro_write
@raft_only_when(sets_persistent_health)
async def set_instance_health(request: web.Request) -> web.Response:
    """PUT /v1/ns/health/instance (and /v1/ns/health): set an instance's health by hand.

    Only when the cluster's checker is NONE (else 400 `health check is still working, service:
    <name>`). A missing service or cluster is a 404; no instance at ip:port answers ok and
    changes nothing, as Nacos.
    """
    await apply_set_health(front_of(request), await request_params(request))
    return ok()


async def apply_set_health(front: Front, params: Params) -> None:
    """Set the health of the instance `params` name (`healthy`, or its v1 alias `valid`)."""
    healthy = required_boolean(params, "healthy", "valid")
    service = names.service_key(params)
    cluster = names.cluster(params, "clusterName")
    ip = instances.ip(params)
    port = instances.port(params)
    await front.write(SetInstanceHealth(service, ip, port, cluster, healthy))


def add_routes(add: AddRoute, prefix: str) -> None:
    """Mount the cluster and health-write routes under `<context path>/v1/ns`."""
    ns = f"{prefix}/v1/ns"
    add("PUT", f"{ns}/cluster", update_cluster)
    add("PUT", f"{ns}/health/instance", set_instance_health)
    add("PUT", f"{ns}/health", set_instance_health)
