"""What every handler shares: the registry's snapshots, the write crossing, the beat log.

Runs on the event loop thread. Reads come straight from the registry core's snapshots (a
single-key dict lookup is atomic under the GIL and only the registry actor assigns); writes go
to the RegistryActor through nacos_actors.bridge and answer once applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from aiohttp import web

from nacos_actors.beats import BeatLog
from nacos_actors.bridge import LoopBridge
from nacos_actors.clock import wall_clock_ms
from nacos_actors.core.push import PushBoard, Subscription
from nacos_actors.core.registry import RegistryView
from nacos_actors.http.params import ParamError, Params, QueryMemo, clip, query_values
from nacos_actors.messages import PUSH, Command, QuerySubscribers, Subscribe
from nacos_actors.metrics import NodeMetrics
from nacos_actors.model import Service, ServiceKey
from nacos_actors.settings import Settings

if TYPE_CHECKING:
    from nacos_actors.http.cluster import ClusterFront

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
T = TypeVar("T")


@dataclass
class Front:
    """The node as the HTTP handlers see it. `ready` turns true once the node serves.

    `bridge` is the one way to the actors; `view` the registry's published snapshots. `metrics`
    is the node's NodeMetrics (the same one its drivers record into). `push_enabled` says
    whether a push actor runs; `push_board` holds its latest counters. `cluster` is the
    ClusterFront of a cluster member, None when standalone. `closing` is run by `async_close`.
    Loop thread only.
    """

    settings: Settings
    bridge: LoopBridge
    view: RegistryView
    metrics: NodeMetrics
    beats: BeatLog = field(default_factory=BeatLog)
    push_enabled: bool = False
    push_board: PushBoard = field(default_factory=PushBoard)
    clock: Callable[[], int] = wall_clock_ms
    ready: bool = False
    cluster: ClusterFront | None = None
    closing: tuple[Callable[[], None], ...] = ()

    @property
    def serving(self) -> bool:
        """Whether the node answers clients: it listens, and a cluster member holds its data."""
        return self.ready and (self.cluster is None or self.cluster.serving)

    async def write(self, command: Command) -> Any:
        """Apply `command` on the registry actor; return its value or raise its refusal."""
        return await self.bridge.writes.async_submit(command)

    def subscribe(self, subscription: Subscription) -> None:
        """Add or refresh a push subscriber (no answer is awaited; when push is stopping the
        client keeps polling)."""
        if self.push_enabled:
            self.bridge.tell(PUSH, Subscribe(subscription))

    async def subscriptions(self, namespace: str) -> tuple[Subscription, ...]:
        """The live push subscriptions of a namespace, asked of the push actor."""
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
    cached = request.get(PARAMS_KEY)
    if cached is not None:
        return cached
    if request.can_read_body and request.content_type == FORM_CONTENT_TYPE:
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


def json_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")
