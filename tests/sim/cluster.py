"""Simulated cluster members and clients: the production drivers on an in-memory network.

A `SimNode` is one nacos-actors process: the drivers a real node runs (nacos_actors.drivers,
built by the same `build_drivers`, around the same pure cores), fed through a mailbox drained
in FIFO order at each simulated instant, woken by the scheduler where a real node's ticker
would, and reaching peers through `SimOutbox` instead of the bridge. Nothing of an actor is
copied here: only the transport and the clock are fake.

What is still the front's, in `SimNode`: client writes through `distro_write` (forward to the
responsible member per this node's view, up to three attempts with back-off, a forwarded
request handled where it lands), the starting gate (503 until the node serves), the register,
deregister and beat handlers of naming_v1, Front.write for any other write (route_write sends
persistent data to Raft), the peer endpoints (report, datum, checksum, datums), the wait for
Raft before the HTTP server opens (async_wait_for_raft) and `async_join`. Every peer body is
encoded and decoded with nacos_actors.core.codec, and every peer call is signed (PeerLink) and
judged (ClusterFront.check_peer) with nacos_actors.core.peer_auth: a `Signed` request carries
the headers a real one would, made at the sender's (skewed) clock with its node's cluster
secret. A forwarded client write is honoured only from a member's address (the network's
source address stands for the signature).

Clients (`Agent`) behave like nacos-sdk-python's v1 NacosClient with a heartbeat: try one server,
and on a timeout or a 5xx the next, keeping the new one; beat with the full beat JSON every 5 s.

Raft is modelled at the driver boundary (tests/sim/raft.py): pysyncobj owns its sockets, poller
and clock, so it cannot run on the simulated network and clock. Each node's RaftDriver - the
production one, run without poll_continuously - ticks its end of one shared SimRaft group; the
node schedules its PollRaft every RAFT_TICK_MS, and at once when the group wakes it.

Time: a node's clock is the simulated time plus a fixed skew (real members' clocks differ).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client import CollectorRegistry

from nacos_actors.beats import BeatLog
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
from nacos_actors.core.consensus import RaftBoard
from nacos_actors.core.distro import responsible_member
from nacos_actors.core.health import BEAT_RECORDED, beat_outcome
from nacos_actors.core.members import MemberView
from nacos_actors.core.peer_auth import PeerCallRules, PeerRefused, judge_peer_call, signed_headers
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
from nacos_actors.core.probing import PROBE_OK, ProbeResult, ProbeTarget
from nacos_actors.core.push import Datagram
from nacos_actors.core.registry import RegistryCore, RegistryView, Rejected, services_limit_refusal
from nacos_actors.core.streams import StreamPush
from nacos_actors.core.writes import route_write
from nacos_actors.drivers.assembly import build_drivers, raft_driver_config, registry_limits
from nacos_actors.drivers.distro import PEER_TIMEOUT_MS
from nacos_actors.drivers.members import LEAVE_TIMEOUT_MS
from nacos_actors.drivers.outbox import Driver
from nacos_actors.drivers.raft import RaftDriver
from nacos_actors.http.cluster import FORWARD_ATTEMPTS, FORWARD_BACKOFF_S, JOIN_RETRY_MS, SNAPSHOT_TIMEOUT_S
from nacos_actors.http.naming_v1 import BEAT_CODE_NOT_FOUND, BEAT_CODE_OK
from nacos_actors.messages import (
    DISTRO,
    MEMBERS,
    PROBE,
    RAFT,
    REGISTRY,
    ActorName,
    ApplyReplicated,
    BeatInstance,
    Command,
    CreateService,
    DefinitionsApplied,
    DefinitionsLoaded,
    DeleteService,
    DeregisterInstance,
    Drain,
    ExpireInstance,
    Leave,
    LoadSnapshot,
    MarkReady,
    MarkUnhealthy,
    PeerAnswered,
    PeerCall,
    PeerFailed,
    PersistentCommand,
    PollRaft,
    ProbesFinished,
    Propose,
    Refused,
    RegisterInstance,
    Tick,
    UpdateService,
    WriteBatch,
)
from nacos_actors.metrics import NodeMetrics
from nacos_actors.model import (
    DEFAULT_HEART_BEAT_TIMEOUT_MS,
    Dropped,
    Instance,
    InstanceKey,
    Service,
    ServiceKey,
    freeze,
)
from nacos_actors.node import DRAIN_TIMEOUT_S, RAFT_READY_POLL_S
from nacos_actors.settings import Settings
from tests.sim.network import CLIENT, Answer, Failure, Network, Outcome, Respond, Scheduler
from tests.sim.raft import SimRaft, SimRaftMember, raft_id

EPOCH_MS = 1_700_000_000_000
SNAPSHOT_TIMEOUT_MS = int(SNAPSHOT_TIMEOUT_S * 1000)
FORWARD_BACKOFF_MS = int(FORWARD_BACKOFF_S * 1000)
DRAIN_TIMEOUT_MS = int(DRAIN_TIMEOUT_S * 1000)
RAFT_READY_POLL_MS = int(RAFT_READY_POLL_S * 1000)
# The Raft driver ticks when its group wakes it (a proposal, an entry to apply, an answer, a
# leader change: RaftGroup.wake) and otherwise every RAFT_TICK_MS, the library's heartbeat period
# (a real idle tick waits 20 ms; the deadlines of proposals need no finer steps here).
RAFT_TICK_MS = 50
RAFT_WAKE_MS = 1
PROBE_LATENCY_MS = 2  # how long a simulated probe of an instance takes
CLIENT_TIMEOUT_MS = 3000  # nacos-sdk-python's default request timeout
BEAT_INTERVAL_MS = 5000
# Every node runs with the defaults and a shared secret, push off (the simulation has no UDP
# subscribers).
SIM_SECRET = "simulated-cluster-secret"
SETTINGS = Settings(push_enabled=False, cluster_secret=SIM_SECRET)


@dataclass(frozen=True, slots=True)
class Signed:
    """A peer call on the simulated network: its method, the headers PeerLink would send
    (member, time, signature) and the msgpack body."""

    method: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class ClientWrite:
    """A client's register, deregister or (full) beat, as the front parses it; `forwarded_by`
    stands for the Nacos-Actors-Forwarded header."""

    op: str
    service: ServiceKey
    instance: Instance
    forwarded_by: str | None = None


# Writes the front does not forward to the service's Distro owner (they are not `distro_write`).
NOT_FORWARDED = (CreateService, UpdateService, DeleteService)


@dataclass(frozen=True, slots=True)
class ClientCommand:
    """Any other client write, as the front parses it: `command` goes where
    nacos_actors.core.writes.route_write sends it (the registry, or Raft for persistent data).
    Instance and cluster writes are forwarded to the service's Distro owner first (they are
    `distro_write`); service writes (POST/PUT/DELETE /v1/ns/service) are handled where they land."""

    command: Command
    forwarded_by: str | None = None

    @property
    def service(self) -> ServiceKey:
        return self.command.service


@dataclass(frozen=True, slots=True)
class Change:
    """A node's registry changed a service (`after` None: deleted) in one message, by `causes`:
    the commands of the batch for that service, or 'replicated', 'forced', 'dropped', 'snapshot'
    (Distro), or 'raft', 'raft-snapshot' (the persistent half, merged from the Raft driver)."""

    time_ms: int
    node: str
    key: ServiceKey
    before: Service | None
    after: Service | None
    causes: tuple[Any, ...]

    def cause_for(self, key: InstanceKey) -> str:
        """The name of what changed instance `key`: the last command aimed at it, else the first cause."""
        aimed = [c for c in self.causes if _target(c) == key]
        cause = aimed[-1] if aimed else self.causes[0]
        return cause if isinstance(cause, str) else type(cause).__name__


@dataclass(frozen=True, slots=True)
class BeatRecorded:
    """A node recorded a beat of an instance in its beat log (it handled the beat)."""

    time_ms: int
    node: str
    service: ServiceKey
    key: InstanceKey


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """A node answered a persistent write ok, once its own registry merged it (the answer then
    travels to the client, or to the member that forwarded the request)."""

    time_ms: int
    node: str
    command: PersistentCommand
    value: Any


@dataclass(frozen=True, slots=True)
class ViewPublished:
    """A node's member actor published a new view (some member's state changed)."""

    time_ms: int
    node: str
    healthy: tuple[str, ...]


Event = Change | BeatRecorded | ViewPublished | Acknowledged


class SimReply:
    """A Reply whose answer runs `then` at once, on the simulation's thread (a failure is a bug)."""

    def __init__(self, then: Callable[[Any], None]) -> None:
        self._then = then

    def resolve(self, value: Any) -> None:
        self._then(value)

    def fail(self, error: BaseException) -> None:
        raise error


class SimOutbox:
    """The Outbox of a simulated node's drivers: tells go to the node's mailbox, PeerCalls to the
    simulated network (answered back as PeerAnswered), wake-ups to the scheduler; there is no
    push socket."""

    def __init__(self, node: SimNode) -> None:
        self._node = node

    def tell(self, actor: ActorName, message: object) -> None:
        self._node.tell(actor, message)

    def call_peer(self, call: PeerCall) -> None:
        node = self._node

        def outcome(result: Outcome) -> None:
            if isinstance(result, Answer):
                node.tell(call.reply_to, PeerAnswered(call, result.status, result.body))
            else:
                node.tell(call.reply_to, PeerAnswered(call, None, refused=result.refused))

        node.send_peer(call.peer, call.method, call.path, call.body, call.timeout_ms, outcome)

    def send_datagrams(self, datagrams: Sequence[Datagram]) -> None:
        pass

    def send_to_streams(self, pushes: Sequence[StreamPush]) -> None:
        pass

    def start_probes(self, probes: Sequence[ProbeTarget]) -> None:
        self._node.run_probes(probes)

    def wake_at(self, actor: ActorName, deadline_ms: int | None) -> None:
        self._node.wake_at(actor, deadline_ms)


class SimNode:
    """One member process: the production drivers (nacos_actors.drivers, built by the same
    `build_drivers` as a real node) on one thread, a mailbox drained in FIFO order at the same
    simulated instant, and the front's cluster parts. `start` boots it (fresh drivers, a given
    or empty registry, its Raft journal or none), waits for Raft, listens and joins; `crash`
    kills it (nothing runs, connections are refused); `leave` is SIGTERM (drain, report DOWN,
    stop). `registry` survives a crash, for a restart with the data kept; the Raft journal lives
    in the simulation's SimRaft."""

    def __init__(
        self, sim: Simulation, address: str, members: tuple[str, ...], skew_ms: int, settings: Settings = SETTINGS
    ) -> None:
        self.sim = sim
        self.address = address
        self.member_list = members
        self.peers = tuple(a for a in members if a != address)
        self.skew_ms = skew_ms
        self.alive = False
        self.listening = False
        self.incarnation = 0
        self.registry = RegistryCore()
        self.serving = False
        self.joined_from: str | None = None
        self.rejected: list[str] = []  # why peer calls to this node were refused, in order
        self.settings = replace(
            settings, host=address.rpartition(":")[0], port=int(address.rpartition(":")[2]), members=members
        )

    # -- process lifecycle -----------------------------------------------------------------

    def clock(self) -> int:
        return EPOCH_MS + self.sim.scheduler.now + self.skew_ms

    def to_sim_time(self, node_ms: int) -> int:
        return node_ms - EPOCH_MS - self.skew_ms

    def start(self, registry: RegistryCore | None = None, keep_journal: bool = True) -> None:
        """run_node's async_start_node, then serve: the Raft group opens (loading the node's
        journal, unless `keep_journal` is false: its data directory was lost), the drivers start
        in order, the registry learns its watchers (each then gets every current service); once
        Raft has caught up (at most raft_ready_timeout_ms) the node listens and joins."""
        assert not self.alive
        self.incarnation += 1
        self.alive = True
        self.listening = False
        self.registry = registry if registry is not None else RegistryCore()
        self.beats = BeatLog()
        self.serving = False
        self.joined_from = None
        self._mailbox: deque[tuple[ActorName, object]] = deque()
        self._wakes: dict[ActorName, int | None] = {}
        self._raft_woken = False
        now = self.clock()
        metrics = NodeMetrics(CollectorRegistry(), RegistryView(self.registry))
        self.raft_board = RaftBoard()
        leaders = {raft_id(member): member for member in self.member_list}
        raft_config = replace(raft_driver_config(self.settings, leaders), durable=True, poll_continuously=False)
        built = build_drivers(
            self.settings,
            self.registry,
            self.beats,
            SimOutbox(self),
            metrics,
            now,
            raft_board=self.raft_board,
            raft_config=raft_config,
            probe_random=random.Random(self.sim.rng.random()).random,
        )
        self.board = built.member_board
        self.raft: SimRaftMember = self.sim.raft.join(self, built.raft, keep_journal)
        built.raft.attach(self.raft)
        self.drivers: dict[ActorName, Driver] = {d.NAME: d for d in built.in_start_order()}
        for driver in self.drivers.values():
            driver.start(now)
        for name, message in built.first_messages():
            self.tell(name, message)
        self._guarded_after(RAFT_TICK_MS, self._raft_tick)
        self._await_raft(now)
        self._settle()

    def crash(self) -> None:
        """The process dies at once: no drain, no goodbye; its registry object is left as it was
        (and its Raft journal, in the simulation's SimRaft)."""
        self.alive = False
        self.listening = False
        self.serving = False

    def _raft_tick(self) -> None:
        """The Raft actor's loop (the simulation's, as the driver runs without poll_continuously)."""
        self.tell(RAFT, PollRaft())
        self._guarded_after(RAFT_TICK_MS, self._raft_tick)

    def wake_raft(self) -> None:
        """Tick the Raft driver at once (RaftGroup.wake): a proposal arrived, or the group has
        something to apply or answer."""
        if self._raft_woken or not self.alive:
            return
        self._raft_woken = True

        def ring() -> None:
            self._raft_woken = False
            self.tell(RAFT, PollRaft())

        self._guarded_after(RAFT_WAKE_MS, ring)

    def _await_raft(self, started_ms: int) -> None:
        """async_wait_for_raft: until Raft is ready (or raft_ready_timeout_ms passed) the HTTP
        server is not open; then it listens and joins."""
        if self.raft_board.status.ready or self.clock() - started_ms >= self.settings.raft_ready_timeout_ms:
            self.listening = True
            self._join()
            return
        self._guarded_after(RAFT_READY_POLL_MS, lambda: self._await_raft(started_ms))

    @property
    def raft_driver(self) -> RaftDriver:
        driver = self.drivers[RAFT]
        assert isinstance(driver, RaftDriver)
        return driver

    def leave(self) -> None:
        """SIGTERM (node.async_leave): drain Distro (at most DRAIN_TIMEOUT), report DOWN to every
        peer (at most LEAVE_TIMEOUT), then stop."""
        if not self.alive:
            return
        incarnation = self.incarnation
        stage = {"goodbye": False}

        def goodbye(_: object = None) -> None:
            if stage["goodbye"] or not self.alive or self.incarnation != incarnation:
                return
            stage["goodbye"] = True
            self.tell(MEMBERS, Leave(SimReply(lambda told: self._guarded_after(0, self.crash))))
            self._guarded_after(LEAVE_TIMEOUT_MS, self.crash)

        self.tell(DISTRO, Drain(SimReply(goodbye)))
        self._guarded_after(DRAIN_TIMEOUT_MS, goodbye)
        self._settle()

    def run_probes(self, probes: Sequence[ProbeTarget]) -> None:
        """The loop's prober: each probe ends PROBE_LATENCY_MS later as the simulation's
        `probe_answers` say for its address (connected when absent), reported to this node's
        probe driver; a node that crashed meanwhile reports nothing."""
        for probe in probes:
            self.sim.probes_run.append((self.address, probe))
            self.sim.probe_times.append(self.sim.now)
        results = tuple(self.sim.probe_result(probe) for probe in probes)
        self._guarded_after(PROBE_LATENCY_MS, lambda: self.tell(PROBE, ProbesFinished(results)))

    # -- plumbing: mailbox, wake-ups, guarded callbacks ------------------------------------

    def tell(self, actor: ActorName, message: object) -> None:
        self._mailbox.append((actor, message))

    def wake_at(self, actor: ActorName, deadline: int | None) -> None:
        if self._wakes.get(actor) == deadline:
            return
        self._wakes[actor] = deadline
        if deadline is None:
            return

        def ring() -> None:
            if self._wakes.get(actor) == deadline:
                self._wakes[actor] = None
                self.tell(actor, Tick())

        self.sim.scheduler.at(self.to_sim_time(deadline), self._guard(ring))

    def _settle(self) -> None:
        """Deliver every told message to its driver, in order, at this instant."""
        while self._mailbox and self.alive:
            name, message = self._mailbox.popleft()
            driver = self.drivers.get(name)
            if driver is None:
                continue
            if name == REGISTRY:
                self._observe_registry(driver, message)
            elif name == MEMBERS:
                before = self.board.view
                driver.handle(message, self.clock())
                self._note_view(before)
            else:
                driver.handle(message, self.clock())

    def _observe_registry(self, driver: Driver, message: object) -> None:
        """Hand `message` to the registry driver, and note every service it changed, with its
        cause, for the monitors (the simulation's eye on the registry, not part of any node)."""
        keys: set[ServiceKey]
        causes: dict[ServiceKey, list[Any]] = {}
        if isinstance(message, WriteBatch):
            for command in message.commands:
                causes.setdefault(command.service, []).append(command)
        elif isinstance(message, ApplyReplicated):
            for state in message.states:
                cause = "dropped" if isinstance(state, Dropped) else "forced" if message.force else "replicated"
                causes.setdefault(state.key, []).append(cause)
        elif isinstance(message, LoadSnapshot):
            for key in [s.key for s in self.registry.all_services()] + [s.key for s in message.services]:
                causes[key] = ["snapshot"]
        elif isinstance(message, DefinitionsApplied):
            for change in message.changes:
                causes.setdefault(change.key, []).append("raft")
        elif isinstance(message, DefinitionsLoaded):
            held = [s.key for s in self.registry.all_services() if s.definition is not None]
            for key in held + [d.key for d in message.definitions]:
                causes[key] = ["raft-snapshot"]
        keys = set(causes)
        before = {key: self.registry.service(key) for key in keys}
        driver.handle(message, self.clock())
        for key in keys:
            after = self.registry.service(key)
            if after is not before[key]:
                self.sim.note(Change(self.sim.scheduler.now, self.address, key, before[key], after, tuple(causes[key])))

    def _note_view(self, before: MemberView) -> None:
        view = self.board.view
        if view is not before and any(before.members[a].state != s.state for a, s in view.members.items()):
            self.sim.note(ViewPublished(self.sim.scheduler.now, self.address, view.healthy))

    def _guard(self, action: Callable[..., None]) -> Callable[..., None]:
        """`action` for this incarnation only (a dead or restarted process ignores it), then settle."""
        incarnation = self.incarnation

        def run(*args: Any) -> None:
            if self.alive and self.incarnation == incarnation:
                action(*args)
                self._settle()

        return run

    def _guarded_after(self, delay_ms: int, action: Callable[[], None]) -> None:
        self.sim.scheduler.after(delay_ms, self._guard(action))

    def send(self, peer: str, kind: str, body: Any, timeout_ms: int, on_outcome: Callable[[Outcome], None]) -> None:
        self.sim.network.request(self.address, peer, kind, body, timeout_ms, self._guard(on_outcome))

    def send_peer(
        self, peer: str, method: str, path: str, body: bytes, timeout_ms: int, on_outcome: Callable[[Outcome], None]
    ) -> None:
        """PeerLink.async_call: `body` to `path`, signed with this node's secret at its clock."""
        assert self.settings.cluster_secret is not None
        headers = signed_headers(self.settings.cluster_secret, method, path, self.address, self.clock(), body)
        self.send(peer, path, Signed(method, headers, body), timeout_ms, on_outcome)

    def write(self, commands: tuple[Command, ...], then: Callable[[tuple[Any, ...]], None]) -> None:
        """The front's write crossing: one WriteBatch to the registry driver; `then` gets the outcomes."""
        self.tell(REGISTRY, WriteBatch(commands, SimReply(then)))

    def propose(self, command: PersistentCommand, then: Callable[[Any], None]) -> None:
        """Front.propose's crossing: one Propose to the Raft driver, stamped with this node's
        clock; `then` gets the Outcome once committed and merged here, or the driver's 503."""
        self.tell(RAFT, Propose(command, self.clock(), SimReply(then)))

    # -- the HTTP front --------------------------------------------------------------------

    def receive(self, source: str, kind: str, body: Any, respond: Respond) -> None:
        """A request arrived (the network calls this only while the process runs). A peer body
        over `peer_max_body_bytes` is a 413, as nacos_actors.http.routing answers it."""
        if (
            kind != "client"
            and len(body.body if isinstance(body, Signed) else body) > self.settings.peer_max_body_bytes
        ):
            respond(413, b"request body over the limit")
            return
        handler = {
            "client": self._client_write,
            REPORT_PATH: self._receive_report,
            DATUM_PATH: self._receive_batch,
            CHECKSUM_PATH: self._receive_digests,
            SNAPSHOT_PATH: self._serve_snapshot,
        }[kind]
        self._guard(handler)(source, body, respond)

    def _check_peer(self, source: str, path: str, request: Any, respond: Respond) -> bytes | None:
        """ClusterFront.check_peer: the body of a call signed by another listed member, from its
        address, in time; else a 403 (None). `rejected` counts the refusals by reason."""
        if not isinstance(request, Signed):
            respond(403, b"unsigned")
            self.rejected.append("unsigned")
            return None
        assert self.settings.cluster_secret is not None
        rules = PeerCallRules(
            self.address, self.peers, self.settings.cluster_secret, self.settings.cluster_signature_window_ms
        )
        remote = source.rpartition(":")[0]
        verdict = judge_peer_call(rules, request.headers, request.method, path, request.body, remote, self.clock())
        if isinstance(verdict, PeerRefused):
            respond(403, verdict.message.encode())
            self.rejected.append(verdict.reason)
            return None
        return request.body

    def _read(self, source: str, path: str, request: Any, respond: Respond, read: Callable[[str, bytes], Any]) -> Any:
        """http.cluster._read: the caller's body as the shared reader makes it, else a 403 or a 400."""
        body = self._check_peer(source, path, request, respond)
        if body is None:
            return None
        try:
            return read(source, body)
        except PeerBodyError as error:
            respond(400, error.message.encode())
            return None

    def _receive_report(self, source: str, body: Any, respond: Respond) -> None:
        report = self._read(source, REPORT_PATH, body, respond, read_report)
        if report is not None:
            self.tell(MEMBERS, report)
            respond(200, encode_report(self.address, self.board.view.self_state))

    def _receive_batch(self, source: str, body: Any, respond: Respond) -> None:
        batch = self._read(source, DATUM_PATH, body, respond, read_batch)
        if batch is not None:
            self.tell(REGISTRY, ApplyReplicated(batch.states, batch.force, SimReply(lambda _: respond(200, b"ok"))))

    def _receive_digests(self, source: str, body: Any, respond: Respond) -> None:
        digests = self._read(source, CHECKSUM_PATH, body, respond, read_digests)
        if digests is None:
            return
        judged = judge_digests(digests, self.serving, self.board.view.healthy, self.registry.all_services())
        if not judged.drops:
            respond(200, judged.answer)
            return
        self.tell(REGISTRY, ApplyReplicated(judged.drops, True, SimReply(lambda _: respond(200, judged.answer))))

    def _serve_snapshot(self, source: str, body: Any, respond: Respond) -> None:
        if self._check_peer(source, SNAPSHOT_PATH, body, respond) is None:
            return
        if not self.serving:
            respond(503, b"this member is starting")
            return
        respond(200, encode_services(self.registry.all_services()))

    def _join(self) -> None:
        """async_join: the JoinCore picks the peer to load a snapshot from, or says to retry or
        to serve alone."""
        joining = JoinCore(self.peers, JOIN_RETRY_MS)

        def carry_out(step: JoinStep) -> None:
            if isinstance(step, FetchSnapshot):
                self.send_peer(
                    step.peer, "GET", SNAPSHOT_PATH, b"", SNAPSHOT_TIMEOUT_MS, lambda result: fetched(step.peer, result)
                )
            elif isinstance(step, RetryJoin):
                self._guarded_after(step.after_ms, lambda: carry_out(joining.start()))
            elif isinstance(step, LoadFrom):
                self.tell(REGISTRY, LoadSnapshot(step.services, SimReply(lambda _: self._serve(step.peer))))
            else:
                self._serve(None)

        def fetched(peer: str, result: Outcome) -> None:
            if isinstance(result, Failure):
                carry_out(joining.answered(peer, None, refused=result.refused))
                return
            services = None
            if result.status == 200:
                try:
                    services = decode_services(result.body)
                except CodecError:
                    services = None
            carry_out(joining.answered(peer, result.status, services=services))

        carry_out(joining.start())

    def _serve(self, peer: str | None) -> None:
        self.serving = True
        self.joined_from = peer
        self.tell(MEMBERS, MarkReady())

    def _client_write(self, source: str, request: ClientWrite | ClientCommand, respond: Respond) -> None:
        """The starting gate, then `distro_write`: forward to the responsible member per this
        node's view; a forwarded request is handled where it lands."""
        if not self.serving:
            respond(503, "this member is starting")
            return
        if request.forwarded_by is not None:
            if source not in self.peers:  # the mark counts only on a member's (signed) call
                self.rejected.append("forwarded")
                respond(403, "not a member")
                return
            self._handle_write(request, respond)
            return
        if isinstance(request, ClientCommand) and isinstance(request.command, NOT_FORWARDED):
            self._handle_command(request.command, respond)
            return
        self._forward(request, respond, 0)

    def _forward(self, request: ClientWrite | ClientCommand, respond: Respond, attempt: int) -> None:
        if attempt == FORWARD_ATTEMPTS:
            respond(503, "the responsible member did not answer")
            return
        owner = responsible_member(request.service.name, self.board.view.healthy)
        if owner is None or owner == self.address:
            self._handle_write(request, respond)
            return

        def outcome(result: Outcome) -> None:
            if isinstance(result, Failure):
                self.tell(MEMBERS, PeerFailed(owner, result.refused))
                self._guarded_after(
                    FORWARD_BACKOFF_MS * (attempt + 1), lambda: self._forward(request, respond, attempt + 1)
                )
                return
            respond(result.status, result.body)

        forwarded = replace(request, forwarded_by=self.address)
        self.send(owner, "client", forwarded, PEER_TIMEOUT_MS, outcome)

    def _handle_command(self, command: Command, respond: Respond) -> None:
        """Front.write: route the command (the edge's checks against this member's view of the
        whole service), then the registry or Raft; answer its value, or its refusal's status."""
        current = self.registry.service(command.service)
        try:
            routed = route_write(command, current)
            if routed.raft is not None and current is None:
                held = len(self.registry.namespaces.get(command.service.namespace) or ())
                refusal = services_limit_refusal(registry_limits(self.settings), command.service.namespace, held)
                if refusal is not None:
                    raise refusal
        except Rejected as refusal:
            respond(refusal.status, refusal.message)
            return
        persistent = routed.raft

        def answer(outcome: Any) -> None:
            if isinstance(outcome, Refused):
                respond(outcome.status, outcome.message)
                return
            if persistent is not None:
                self.sim.note(Acknowledged(self.sim.now, self.address, persistent, outcome.value))
            respond(200, outcome.value)

        if persistent is None:
            assert routed.registry is not None
            self.write((routed.registry,), lambda outcomes: answer(outcomes[0]))
            return
        assert routed.registry is None, "a metadata batch naming both kinds is not simulated"
        self.propose(persistent, answer)

    def _handle_write(self, request: ClientWrite | ClientCommand, respond: Respond) -> None:
        """register_instance, deregister_instance and beat of naming_v1, with a full beat; any
        other write as Front.write makes it."""
        if isinstance(request, ClientCommand):
            self._handle_command(request.command, respond)
            return
        service, instance = request.service, request.instance
        key = instance.key
        now = self.clock()
        if request.op == "register":
            self._record_beat(service, key, now)
            self.write((RegisterInstance(service, instance),), lambda _: respond(200, "ok"))
        elif request.op == "deregister":

            def deregistered(_: object) -> None:
                self.beats.forget(service, key)
                respond(200, "ok")

            self.write((DeregisterInstance(service, key),), deregistered)
        elif request.op == "beat":  # a full beat: it carries the instance
            snapshot = self.registry.service(service)
            found = snapshot.instances.get(key) if snapshot is not None else None
            outcome = beat_outcome(found, full_beat=True)
            self._record_beat(service, key, now)
            if outcome == BEAT_RECORDED:
                respond(200, {"code": BEAT_CODE_OK})
                return

            def beaten(outcomes: tuple[Any, ...]) -> None:
                (written,) = outcomes
                if written.value is None:
                    self.beats.forget(service, key)
                respond(200, {"code": BEAT_CODE_OK if written.value is not None else BEAT_CODE_NOT_FOUND})

            self.write((BeatInstance(service, key, instance),), beaten)
        else:
            raise AssertionError(request.op)

    def _record_beat(self, service: ServiceKey, key: InstanceKey, now: int) -> None:
        self.beats.record(service, key, now)
        self.sim.note(BeatRecorded(self.sim.scheduler.now, self.address, service, key))

    # -- views for the tests ---------------------------------------------------------------

    def owns(self, key: ServiceKey) -> bool:
        return responsible_member(key.name, self.board.view.healthy) == self.address

    @property
    def healthy_view(self) -> tuple[str, ...]:
        return self.board.view.healthy

    def state_of(self, peer: str) -> str:
        return self.board.view.members[peer].state


@dataclass
class Agent:
    """A client process with one ephemeral instance, like nacos-sdk-python's NacosClient with a
    heartbeat thread: register, then a full beat every 5 s; each request goes to the current
    server and, on a timeout or a 5xx, to the next (which stays current). States: 'new',
    'registering', 'live' (beating), 'silent' (the process died: no beats, no deregister),
    'deregistering', 'gone' (deregistered, acknowledged)."""

    sim: Simulation
    service: ServiceKey
    instance: Instance
    cursor: int
    state: str = "new"
    registered_at: int | None = None
    beats_ok: int = 0
    beats_failed: int = 0
    generation: int = 0
    history: list[tuple[int, str]] = field(default_factory=list)
    versions: list[Instance] = field(default_factory=list)

    @property
    def key(self) -> InstanceKey:
        return self.instance.key

    def start(self) -> None:
        self.versions.append(self.instance)
        self._set("registering")
        self._register()

    def update(self, instance: Instance) -> None:
        """Register again with other fields (weight, metadata): the beats carry them from now on."""
        assert instance.key == self.instance.key
        self.instance = instance
        self.versions.append(instance)
        if self.state == "live":
            self._request("register", lambda ok: None)

    def go_silent(self) -> None:
        self._set("silent")

    def deregister(self) -> None:
        self._set("deregistering")
        self._deregister()

    def _set(self, state: str) -> None:
        self.state = state
        self.generation += 1
        self.history.append((self.sim.scheduler.now, state))

    def _register(self) -> None:
        generation = self.generation

        def done(ok: bool) -> None:
            if self.generation != generation:
                return
            if ok:
                self._set("live")
                self.registered_at = self.sim.scheduler.now
                self.sim.scheduler.after(BEAT_INTERVAL_MS, self._beat_loop(self.generation))
            else:
                self.sim.scheduler.after(self.sim.rng.randint(1000, 3000), self._register)

        self._request("register", done)

    def _beat_loop(self, generation: int) -> Callable[[], None]:
        def beat() -> None:
            if self.generation != generation:
                return

            def done(ok: bool) -> None:
                if ok:
                    self.beats_ok += 1
                else:
                    self.beats_failed += 1
                if self.generation == generation:
                    self.sim.scheduler.after(BEAT_INTERVAL_MS, beat)

            self._request("beat", done)

        return beat

    def _deregister(self) -> None:
        generation = self.generation

        def done(ok: bool) -> None:
            if self.generation != generation:
                return
            if ok:
                self._set("gone")
            else:
                self.sim.scheduler.after(self.sim.rng.randint(1000, 3000), self._deregister)

        self._request("deregister", done)

    def _request(self, op: str, on_done: Callable[[bool], None]) -> None:
        """_do_sync_req: each server at most once, from the current one; move on after a timeout
        or a 5xx."""
        servers = self.sim.addresses
        write = ClientWrite(op, self.service, self.instance)

        def attempt(tries: int) -> None:
            server = servers[self.cursor % len(servers)]

            def outcome(result: Outcome) -> None:
                if isinstance(result, Answer) and result.status < 500:
                    on_done(result.status == 200)
                    return
                self.cursor += 1
                if tries + 1 >= len(servers):
                    on_done(False)
                else:
                    attempt(tries + 1)

            self.sim.network.request(CLIENT, server, "client", write, CLIENT_TIMEOUT_MS, outcome, CLIENT_TIMEOUT_MS)

        attempt(0)


def normalized(service: Service, stamps: bool = True) -> tuple[Any, ...]:
    """What must agree between nodes: every field a client can see, each instance in full, and
    (with `stamps`) the revision and modified time verify compares."""
    instances = tuple(
        sorted(
            (
                (k.ip, k.port, k.cluster, k.ephemeral),
                (i.weight, i.healthy, i.enabled, tuple(sorted(i.metadata.items())), i.app, i.marked, i.instance_id),
            )
            for k, i in service.instances.items()
        )
    )
    fields = (
        service.protect_threshold,
        tuple(sorted(service.metadata.items())),
        service.selector,
        service.explicit,
        tuple(sorted(service.clusters.items(), key=lambda item: item[0])),
    )
    return (instances, fields, (service.revision, service.modified_ms) if stamps else None)


class Simulation:
    """`n` members on loopback ports, a network, clients; everything seeded by `seed`; each node
    runs with `settings` (the defaults, push off, unless given)."""

    def __init__(self, seed: int, n: int = 3, skew_ms: int = 400, settings: Settings = SETTINGS) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.scheduler = Scheduler()
        self.network = Network(self.scheduler, random.Random(self.rng.random()))
        self.addresses = tuple(f"127.0.0.1:{8848 + i}" for i in range(n))
        self.nodes = {
            address: SimNode(self, address, self.addresses, self.rng.randint(-skew_ms, skew_ms), settings)
            for address in self.addresses
        }
        for address, node in self.nodes.items():
            self.network.endpoints[address] = node
        self.raft = SimRaft(self, settings)
        self.agents: list[Agent] = []
        self.listeners: list[Callable[[Event], None]] = []
        self.probe_answers: dict[tuple[str, int], tuple[str, bool]] = {}
        self.probes_run: list[tuple[str, ProbeTarget]] = []  # (member, probe) as started
        self.probe_times: list[int] = []  # when each of probes_run started (simulated ms)

    @property
    def now(self) -> int:
        return self.scheduler.now

    def note(self, event: Event) -> None:
        for listener in self.listeners:
            listener(event)

    def node(self, index: int) -> SimNode:
        return self.nodes[self.addresses[index]]

    def start_all(self, spread_ms: int = 300) -> None:
        for node in self.nodes.values():
            self.scheduler.after(self.rng.randint(0, spread_ms), node.start)

    def run_for(self, duration_ms: int) -> None:
        self.scheduler.run_for(duration_ms)

    def probe_result(self, probe: ProbeTarget) -> ProbeResult:
        """How a probe of `probe.ip:probe.port` ends: `probe_answers` holds (outcome, immediate)
        per address; absent, it succeeds."""
        outcome, immediate = self.probe_answers.get((probe.ip, probe.port), (PROBE_OK, False))
        return ProbeResult(probe.probe_id, probe.kind, outcome, immediate, f"sim:{outcome}", float(PROBE_LATENCY_MS))

    def add_agent(self, service: ServiceKey, instance: Instance, delay_ms: int = 0) -> Agent:
        agent = Agent(self, service, instance, cursor=self.rng.randrange(len(self.addresses)))
        self.agents.append(agent)
        self.scheduler.after(delay_ms, agent.start)
        return agent

    # -- what the tests look at ------------------------------------------------------------

    def live_nodes(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.alive]

    def views_agree(self) -> bool:
        """Every running node serves and sees exactly the running nodes as healthy."""
        running = tuple(sorted(n.address for n in self.live_nodes()))
        return all(n.serving and n.healthy_view == running for n in self.live_nodes())

    def contents(self, node: SimNode, stamps: bool = True) -> dict[ServiceKey, tuple[Any, ...]]:
        return {s.key: normalized(s, stamps) for s in node.registry.all_services()}

    def differences(self, stamps: bool = True) -> list[str]:
        """Where the running nodes' registries differ (empty when they agree)."""
        nodes = self.live_nodes()
        reference = self.contents(nodes[0], stamps)
        problems = []
        for other in nodes[1:]:
            theirs = self.contents(other, stamps)
            for key in sorted(set(reference) | set(theirs)):
                if reference.get(key) != theirs.get(key):
                    problems.append(
                        f"{key.name}: {nodes[0].address} has {_brief(reference.get(key))}, "
                        f"{other.address} has {_brief(theirs.get(key))}"
                    )
        return problems

    def owner_of(self, key: ServiceKey) -> SimNode:
        """The responsible member per the (agreed) view of the running nodes."""
        view = self.live_nodes()[0].healthy_view
        owner = responsible_member(key.name, view)
        assert owner is not None
        return self.nodes[owner]


@dataclass(frozen=True, slots=True)
class Loss:
    """A tracked instance went from present and healthy to absent or unhealthy on `node`, by
    `cause`; `owner` tells whether the node owned its service then (in its own view), and
    `beat_age_ms` how long ago the node itself recorded the instance's last beat (None: never)."""

    time_ms: int
    node: str
    ip: str
    cause: str
    owner: bool
    beat_age_ms: int | None

    @property
    def by_verdict(self) -> bool:
        return self.cause in (MarkUnhealthy.__name__, ExpireInstance.__name__)

    @property
    def heard(self) -> bool:
        """The node had recorded a beat of the instance within the beat timeout: the instance
        was beating to it."""
        return self.beat_age_ms is not None and self.beat_age_ms <= DEFAULT_HEART_BEAT_TIMEOUT_MS


class LossMonitor:
    """Watches every registry change and records a Loss whenever an instance of an agent for
    which `tracked(agent)` holds stops being present and healthy on some node."""

    def __init__(self, sim: Simulation, tracked: Callable[[Agent], bool]) -> None:
        self.sim = sim
        self.tracked = tracked
        self.losses: list[Loss] = []
        self._last_beat: dict[tuple[str, ServiceKey, InstanceKey], int] = {}
        sim.listeners.append(self._on_event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, BeatRecorded):
            self._last_beat[(event.node, event.service, event.key)] = event.time_ms
            return
        if not isinstance(event, Change):
            return
        for agent in self.sim.agents:
            if agent.service != event.key or not self.tracked(agent):
                continue
            was = event.before.instances.get(agent.key) if event.before is not None else None
            now = event.after.instances.get(agent.key) if event.after is not None else None
            if was is None or not was.healthy or (now is not None and now.healthy):
                continue
            beat = self._last_beat.get((event.node, event.key, agent.key))
            cause = event.cause_for(agent.key)
            node = self.sim.nodes[event.node]
            age = None if beat is None else event.time_ms - beat
            self.losses.append(Loss(event.time_ms, event.node, agent.key.ip, cause, node.owns(event.key), age))

    def last_beat(self, node: str, service: ServiceKey, key: InstanceKey) -> int | None:
        """When `node` last recorded a beat of the instance (simulated ms), or None."""
        return self._last_beat.get((node, service, key))

    def since(self, time_ms: int) -> list[Loss]:
        return [loss for loss in self.losses if loss.time_ms >= time_ms]


class ViewMonitor:
    """Records the intervals during which the running members' healthy views differ (so they
    may disagree on who owns a service)."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.intervals: list[list[int]] = []  # [start, end]; end -1 while it lasts
        sim.listeners.append(self._on_event)

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, ViewPublished):
            return
        views = {node.healthy_view for node in self.sim.live_nodes()}
        open_ = bool(self.intervals) and self.intervals[-1][1] < 0
        if len(views) > 1 and not open_:
            self.intervals.append([event.time_ms, -1])
        elif len(views) == 1 and open_:
            self.intervals[-1][1] = event.time_ms

    def disagreed_near(self, time_ms: int, grace_ms: int) -> bool:
        """Whether the views differed at `time_ms` or up to `grace_ms` before."""
        return any(start <= time_ms <= (end if end >= 0 else time_ms) + grace_ms for start, end in self.intervals)


def _brief(entry: tuple[Any, ...] | None) -> str:
    if entry is None:
        return "nothing"
    instances, _, stamp = entry
    return f"{len(instances)} instances at {stamp}"


def instance_for(index: int, port: int = 9000, metadata: dict[str, str] | None = None, weight: float = 1.0) -> Instance:
    """An instance on a loopback address, as a client registers it (and its full beat carries it)."""
    return Instance(
        ip=f"127.0.0.{1 + index % 250}", port=port + index // 250, weight=weight, metadata=freeze(metadata or {})
    )


def _target(cause: Any) -> InstanceKey | None:
    """The instance a command is aimed at, when it names one."""
    instance = getattr(cause, "instance", None)
    if instance is not None:
        return instance.key  # type: ignore[no-any-return]
    return getattr(cause, "key", None)
