"""Persistent data through Raft in the cluster simulation (issue 15), seeded like
test_cluster_sim.py: a failing seed replays exactly.

Raft is modelled at the driver boundary (tests/sim/raft.py says what the model does and does
not do): pysyncobj owns its sockets, its poller and its monotonic clock, so it cannot run over
the simulated network and clock. Everything above the driver's ConsensusGroup port is the
production code: the RaftDriver, the DefinitionCore, the registry's merge of the persistent half,
the front's routing (route_write) and its answers, with Distro and the health checks running
beside them on the same services.

Clients write persistent instances (register with a new version in their metadata, or
deregister), service settings (metadata, through POST or PUT /v1/ns/service) and cluster
configs (PUT /v1/ns/cluster) on random members, one operation at a time per thing written (a
register, in Jepsen's terms), each with a value never written before. Every operation is
recorded with its outcome: ok (acknowledged), fail (certainly without effect: refused, no
Raft leader, connection refused) or info (unknown: a timeout, or a 503 whose outcome is
unknown). What is asserted, and why it must hold:

1. No acknowledged write is lost, no acknowledged delete undone: once healed and settled, every
   member holds, for each register, the value of its last acknowledged operation, or of an
   operation whose outcome is unknown (it may take effect at any time after it was sent), never
   one older, never one that failed; every member holds equal persistent halves
   (`Service.definition`), and its registry holds what its Raft driver applied.
2. Only a member on a majority's side (it reaches a member that reaches a majority: a leader)
   acknowledges a persistent write (a commit it learnt just before a partition may still be
   answered at its next tick), and it answers only once
   its own registry holds the write (read your writes, where the write was answered).
3. The two halves do not interfere: Distro's replication, verify and snapshots, and the local
   ephemeral writes, never change or remove a persistent half; Raft's changes never move the
   ephemeral half or its stamp (revision, modified time). So the convergence checks of
   test_cluster_sim.py hold with persistent data present: equal services everywhere, stamps
   included, and instances that keep beating are present and healthy.
4. A member restarted from its journal (its last snapshot, then the entries after it) converges;
   one restarted without its journal catches up from the leader's snapshot; a whole cluster
   restarted at once from its journals loses no acknowledged write.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from nacos_actors.messages import (
    Command,
    CreateService,
    DeregisterInstance,
    RegisterInstance,
    UpdateCluster,
    UpdateService,
)
from nacos_actors.model import (
    NO_SELECTOR,
    ClusterConfig,
    Definition,
    Instance,
    InstanceKey,
    Service,
    ServiceKey,
    freeze,
)
from tests.sim.cluster import (
    CLIENT_TIMEOUT_MS,
    RAFT_TICK_MS,
    SETTINGS,
    Acknowledged,
    Change,
    ClientCommand,
    SimNode,
    Simulation,
)
from tests.sim.network import CLIENT, Answer, Outcome
from tests.sim.test_cluster_sim import SERVICES, Chaos, missing_or_unhealthy, start_cluster

CLUSTER = "raft-cluster"
SETTLE_MS = 45_000  # past the 30 s delete timeout of silent clients, and many verify rounds
RAFT_CAUSES = ("raft", "raft-snapshot")
# A commit learnt from the leader just before a partition is applied, and answered, at the
# member's next tick.
ACK_GRACE_MS = RAFT_TICK_MS


# -- registers, operations and the history ---------------------------------------------------


@dataclass(frozen=True)
class Register:
    """One thing clients write: a persistent instance ('instance': its version, or None when
    deregistered), a service's metadata ('service') or a cluster's metadata ('cluster')."""

    kind: str
    service: ServiceKey
    number: int = 0

    @property
    def key(self) -> InstanceKey:
        return InstanceKey(
            f"10.0.{SERVICES.index(self.service)}.{1 + self.number}", 7000 + self.number, "DEFAULT", False
        )

    def command(self, value: str | None, create: bool) -> Command:
        """The write that makes `value` this register's value (`create`: POST, not PUT, the service)."""
        if self.kind == "instance":
            if value is None:
                return DeregisterInstance(self.service, self.key)
            instance = Instance(self.key.ip, self.key.port, ephemeral=False, metadata=freeze({"v": value}))
            return RegisterInstance(self.service, instance)
        if self.kind == "service":
            if create:
                return CreateService(self.service, 0.0, freeze({"v": value or ""}), NO_SELECTOR)
            return UpdateService(self.service, 0.0, freeze({"v": value or ""}), None)
        return UpdateCluster(self.service, CLUSTER, ClusterConfig(metadata=freeze({"v": value or ""})))

    def read(self, service: Service | None) -> str | None:
        """This register's value in `service` as a member holds it."""
        if service is None:
            return None
        if self.kind == "instance":
            found = service.instances.get(self.key)
            return None if found is None else found.metadata.get("v")
        if self.kind == "service":
            return service.metadata.get("v")
        config = service.clusters.get(CLUSTER)
        return None if config is None else config.metadata.get("v")

    def __str__(self) -> str:
        name = self.service.name.rpartition("@@")[2]
        return f"{self.kind} {name}" + (f" {self.key.ip}" if self.kind == "instance" else "")


def register_of(command: Command) -> Register | None:
    """The register a command writes (None: not one a writer sends)."""
    if isinstance(command, RegisterInstance | DeregisterInstance):
        key = command.instance.key if isinstance(command, RegisterInstance) else command.key
        if command.service in SERVICES and key.ip.startswith("10.0."):
            return Register("instance", command.service, key.port - 7000)
    elif isinstance(command, CreateService | UpdateService):
        return Register("service", command.service)
    elif isinstance(command, UpdateCluster) and command.cluster == CLUSTER:
        return Register("cluster", command.service)
    return None


@dataclass
class Op:
    """One operation: which register, the value it writes, where and when it was sent, and how
    it ended: 'ok', 'fail' (certainly no effect), 'info' (unknown), or 'pending'."""

    register: Register
    value: str | None
    node: str
    invoked_ms: int
    kind: str
    status: str = "pending"
    answer: Any = None

    def __str__(self) -> str:
        return f"{self.kind} {self.value} on {self.node} at {self.invoked_ms} ms: {self.status} ({self.answer})"


def classify(result: Outcome) -> str:
    """An operation's end from its answer: 'ok', 'fail' when it certainly had no effect, else 'info'."""
    if isinstance(result, Answer):
        if result.status == 200:
            return "ok"
        if result.status < 500:
            return "fail"  # refused at the edge, or by the core: nothing changed
        text = str(result.body)
        # No leader known: the proposal never left the member (pysyncobj's MISSING_LEADER).
        if text.startswith("no Raft leader") or text == "this member is starting":
            return "fail"
        return "info"
    return "fail" if result.refused else "info"


@dataclass
class History:
    """Every operation, in the order sent, and the problems seen while it ran."""

    ops: list[Op] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def of(self, register: Register) -> list[Op]:
        return [op for op in self.ops if op.register == register]

    def allowed(self, register: Register) -> set[str | None]:
        """The values the register may hold once nothing is in flight: its last acknowledged
        value (or none, if nothing was acknowledged), or that of any operation whose outcome
        is unknown (it may take effect after everything else)."""
        ops = self.of(register)
        acknowledged = [op for op in ops if op.status == "ok"]
        allowed = {acknowledged[-1].value if acknowledged else None}
        allowed.update(op.value for op in ops if op.status in ("info", "pending"))
        return allowed

    def check(self, register: Register, nodes: list[SimNode]) -> list[str]:
        """Where the members' values break the register's history."""
        allowed = self.allowed(register)
        ops = self.of(register)
        problems = []
        for node in nodes:
            held = register.read(node.registry.service(register.service))
            if held in allowed:
                continue
            older = [op for op in ops if op.value == held and op.status == "ok"]
            failed = [op for op in ops if op.value == held and op.status == "fail"]
            acknowledged = [op for op in ops if op.status == "ok"]
            if failed:
                what = f"the failed {failed[0]} took effect"
            elif older and acknowledged[-1].value is None:
                what = f"the acknowledged delete {acknowledged[-1]} was undone by {older[-1]}"
            elif older:
                what = f"the acknowledged {acknowledged[-1]} was lost to the earlier {older[-1]}"
            elif acknowledged:
                what = f"the acknowledged {acknowledged[-1]} was lost"
            else:
                what = "a value nobody wrote appeared"
            problems.append(f"{register} on {node.address} holds {held!r}: {what}")
        return problems


class Writer:
    """A client process writing one register, one operation at a time, each to a member chosen
    at random (a client of the Open API with a list of servers), pausing 0.3-1.5 s between
    operations. An instance is deregistered one time in four; a service's settings are created
    (POST) until the service exists, then updated (PUT)."""

    def __init__(self, sim: Simulation, register: Register, history: History, rng: random.Random) -> None:
        self.sim = sim
        self.register = register
        self.history = history
        self.rng = rng
        self.running = False
        self.written = 0
        self._service_exists = False

    def start(self, delay_ms: int) -> None:
        self.running = True
        self.sim.scheduler.after(delay_ms, self._next)

    def stop(self) -> None:
        self.running = False

    def _next(self) -> None:
        if not self.running:
            return
        self.written += 1
        value: str | None = f"{self.register}#{self.written}"
        if self.register.kind == "instance" and self.rng.random() < 0.25:
            value = None
        create = self.register.kind == "service" and not self._service_exists
        command = self.register.command(value, create)
        node = self.rng.choice(self.sim.addresses)
        op = Op(self.register, value, node, self.sim.now, type(command).__name__)
        self.history.ops.append(op)

        def ended(result: Outcome) -> None:
            op.status = classify(result)
            op.answer = result.status if isinstance(result, Answer) else result
            if isinstance(result, Answer) and self.register.kind == "service":
                text = str(result.body)
                if op.status == "ok" or "already exists" in text:
                    self._service_exists = True
                elif "not found" in text:
                    self._service_exists = False
            self.sim.scheduler.after(self.rng.randint(300, 1500), self._next)

        request = ClientCommand(command)
        self.sim.network.request(CLIENT, node, "client", request, CLIENT_TIMEOUT_MS, ended, CLIENT_TIMEOUT_MS)


def registers(services: list[ServiceKey], instances_per_service: int = 2) -> list[Register]:
    """Per service: its persistent instances, its settings, one cluster's config."""
    chosen = []
    for service in services:
        chosen.extend(Register("instance", service, number) for number in range(instances_per_service))
        chosen += [Register("service", service), Register("cluster", service)]
    return chosen


# -- monitors ----------------------------------------------------------------------------------


def reaches_majority(sim: Simulation, node: SimNode) -> bool:
    """Whether `node` reaches a majority of the members now (itself included)."""
    reached = sum(
        1
        for other in sim.nodes.values()
        if other is node or (other.alive and sim.network.connected(node.address, other.address))
    )
    return reached > len(sim.nodes) // 2


def on_majority_side(sim: Simulation, node: SimNode) -> bool:
    """Whether `node` reaches a member that reaches a majority (itself, or a leader it can
    follow): with a single link cut, a member that reaches only the leader still commits."""
    return any(
        reaches_majority(sim, other)
        for other in sim.nodes.values()
        if other is node or (other.alive and sim.network.connected(node.address, other.address))
    )


class AckMonitor:
    """At each acknowledgement: was the member on a majority's side (or cut off from it at most
    one tick ago), and does its registry hold what it acknowledged?"""

    def __init__(self, sim: Simulation, chaos: RaftChaos, history: History) -> None:
        self.sim = sim
        self.chaos = chaos
        self.history = history
        self.acknowledged = 0
        sim.listeners.append(self._on_event)

    def _on_event(self, event: object) -> None:
        if not isinstance(event, Acknowledged):
            return
        self.acknowledged += 1
        node = self.sim.nodes[event.node]
        if not on_majority_side(self.sim, node) and event.time_ms - self.chaos.changed_ms > ACK_GRACE_MS:
            self.history.problems.append(
                f"{event.node} acknowledged {event.command} at {event.time_ms} ms in a minority "
                f"(since {self.chaos.changed_ms} ms)"
            )
        register = register_of(event.command)
        if register is None:
            return
        held = register.read(node.registry.service(register.service))
        written = register_of_value(event.command)
        later = {op.value for op in self.history.of(register) if op.status in ("info", "pending")}
        if held != written and held not in later:
            self.history.problems.append(
                f"{event.node} acknowledged {event.command} at {event.time_ms} ms but its registry holds {held!r}"
            )


def register_of_value(command: Command) -> str | None:
    """The value a writer's command writes."""
    if isinstance(command, RegisterInstance):
        return command.instance.metadata.get("v")
    if isinstance(command, CreateService | UpdateService):
        return (command.metadata or {}).get("v")
    if isinstance(command, UpdateCluster):
        return command.config.metadata.get("v")
    return None


class HalvesMonitor:
    """Watches every registry change: one not made by Raft keeps the persistent half (the same
    Definition, and the persistent instances it holds); one made by Raft keeps the ephemeral
    half (its instances) and its stamp (revision, modified time); after either, the service's
    settings are its persistent half's (the defaults without one)."""

    def __init__(self, sim: Simulation) -> None:
        self.problems: list[str] = []
        self.raft_changes = 0
        self.other_changes_with_definition = 0
        sim.listeners.append(self._on_event)

    def _on_event(self, event: object) -> None:
        if not isinstance(event, Change):
            return
        before, after = event.before, event.after
        where = f"{event.key.name} on {event.node} at {event.time_ms} ms by {event.causes[0]}"
        if after is not None and settings_of(after) != settings_of(after.definition):
            self.problems.append(f"{where}: settings {settings_of(after)} beside its definition's")
        if event.causes[0] in RAFT_CAUSES:
            self.raft_changes += 1
            if ephemeral_half(before) != ephemeral_half(after):
                self.problems.append(f"{where}: ephemeral half {ephemeral_half(before)} -> {ephemeral_half(after)}")
            return
        definition = before.definition if before is not None else None
        if definition is not None:
            self.other_changes_with_definition += 1
        if (after.definition if after is not None else None) is not definition:
            self.problems.append(f"{where}: the persistent half changed")
        if after is not None:
            persistent = {k: v for k, v in after.instances.items() if not k.ephemeral}
            held = dict(after.definition.instances) if after.definition is not None else {}
            if persistent != held:
                self.problems.append(f"{where}: persistent instances {sorted(persistent)} besides its definition's")


def settings_of(half: Service | Definition | None) -> tuple[Any, ...]:
    """The settings a service shows, or those its persistent half holds (None: the defaults)."""
    half = half if half is not None else Definition(ServiceKey("", ""))
    clusters = tuple(sorted(half.clusters.items(), key=lambda item: item[0]))
    return (half.protect_threshold, dict(half.metadata), half.selector, half.explicit, clusters)


def ephemeral_half(service: Service | None) -> tuple[Any, ...] | None:
    """A service's ephemeral half: its stamp and ephemeral instances (None: none, or only a
    persistent half at stamp zero)."""
    if service is None:
        return None
    ephemeral = tuple(
        sorted((k, v.healthy, v.weight, tuple(v.metadata.items())) for k, v in service.instances.items() if k.ephemeral)
    )
    if not ephemeral and service.revision == 0 and service.modified_ms == 0:
        return None
    return (service.revision, service.modified_ms, ephemeral)


# -- faults ----------------------------------------------------------------------------------


@dataclass
class RaftChaos(Chaos):
    """Chaos's faults, plus the Raft leader isolated now and then, and crashes: a member (often
    the leader) killed, at most a minority at once, and restarted from its journal, with its old
    registry or an empty one, at a later fault. `changed_ms`: when the network or the set of
    running members last changed."""

    crashes: bool = True
    changed_ms: int = 0

    def note(self, text: str) -> None:
        super().note(text)
        self.changed_ms = self.sim.now

    def fault(self) -> None:
        rng = self.sim.rng
        for node in self.sim.nodes.values():
            if not node.alive and rng.random() < 0.7:
                self.restart(node, keep_registry=rng.random() < 0.5)
        leader = self.sim.raft.leader
        if leader is not None and self.sim.raft.live(leader) is None:
            leader = None  # dead, and no successor elected yet
        if leader is not None and self.kinds and rng.random() < 0.3:  # the leader is the one that matters
            self.heal()
            from_clients = rng.random() < 0.5
            self.sim.network.isolate(leader, from_clients=from_clients)
            self.note(f"isolate the leader {leader}{' (from clients too)' if from_clients else ''}")
        else:
            super().fault()
        down = [node for node in self.sim.nodes.values() if not node.alive]
        if self.crashes and rng.random() < 0.4 and len(down) + 1 < self.sim.raft.majority:
            victim = (
                self.sim.nodes[leader]
                if leader is not None and rng.random() < 0.5
                else rng.choice(self.sim.live_nodes())
            )
            victim.crash()
            self.note(f"kill {victim.address}{' (the leader)' if victim.address == leader else ''}")

    def restart(self, node: SimNode, keep_registry: bool, keep_journal: bool = True) -> None:
        node.start(node.registry if keep_registry else None, keep_journal)
        registry = "its old registry" if keep_registry else "an empty registry"
        self.note(f"restart {node.address} with {registry}{'' if keep_journal else ', without its journal'}")

    def restart_all(self) -> None:
        for node in self.sim.nodes.values():
            if not node.alive:
                self.restart(node, keep_registry=False)


def start_writers(sim: Simulation, chosen: list[Register], history: History, within_ms: int = 8000) -> list[Writer]:
    rng = random.Random(f"writers-{sim.seed}")
    writers = [Writer(sim, register, history, rng) for register in chosen]
    for writer in writers:
        writer.start(rng.randint(0, within_ms))
    return writers


def settle(sim: Simulation, chaos: RaftChaos, writers: list[Writer]) -> None:
    """Stop writing, restart whoever is down, heal, and let everything converge."""
    for writer in writers:
        writer.stop()
    chaos.restart_all()
    chaos.heal()
    sim.run_for(SETTLE_MS)


def raft_problems(sim: Simulation, history: History, chosen: list[Register]) -> list[str]:
    """What breaks the histories, or makes the members' persistent halves differ (from each
    other, or from what their Raft driver applied), once settled."""
    nodes = sim.live_nodes()
    problems = list(history.problems)
    pending = [op for op in history.ops if op.status == "pending"]
    problems += [f"still pending after the settle: {op}" for op in pending]
    for register in chosen:
        problems += history.check(register, nodes)
    reference = persistent_halves(nodes[0])
    for node in nodes:
        halves = persistent_halves(node)
        applied = node.raft_driver.core.definitions
        if halves != reference:
            keys = sorted(k.name for k in set(halves) | set(reference) if halves.get(k) != reference.get(k))
            problems.append(f"{node.address}'s persistent halves differ from {nodes[0].address}'s: {keys}")
        if halves != applied:
            problems.append(f"{node.address}'s registry does not hold what its Raft driver applied")
        if node.raft.applied != sim.raft.commit_index:
            problems.append(f"{node.address} applied {node.raft.applied} of {sim.raft.commit_index} entries")
    return problems


def persistent_halves(node: SimNode) -> dict[ServiceKey, Any]:
    return {s.key: s.definition for s in node.registry.all_services() if s.definition is not None}


def describe(chaos: RaftChaos, history: History) -> str:
    counts = {status: sum(1 for op in history.ops if op.status == status) for status in ("ok", "fail", "info")}
    elections = ", ".join(f"{t} ms: term {term} {leader}" for t, term, leader in chaos.sim.raft.elections)
    proposals = dict(chaos.sim.raft.outcomes)
    return f"{chaos.describe()}\n  operations: {counts}\n  proposals: {proposals}\n  elections: {elections}"


# -- 1 and 2. acknowledged writes through partitions, crashes and restarts --------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed, members", [(101, 3), (102, 3), (103, 3), (104, 5)])
def test_no_acknowledged_persistent_write_is_lost_through_partitions_crashes_and_restarts(seed, members):
    sim = Simulation(seed, n=members)
    chaos = RaftChaos(sim)
    history = History()
    acks = AckMonitor(sim, chaos, history)
    halves = HalvesMonitor(sim)
    chosen = registers(SERVICES[:4])
    start_cluster(sim, chaos, steady=8, churned=8)
    writers = start_writers(sim, chosen, history)
    chaos.run(phases=8, churn_rate=0.3)
    settle(sim, chaos, writers)

    context = describe(chaos, history)
    print(context.rpartition("\n  operations: ")[2])
    assert raft_problems(sim, history, chosen) == [], context
    assert halves.problems == [], context
    assert sim.views_agree(), context
    assert sim.differences() == [], context
    # The run was what it claims: writes acknowledged and refused, leaders elected more than once.
    assert acks.acknowledged > 100 and any(op.status == "fail" for op in history.ops), context
    assert len(sim.raft.elections) > 1, context


# -- 3. the halves do not interfere ------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", [111, 112])
def test_persistent_and_ephemeral_halves_do_not_interfere(seed):
    sim = Simulation(seed)
    chaos = RaftChaos(sim, kinds=("cut", "isolate", "drop", "delay", "none"), crashes=False)
    history = History()
    AckMonitor(sim, chaos, history)
    halves = HalvesMonitor(sim)
    # Persistent and ephemeral instances in the same services, written at once.
    chosen = registers(SERVICES[:6], instances_per_service=1)
    steady = start_cluster(sim, chaos, steady=18, churned=18)
    writers = start_writers(sim, chosen, history)
    chaos.run(phases=6, churn_rate=0.6)
    settle(sim, chaos, writers)

    context = describe(chaos, history)
    assert halves.problems == [], context
    assert halves.raft_changes > 100 and halves.other_changes_with_definition > 100, context
    # test_cluster_sim's convergence checks, persistent data present.
    assert sim.views_agree(), context
    assert sim.differences(stamps=True) == [], context
    assert missing_or_unhealthy(sim, steady) == [], context
    assert raft_problems(sim, history, chosen) == [], context


# -- 4. restarts ------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["from its journal", "without its journal", "all at once"])
@pytest.mark.parametrize("seed", [121, 122])
def test_a_restarted_member_catches_up(seed, how):
    settings = replace(SETTINGS, raft_snapshot_entries=16)
    sim = Simulation(seed, settings=settings)
    chaos = RaftChaos(sim, kinds=(), crashes=False)
    history = History()
    AckMonitor(sim, chaos, history)
    chosen = registers(SERVICES[:4])
    start_cluster(sim, chaos, steady=6)
    writers = start_writers(sim, chosen, history)
    sim.run_for(15_000)
    victims = list(sim.nodes.values()) if how == "all at once" else [sim.node(sim.rng.randrange(3))]
    for victim in victims:
        victim.crash()
        chaos.note(f"kill {victim.address}")
    sim.run_for(15_000 if how != "all at once" else 3_000)
    for victim in victims:
        chaos.restart(victim, keep_registry=False, keep_journal=how != "without its journal")
    sim.run_for(10_000)
    settle(sim, chaos, writers)

    context = describe(chaos, history)
    for victim in victims:
        loaded = victim.raft.snapshots_loaded
        if how == "without its journal":
            assert loaded and loaded[0][0] == "leader", f"{victim.address} loaded {loaded}; {context}"
        else:
            assert loaded and loaded[0][0] == "journal" and loaded[0][1] > 0, f"{loaded}; {context}"
        assert victim.serving and victim.raft_board.status.ready, context
    assert raft_problems(sim, history, chosen) == [], context
    assert sim.views_agree() and sim.differences() == [], context
    assert sum(op.status == "ok" for op in history.ops) > 100, context
