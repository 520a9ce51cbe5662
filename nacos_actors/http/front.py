"""What every handler shares: the registry's snapshots, the write crossing, the beat log (Front),
and on a cluster member its link to the other members (ClusterFront).

Runs on the event loop thread. Reads come straight from the registry's published snapshots (a
single-key dict lookup is atomic under the GIL and only the registry driver assigns); writes
and every other message to an actor go through nacos_actors.bridge, and writes answer once
applied.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from aiohttp import web

from nacos_actors.beats import BeatLog
from nacos_actors.bridge import LoopBridge
from nacos_actors.clock import wall_clock_ms
from nacos_actors.core.consensus import RaftBoard
from nacos_actors.core.distro import responsible_member
from nacos_actors.core.members import MemberBoard
from nacos_actors.core.peer_auth import PeerCallRules, PeerRefused, judge_peer_call
from nacos_actors.core.push import PushBoard, Subscription
from nacos_actors.core.registry import RegistryLimits, RegistryView, Rejected
from nacos_actors.core.streams import ConnectionSummary, GrpcSubscription
from nacos_actors.core.values import clip
from nacos_actors.core.writes import route_write
from nacos_actors.drivers.assembly import registry_limits
from nacos_actors.http.params.base import ParamError, Params, QueryMemo, query_values
from nacos_actors.messages import (
    MEMBERS,
    PUSH,
    RAFT,
    Command,
    Outcome,
    PeerFailed,
    PersistentCommand,
    Propose,
    QuerySubscribers,
    Refused,
    Subscribe,
)
from nacos_actors.metrics import NodeMetrics
from nacos_actors.model import Service, ServiceKey
from nacos_actors.peers import PeerLink
from nacos_actors.render.lists import ListMemo, RenderedInstances
from nacos_actors.settings import Settings

log = logging.getLogger(__name__)
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
T = TypeVar("T")
# A refused peer call is logged at most once per reason in this many seconds (each is counted).
REJECTION_LOG_INTERVAL_S = 10.0


class PeerRejections:
    """Refused peer calls: each counted by reason (`counters`, e.g. the node's
    nacos_actors_peer_rejected_total children), and logged at most once per reason per
    `interval_s`, with how many more there were since. Loop thread only."""

    def __init__(
        self,
        counters: Mapping[str, Any],
        interval_s: float = REJECTION_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counters = counters
        self._interval_s = interval_s
        self._clock = clock
        self._logged_at: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def record(self, refused: PeerRefused, method: str, path: str, remote: str | None) -> None:
        self._counters[refused.reason].inc()
        now = self._clock()
        last = self._logged_at.get(refused.reason)
        if last is not None and now - last < self._interval_s:
            self._unlogged[refused.reason] = self._unlogged.get(refused.reason, 0) + 1
            return
        self._logged_at[refused.reason] = now
        more = self._unlogged.pop(refused.reason, 0)
        log.warning(
            "refused a peer call (%s) %s %s from %s: %s%s",
            refused.reason,
            method,
            clip(path),
            remote,
            clip(refused.message, 160),
            f" (and {more} more since the last line)" if more else "",
        )


@dataclass
class ClusterFront:
    """This member's link to the others, for the handlers. `serving` turns true once the node
    holds its data (loaded from a peer, or first up); until then client endpoints answer 503.

    A call is a member's only when signed with `secret` within `signature_window_ms` of this
    member's `clock` (see nacos_actors.core.peer_auth); `rejections` counts and logs the others."""

    self_address: str
    members: MemberBoard
    link: PeerLink
    bridge: LoopBridge
    secret: str
    rejections: PeerRejections
    signature_window_ms: int = 5_000
    serving: bool = False
    peers: tuple[str, ...] = field(default=())
    clock: Callable[[], int] = wall_clock_ms

    def owner_of(self, key: ServiceKey) -> str | None:
        """The member to forward a write of `key` to; None to handle it here."""
        owner = responsible_member(key.name, self.members.view.healthy)
        return None if owner is None or owner == self.self_address else owner

    def owns(self, key: ServiceKey) -> bool:
        return responsible_member(key.name, self.members.view.healthy) == self.self_address

    def peer_failed(self, peer: str, refused: bool) -> None:
        self.bridge.async_tell(MEMBERS, PeerFailed(peer, refused))

    def check_peer(self, request: web.Request, body: bytes) -> str:
        """The calling member's address, when the request (with its `body`, already read) is a
        member's signed call; else a 403 naming the header, counted and logged."""
        rules = PeerCallRules(self.self_address, self.peers, self.secret, self.signature_window_ms)
        target = request.rel_url.raw_path_qs
        verdict = judge_peer_call(rules, request.headers, request.method, target, body, request.remote, self.clock())
        if isinstance(verdict, PeerRefused):
            self.rejections.record(verdict, request.method, target, request.remote)
            raise ParamError(verdict.message, status=403)
        return verdict.member


def no_connections() -> Sequence[ConnectionSummary]:
    """The live gRPC connections of a node that serves none."""
    return ()


@dataclass
class Front:
    """The node as the HTTP handlers see it. `ready` turns true once the node serves.

    `bridge` is the one way to the actors; `view` the registry's published snapshots. `metrics`
    is the node's NodeMetrics (the same one its drivers record into). `push_enabled` says
    whether a push actor runs; `push_board` holds its latest counters. `cluster` is the
    ClusterFront of a cluster member, None when standalone. `closing` is run by `async_close`.
    Loop thread only.
    `rendered` is the event loop thread's cache of rendered instances (the push path has its own),
    `connections` lists the live gRPC connections (none until the gRPC server runs);
    `stopping` are the other servers on the loop (gRPC), each stopped with the HTTP server and
    given the same seconds for its calls in flight.
    `settings.rendered_instances_bytes` at most; `list_memo` the node's memo of instance/list
    answers, `settings.list_memo_bytes` at most.
    """

    settings: Settings
    bridge: LoopBridge
    view: RegistryView
    metrics: NodeMetrics
    beats: BeatLog = field(default_factory=BeatLog)
    push_enabled: bool = False
    push_board: PushBoard = field(default_factory=PushBoard)
    raft_board: RaftBoard = field(default_factory=RaftBoard)
    clock: Callable[[], int] = wall_clock_ms
    ready: bool = False
    cluster: ClusterFront | None = None
    closing: tuple[Callable[[], None], ...] = ()
    connections: Callable[[], Sequence[ConnectionSummary]] = no_connections
    stopping: tuple[Callable[[float], Awaitable[None]], ...] = ()
    rendered: RenderedInstances = field(init=False)
    list_memo: ListMemo = field(init=False)

    def __post_init__(self) -> None:
        self.rendered = RenderedInstances(self.settings.rendered_instances_bytes)
        self.list_memo = ListMemo(self.settings.list_memo_bytes)

    @cached_property
    def limits(self) -> RegistryLimits:
        """The registry's limits, as the node's settings set them."""
        return registry_limits(self.settings)

    @property
    def serving(self) -> bool:
        """Whether the node answers clients: it listens, and a cluster member holds its data."""
        return self.ready and (self.cluster is None or self.cluster.serving)

    async def write(self, command: Command) -> Any:
        """Apply `command`: ephemeral data on the registry actor, persistent data through Raft
        (nacos_actors.core.writes decides, and checks what needs the whole service); return its
        value or raise its refusal (Rejected)."""
        key = command.service
        try:
            # The limits count both halves of a service; Raft's core sees only its own.
            routed = route_write(command, self.view.service(key), self.limits, self.view.services_in(key.namespace))
        except Rejected:
            self.metrics.write_counters()[type(command)][1].inc()
            raise
        if routed.raft is None:
            return await self.bridge.writes.async_submit(routed.registry)
        persistent = await self.propose(routed.raft)
        if routed.registry is None:
            return persistent
        # A metadata batch naming both kinds: both answers are lists of updated instances.
        return (*persistent, *await self.bridge.writes.async_submit(routed.registry))

    async def propose(self, command: PersistentCommand) -> Any:
        """Put `command` through Raft; its value once committed and applied here, else its
        refusal raised (Rejected: 4xx for the registry's rules, 503 when Raft cannot answer)."""
        outcome: Outcome = await self.bridge.async_ask(
            RAFT, lambda reply: Propose(command, self.clock(), reply), self.settings.request_timeout
        )
        if isinstance(outcome, Refused):
            raise Rejected(outcome.status, outcome.message)
        return outcome.value

    def subscribe(self, subscription: Subscription) -> None:
        """Add or refresh a push subscriber (no answer is awaited; when push is stopping the
        client keeps polling)."""
        if self.push_enabled:
            self.bridge.async_tell(PUSH, Subscribe(subscription))

    async def subscriptions(self, namespace: str) -> tuple[Subscription | GrpcSubscription, ...]:
        """The live push subscriptions of a namespace (UDP and gRPC), asked of the push actor."""
        if not self.push_enabled:
            return ()
        return await self.bridge.async_ask(
            PUSH, lambda reply: QuerySubscribers(namespace, reply), self.settings.request_timeout
        )

    def service(self, key: ServiceKey) -> Service | None:
        return self.view.service(key)

    def services_in(self, namespace: str) -> list[Service]:
        """A consistent copy of one namespace's snapshots (dict.copy is one C call under the GIL)."""
        services = self.view.namespaces.get(namespace)
        return list(dict(services).values()) if services is not None else []

    def namespaces(self) -> list[str]:
        return list(dict(self.view.namespaces))

    async def async_close(self) -> None:
        """Close what lives on the loop (the ticker, the push socket, the peer client)."""
        for close in self.closing:
            close()
        if self.cluster is not None:
            await self.cluster.link.async_close()


FRONT_KEY = web.AppKey("front", Front)


def front_of(request: web.Request) -> Front:
    return request.app[FRONT_KEY]


PARAMS_KEY = web.RequestKey("params", Params)


async def request_params(request: web.Request) -> Params:
    """Query parameters, then form-body parameters, for any verb (as Nacos's getParameter).
    Parsed once per request (forwarding reads them before the handler does)."""
    cached: Params | None = request.get(PARAMS_KEY)
    if cached is not None:
        return cached
    # body_exists, not can_read_body: a body already read (a forwarded call's signature check
    # reads it first) is still the form, and read() answers it again from memory.
    if request.body_exists and request.content_type == FORM_CONTENT_TYPE:
        params = Params(query_values(request.rel_url.raw_query_string), await _form(request))
    else:
        params = Params(query_values(request.rel_url.raw_query_string))
    request[PARAMS_KEY] = params
    return params


async def memoized_params(request: web.Request, memo: QueryMemo[T]) -> T:
    """`memo.parse` of the request's parameters; remembered by query string when it has no body
    (a form body may carry parameters too, so those requests are parsed afresh)."""
    if request.body_exists:
        return memo.parse(await request_params(request))
    query = request.rel_url.raw_query_string
    known = memo.known.get(query)
    if known is None:
        known = memo.remember(query, Params(query_values(query)))
    return known


async def _form(request: web.Request) -> dict[str, str]:
    """The form body, for every verb (aiohttp's `post()` ignores a GET's body); 413 past the limit."""
    charset = request.charset or "utf-8"
    try:
        body = await request.read()
    except web.RequestPayloadError as error:  # e.g. a Content-Encoding that does not decode
        message = f"The form body cannot be read: {clip(' '.join(str(error).split()))}"
        raise ParamError(message, close_connection=True) from None
    try:
        text = body.decode(charset)
    except (LookupError, UnicodeDecodeError):
        raise ParamError(f"The form body is not {clip(charset)} text.") from None
    return query_values(text, charset)


OK = "ok"


def ok() -> web.Response:
    return web.Response(text=OK)


def json_response(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


# Whole-registry answers are written in chunks of about this many bytes.
STREAM_CHUNK_BYTES = 1 << 16


async def json_stream(request: web.Request, parts: Iterable[bytes]) -> web.StreamResponse:
    """A JSON answer made of `parts` (byte strings, in order, rendered as they are asked for).

    An answer shorter than STREAM_CHUNK_BYTES is one plain response. A longer one is written
    chunk by chunk as it is rendered (chunked transfer encoding), awaiting the socket's drain
    and yielding to the loop after each chunk, so it holds about one chunk in memory however
    large the registry, and other requests are served meanwhile. A client that goes away ends
    the writing. Event loop thread.
    """
    iterator = iter(parts)
    buffer = bytearray()
    for part in iterator:
        buffer += part
        if len(buffer) >= STREAM_CHUNK_BYTES:
            break
    else:
        return json_response(bytes(buffer))
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        for part in iterator:
            if len(buffer) >= STREAM_CHUNK_BYTES:
                await response.write(bytes(buffer))  # a copy: the transport may keep what it is given
                buffer.clear()
                await asyncio.sleep(0)
            buffer += part
        await response.write_eof(bytes(buffer))
    except ConnectionResetError:
        pass  # the client went away; nothing more to write
    return response
