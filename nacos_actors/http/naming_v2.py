"""The Nacos 2.x naming HTTP API (`/v2/ns/...`): instances, services, health, clients, operator.

Nacos's InstanceControllerV2, ServiceControllerV2, HealthControllerV2, ClientInfoControllerV2 and
OperatorControllerV2, with their parameter names and defaults, answered in the `{code, message,
data}` envelope (nacos_actors.http.envelope; refusals too, as `nacos_api` routes). Every write
and read is the v1 API's own (nacos_actors.http.naming_v1, health_api, operator): the same
parsers, the same commands, the same forwarding to the Distro owner and Raft routing, so v1 and
v2 clients see each other's instances. Runs on the event loop thread.
"""

from __future__ import annotations

from aiohttp import web

from nacos_actors.core.registry import Rejected
from nacos_actors.core.streams import GrpcSubscription
from nacos_actors.core.values import clip
from nacos_actors.http import health_api, naming_v1, operator
from nacos_actors.http.envelope import success
from nacos_actors.http.front import Front, front_of, ok, request_params
from nacos_actors.http.params import instances, names
from nacos_actors.http.params.base import ParamError, Params, boolean, page_number, required
from nacos_actors.http.params.instances import check_text
from nacos_actors.http.routing import AddRoute, distro_write, nacos_api, raft_only_when
from nacos_actors.messages import DeleteService
from nacos_actors.render import clients, views
from nacos_actors.render.grpc import service_info

SERVICE_PAGE_SIZE = 20  # Nacos's default pageSize of /v2/ns/service/list
MAX_SERVICE_PAGE_SIZE = 500  # and the most it answers in one page


# -- instances -----------------------------------------------------------------------------


@nacos_api
@distro_write
@raft_only_when(naming_v1.names_persistent_instance)
async def register_instance(request: web.Request) -> web.Response:
    """POST /v2/ns/instance: add or replace an instance; `data` "ok" once applied."""
    await naming_v1.apply_register(front_of(request), await request_params(request))
    return success("ok")


@nacos_api
@distro_write
@raft_only_when(naming_v1.names_persistent_instance)
async def deregister_instance(request: web.Request) -> web.Response:
    """DELETE /v2/ns/instance: remove an instance (an unknown one is fine)."""
    await naming_v1.apply_deregister(front_of(request), await request_params(request))
    return success("ok")


@nacos_api
@distro_write
@raft_only_when(naming_v1.names_persistent_instance)
async def update_instance(request: web.Request) -> web.Response:
    """PUT /v2/ns/instance: rebuild an existing instance from the request (unknown: 400)."""
    await naming_v1.apply_update(front_of(request), await request_params(request), must_exist=True)
    return success("ok")


@nacos_api
@distro_write
@raft_only_when(naming_v1.patches_persistent_instance)
async def patch_instance(request: web.Request) -> web.Response:
    """PATCH /v2/ns/instance: change the fields given; answers plain `ok`, as Nacos 2.x."""
    await naming_v1.apply_patch(front_of(request), await request_params(request))
    return ok()


@nacos_api
async def instance_detail(request: web.Request) -> web.Response:
    """GET /v2/ns/instance: Nacos's InstanceDetailInfoVo of one instance."""
    service, found = naming_v1.find_instance(front_of(request), await request_params(request))
    return success(views.instance_detail_v2(service, found))


@nacos_api
async def instance_list(request: web.Request) -> web.Response:
    """GET /v2/ns/instance/list: the 2.x serviceInfo (`clusterName` a comma list, empty: all).
    With a UDP `port` from a push client it subscribes as v1's list does (`ip` the client's)."""
    front = front_of(request)
    query = instances.list_query(await request_params(request), "clusterName", "port", "ip")
    cache_millis = naming_v1.subscribe_for_push(front, request, query)
    key = query.service
    document = service_info(
        front.service(key),
        key,
        query.clusters_text,
        query.clusters,
        query.healthy_only,
        front.clock(),
        front.rendered,
        cache_millis,
    )
    return success(document)


@nacos_api
@distro_write
@raft_only_when(naming_v1.batches_persistent_metadata)
async def update_metadata_batch(request: web.Request) -> web.Response:
    """PUT (merge) or DELETE (remove keys) /v2/ns/instance/metadata/batch: `data.updated`."""
    params = await request_params(request)
    updated = await naming_v1.apply_metadata_batch(front_of(request), params, request.method == "DELETE")
    return success({"updated": updated})


@nacos_api
@distro_write
async def beat(request: web.Request) -> web.StreamResponse:
    """PUT /v2/ns/instance/beat: the v1 beat, answered as v1 answers it (Nacos 2.x does too)."""
    return await naming_v1.beat(request)


# -- services ------------------------------------------------------------------------------


@nacos_api
async def create_service(request: web.Request) -> web.Response:
    """POST /v2/ns/service: an empty service (400 code 21007 when it exists)."""
    await naming_v1.apply_create_service(front_of(request), await request_params(request))
    return success("ok")


@nacos_api
async def update_service(request: web.Request) -> web.Response:
    """PUT /v2/ns/service: threshold, metadata and selector, each its default when absent."""
    await naming_v1.apply_update_service(front_of(request), await request_params(request), replace_all=True)
    return success("ok")


@nacos_api
async def delete_service(request: web.Request) -> web.Response:
    """DELETE /v2/ns/service: only a service with no instances (400 code 21009 otherwise)."""
    front = front_of(request)
    params = await request_params(request)
    await front.write(DeleteService(names.service_key(params)))
    return success("ok")


@nacos_api
async def service_detail(request: web.Request) -> web.Response:
    """GET /v2/ns/service: Nacos's ServiceDetailInfo (400 code 21008 for an unknown service)."""
    front = front_of(request)
    key = names.service_key(await request_params(request))
    service = front.service(key)
    if service is None:
        raise Rejected(400, f"service not found, namespace: {key.namespace}, serviceName: {key.name}")
    return success(views.service_detail_v2(service))


@nacos_api
async def service_list(request: web.Request) -> web.Response:
    """GET /v2/ns/service/list: `{count, services}`, the grouped names of one group, paged
    (pageSize at most 500; `selector` is accepted and, as in Nacos, not applied)."""
    front = front_of(request)
    params = await request_params(request)
    namespace = names.namespace(params)
    group = names.group(params)
    page_no = page_number(params, "pageNo", 1)
    page_size = min(page_number(params, "pageSize", SERVICE_PAGE_SIZE), MAX_SERVICE_PAGE_SIZE)
    check_text(params.get("selector") or "", "selector")
    grouped = sorted(s.key.name for s in front.services_in(namespace) if s.group == group)
    return success({"count": len(grouped), "services": naming_v1.page(grouped, page_no, page_size)})


# -- health --------------------------------------------------------------------------------


@nacos_api
@distro_write
@raft_only_when(health_api.sets_persistent_health)
async def set_instance_health(request: web.Request) -> web.Response:
    """PUT /v2/ns/health/instance (and /v2/ns/health): an instance's health, set by hand where
    its cluster's checker is NONE."""
    await health_api.apply_set_health(front_of(request), await request_params(request))
    return success("ok")


# -- clients -------------------------------------------------------------------------------


def node_clients(front: Front) -> clients.Clients:
    return clients.all_clients(front.view.all_services(), front.connections())


def known_client_id(params: Params, known: clients.Clients) -> str:
    """The `clientId` param, which must name a client of this node (else 404 code 20004)."""
    client_id = required(params, "clientId")
    if client_id not in known.connections and client_id not in known.ip_port:
        raise ParamError(f"clientId [ {clip(client_id, 128)} ] not exist", status=404)
    return client_id


@nacos_api
async def client_list(request: web.Request) -> web.Response:
    """GET /v2/ns/client/list: every client id (connections, then IP-port clients)."""
    return success(node_clients(front_of(request)).ids())


@nacos_api
async def client_detail(request: web.Request) -> web.Response:
    """GET /v2/ns/client?clientId=: one client, a connection or an IP-port client."""
    front = front_of(request)
    known = node_clients(front)
    client_id = known_client_id(await request_params(request), known)
    summary = known.connections.get(client_id)
    if summary is not None:
        return success(clients.connection_detail(summary))
    return success(clients.ip_port_detail(known.ip_port[client_id], front.beats.last))


@nacos_api
async def client_published(request: web.Request) -> web.Response:
    """GET /v2/ns/client/publish/list?clientId=: the instances a client registered."""
    known = node_clients(front_of(request))
    client_id = known_client_id(await request_params(request), known)
    summary = known.connections.get(client_id)
    if summary is not None:
        return success(clients.connection_published(summary))
    return success(clients.ip_port_published(known.ip_port[client_id]))


@nacos_api
async def client_subscribed(request: web.Request) -> web.Response:
    """GET /v2/ns/client/subscribe/list?clientId=: a connection's subscriptions (an IP-port
    client's are none: v1 push subscribers are listed by /v1/ns/service/subscribers)."""
    known = node_clients(front_of(request))
    client_id = known_client_id(await request_params(request), known)
    summary = known.connections.get(client_id)
    return success(clients.connection_subscribed(summary) if summary is not None else [])


def address_filter(params: Params) -> tuple[str | None, int | None]:
    """The optional `ip` and `port` a client view is narrowed to."""
    ip = instances.ip(params) if params.get("ip") is not None else None
    port = instances.port(params) if params.get("port") is not None else None
    return ip, port


@nacos_api
async def service_publishers(request: web.Request) -> web.Response:
    """GET /v2/ns/client/service/publisher/list: a service's instances of one kind
    (`ephemeral`, default true) with their clients, narrowed to `ip` and `port` when given."""
    front = front_of(request)
    params = await request_params(request)
    key = names.service_key(params)
    ephemeral = boolean(params, True, "ephemeral")
    ip, port = address_filter(params)
    rows = clients.service_publishers(node_clients(front), front.service(key), ephemeral, ip, port)
    return success(rows)


@nacos_api
async def service_subscribers(request: web.Request) -> web.Response:
    """GET /v2/ns/client/service/subscriber/list: a service's subscribers, gRPC connections
    (port 0) and UDP push subscribers (`ip:port#true`), narrowed to `ip` and `port` if given."""
    front = front_of(request)
    params = await request_params(request)
    key = names.service_key(params)
    boolean(params, True, "ephemeral")
    ip, port = address_filter(params)
    rows = clients.connection_subscribers(front.connections(), key, ip, port)
    for subscription in await front.subscriptions(key.namespace):
        if isinstance(subscription, GrpcSubscription):
            continue  # listed above, from its connection
        subscriber = subscription.key
        if subscriber.service != key or (ip is not None and subscriber.address != ip):
            continue
        if port is None or subscriber.port == port:
            client_id = clients.ip_port_client_id(subscriber.address, subscriber.port, True)
            rows.append({"clientId": client_id, "ip": subscriber.address, "port": subscriber.port})
    return success(rows)


# -- operator ------------------------------------------------------------------------------


@nacos_api
async def switches(request: web.Request) -> web.Response:
    """GET /v2/ns/operator/switches: Nacos's switch domain."""
    return success(operator.switch_document(front_of(request).settings))


@nacos_api
async def metrics(request: web.Request) -> web.Response:
    """GET /v2/ns/operator/metrics: the status alone (`onlyStatus`, default true), else
    Nacos's MetricsInfoVo with the counts of clients by kind."""
    front = front_of(request)
    params = await request_params(request)
    status = "UP" if front.serving else "STARTING"
    if boolean(params, True, "onlyStatus"):
        return success({"status": status})
    known = node_clients(front)
    ephemeral_ip_port = sum(1 for client in known.ip_port.values() if client.ephemeral)
    subscribers = front.push_board.udp.subscribers + sum(len(c.subscribed) for c in known.connections.values())
    owns = (lambda key: True) if front.cluster is None else front.cluster.owns
    responsible = len(known.connections) + sum(
        1 for client in known.ip_port.values() if any(owns(service.key) for service, _ in client.published)
    )
    document = {
        "status": status,
        "serviceCount": front.view.service_count,
        "instanceCount": front.view.instance_count,
        "subscribeCount": subscribers,
        "clientCount": len(known.connections) + len(known.ip_port),
        "connectionBasedClientCount": len(known.connections),
        "ephemeralIpPortClientCount": ephemeral_ip_port,
        "persistentIpPortClientCount": len(known.ip_port) - ephemeral_ip_port,
        "responsibleClientCount": responsible,
        "cpu": 0.0,
        "load": operator.load_average(),
        "mem": 0.0,
    }
    return success(document)


def add_routes(add: AddRoute, prefix: str) -> None:
    """Mount the 2.x naming API under `<context path>/v2/ns`."""
    ns = f"{prefix}/v2/ns"
    add("POST", f"{ns}/instance", register_instance)
    add("DELETE", f"{ns}/instance", deregister_instance)
    add("PUT", f"{ns}/instance", update_instance)
    add("PATCH", f"{ns}/instance", patch_instance)
    add("GET", f"{ns}/instance", instance_detail)
    add("GET", f"{ns}/instance/list", instance_list)
    add("PUT", f"{ns}/instance/metadata/batch", update_metadata_batch)
    add("DELETE", f"{ns}/instance/metadata/batch", update_metadata_batch)
    add("PUT", f"{ns}/instance/beat", beat)
    add("POST", f"{ns}/service", create_service)
    add("PUT", f"{ns}/service", update_service)
    add("DELETE", f"{ns}/service", delete_service)
    add("GET", f"{ns}/service", service_detail)
    add("GET", f"{ns}/service/list", service_list)
    add("PUT", f"{ns}/health/instance", set_instance_health)
    add("PUT", f"{ns}/health", set_instance_health)
    add("GET", f"{ns}/client/list", client_list)
    add("GET", f"{ns}/client", client_detail)
    add("GET", f"{ns}/client/publish/list", client_published)
    add("GET", f"{ns}/client/subscribe/list", client_subscribed)
    add("GET", f"{ns}/client/service/publisher/list", service_publishers)
    add("GET", f"{ns}/client/service/subscriber/list", service_subscribers)
    for base in (f"{ns}/operator", f"{ns}/ops"):
        add("GET", f"{base}/switches", switches)
        add("GET", f"{base}/metrics", metrics)
