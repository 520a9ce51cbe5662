"""The cluster as the HTTP front sees it: forwarding, peer endpoints, member views, joining.

- Client writes and beats (`distro_write` handlers, wrapped by `forwarding` on a member) that
  reach a member not responsible for their service are forwarded, as they came, to the one
  that is; the client never knows. A request marked forwarded is handled where it lands only
  when a member signed it; anyone else's is a 403. A write for Raft alone (service settings,
  clusters, and the `raft_only_when` requests, e.g. `ephemeral=false`) is never forwarded:
  Raft takes it to its leader, and the member answers once it holds the write.
- Peer endpoints (msgpack bodies): member reports, Distro batches and verify digests, and the
  full snapshot a starting member loads. Only members may call them: a listed member, from its
  address, signed with the cluster secret, in time (ClusterFront.check_peer); anything else is
  a 403. A body that does not decode, or holds a value no client could store, is a 400 naming
  it and changes nothing.
- Nacos's JSON views: `/v1/core/cluster/*` and `/v1/ns/operator/servers` and `distro/*`.
- `async_join`: a starting member loads a snapshot from a peer before it serves clients (until
  then nacos_actors.http.routing answers clients 503).

Runs on the event loop thread. A standalone node has no ClusterFront (`front.cluster` is None).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from aiohttp import web

from nacos_actors.bridge import ActorUnavailable
from nacos_actors.core.codec import (
    CHECKSUM_PATH,
    DATUM_PATH,
    REPORT_PATH,
    SNAPSHOT_PATH,
    CodecError,
    decode_services,
    encode_report,
    encode_services,
)
from nacos_actors.core.distro import responsible_member
from nacos_actors.core.members import UP
from nacos_actors.core.peering import (
    FetchSnapshot,
    JoinCore,
    JoinStep,
    LoadFrom,
    PeerBodyError,
    RetryJoin,
    judge_digests,
    read_batch,
    read_digests,
    read_report,
)
from nacos_actors.http.front import ClusterFront, Front, front_of, json_response, ok, request_params
from nacos_actors.http.params.base import ParamError
from nacos_actors.http.params.names import service_key
from nacos_actors.http.raft_api import raft_metadata
from nacos_actors.http.routing import RAFT_ONLY_WHEN, AddRoute, Handler, RaftOnly, peer_endpoint
from nacos_actors.logs import event
from nacos_actors.messages import MEMBERS, REGISTRY, ApplyReplicated, LoadSnapshot, MarkReady
from nacos_actors.peers import FORWARDED_HEADER, MSGPACK, PeerError
from nacos_actors.render import views

log = logging.getLogger(__name__)
T = TypeVar("T")
FORWARD_ATTEMPTS = 3
FORWARD_BACKOFF_S = 0.05
JOIN_RETRY_MS = 500
SNAPSHOT_TIMEOUT_S = 60.0
# Bodies larger than this are decoded off the loop.
LARGE_BODY = 256 * 1024


def forwarding(handler: Handler) -> Handler:
    """`handler` on a member that may not own the request's service: such a request is
    forwarded, as it came, to the one that does. A forwarded request is always handled where it
    lands, so views that disagree for a moment cannot bounce it around. A request for Raft
    alone (the handler's `raft_only_when`) is handled here."""
    raft_only: RaftOnly | None = getattr(handler, RAFT_ONLY_WHEN, None)

    async def forward_or_handle(request: web.Request) -> web.StreamResponse:
        front = front_of(request)
        cluster = cluster_of(request)
        if FORWARDED_HEADER in request.headers:
            # Only a member may say "handle this here": a forged mark would skip forwarding.
            cluster.check_peer(request, await request.read())
            return await handler(request)
        params = await request_params(request)
        key = service_key(params)
        if raft_only is not None and raft_only(params, front):
            return await handler(request)
        for attempt in range(FORWARD_ATTEMPTS):
            owner = cluster.owner_of(key)
            if owner is None:
                return await handler(request)
            try:
                status, body, content_type = await cluster.link.async_forward(
                    owner, request.method, request.rel_url.raw_path_qs, request.headers, await request.read()
                )
            except PeerError as error:
                front.metrics.cluster.forwarded["failed"].inc()
                cluster.peer_failed(owner, error.refused)
                log.warning("forwarding %s %s to %s failed: %s", request.method, request.path, owner, error)
                await asyncio.sleep(FORWARD_BACKOFF_S * (attempt + 1))
                continue
            front.metrics.cluster.forwarded["ok"].inc()
            return web.Response(status=status, body=body, headers={"Content-Type": content_type})
        raise ActorUnavailable(f"the member responsible for {key.name} did not answer")

    forward_or_handle.__name__ = handler.__name__
    forward_or_handle.__doc__ = handler.__doc__
    return forward_or_handle


def cluster_of(request: web.Request) -> ClusterFront:
    cluster = front_of(request).cluster
    if cluster is None:
        raise web.HTTPNotFound(text="this node runs standalone: it has no peers")
    return cluster


async def _read(request: web.Request, read: Callable[[str, bytes], T]) -> T:
    """The caller's body as `read(caller, body)` makes it (403 for a call that is not a
    member's, 400 for a body that does not decode or speaks for another member); large bodies
    are decoded off the loop."""
    body = await request.read()
    caller = cluster_of(request).check_peer(request, body)
    if not body:
        raise ParamError("The request body is empty.")
    try:
        if len(body) > LARGE_BODY:
            return await asyncio.get_running_loop().run_in_executor(None, read, caller, body)
        return read(caller, body)
    except PeerBodyError as error:
        raise ParamError(error.message) from None


def _msgpack(body: bytes) -> web.Response:
    return web.Response(body=body, content_type=MSGPACK)


# -- peer endpoints -----------------------------------------------------------------------


async def receive_report(request: web.Request) -> web.Response:
    """POST /v1/core/cluster/report: a peer's state; answered with ours."""
    cluster = cluster_of(request)
    report = await _read(request, read_report)
    cluster.bridge.async_tell(MEMBERS, report)
    return _msgpack(encode_report(cluster.self_address, cluster.members.view.self_state))


async def receive_batch(request: web.Request) -> web.Response:
    """PUT /v1/ns/distro/datum: a Distro batch; answered once applied."""
    front = front_of(request)
    batch = await _read(request, read_batch)
    await front.bridge.async_ask(
        REGISTRY, partial(ApplyReplicated, batch.states, batch.force), front.settings.request_timeout
    )
    return ok()


async def receive_digests(request: web.Request) -> web.Response:
    """PUT /v1/ns/distro/checksum: a peer's verify digests; answered with the services we want
    sent again. Services the sender owns and no longer has are dropped here first."""
    front = front_of(request)
    cluster = cluster_of(request)
    digests = await _read(request, read_digests)
    healthy, serving, view = cluster.members.view.healthy, cluster.serving, front.view
    # O(services) every verify interval for every peer: off the loop (snapshots are any-thread).
    judged = await asyncio.get_running_loop().run_in_executor(
        None, lambda: judge_digests(digests, serving, healthy, view.all_services())
    )
    if judged.drops:
        log.info(
            "dropping %d services %s no longer has",
            len(judged.drops),
            digests.sender,
            extra=event("verify_drop", peer=digests.sender, services=len(judged.drops)),
        )
        await front.bridge.async_ask(
            REGISTRY, partial(ApplyReplicated, judged.drops, True), front.settings.request_timeout
        )
    return _msgpack(judged.answer)


async def serve_snapshot(request: web.Request) -> web.Response:
    """GET /v1/ns/distro/datums: every service, for a member that starts (503 until we serve)."""
    front = front_of(request)
    cluster = cluster_of(request)
    cluster.check_peer(request, await request.read())
    if not cluster.serving:
        return web.Response(status=503, text="this member is starting")
    view = front.view
    body = await asyncio.get_running_loop().run_in_executor(None, lambda: encode_services(view.all_services()))
    return _msgpack(body)


# -- Nacos's JSON views -------------------------------------------------------------------


def _member_json(front: Front, address: str) -> dict[str, Any]:
    document = views.member(address, front.clock())
    document["extendInfo"]["raftPort"] = front.settings.raft_address_of(address).rpartition(":")[2]
    if address == front.settings.self_address:
        document["extendInfo"]["raftMetaData"] = raft_metadata(front)
    cluster = front.cluster
    if cluster is not None:
        status = cluster.members.view.members.get(address)
        if status is not None:
            document["state"] = status.state
            document["failAccessCnt"] = status.fail_count
            document["extendInfo"]["lastRefreshTime"] = status.last_refresh_ms
    return document


def member_addresses(front: Front) -> list[str]:
    """Every member's address, sorted (this node alone when standalone)."""
    if front.cluster is None:
        return [front.settings.self_address]
    return sorted(front.cluster.members.view.members)


def member_rows(front: Front, healthy_only: bool = False) -> list[dict[str, Any]]:
    rows = [_member_json(front, a) for a in member_addresses(front)]
    return [r for r in rows if r["state"] == UP] if healthy_only else rows


def _rest(data: Any) -> web.Response:
    return json_response(views.dumps({"code": 200, "message": None, "data": data}))


async def cluster_self(request: web.Request) -> web.Response:
    """GET /v1/core/cluster/self: this member."""
    front = front_of(request)
    return _rest(_member_json(front, front.settings.self_address))


async def cluster_nodes(request: web.Request) -> web.Response:
    """GET /v1/core/cluster/nodes[?keyword=]: every member with its state."""
    front = front_of(request)
    params = await request_params(request)
    keyword = params.get("keyword") or ""
    return _rest([row for row in member_rows(front) if keyword in row["address"]])


async def cluster_simple_nodes(request: web.Request) -> web.Response:
    """GET /v1/core/cluster/simple/nodes: the member addresses."""
    return _rest(member_addresses(front_of(request)))


async def cluster_health(request: web.Request) -> web.Response:
    """GET /v1/core/cluster/health: this member's state."""
    front = front_of(request)
    state = front.cluster.members.view.self_state if front.cluster is not None else UP
    return _rest(state)


async def distro_server(request: web.Request) -> web.Response:
    """GET /v1/ns/operator/distro/server?serviceName=: the member responsible for a service."""
    front = front_of(request)
    key = service_key(await request_params(request))
    if front.cluster is None:
        owner = front.settings.self_address
    else:
        owner = responsible_member(key.name, front.cluster.members.view.healthy) or ""
    return json_response(views.dumps({"responsibleServer": owner}))


async def distro_status(request: web.Request) -> web.Response:
    """GET /v1/ns/operator/distro/status: the healthy members Distro hashes over."""
    front = front_of(request)
    healthy = list(front.cluster.members.view.healthy) if front.cluster is not None else [front.settings.self_address]
    return json_response(views.dumps({"status": healthy}))


def responsible_counts(front: Front) -> tuple[int, int]:
    """(services, instances) this member is responsible for (everything when standalone)."""
    if front.cluster is None:
        return front.view.service_count, front.view.instance_count
    owned = [s for s in front.view.all_services() if front.cluster.owns(s.key)]
    return len(owned), sum(len(s.instances) for s in owned)


# -- joining ------------------------------------------------------------------------------


async def async_join(front: Front) -> None:
    """Load a snapshot from a serving peer, then serve (the peer is chosen by JoinCore). When
    every peer is down or starting too this member is among the first up, and serves what it
    has."""
    cluster = front.cluster
    assert cluster is not None
    joining = JoinCore(cluster.peers, JOIN_RETRY_MS)
    step = joining.start()
    while True:
        if isinstance(step, FetchSnapshot):
            step = await _async_fetch(cluster, joining, step.peer)
        elif isinstance(step, RetryJoin):
            await asyncio.sleep(step.after_ms / 1000)
            step = joining.start()
        elif isinstance(step, LoadFrom):
            await front.bridge.async_ask(REGISTRY, partial(LoadSnapshot, step.services), SNAPSHOT_TIMEOUT_S)
            log.info("joined the cluster with a snapshot from %s", step.peer, extra=event("joined", peer=step.peer))
            break
        else:
            log.info("no peer serves yet: starting with this member's own data", extra=event("joined", peer=None))
            break
    cluster.serving = True
    cluster.bridge.async_tell(MEMBERS, MarkReady())


async def _async_fetch(cluster: ClusterFront, joining: JoinCore, peer: str) -> JoinStep:
    """Ask `peer` for its snapshot; the JoinCore's next step."""
    try:
        status, body = await cluster.link.async_call("GET", peer, SNAPSHOT_PATH, timeout_s=SNAPSHOT_TIMEOUT_S)
    except PeerError as error:
        return joining.answered(peer, None, refused=error.refused)
    if status != 200:
        if status != 503:
            log.warning("snapshot from %s: status %d", peer, status)
        return joining.answered(peer, status)
    try:
        services = await asyncio.get_running_loop().run_in_executor(None, decode_services, body)
    except CodecError as error:
        log.warning("snapshot from %s does not decode: %s", peer, error)
        return joining.answered(peer, status, services=None)
    return joining.answered(peer, status, services=services)


def add_routes(add: AddRoute, prefix: str, with_peers: bool) -> None:
    """The member views (always), and the peer endpoints when this node is a cluster member."""
    core = f"{prefix}/v1/core/cluster"
    add("GET", f"{core}/self", cluster_self)
    add("GET", f"{core}/nodes", cluster_nodes)
    add("GET", f"{core}/simple/nodes", cluster_simple_nodes)
    add("GET", f"{core}/health", cluster_health)
    if with_peers:
        add("POST", f"{prefix}{REPORT_PATH}", peer_endpoint(receive_report))
        add("PUT", f"{prefix}{DATUM_PATH}", peer_endpoint(receive_batch))
        add("PUT", f"{prefix}{CHECKSUM_PATH}", peer_endpoint(receive_digests))
        add("GET", f"{prefix}{SNAPSHOT_PATH}", peer_endpoint(serve_snapshot))
    for base in (f"{prefix}/v1/ns/operator", f"{prefix}/v1/ns/ops"):
        add("GET", f"{base}/distro/server", distro_server)
        add("GET", f"{base}/distro/status", distro_status)
