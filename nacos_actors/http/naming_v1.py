"""The Nacos v1 naming OpenAPI (`/v1/ns/...`): instances, beats, services, catalog.

Each handler parses its parameters once (nacos_actors.http.params), then either reads a
snapshot or sends one command to the registry actor. Runs on the event loop thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from aiohttp import web

from nacos_actors.core.health import BEAT_NOT_FOUND, BEAT_REREGISTERED, BEAT_REVIVED, beat_outcome
from nacos_actors.core.push import SubscriberKey, Subscription
from nacos_actors.core.values import is_ip_literal
from nacos_actors.http.front import Front, front_of, json_response, json_stream, memoized_params, ok, request_params
from nacos_actors.http.params import clients, instances, metadata, names
from nacos_actors.http.params.base import (
    MAX_INT32,
    MissingParam,
    ParamError,
    Params,
    QueryMemo,
    boolean,
    page_number,
    parse_boolean,
)
from nacos_actors.http.params.metadata import M
from nacos_actors.http.routing import AddRoute, distro_write, raft_only_when
from nacos_actors.messages import (
    BeatInstance,
    CreateService,
    DeleteService,
    DeregisterInstance,
    PatchInstance,
    RegisterInstance,
    UpdateInstance,
    UpdateMetadataBatch,
    UpdateService,
)
from nacos_actors.metrics import HEALTH_REVIVED
from nacos_actors.model import (
    DEFAULT_HEART_BEAT_INTERVAL_MS,
    NO_SELECTOR,
    Instance,
    InstanceKey,
    Service,
    ServiceKey,
    freeze,
    in_order,
    split_grouped_name,
)
from nacos_actors.render import lists, views

GZIP_JSON_HEADERS = {
    "Content-Type": "application/json",
    "Content-Encoding": "gzip",
    "Vary": "Accept-Encoding",
}
BEAT_CODE_OK = 10200
BEAT_CODE_NOT_FOUND = 20404
BEAT_NOT_FOUND_ANSWER = views.dumps({"clientBeatInterval": DEFAULT_HEART_BEAT_INTERVAL_MS, "code": BEAT_CODE_NOT_FOUND})


@lru_cache(maxsize=256)
def beat_answer(interval_ms: int) -> bytes:
    """The answer to a beat on a known instance (the same bytes for every beat of an interval)."""
    return views.dumps({"clientBeatInterval": interval_ms, "code": BEAT_CODE_OK, "lightBeatEnabled": True})


ALL_GROUPS = "*"
# The two queries clients repeat: the same URL polled, the same instance beating.
LIST_QUERIES = QueryMemo(instances.list_query)
BEAT_QUERIES = QueryMemo(instances.beat_query)


def page(items: list[Any], page_no: int, page_size: int) -> list[Any]:
    start = (page_no - 1) * page_size
    return items[start : start + page_size] if start < len(items) else []


def sorted_services(services: Iterable[Service]) -> list[Service]:
    return sorted(services, key=lambda s: s.key.name)


def _instance_metadata_within_limit(front: Front, given: M, name: str = "metadata") -> M:
    return metadata.within_limit(
        given, front.settings.max_instance_metadata_bytes, metadata.INSTANCE_METADATA_LIMIT, name
    )


def _service_metadata_within_limit(front: Front, given: M) -> M:
    return metadata.within_limit(given, front.settings.max_service_metadata_bytes, metadata.SERVICE_METADATA_LIMIT)


# -- which writes are Raft's alone (never forwarded to the Distro owner) -------------------


def names_persistent_instance(params: Params, front: Front) -> bool:
    """A register, update or deregister with `ephemeral=false`."""
    raw = params.get("ephemeral")
    return raw is not None and raw.lower() == "false"


def patches_persistent_instance(params: Params, front: Front) -> bool:
    """A PATCH with `ephemeral=false`, or without `ephemeral` on a service this member holds
    with no ephemeral instance at that address (as route_write decides)."""
    if params.get("ephemeral") is not None:
        return names_persistent_instance(params, front)
    service = front.service(names.service_key(params))
    if service is None:
        return False
    key = InstanceKey(instances.ip(params), instances.port(params), names.cluster(params), True)
    return key not in service.instances


def batches_persistent_metadata(params: Params, front: Front) -> bool:
    """A metadata batch for `consistencyType=persist`, or naming persistent instances only."""
    kind = params.get("consistencyType")
    if kind is not None:
        return kind == "persist"
    document = metadata.json_value(params, "instances")
    targets = instances.instance_targets(document) if document is not None else ()
    return bool(targets) and not any(key.ephemeral for key in targets)


# -- instances: what the v1, v2 and v3 APIs share ------------------------------------------


async def apply_register(front: Front, params: Params) -> None:
    """Register (add or replace) the instance `params` describe; returns once applied."""
    service = names.service_key(params)
    instance = instances.instance(params, service)
    _instance_metadata_within_limit(front, instance.metadata)
    # The beat clock starts before the write: the health actor may see the change before this
    # request resumes, and must not judge the instance by an older beat.
    front.beats.record(service, instance.key, front.clock())
    await front.write(RegisterInstance(service, instance))


async def apply_deregister(front: Front, params: Params) -> None:
    """Remove the instance `params` name; an unknown one is fine, as in Nacos."""
    service = names.service_key(params)
    key = instances.instance_key(params)
    await front.write(DeregisterInstance(service, key))
    front.beats.forget(service, key)


async def apply_update(front: Front, params: Params, must_exist: bool) -> None:
    """Rebuild the instance from `params`; with `must_exist` an unknown one is refused."""
    service = names.service_key(params)
    instance = instances.instance(params, service)
    _instance_metadata_within_limit(front, instance.metadata)
    await front.write(UpdateInstance(service, instance, must_exist=must_exist))


async def apply_patch(front: Front, params: Params) -> None:
    """Change only the fields `params` give of an existing instance."""
    ephemeral = params.get("ephemeral")
    command = PatchInstance(
        service=names.service_key(params),
        ip=instances.ip(params),
        port=instances.port(params),
        cluster=names.cluster(params),
        ephemeral=None if ephemeral is None else parse_boolean(ephemeral, "ephemeral"),
        weight=instances.weight(params) if params.get("weight") is not None else None,
        healthy=boolean(params, True, "healthy") if params.get("healthy") is not None else None,
        enabled=boolean(params, True, "enabled", "enable") if params.first("enabled", "enable") else None,
        metadata=_instance_metadata_within_limit(front, metadata.metadata(params)),
        app=instances.app(params) if params.get("app") is not None else None,
    )
    await front.write(command)


def find_instance(front: Front, params: Params) -> tuple[Service, Instance]:
    """The instance `params` name (ephemeral first, else persistent) and its service; a 404
    saying which of service, cluster or address was not found."""
    key = names.service_key(params)
    ip, port, cluster = instances.ip(params), instances.port(params), names.cluster(params)
    service = front.service(key)
    if service is None:
        raise ParamError(f"no service {key.name} found!", status=404)
    if all(k.cluster != cluster for k in service.instances):
        raise ParamError(f"no ips found for cluster {cluster} in service {key.name}", status=404)
    for ephemeral in (True, False):
        found = service.instances.get(InstanceKey(ip, port, cluster, ephemeral))
        if found is not None:
            return service, found
    raise ParamError("no matched ip found!", status=404)


async def apply_beat(
    front: Front, service: ServiceKey, key: InstanceKey, from_beat: Instance | None
) -> Instance | None:
    """A beat on `key` (a full one re-registers `from_beat` when unknown): the instance it
    kept alive, or None when a light beat names no instance. A beat on a healthy instance is
    recorded on this thread with no registry write. Counted by outcome
    (nacos_actors_beats_total)."""
    snapshot = front.service(service)
    found = snapshot.instances.get(key) if snapshot is not None else None
    outcome = beat_outcome(found, from_beat is not None)
    if outcome != BEAT_NOT_FOUND:
        # Recorded before any write, which the health actor may see before this request resumes:
        # judged by the older beat, a revived instance would be marked unhealthy again at once.
        front.beats.record(service, key, front.clock())
    if outcome in (BEAT_REVIVED, BEAT_REREGISTERED):
        found = await front.write(BeatInstance(service, key, from_beat))
        if found is None:  # a light beat whose instance was removed meanwhile: unknown now
            outcome = BEAT_NOT_FOUND
            front.beats.forget(service, key)
        elif outcome == BEAT_REVIVED:
            front.metrics.health_transitions[HEALTH_REVIVED].inc()
    front.metrics.beats[outcome].inc()
    return found


async def apply_metadata_batch(front: Front, params: Params, delete: bool) -> list[str]:
    """Merge (or with `delete` remove) `metadata` keys on the instances a batch names: the
    `instances` array, or every instance of `consistencyType`. The ids of those updated."""
    service = names.service_key(params)
    changes = _instance_metadata_within_limit(front, metadata.metadata(params))
    if changes is None:
        raise MissingParam("metadata")
    kind = params.get("consistencyType")
    if kind is not None and kind not in ("ephemeral", "persist"):
        raise ParamError("Param 'consistencyType' must be 'ephemeral' or 'persist'.")
    document = metadata.json_value(params, "instances")
    if kind is None and document is None:
        raise MissingParam("instances", "Param 'instances' (or 'consistencyType') is required.")
    targets = instances.instance_targets(document) if kind is None else ()
    return list(await front.write(UpdateMetadataBatch(service, changes, delete, kind, targets)))


# -- instances: the v1 handlers ----------------------------------------------------------


@distro_write
@raft_only_when(names_persistent_instance)
async def register_instance(request: web.Request) -> web.Response:
    """POST /v1/ns/instance: add or replace an instance; answers once applied."""
    await apply_register(front_of(request), await request_params(request))
    return ok()


@distro_write
@raft_only_when(names_persistent_instance)
async def deregister_instance(request: web.Request) -> web.Response:
    """DELETE /v1/ns/instance: remove an instance; unknown ones are fine, as in Nacos."""
    await apply_deregister(front_of(request), await request_params(request))
    return ok()


@distro_write
@raft_only_when(names_persistent_instance)
async def update_instance(request: web.Request) -> web.Response:
    """PUT /v1/ns/instance: rebuild from the request; Java clients >= 1.0 need it to exist."""
    must_exist = clients.is_java_client(request.headers)
    await apply_update(front_of(request), await request_params(request), must_exist)
    return ok()


@distro_write
@raft_only_when(patches_persistent_instance)
async def patch_instance(request: web.Request) -> web.Response:
    """PATCH /v1/ns/instance (and /v2/ns/instance, which answers `ok` too): change only the
    fields given."""
    await apply_patch(front_of(request), await request_params(request))
    return ok()


async def instance_detail(request: web.Request) -> web.Response:
    """GET /v1/ns/instance: one instance, ephemeral first, else persistent."""
    service, found = find_instance(front_of(request), await request_params(request))
    return json_response(views.dumps(views.instance_detail(service, found)))


async def instance_list(request: web.Request) -> web.Response:
    """GET /v1/ns/instance/list: the query every client polls; served from the snapshot."""
    front = front_of(request)
    query = await memoized_params(request, LIST_QUERIES)
    key = query.service
    headers = request.headers
    java_client = clients.is_java_agent(clients.user_agent(headers))
    cache_millis = subscribe_for_push(front, request, query)
    body, compressed = lists.instance_list(
        front.service(key),
        key,
        query.clusters_text,
        query.clusters,
        query.healthy_only,
        java_client,
        cache_millis,
        front.clock(),
        clients.accepts_gzip(headers),
        front.rendered,
        front.list_memo,
    )
    if compressed:
        return web.Response(body=body, headers=GZIP_JSON_HEADERS)
    return json_response(body)


def subscribe_for_push(front: Front, request: web.Request, query: instances.ListQuery) -> int:
    """Subscribe the client of a list query to UDP push when it gives a UDP port and its agent
    is one Nacos pushes to; the `cacheMillis` to answer (the push pace when subscribed)."""
    agent = clients.user_agent(request.headers)
    if query.udp_port <= 0 or not front.push_enabled or not clients.is_push_client(agent):
        return lists.DEFAULT_CACHE_MILLIS
    # Push goes to where the query came from; `clientIP` only when the operator trusts it
    # (clients behind a proxy), so nobody can aim the registry's UDP at a third party.
    client_ip = query.client_ip
    trusted = front.settings.push_trust_client_ip and client_ip is not None and is_ip_literal(client_ip)
    address = client_ip if trusted else request.remote
    if not address:
        return lists.DEFAULT_CACHE_MILLIS
    subscriber = SubscriberKey(query.service, query.clusters_text, address, query.udp_port)
    java_client = clients.is_java_agent(agent)
    front.subscribe(Subscription(subscriber, query.clusters, agent[:256], query.app, java_client))
    # Where the push actor refuses new subscribers, the client is told to poll at the polling
    # pace: it may not be pushed to.
    if front.push_board.refusing.refuses(address, query.service):
        return lists.DEFAULT_CACHE_MILLIS
    return front.settings.push_cache_ms


@distro_write
async def beat(request: web.Request) -> web.Response:
    """PUT /v1/ns/instance/beat: a full beat (`beat` JSON) or a light one (ip/port/cluster).

    A beat on a healthy instance is recorded on this thread with no registry write. A light
    beat for an unknown instance answers code 20404; a full one registers it again. Each beat
    is counted by outcome (nacos_actors_beats_total).
    """
    front = front_of(request)
    query = await memoized_params(request, BEAT_QUERIES)
    if query.from_beat is not None:
        _instance_metadata_within_limit(front, query.from_beat.metadata, "beat.metadata")
    found = await apply_beat(front, query.service, query.key, query.from_beat)
    if found is None:
        return json_response(BEAT_NOT_FOUND_ANSWER)
    return json_response(beat_answer(found.beat_interval_ms))


@distro_write
@raft_only_when(batches_persistent_metadata)
async def update_metadata_batch(request: web.Request) -> web.Response:
    """PUT (merge) or DELETE (remove keys) /v1/ns/instance/metadata/batch."""
    updated = await apply_metadata_batch(front_of(request), await request_params(request), request.method == "DELETE")
    return json_response(views.dumps({"updated": updated}))


# -- services ----------------------------------------------------------------------------


async def apply_create_service(front: Front, params: Params) -> None:
    """Create an empty service with threshold, metadata and selector (v1 and v2 alike)."""
    command = CreateService(
        names.service_key(params),
        metadata.protect_threshold(params, required_param=False),
        _service_metadata_within_limit(front, metadata.metadata(params) or freeze({})),
        metadata.selector(params) or NO_SELECTOR,
    )
    await front.write(command)


async def apply_update_service(front: Front, params: Params, replace_all: bool) -> None:
    """Set a service's threshold, metadata and selector. The v1 way (`replace_all` false): the
    threshold is required, metadata and selector replaced only when given. The v2 way: every
    field absent takes its default (threshold 0, no metadata, no selector), as Nacos 2.x's
    ServiceForm fills them."""
    given_metadata = _service_metadata_within_limit(front, metadata.metadata(params))
    given_selector = metadata.selector(params)
    if replace_all:
        given_metadata = given_metadata or freeze({})
        given_selector = given_selector or NO_SELECTOR
    command = UpdateService(
        names.service_key(params),
        metadata.protect_threshold(params, required_param=not replace_all),
        given_metadata,
        given_selector,
    )
    await front.write(command)


async def create_service(request: web.Request) -> web.Response:
    """POST /v1/ns/service: an empty service with threshold, metadata and selector."""
    await apply_create_service(front_of(request), await request_params(request))
    return ok()


async def update_service(request: web.Request) -> web.Response:
    """PUT /v1/ns/service: threshold (required), metadata and selector (replaced when given)."""
    await apply_update_service(front_of(request), await request_params(request), replace_all=False)
    return ok()


async def delete_service(request: web.Request) -> web.Response:
    """DELETE /v1/ns/service (and /v2/ns/service): only a service with no instances (as Nacos 2.x)."""
    front = front_of(request)
    params = await request_params(request)
    await front.write(DeleteService(names.service_key(params)))
    return ok()


async def requested_service(request: web.Request) -> Service:
    """The service a request names (serviceName, groupName, namespaceId); a 404 when there is
    none. Loop thread."""
    key = names.service_key(await request_params(request))
    service = front_of(request).service(key)
    if service is None:
        raise web.HTTPNotFound(text=f"service {key.name} is not found!")
    return service


async def service_detail(request: web.Request) -> web.Response:
    """GET /v1/ns/service."""
    return json_response(views.dumps(views.service_detail(await requested_service(request))))


async def service_list(request: web.Request) -> web.StreamResponse:
    """GET /v1/ns/service/list: `{count, doms}`; groupName `*` lists every group. Written as it
    is rendered (json_stream)."""
    front = front_of(request)
    params = await request_params(request)
    page_no = page_number(params, "pageNo")
    page_size = page_number(params, "pageSize")
    namespace = names.namespace(params)
    group = params.get("groupName")
    if group != ALL_GROUPS:
        group = names.group(params)
    service_names = sorted(s.key.name for s in front.services_in(namespace))
    if group == ALL_GROUPS:
        doms = service_names
    else:
        doms = [bare for g, bare in map(split_grouped_name, service_names) if g == group]
    head = b'{"count":%d,"doms":[' % len(doms)
    return await json_stream(request, views.json_array_parts(page(doms, page_no, page_size), head, b"]}"))


async def service_subscribers(request: web.Request) -> web.Response:
    """GET /v1/ns/service/subscribers: the push subscribers of services whose name and group
    contain the given ones (Nacos's fuzzy match), paged; `aggregation` is accepted (one node)."""
    front = front_of(request)
    params = await request_params(request)
    key = names.service_key(params)
    page_no = page_number(params, "pageNo", 1)
    page_size = page_number(params, "pageSize", 1000)
    boolean(params, True, "aggregation")
    group, bare = split_grouped_name(key.name)
    rows = []
    for subscription in await front.subscriptions(key.namespace):
        row = views.subscriber(subscription)
        their_group, their_name = split_grouped_name(row["serviceName"])
        if bare in their_name and group in their_group:
            rows.append(row)
    rows.sort(key=lambda row: (row["serviceName"], row["addrStr"], row["cluster"]))
    return json_response(views.dumps({"subscribers": page(rows, page_no, page_size), "count": len(rows)}))


# -- catalog (console) -------------------------------------------------------------------


async def catalog_services(request: web.Request) -> web.StreamResponse:
    """GET /v1/ns/catalog/services: service summaries, or with `withInstances` their hosts.
    Written as it is rendered (json_stream): a page may be the whole registry."""
    front = front_of(request)
    params = await request_params(request)
    with_instances = boolean(params, False, "withInstances")
    page_no = page_number(params, "pageNo", None if not with_instances else 1)
    page_size = page_number(params, "pageSize", None if not with_instances else MAX_INT32)
    namespace = names.namespace(params)
    name_filter = params.get("serviceNameParam") or ""
    group_filter = params.get("groupNameParam") or ""
    has_ip_count = boolean(params, False, "hasIpCount")
    services = [
        s
        for s in sorted_services(front.services_in(namespace))
        if name_filter in s.bare_name and group_filter in s.group and (s.instances or not has_ip_count)
    ]
    chosen = page(services, page_no, page_size)
    if with_instances:
        return await json_stream(request, views.json_array_parts(map(views.catalog_with_instances, chosen)))
    head = b'{"count":%d,"serviceList":[' % len(services)
    return await json_stream(request, views.json_array_parts(map(views.catalog_summary, chosen), head, b"]}"))


async def catalog_service(request: web.Request) -> web.Response:
    """GET /v1/ns/catalog/service: a service's settings and its clusters with their checkers."""
    return json_response(views.dumps(views.catalog_service(await requested_service(request))))


async def catalog_instances(request: web.Request) -> web.Response:
    """GET /v1/ns/catalog/instances: one cluster's instances, full server JSON, paged."""
    front = front_of(request)
    params = await request_params(request)
    key = names.service_key(params)
    cluster = names.cluster(params, "clusterName")
    if params.get("clusterName") is None:
        raise ParamError("Param 'clusterName' is required.")
    page_no = page_number(params, "pageNo")
    page_size = page_number(params, "pageSize")
    service = front.service(key)
    if service is None:
        raise web.HTTPNotFound(text=f"service {key.name} is not found!")
    in_cluster = [i for i in in_order(service.instances.values()) if i.cluster == cluster]
    if not in_cluster:
        raise web.HTTPNotFound(text=f"cluster {cluster} is not found!")
    rows = [
        views.server_instance(service, i, front.beats.last(key, i.key)) for i in page(in_cluster, page_no, page_size)
    ]
    return json_response(views.dumps({"list": rows, "count": len(in_cluster)}))


def add_routes(add: AddRoute, prefix: str) -> None:
    """Mount the naming API under `<context path>/v1/ns`."""
    ns = f"{prefix}/v1/ns"
    add("POST", f"{ns}/instance", register_instance)
    add("DELETE", f"{ns}/instance", deregister_instance)
    add("PUT", f"{ns}/instance", update_instance)
    add("PATCH", f"{ns}/instance", patch_instance)
    add("GET", f"{ns}/instance", instance_detail)
    add("GET", f"{ns}/instance/list", instance_list)
    add("PUT", f"{ns}/instance/beat", beat)
    add("PUT", f"{ns}/instance/metadata/batch", update_metadata_batch)
    add("DELETE", f"{ns}/instance/metadata/batch", update_metadata_batch)
    add("POST", f"{ns}/service", create_service)
    add("PUT", f"{ns}/service", update_service)
    add("DELETE", f"{ns}/service", delete_service)
    add("GET", f"{ns}/service", service_detail)
    add("GET", f"{ns}/service/list", service_list)
    add("GET", f"{ns}/service/subscribers", service_subscribers)
    add("GET", f"{ns}/catalog/services", catalog_services)
    add("GET", f"{ns}/catalog/service", catalog_service)
    add("GET", f"{ns}/catalog/instances", catalog_instances)
