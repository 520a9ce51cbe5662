"""The Nacos 3.x client HTTP API for instances (`/v3/client/ns/instance`): register (or beat),
deregister (the 2.x handler), list. Nacos's InstanceOpenApiController, in the `{code, message, data}` envelope;
every write and read is the v1 API's own (nacos_actors.http.naming_v1), forwarded and routed
through Raft as v1's. Runs on the event loop thread.
"""

from __future__ import annotations

from aiohttp import web

from nacos_actors.http import naming_v1, naming_v2
from nacos_actors.http.envelope import INSTANCE_NOT_FOUND, enveloped, success
from nacos_actors.http.front import front_of, request_params
from nacos_actors.http.params import instances, names
from nacos_actors.http.params.base import boolean
from nacos_actors.http.routing import AddRoute, distro_write, nacos_api, raft_only_when
from nacos_actors.model import DEFAULT_CLUSTER, InstanceKey
from nacos_actors.render.grpc import service_info


@nacos_api
@distro_write
@raft_only_when(naming_v1.names_persistent_instance)
async def register_instance(request: web.Request) -> web.Response:
    """POST /v3/client/ns/instance: register an instance, or with `heartBeat=true` beat an
    ephemeral one (an unknown one answers HTTP 200 with code 21003, as Nacos 3.x)."""
    front = front_of(request)
    params = await request_params(request)
    if not boolean(params, False, "heartBeat"):
        await naming_v1.apply_register(front, params)
        return success("ok")
    service = names.service_key(params)
    instance = instances.instance(params, service)
    key = InstanceKey(instance.ip, instance.port, instance.cluster, True)
    if await naming_v1.apply_beat(front, service, key, None) is None:
        return enveloped(200, INSTANCE_NOT_FOUND, None)
    return success("ok")


@nacos_api
async def instance_list(request: web.Request) -> web.Response:
    """GET /v3/client/ns/instance/list: the instances of `clusterName` (a comma list, default
    DEFAULT), healthy or not: Nacos 3.x reads `healthyOnly` and does not apply it."""
    front = front_of(request)
    params = await request_params(request)
    key = names.service_key(params)
    clusters_text, clusters = names.cluster_list(params, "clusterName", DEFAULT_CLUSTER)
    boolean(params, False, "healthyOnly")
    document = service_info(front.service(key), key, clusters_text, clusters, False, front.clock(), front.rendered)
    return success(document["hosts"])


def add_routes(add: AddRoute, prefix: str) -> None:
    """Mount the 3.x client API under `<context path>/v3/client/ns`."""
    path = f"{prefix}/v3/client/ns/instance"
    add("POST", path, register_instance)
    add("DELETE", path, naming_v2.deregister_instance)  # the same request and answer
    add("GET", f"{path}/list", instance_list)
