"""Simulated cluster members and clients: the pure cores wired as the actors and the front wire them.

A `SimNode` holds what one nacos-actors process holds - RegistryCore, MemberCore, DistroCore,
HealthCore, the BeatLog and the published MemberView (the board) - and reproduces, message for
message, what the actors (nacos_actors/actors/*.py) and the HTTP front (nacos_actors/http/
cluster.py, naming_v1.py, node.py) do with them:

- actors: each actor's handling of each message is a method here; a `tell` between actors goes
  to the node's mailbox, drained in FIFO order at the same simulated instant, and every actor's
  alarm is set to its core's `next_deadline()` after each message, as `Alarm.set` is;
- the front: client writes through `distro_write` (forward to the responsible member per this
  node's view, up to three attempts with back-off, a forwarded request handled where it lands),
  the starting gate (503 until the node serves), the beat handler of naming_v1, the peer
  endpoints (report, datum, checksum, datums) and `async_join`;
- the peer client: every body is encoded and decoded with nacos_actors.core.codec, and sent by
  the simulated `Network` with the peer client's timeouts.

Clients (`Agent`) behave like nacos-sdk-python's v1 NacosClient with a heartbeat: try one server,
and on a timeout or a 5xx the next, keeping the new one; beat with the full beat JSON every 5 s.

Time: a node's clock is the simulated time plus a fixed skew (real members' clocks differ).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

from nacos_actors.actors.members import LEAVE_TIMEOUT_S
from nacos_actors.beats import BeatLog
from nacos_actors.core.codec import (
    CodecError,
    decode_batch,
    decode_digests,
    decode_keys,
    decode_report,
    decode_services,
    encode_batch,
    encode_digests,
    encode_keys,
    encode_report,
    encode_services,
)
from nacos_actors.core.distro import (
    DistroConfig,
    DistroCore,
    SendBatch,
    health_judged_here,
    responsible_member,
    stamp_of,
    verdict,
)
from nacos_actors.core.health import HealthConfig, HealthCore
from nacos_actors.core.members import HEALTHY_STATES, REPORTED_STATES, MemberBoard, MemberConfig, MemberCore, MemberView
from nacos_actors.core.registry import Dropped, RegistryCore, Rejected
from nacos_actors.http.cluster import FORWARD_ATTEMPTS, FORWARD_BACKOFF_S, JOIN_RETRY_S, SNAPSHOT_TIMEOUT_S
from nacos_actors.messages import (
    BatchDone,
    BeatInstance,
    Command,
    DeregisterInstance,
    DigestsAnswered,
    ExpireInstance,
    MarkReady,
    MarkUnhealthy,
    MembersChanged,
    PeerFailed,
    RegisterInstance,
    ReportAnswered,
    ReportReceived,
    ServiceChange,
    ServicesChanged,
    Tick,
)
from nacos_actors.model import DEFAULT_HEART_BEAT_TIMEOUT_MS, Instance, InstanceKey, Service, ServiceKey, freeze
from nacos_actors.node import DRAIN_TIMEOUT_S, PEER_TIMEOUT_S
from nacos_actors.settings import Settings
from tests.sim.network import CLIENT, Answer, Failure, Network, Outcome, Respond, Scheduler

EPOCH_MS = 1_700_000_000_000
PEER_TIMEOUT_MS = int(PEER_TIMEOUT_S * 1000)
SNAPSHOT_TIMEOUT_MS = int(SNAPSHOT_TIMEOUT_S * 1000)
JOIN_RETRY_MS = int(JOIN_RETRY_S * 1000)
FORWARD_BACKOFF_MS = int(FORWARD_BACKOFF_S * 1000)
DRAIN_TIMEOUT_MS = int(DRAIN_TIMEOUT_S * 1000)
LEAVE_TIMEOUT_MS = int(LEAVE_TIMEOUT_S * 1000)
CLIENT_TIMEOUT_MS = 3000  # nacos-sdk-python's default request timeout
BEAT_INTERVAL_MS = 5000
BEAT_OK = 10200
BEAT_NOT_FOUND = 20404

_DEFAULTS = Settings()
MEMBER_CONFIG = MemberConfig(_DEFAULTS.member_report_interval_ms, _DEFAULTS.member_fail_threshold)
DISTRO_CONFIG = DistroConfig(
    sync_window_ms=_DEFAULTS.distro_sync_window_ms,
    retry_delay_ms=_DEFAULTS.distro_retry_delay_ms,
    verify_interval_ms=_DEFAULTS.distro_verify_interval_ms,
)
HEALTH_CONFIG = HealthConfig(
    check_beats=_DEFAULTS.health_check_enabled,
    expire_instances=_DEFAULTS.expire_instances,
    clean_empty_services=_DEFAULTS.empty_service_auto_clean,
    empty_service_ttl_ms=_DEFAULTS.empty_service_ttl_ms,
)


@dataclass(frozen=True, slots=True)
class ClientWrite:
    """A client's register, deregister or (full) beat, as the front parses it; `forwarded_by`
    stands for the Nacos-Actors-Forwarded header."""

    op: str
    service: ServiceKey
    instance: Instance
    forwarded_by: str | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """A node's registry changed a service (`after` None: deleted), by `cause`: a Command, or
    'replicated', 'forced', 'dropped', 'snapshot'."""

    time_ms: int
    node: str
    key: ServiceKey
    before: Service | None
    after: Service | None
    cause: Any


@dataclass(frozen=True, slots=True)
class BeatRecorded:
    """A node recorded a beat of an instance in its beat log (it handled the beat)."""

    time_ms: int
    node: str
    service: ServiceKey
    key: InstanceKey


@dataclass(frozen=True, slots=True)
class ViewPublished:
    """A node's member actor published a new view (some member's state changed)."""

    time_ms: int
    node: str
    healthy: tuple[str, ...]


Event = Change | BeatRecorded | ViewPublished


class SimNode:
    """One member process. `start` boots it (fresh cores, a given or empty registry) and joins;
    `crash` kills it (nothing runs, connections are refused); `leave` is SIGTERM (drain, report
    DOWN, stop). `registry` survives a crash, for a restart with the data kept."""

    def __init__(self, sim: Simulation, address: str, members: tuple[str, ...], skew_ms: int) -> None:
        self.sim = sim
        self.address = address
        self.member_list = members
        self.peers = tuple(a for a in members if a != address)
        self.skew_ms = skew_ms
        self.alive = False
        self.incarnation = 0
        self.registry = RegistryCore()
        self.serving = False
        self.joined_from: str | None = None

    # -- process lifecycle -----------------------------------------------------------------

    def clock(self) -> int:
        return EPOCH_MS + self.sim.scheduler.now + self.skew_ms

    def to_sim_time(self, node_ms: int) -> int:
        return node_ms - EPOCH_MS - self.skew_ms

    def start(self, registry: RegistryCore | None = None) -> None:
        """run_node + start_cluster + serve: the actors start, the registry tells each watcher
        its current services (as replicated), and the node joins the cluster."""
        assert not self.alive
        self.incarnation += 1
        self.alive = True
        now = self.clock()
        self.registry = registry if registry is not None else RegistryCore()
        self.beats = BeatLog()
        self.health = HealthCore(HEALTH_CONFIG)
        self.health.set_owner(lambda key: False, now)  # nothing, until the member is UP
        self.distro = DistroCore(self.address, self.peers, DISTRO_CONFIG, now)
        self.members = MemberCore(self.address, self.member_list, MEMBER_CONFIG, now)
        self.board = MemberBoard(self.members.view)
        self.serving = False
        self.joined_from = None
        self._draining = False
        self._mailbox: deque[tuple[Callable[[Any], None], Any]] = deque()
        self._alarms: dict[str, int | None] = {}
        current = tuple(ServiceChange(s.key, s) for s in self.registry.all_services())
        self._tell(self._health_receive, ServicesChanged(current, 0, replicated=True))
        self._tell(self._distro_receive, ServicesChanged(current, 0, replicated=True))
        self._join()
        self._settle()

    def crash(self) -> None:
        """The process dies at once: no drain, no goodbye; its registry object is left as it was."""
        self.alive = False
        self.serving = False

    def leave(self) -> None:
        """SIGTERM (node.async_leave): flush Distro (at most DRAIN_TIMEOUT), report DOWN to every
        peer (at most LEAVE_TIMEOUT), then stop."""
        if not self.alive:
            return
        self.distro.flush_now()
        self._draining = True
        self._tell(self._distro_receive, Tick())
        self._settle()
        self._guarded_after(DRAIN_TIMEOUT_MS, self._say_goodbye)

    def _say_goodbye(self) -> None:
        if not self._draining:
            return
        self._draining = False
        before = self.members.view
        self.members.mark_leaving(self.clock())
        self._publish_members(before)
        body = encode_report(self.address, self.members.view.self_state)
        for peer in self.members.peers:
            self._send(peer, "report", body, LEAVE_TIMEOUT_MS, lambda outcome: None)
        self._guarded_after(LEAVE_TIMEOUT_MS, self.crash)

    # -- plumbing: mailbox, alarms, guarded callbacks --------------------------------------

    def _tell(self, handler: Callable[[Any], None], message: Any) -> None:
        self._mailbox.append((handler, message))

    def _settle(self) -> None:
        """Run every told message, then set each actor's alarm to its core's next deadline."""
        while self._mailbox and self.alive:
            handler, message = self._mailbox.popleft()
            handler(message)
        if self.alive:
            self._rearm("members", self.members.next_deadline(), self._member_receive)
            self._rearm("distro", self.distro.next_deadline(), self._distro_receive)
            self._rearm("health", self.health.next_deadline(), self._health_receive)

    def _rearm(self, name: str, deadline: int | None, handler: Callable[[Any], None]) -> None:
        if self._alarms.get(name) == deadline:
            return
        self._alarms[name] = deadline
        if deadline is None:
            return

        def ring() -> None:
            if self._alarms.get(name) == deadline:
                self._alarms[name] = None
                self._tell(handler, Tick())

        self.sim.scheduler.at(self.to_sim_time(deadline), self._guard(ring))

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

    def _send(self, peer: str, kind: str, body: Any, timeout_ms: int, on_outcome: Callable[[Outcome], None]) -> None:
        self.sim.network.request(self.address, peer, kind, body, timeout_ms, self._guard(on_outcome))

    # -- registry actor --------------------------------------------------------------------

    def _watchers_told(self, changes: tuple[ServiceChange, ...], replicated: bool) -> None:
        told = ServicesChanged(changes, 0, replicated=replicated)
        self._tell(self._health_receive, told)
        self._tell(self._distro_receive, told)

    def write(self, commands: Iterable[Command]) -> list[Any]:
        """RegistryActor's WriteBatch: apply each command, answer the outcomes, tell the watchers."""
        now = self.clock()
        outcomes: list[Any] = []
        changes: dict[ServiceKey, Service | None] = {}
        touched: dict[ServiceKey, set[InstanceKey]] = {}
        for command in commands:
            before = self.registry.service(command.service)
            try:
                applied = self.registry.apply(command, now)
            except Rejected as refusal:
                outcomes.append(refusal)
                continue
            outcomes.append(applied.value)
            if applied.changed is not None:
                changes[applied.changed.key] = applied.changed
                touched.setdefault(applied.changed.key, set()).update(applied.touched)
                self.sim.note(
                    Change(self.sim.scheduler.now, self.address, command.service, before, applied.changed, command)
                )
            elif applied.deleted is not None:
                changes[applied.deleted] = None
                self.sim.note(Change(self.sim.scheduler.now, self.address, command.service, before, None, command))
        if changes:
            self._watchers_told(
                tuple(ServiceChange(k, v, None if v is None else frozenset(touched[k])) for k, v in changes.items()),
                replicated=False,
            )
        return outcomes

    def apply_replicated(self, states: Iterable[Any], force: bool, cause: str) -> int:
        """RegistryActor's ApplyReplicated."""
        changed: dict[ServiceKey, Service | None] = {}
        for state in states:
            before = self.registry.service(state.key)
            applied = self.registry.apply_replicated(state, force)
            if applied.changed is not None:
                changed[applied.changed.key] = applied.changed
            elif applied.deleted is not None:
                changed[applied.deleted] = None
            else:
                continue
            self.sim.note(Change(self.sim.scheduler.now, self.address, state.key, before, changed[state.key], cause))
        if changed:
            self._watchers_told(tuple(ServiceChange(k, v) for k, v in changed.items()), replicated=True)
        return len(changed)

    def _load_snapshot(self, services: list[Service]) -> None:
        """RegistryActor's LoadSnapshot."""
        before = {s.key: s for s in self.registry.all_services()}
        held, gone = self.registry.replace_all(services)
        for service in held:
            self.sim.note(
                Change(self.sim.scheduler.now, self.address, service.key, before.get(service.key), service, "snapshot")
            )
        for key in gone:
            self.sim.note(Change(self.sim.scheduler.now, self.address, key, before[key], None, "snapshot"))
        loaded = (*(ServiceChange(s.key, s) for s in held), *(ServiceChange(k, None) for k in gone))
        if loaded:
            self._watchers_told(loaded, replicated=True)

    def _registry_receive(self, commands: tuple[Command, ...]) -> None:
        """A WriteBatch told by the health checker (nobody waits for its reply)."""
        self.write(commands)

    # -- health check actor ----------------------------------------------------------------

    def _health_receive(self, message: Any) -> None:
        match message:
            case ServicesChanged(changes, _):
                self.health.observe_changes(changes, self.clock(), self.beats)
            case MembersChanged(view):
                owns = health_judged_here(view.healthy, len(view.members), view.self_address)
                self.health.set_owner(owns, self.clock())
            case Tick():
                commands = self.health.due(self.clock(), self.beats.last)
                if commands:
                    self._tell(self._registry_receive, tuple(commands))
            case _:
                raise AssertionError(message)

    # -- member actor ----------------------------------------------------------------------

    def _member_receive(self, message: Any) -> None:
        now = self.clock()
        core = self.members
        before = core.view
        match message:
            case Tick():
                for peer in core.due(now):
                    self._report(peer, core.view.self_state)
            case ReportAnswered(peer, state):
                core.report_answered(peer, state, now)
            case ReportReceived(peer, state):
                core.report_received(peer, state, now)
            case PeerFailed(peer, refused, report):
                if report:
                    core.report_failed(peer, refused, now)
                else:
                    core.peer_failed(peer, refused, now)
            case MarkReady():
                core.mark_ready(now)
            case _:
                raise AssertionError(message)
        self._publish_members(before)

    def _publish_members(self, before: MemberView) -> None:
        view = self.members.view
        if view is before:
            return
        self.board.view = view
        if any(before.members[a].state != s.state for a, s in view.members.items()):
            self.sim.note(ViewPublished(self.sim.scheduler.now, self.address, view.healthy))
            told = MembersChanged(view)
            self._tell(self._distro_receive, told)
            self._tell(self._health_receive, told)

    def _report(self, peer: str, state: str) -> None:
        def outcome(result: Outcome) -> None:
            told: Any
            if isinstance(result, Answer) and result.status == 200:
                try:
                    told = ReportAnswered(peer, decode_report(result.body, REPORTED_STATES).state)
                except CodecError:
                    told = PeerFailed(peer, False, report=True)
            else:
                told = PeerFailed(peer, isinstance(result, Failure) and result.refused, report=True)
            self._tell(self._member_receive, told)

        self._send(peer, "report", encode_report(self.address, state), PEER_TIMEOUT_MS, outcome)

    # -- distro actor ----------------------------------------------------------------------

    def _distro_receive(self, message: Any) -> None:
        now = self.clock()
        core = self.distro
        match message:
            case ServicesChanged(changes, _, replicated):
                if not replicated:
                    core.changed((change.key for change in changes), now)
            case MembersChanged(view):
                reachable = [a for a, s in view.members.items() if a != view.self_address and s.state in HEALTHY_STATES]
                core.set_view(view.healthy, reachable)
            case BatchDone(batch, ok):
                core.batch_done(batch, ok, now)
            case DigestsAnswered(peer, wanted):
                if wanted:
                    core.repair(peer, wanted, now)
            case Tick():
                pass
            case _:
                raise AssertionError(message)
        for effect in core.due(now):
            if isinstance(effect, SendBatch):
                self._send_batch(effect)
            else:
                self._send_digests(effect.peer)
        if self._draining and core.pending() == 0:
            self._guarded_after(0, self._say_goodbye)

    def _send_batch(self, batch: SendBatch) -> None:
        states = [self.registry.state_of(key) for key in batch.keys]
        body = encode_batch(self.address, states, batch.force)

        def outcome(result: Outcome) -> None:
            self._tell(self._distro_receive, BatchDone(batch, isinstance(result, Answer) and result.status == 200))

        self._send(batch.peer, "datum", body, PEER_TIMEOUT_MS, outcome)

    def _send_digests(self, peer: str) -> None:
        owned = [(s.key, stamp_of(s)) for s in self.registry.all_services() if self.distro.owns(s.key)]
        body = encode_digests(self.address, self.distro.healthy, owned)

        def outcome(result: Outcome) -> None:
            if isinstance(result, Answer) and result.status == 200:
                self._tell(self._distro_receive, DigestsAnswered(peer, decode_keys(result.body)))

        self._send(peer, "checksum", body, PEER_TIMEOUT_MS, outcome)

    # -- the HTTP front --------------------------------------------------------------------

    def receive(self, source: str, kind: str, body: Any, respond: Respond) -> None:
        """A request arrived (the network calls this only while the process runs)."""
        handler = {
            "client": self._client_write,
            "report": self._receive_report,
            "datum": self._receive_batch,
            "checksum": self._receive_digests,
            "datums": self._serve_snapshot,
        }[kind]
        self._guard(handler)(source, body, respond)

    def _check_peer(self, source: str, respond: Respond) -> bool:
        if source == self.address or source not in self.peers:
            respond(403, b"not a member")
            return False
        return True

    def _receive_report(self, source: str, body: bytes, respond: Respond) -> None:
        if not self._check_peer(source, respond):
            return
        try:
            report = decode_report(body, REPORTED_STATES)
        except CodecError:
            respond(400, b"bad report")
            return
        if report.address != source:
            respond(400, b"not the caller")
            return
        self._tell(self._member_receive, ReportReceived(source, report.state))
        respond(200, encode_report(self.address, self.board.view.self_state))

    def _receive_batch(self, source: str, body: bytes, respond: Respond) -> None:
        if not self._check_peer(source, respond):
            return
        batch = decode_batch(body)
        assert batch.sender == source
        self.apply_replicated(batch.states, batch.force, "forced" if batch.force else "replicated")
        respond(200, b"ok")

    def _receive_digests(self, source: str, body: bytes, respond: Respond) -> None:
        if not self._check_peer(source, respond):
            return
        digests = decode_digests(body)
        assert digests.sender == source
        if not self.serving:
            respond(200, encode_keys(()))
            return
        local = list(self.registry.all_services())
        found = verdict(source, digests.healthy, digests.stamps, self.board.view.healthy, local)
        if found.dropped:
            by_key = {s.key: s for s in local}
            drops = tuple(Dropped(k, (by_key[k].revision, by_key[k].modified_ms)) for k in found.dropped)
            self.apply_replicated(drops, True, "dropped")
        respond(200, encode_keys(found.wanted))

    def _serve_snapshot(self, source: str, body: bytes, respond: Respond) -> None:
        if not self._check_peer(source, respond):
            return
        if not self.serving:
            respond(503, b"this member is starting")
            return
        respond(200, encode_services(self.registry.all_services()))

    def _join(self) -> None:
        """async_join: a snapshot from the first peer that serves one, or serve alone when every
        peer refuses or is starting too; retry while some peer did not answer."""

        def attempt(index: int, waiting: bool) -> None:
            if index == len(self.peers):
                if waiting:
                    self._guarded_after(JOIN_RETRY_MS, lambda: attempt(0, False))
                else:
                    self._serve(None)
                return
            peer = self.peers[index]

            def outcome(result: Outcome) -> None:
                if isinstance(result, Failure):
                    attempt(index + 1, waiting or not result.refused)
                elif result.status == 503:
                    attempt(index + 1, waiting)
                elif result.status != 200:
                    attempt(index + 1, True)
                else:
                    try:
                        services = decode_services(result.body)
                    except CodecError:
                        attempt(index + 1, True)
                        return
                    self._load_snapshot(services)
                    self._serve(peer)

            self._send(peer, "datums", b"", SNAPSHOT_TIMEOUT_MS, outcome)

        attempt(0, False)

    def _serve(self, peer: str | None) -> None:
        self.serving = True
        self.joined_from = peer
        self._tell(self._member_receive, MarkReady())

    def _client_write(self, source: str, request: ClientWrite, respond: Respond) -> None:
        """The starting gate, then `distro_write`: forward to the responsible member per this
        node's view; a forwarded request is handled where it lands."""
        if not self.serving:
            respond(503, "this member is starting")
            return
        if request.forwarded_by is not None:
            self._handle_write(request, respond)
            return
        self._forward(request, respond, 0)

    def _forward(self, request: ClientWrite, respond: Respond, attempt: int) -> None:
        if attempt == FORWARD_ATTEMPTS:
            respond(503, "the responsible member did not answer")
            return
        owner = responsible_member(request.service.name, self.board.view.healthy)
        if owner is None or owner == self.address:
            self._handle_write(request, respond)
            return

        def outcome(result: Outcome) -> None:
            if isinstance(result, Failure):
                self._tell(self._member_receive, PeerFailed(owner, result.refused))
                self._guarded_after(
                    FORWARD_BACKOFF_MS * (attempt + 1), lambda: self._forward(request, respond, attempt + 1)
                )
                return
            respond(result.status, result.body)

        forwarded = replace(request, forwarded_by=self.address)
        self._send(owner, "client", forwarded, PEER_TIMEOUT_MS, outcome)

    def _handle_write(self, request: ClientWrite, respond: Respond) -> None:
        """register_instance, deregister_instance and beat of naming_v1, with a full beat."""
        service, instance = request.service, request.instance
        key = instance.key
        now = self.clock()
        if request.op == "register":
            self._record_beat(service, key, now)
            self.write((RegisterInstance(service, instance),))
            respond(200, "ok")
        elif request.op == "deregister":
            self.write((DeregisterInstance(service, key),))
            self.beats.forget(service, key)
            respond(200, "ok")
        elif request.op == "beat":
            snapshot = self.registry.service(service)
            found = snapshot.instances.get(key) if snapshot is not None else None
            self._record_beat(service, key, now)
            if found is None or not (found.healthy or found.marked):
                (found,) = self.write((BeatInstance(service, key, instance),))
                if found is None:
                    self.beats.forget(service, key)
            respond(200, {"code": BEAT_OK if found is not None else BEAT_NOT_FOUND})
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
    """`n` members on loopback ports, a network, clients; everything seeded by `seed`."""

    def __init__(self, seed: int, n: int = 3, skew_ms: int = 400) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.scheduler = Scheduler()
        self.network = Network(self.scheduler, random.Random(self.rng.random()))
        self.addresses = tuple(f"127.0.0.1:{8848 + i}" for i in range(n))
        self.nodes = {
            address: SimNode(self, address, self.addresses, self.rng.randint(-skew_ms, skew_ms))
            for address in self.addresses
        }
        for address, node in self.nodes.items():
            self.network.endpoints[address] = node
        self.agents: list[Agent] = []
        self.listeners: list[Callable[[Event], None]] = []

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
            cause = event.cause if isinstance(event.cause, str) else type(event.cause).__name__
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
