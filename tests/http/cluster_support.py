"""A cluster member for the HTTP tests, and the peers around it.

- `start_member`: the real app's Front, a real RegistryActor and a Raft actor around a
  one-member group that commits at once (tests.consensus.ImmediateGroup), with a ClusterFront whose
  MemberView the test sets directly (`Member.set_view`), a PeerLink on the test loop and a stub
  member actor (`StubMember`) that records what it is told.
- `OwnerServer`: a second aiohttp server acting as another member: it records every request
  and answers what the test chose.
- Helpers: views, service names owned by a given member, signed peer request headers, a
  closed port.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import pykka
from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry

from nacos_actors.core.consensus import RaftBoard
from nacos_actors.core.distro import responsible_member
from nacos_actors.core.members import HEALTHY_STATES, MemberBoard, MemberStatus, MemberView
from nacos_actors.bridge import ActorDirectory
from nacos_actors.core.registry import RegistryCore, RegistryView
from nacos_actors.clock import wall_clock_ms
from nacos_actors.core.peer_auth import MEMBER_HEADER, signed_headers
from nacos_actors.http.front import ClusterFront, Front, PeerRejections
from nacos_actors.messages import MEMBERS, RAFT
from nacos_actors.metrics import NodeMetrics
from nacos_actors.model import DEFAULT_GROUP, DEFAULT_NAMESPACE, Instance, Service, ServiceKey, instance_map
from nacos_actors.peers import PeerLink
from nacos_actors.settings import Settings
from tests.nodes import bridge_to, start_raft, start_registry

SELF = "127.0.0.1:18848"
PEER_TIMEOUT_S = 2.0
SECRET = "test-cluster-secret"


def grouped(name: str) -> str:
    return f"{DEFAULT_GROUP}@@{name}"


def service_key(name: str) -> ServiceKey:
    return ServiceKey(DEFAULT_NAMESPACE, grouped(name))


def view_of(states: Mapping[str, str], self_address: str = SELF) -> MemberView:
    """A MemberView with each member in the given state (healthy: UP or SUSPICIOUS, sorted)."""
    members = {a: MemberStatus(a, s, 0, 1_700_000_000_000) for a, s in states.items()}
    healthy = tuple(sorted(a for a, s in states.items() if s in HEALTHY_STATES))
    return MemberView(self_address, MappingProxyType(members), healthy)


def names_owned_by(owner: str, healthy: tuple[str, ...], count: int, prefix: str = "svc") -> list[str]:
    """`count` service names (DEFAULT_GROUP) that `owner` is responsible for under `healthy`."""
    found: list[str] = []
    index = 0
    while len(found) < count:
        name = f"{prefix}-{index}"
        if responsible_member(grouped(name), healthy) == owner:
            found.append(name)
        index += 1
    return found


def name_owned_by(owner: str, healthy: tuple[str, ...], prefix: str = "svc") -> str:
    return names_owned_by(owner, healthy, 1, prefix)[0]


def service(name: str, revision: int, *ips: str, modified_ms: int = 1_000, port: int = 8080) -> Service:
    """A replicated service state holding one instance per ip (all on `port`)."""
    instances = [Instance(ip=ip, port=port, instance_id=f"{ip}#{port}#DEFAULT#{grouped(name)}") for ip in ips]
    return Service(
        key=service_key(name),
        instances=instance_map(instances),
        revision=revision,
        modified_ms=modified_ms,
    )


def peer_headers(
    peer: str, method: str, target: str, body: bytes = b"", secret: str = SECRET, now_ms: int | None = None
) -> dict[str, str]:
    """What `peer` sends with a call to `target` (a path with its query, as the server will see
    it): its address, the time (now unless given) and the signature with `secret`."""
    return signed_headers(secret, method, target, peer, wall_clock_ms() if now_ms is None else now_ms, body)


def member_header(peer: str) -> dict[str, str]:
    """Only the member header: what any local process can send, naming a member."""
    return {MEMBER_HEADER: peer}


def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago): connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def eventually(condition: Callable[[], Any], timeout_s: float = 5.0) -> Any:
    """Wait (on the loop) until `condition()` is truthy; returns its value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.01)


def counted(counter: Any) -> float:
    """A counter's `_total` sample."""
    return next(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))


# -- the stub member actor ------------------------------------------------------------------


@dataclass
class StubState:
    """What the stub member actor was told, in order; `react` (when set) runs on the actor's
    thread for each message, as the real member actor would act on it."""

    told: list[Any] = field(default_factory=list)
    react: Callable[[Any], None] | None = None

    def of_type(self, kind: type) -> list[Any]:
        return [m for m in self.told if isinstance(m, kind)]


SETTLE = object()  # asked of the stub: answered once everything told before it was recorded


class StubMember(pykka.ThreadingActor):
    """Stands in for the MemberActor: records ReportReceived, PeerFailed, MarkReady..."""

    def __init__(self, state: StubState) -> None:
        super().__init__()
        self.state = state

    def on_receive(self, message: Any) -> Any:
        if message is SETTLE:
            return True
        self.state.told.append(message)
        if self.state.react is not None:
            self.state.react(message)
        return None


# -- the member under test ------------------------------------------------------------------


@dataclass
class Member:
    """One cluster member's front and what the test needs to watch it."""

    front: Front
    cluster: ClusterFront
    core: RegistryCore
    registry: pykka.ActorRef[Any]
    stub: StubState
    stub_ref: pykka.ActorRef[Any]

    async def settled_stub(self) -> StubState:
        """The stub once it has recorded everything told to it so far (its mailbox is FIFO; the
        ask waits on a worker thread, never on the loop)."""
        await asyncio.to_thread(self.stub_ref.ask, SETTLE, timeout=5)
        return self.stub

    def set_view(self, states: Mapping[str, str]) -> MemberView:
        """Publish a new view (as the member actor does: one whole-view assignment)."""
        self.cluster.members.view = view_of(states, self.cluster.self_address)
        return self.cluster.members.view

    @property
    def healthy(self) -> tuple[str, ...]:
        return self.cluster.members.view.healthy

    def forwarded(self, outcome: str) -> float:
        """nacos_actors_distro_forwarded_requests_total{outcome} (read from the counter itself:
        a whole-registry scrape would run every collector, some blocking, on the loop)."""
        return counted(self.front.metrics.cluster.forwarded[outcome])

    def rejected(self, reason: str) -> float:
        """nacos_actors_peer_rejected_total{reason}."""
        return counted(self.front.metrics.cluster.peer_rejected[reason])

    def replicated(self) -> float:
        """nacos_actors_distro_replicated_services_total."""
        return counted(self.front.metrics.cluster.replicated_services)

    async def async_stop(self) -> None:
        await self.cluster.link.async_close()
        self.front.bridge.actors.get(RAFT).stop()
        self.stub_ref.stop()
        self.registry.stop()


def start_member(
    states: Mapping[str, str],
    secret: str = SECRET,
    serving: bool = True,
    self_address: str = SELF,
    **overrides: Any,
) -> Member:
    """A cluster member at `self_address` (on the running loop) with the view `states`; every
    other member in `states` is a peer allowed on the peer endpoints. `overrides` are other
    Settings (e.g. body limits)."""
    host, _, port = self_address.rpartition(":")
    members = tuple(states)
    settings = Settings(host=host, port=int(port), members=members, cluster_secret=secret, **overrides)
    core = RegistryCore()
    view = RegistryView(core)
    metrics = NodeMetrics(CollectorRegistry(), view)
    actors = ActorDirectory()
    registry = start_registry(core, metrics, actors)
    raft_board = RaftBoard()
    start_raft(settings, metrics, actors, raft_board)
    stub = StubState()
    stub_ref = StubMember.start(stub)
    actors.add(MEMBERS, stub_ref)
    bridge = bridge_to(actors, settings)
    link = PeerLink(asyncio.get_running_loop(), self_address, settings.context_path, secret, PEER_TIMEOUT_S)
    cluster = ClusterFront(
        self_address=self_address,
        members=MemberBoard(view_of(states, self_address)),
        link=link,
        bridge=bridge,
        secret=secret,
        rejections=PeerRejections(metrics.cluster.peer_rejected),
        serving=serving,
        peers=tuple(a for a in members if a != self_address),
    )
    front = Front(
        settings=settings, bridge=bridge, view=view, metrics=metrics, ready=True, cluster=cluster, raft_board=raft_board
    )
    return Member(front, cluster, core, registry, stub, stub_ref)


# -- another member, as a plain server ------------------------------------------------------


@dataclass(frozen=True)
class Received:
    method: str
    path_qs: str
    headers: CIMultiDict[str]
    body: bytes


@dataclass
class OwnerServer:
    """A member that records each request and answers `status`, `body`, `content_type`."""

    received: list[Received] = field(default_factory=list)
    status: int = 200
    body: bytes = b"ok"
    content_type: str = "text/plain"
    address: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Received(request.method, request.path_qs, CIMultiDict(request.headers), body))
        return web.Response(status=self.status, body=self.body, headers={"Content-Type": self.content_type})


def record_server_errors(test_client: Any, monkeypatch: Any) -> list[tuple[str, str, int]]:
    """As tests/http/conftest.py's `client`: every 5xx the test client gets is listed (a test
    that wants one on purpose asks through `test_client.session`)."""
    server_errors: list[tuple[str, str, int]] = []
    original = test_client._request

    async def recording(method: str, path: str, **kwargs: Any) -> Any:
        response = await original(method, path, **kwargs)
        if response.status >= 500:
            server_errors.append((method, str(path), response.status))
        return response

    monkeypatch.setattr(test_client, "_request", recording)
    return server_errors
