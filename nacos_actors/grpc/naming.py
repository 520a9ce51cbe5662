"""The naming requests of the Nacos 2.x gRPC protocol, with Nacos's field names, defaults,
response types and error codes (docs/grpc-notes.md §2-3): InstanceRequest,
BatchInstanceRequest, PersistentInstanceRequest, ServiceQueryRequest, SubscribeServiceRequest,
ServiceListRequest and HealthCheckRequest.

Each parses its body once (nacos_actors.grpc.fields: a bad field raises ParamError naming it,
before anything is stored), then reads the registry's snapshots or writes like the v1 handlers:
on a standalone node, or for a service this member is responsible for, through
`front.write`; on a cluster member that is not, by forwarding the equivalent v1 request to the
member that is (a signed peer call marked forwarded, as nacos_actors.http.cluster forwards HTTP
clients' writes). Persistent instances go through Raft from any member.

Liveness: the ephemeral instances a connection owns are beaten through the health path every
beat interval (`async_beat`: the beat log, and a BeatInstance write when the instance is
missing or unhealthy, as the v1 beat does; a v1 full beat forwarded to the member responsible),
and removed when the connection ends (`async_remove`).

Event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import orjson

from nacos_actors.bridge import ActorUnavailable
from nacos_actors.core.connections import ConnectionTable
from nacos_actors.core.registry import Rejected
from nacos_actors.core.streams import GrpcSubscription
from nacos_actors.core.values import clip
from nacos_actors.grpc import codec, fields
from nacos_actors.grpc.codec import Received
from nacos_actors.http import naming_v1
from nacos_actors.http.front import FORM_CONTENT_TYPE, Front
from nacos_actors.http.params.base import MAX_INT32, ParamError
from nacos_actors.messages import (
    PUSH,
    DeregisterInstance,
    GrpcSubscribe,
    GrpcUnsubscribe,
    RegisterInstance,
)
from nacos_actors.model import DEFAULT_APP, Instance, InstanceKey, ServiceKey, split_grouped_name
from nacos_actors.peers import PeerError
from nacos_actors.render.grpc import service_info

log = logging.getLogger(__name__)
REGISTER = "registerInstance"
DEREGISTER = "deregisterInstance"
BATCH_REGISTER = "batchRegisterInstance"
INSTANCE_PATH = "/v1/ns/instance"
BEAT_PATH = "/v1/ns/instance/beat"
APP_HEADER = "app"


@dataclass(frozen=True, slots=True)
class Call:
    """One unary request on a set-up connection."""

    connection_id: str
    received: Received

    @property
    def body(self) -> dict[str, Any]:
        return self.received.body


class Server(Protocol):
    """What the handlers need of the server: its tasks and its timer."""

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None: ...

    def changed(self) -> None: ...


Handler = Callable[[Call], Awaitable[bytes]]


def handlers(front: Front, table: ConnectionTable, server: Server) -> dict[str, Handler]:
    """The unary handlers by `metadata.type` (ServerCheckRequest is the server's own)."""
    naming = NamingRequests(front, table, server)
    return {
        "HealthCheckRequest": naming.health_check,
        "InstanceRequest": naming.instance,
        "BatchInstanceRequest": naming.batch_instance,
        "PersistentInstanceRequest": naming.persistent_instance,
        "ServiceQueryRequest": naming.query_service,
        "SubscribeServiceRequest": naming.subscribe_service,
        "ServiceListRequest": naming.list_services,
    }


class NamingRequests:
    """The handlers, over one front and connection table. Loop thread."""

    def __init__(self, front: Front, table: ConnectionTable, server: Server) -> None:
        self.front = front
        self.table = table
        self.server = server

    @property
    def metadata_limit(self) -> int:
        return self.front.settings.max_instance_metadata_bytes

    async def health_check(self, call: Call) -> bytes:
        return codec.success("HealthCheckResponse")

    async def instance(self, call: Call) -> bytes:
        """InstanceRequest: register or deregister one ephemeral instance, owned by the connection."""
        body = call.body
        kind = _register_or_deregister(body)
        service = fields.service_key(body)
        instance = fields.instance(body, service, True, self.metadata_limit)
        if kind == REGISTER:
            await self._register(call.connection_id, service, instance)
        else:
            self.table.deregistered(call.connection_id, service, instance.key)
            await async_remove(self.front, service, instance.key)
        return codec.success("InstanceResponse", {"type": kind})

    async def batch_instance(self, call: Call) -> bytes:
        """BatchInstanceRequest: the connection's instances of one service become the given ones
        (an empty list removes them all: the Python client's batch deregister)."""
        body = call.body
        kind = fields.text(body, "type")
        if kind != BATCH_REGISTER:
            raise ParamError(f"Param 'type' must be {BATCH_REGISTER}, got '{clip(kind or '')}'.")
        service = fields.service_key(body)
        limit = self.front.settings.grpc_max_instances_per_connection
        chosen = fields.instances(body, service, self.metadata_limit, limit)
        plan = self.table.batch_plan(call.connection_id, service, chosen)
        if plan is None:
            raise ParamError(
                f"Param 'instances' would take this connection past {limit} instances "
                "(grpc_max_instances_per_connection)."
            )
        for instance in plan.register:
            self.front.beats.record(service, instance.key, self.front.clock())
        outcomes = await asyncio.gather(
            *(async_write_instance(self.front, service, i) for i in plan.register), return_exceptions=True
        )
        # What was written is owned (and so beaten and removed in time) even if another failed.
        self._own(
            call.connection_id, service, tuple(i for i, o in zip(plan.register, outcomes, strict=True) if o is None)
        )
        failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
        if failed is not None:
            raise failed
        for key in plan.deregister:
            self.table.deregistered(call.connection_id, service, key)
        await asyncio.gather(*(async_remove(self.front, service, key) for key in plan.deregister))
        return codec.success("BatchInstanceResponse", {"type": BATCH_REGISTER})

    async def persistent_instance(self, call: Call) -> bytes:
        """PersistentInstanceRequest: through Raft, from any member; not owned by the connection."""
        body = call.body
        kind = _register_or_deregister(body)
        service = fields.service_key(body)
        instance = fields.instance(body, service, False, self.metadata_limit)
        if kind == REGISTER:
            await self.front.write(RegisterInstance(service, instance))
        else:
            await self.front.write(DeregisterInstance(service, instance.key))
        return codec.success("InstanceResponse", {"type": kind})

    async def query_service(self, call: Call) -> bytes:
        """ServiceQueryRequest: the serviceInfo for `cluster` (`healthyOnly`, or Python's `healthOnly`)."""
        body = call.body
        service = fields.service_key(body)
        clusters_text, clusters = fields.clusters(body, "cluster")
        healthy_only = fields.flag(body, False, "healthyOnly", "healthOnly")
        fields.whole(body, "udpPort", 0, 0, 65535)
        info = self._service_info(service, clusters_text, clusters, healthy_only)
        return codec.success("QueryServiceResponse", {"serviceInfo": info})

    async def subscribe_service(self, call: Call) -> bytes:
        """SubscribeServiceRequest: subscribe (answers every instance) or unsubscribe; the push
        actor is told either way when push runs."""
        body = call.body
        service = fields.service_key(body)
        clusters_text, clusters = fields.clusters(body, "clusters")
        subscribe = fields.flag(body, False, "subscribe")
        front = self.front
        connection_id = call.connection_id
        if subscribe:
            if not self.table.subscribed(connection_id, service, clusters_text):
                limit = front.settings.grpc_max_subscriptions_per_connection
                raise ParamError(
                    f"Param 'serviceName': this connection holds {limit} subscriptions already "
                    "(grpc_max_subscriptions_per_connection)."
                )
            if front.push_enabled:
                app = clip(received_app(call.received.headers), 128)
                subscription = GrpcSubscription(
                    connection_id,
                    service,
                    clusters_text,
                    clusters,
                    self.table.client_ip(connection_id),
                    self.table.client_version(connection_id),
                    app,
                )
                front.bridge.async_tell(PUSH, GrpcSubscribe(subscription))
        else:
            self.table.unsubscribed(connection_id, service, clusters_text)
            if front.push_enabled:
                front.bridge.async_tell(PUSH, GrpcUnsubscribe(connection_id, service, clusters_text))
        info = self._service_info(service, clusters_text, clusters, False)
        return codec.success("SubscribeServiceResponse", {"message": "success", "serviceInfo": info})

    async def list_services(self, call: Call) -> bytes:
        """ServiceListRequest: `count` of the group's services and the grouped names of a page."""
        body = call.body
        namespace = fields.namespace(body)
        group = fields.group(body)
        page_no = max(1, fields.whole(body, "pageNo", 1, 0, MAX_INT32))
        page_size = fields.whole(body, "pageSize", 10, 0, MAX_INT32)
        names = sorted(
            s.key.name for s in self.front.services_in(namespace) if split_grouped_name(s.key.name)[0] == group
        )
        start = (page_no - 1) * page_size
        page = names[start : start + page_size] if start < len(names) else []
        return codec.success("ServiceListResponse", {"message": "success", "count": len(names), "serviceNames": page})

    def _service_info(
        self, service: ServiceKey, clusters_text: str, clusters: tuple[str, ...], healthy_only: bool
    ) -> dict[str, Any]:
        front = self.front
        return service_info(
            front.service(service), service, clusters_text, clusters, healthy_only, front.clock(), front.rendered
        )

    async def _register(self, connection_id: str, service: ServiceKey, instance: Instance) -> None:
        if not self.table.may_register(connection_id, service, instance.key):
            limit = self.front.settings.grpc_max_instances_per_connection
            raise ParamError(
                f"Param 'instance': this connection holds {limit} instances already (grpc_max_instances_per_connection)."
            )
        # The beat clock starts before the write, as on the v1 register.
        self.front.beats.record(service, instance.key, self.front.clock())
        await async_write_instance(self.front, service, instance)
        self._own(connection_id, service, (instance,))

    def _own(self, connection_id: str, service: ServiceKey, instances: tuple[Instance, ...]) -> None:
        """The connection owns what it wrote; if it ended meanwhile, what it wrote goes again."""
        now = self.front.clock()
        for instance in instances:
            if not self.table.registered(connection_id, service, instance, now):
                self.server.spawn(async_remove(self.front, service, instance.key))
        self.server.changed()


def received_app(headers: Mapping[str, str]) -> str:
    """The `app` header of a request (the Rust client sends one), else "unknown"."""
    return headers.get(APP_HEADER) or "unknown"


# -- writes, here or on the member responsible -----------------------------------------------


async def async_write_instance(front: Front, service: ServiceKey, instance: Instance) -> None:
    """Register an ephemeral `instance`: here, or forwarded as a v1 register to the member
    responsible for `service`."""
    owner = front.cluster.owner_of(service) if front.cluster is not None else None
    if owner is None:
        await front.write(RegisterInstance(service, instance))
        return
    await async_forward(front, owner, "POST", INSTANCE_PATH, register_form(service, instance))


async def async_remove(front: Front, service: ServiceKey, key: InstanceKey) -> None:
    """Deregister an ephemeral instance (unknown ones are fine): here, or forwarded. A failure
    is logged: the instance then expires like any silent one."""
    owner = front.cluster.owner_of(service) if front.cluster is not None else None
    try:
        if owner is None:
            await front.write(DeregisterInstance(service, key))
            front.beats.forget(service, key)
        else:
            await async_forward(front, owner, "DELETE", INSTANCE_PATH, key_form(service, key))
    except (Rejected, ActorUnavailable) as error:
        log.warning("could not deregister %s:%d of %s: %s (it will expire)", key.ip, key.port, service.name, error)


async def async_beat(front: Front, service: ServiceKey, instance: Instance) -> None:
    """Keep a connection's instance alive through the health path: here, the v1 full beat's
    rule (naming_v1.apply_beat); on a cluster member not responsible for it, a v1 full beat
    forwarded to the one that is."""
    key = instance.key
    try:
        owner = front.cluster.owner_of(service) if front.cluster is not None else None
        if owner is not None:
            await async_forward(front, owner, "PUT", BEAT_PATH, beat_form(service, instance))
            return
        await naming_v1.apply_beat(front, service, key, instance)
    except (Rejected, ActorUnavailable) as error:
        log.warning("could not beat %s:%d of %s: %s", key.ip, key.port, service.name, error)


async def async_forward(front: Front, owner: str, method: str, path: str, form: Mapping[str, str]) -> None:
    """Send a v1 request to `owner`, marked forwarded and signed (PeerLink.async_forward);
    Rejected with its answer when it is not a 200, ActorUnavailable when it does not answer."""
    cluster = front.cluster
    assert cluster is not None
    target = f"{front.settings.context_path}{path}"
    body = urlencode(form).encode()
    try:
        status, answer, _ = await cluster.link.async_forward(
            owner, method, target, {"Content-Type": FORM_CONTENT_TYPE}, body
        )
    except PeerError as error:
        front.metrics.cluster.forwarded["failed"].inc()
        cluster.peer_failed(owner, error.refused)
        raise ActorUnavailable(f"the member responsible ({owner}) did not answer") from None
    front.metrics.cluster.forwarded["ok"].inc()
    if status != 200:
        raise Rejected(status, clip(answer.decode("utf-8", "replace"), 200))


def key_form(service: ServiceKey, key: InstanceKey) -> dict[str, str]:
    """The v1 form naming an instance of `service`."""
    return {
        "ip": key.ip,
        "port": str(key.port),
        "clusterName": key.cluster,
        "ephemeral": "true" if key.ephemeral else "false",
        "serviceName": service.name,
        "namespaceId": service.namespace,
    }


def register_form(service: ServiceKey, instance: Instance) -> dict[str, str]:
    """The v1 register form of `instance`."""
    group, _ = split_grouped_name(service.name)
    return {
        **key_form(service, instance.key),
        "weight": repr(instance.weight),
        "healthy": "true" if instance.healthy else "false",
        "enabled": "true" if instance.enabled else "false",
        "groupName": group,
        "metadata": orjson.dumps(dict(instance.metadata)).decode(),
        **({"app": instance.app} if instance.app != DEFAULT_APP else {}),
    }


def beat_form(service: ServiceKey, instance: Instance) -> dict[str, str]:
    """The v1 full beat of `instance` (its `beat` JSON re-registers it when missing)."""
    beat = {
        "ip": instance.ip,
        "port": instance.port,
        "cluster": instance.cluster,
        "serviceName": service.name,
        "weight": instance.weight,
        "ephemeral": True,
        "metadata": dict(instance.metadata),
    }
    return {"serviceName": service.name, "namespaceId": service.namespace, "beat": orjson.dumps(beat).decode()}


def _register_or_deregister(body: Mapping[str, Any]) -> str:
    """The request's `type`: registerInstance or deregisterInstance, else a 400 naming it."""
    kind = fields.text(body, "type")
    if kind not in (REGISTER, DEREGISTER):
        raise ParamError(f"Param 'type' must be {REGISTER} or {DEREGISTER}, got '{clip(kind or '')}'.")
    return kind
