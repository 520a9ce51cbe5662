"""The AP cluster as a deterministic simulation (DESIGN.md section 5).

Three to five members - each the pure cores wired as the actors and the HTTP front wire them
(tests/sim/cluster.py) - on an in-memory network that cuts links, isolates members, drops 20% of
the messages, delays and reorders them (tests/sim/network.py); clients register, beat every 5 s
with the full beat, update, deregister, or die silently. Every run is a function of its seed:
a failing seed replays exactly. Each member also runs its Raft driver, on a Raft group modelled
at the driver boundary (tests/sim/raft.py: pysyncobj owns its sockets, poller and clock, so it
cannot run on the simulated network and clock); persistent data is checked in
test_raft_sim.py. What is asserted, and why it must hold:

1. Convergence: after random partitions and heals, every member holds the same services with
   the same instances, revisions and modified times (verify compares (revision, modified) and
   forces the owner's state, so once nothing writes they are the owner's exact snapshot); live
   instances are there and healthy, deregistered and silent ones are gone.
2. Instances that keep beating are never lost for good: present and healthy everywhere after
   the heal settles, never judged unhealthy by a member that heard their beats, and never lost
   on the member that owns them while they beat to it - as long as the members agree on the
   view. While views disagree (a partition, or drops that make one member suspect another)
   two members own a service at once; the one the beats do not reach judges them missing, or
   writes the service without them, and that whole-service state replaces the other's (the
   higher revision wins, verify forces the owner's). That is the AP trade-off: the next full
   beat re-registers them, and the loss lasts at most a beat interval.
3. A member that crashes (killed, powered off, or stopped by SIGTERM) is marked DOWN, the others
   take over its services without judging any beating instance unhealthy (the takeover grace of
   HealthCore.set_owner), and it comes back with an empty or its old registry, loads a snapshot
   from a peer and converges; nothing it was sent while it loaded is lost to the snapshot.
4. Drift (a copy changed behind Distro's back) on a member that does not own the service is
   repaired by verify within a few verify intervals, with no write at all; on the owner - the
   authority - verify spreads it, and the clients' full beats restore what it lost.
5. Every peer call is signed with the cluster secret: under partitions, drops, delays and clock
   skew no member's call is refused, and a process with another secret is never a member.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from nacos_actors.core.distro import responsible_member
from nacos_actors.core.registry import Dropped
from nacos_actors.messages import DISTRO
from nacos_actors.model import Instance, Service, ServiceKey, freeze, instance_map
from tests.sim.cluster import (
    BEAT_INTERVAL_MS,
    CLIENT_TIMEOUT_MS,
    DRAIN_TIMEOUT_MS,
    LEAVE_TIMEOUT_MS,
    SETTINGS,
    Agent,
    Change,
    LossMonitor,
    SimNode,
    Simulation,
    ViewMonitor,
    instance_for,
    normalized,
)

VERIFY_MS = SETTINGS.distro_verify_interval_ms
SETTLE_MS = 90_000  # past the 30 s delete timeout of zombies, and many verify rounds
GRACE_MS = 2 * VERIFY_MS  # states written while the views disagreed may still arrive
SERVICES = [ServiceKey("public", f"DEFAULT_GROUP@@svc-{i}") for i in range(6)] + [
    ServiceKey("dev", "orders@@checkout"),
    ServiceKey("dev", "orders@@billing"),
]


@dataclass
class Chaos:
    """Random faults and client churn on a simulation, with a timeline for failure messages.
    Only agents in `churned` are updated, deregistered or silenced."""

    sim: Simulation
    kinds: tuple[str, ...] = ("cut", "isolate", "drop", "delay", "none")
    churned: list[Agent] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)
    next_index: int = 0

    def note(self, text: str) -> None:
        self.timeline.append(f"{self.sim.now} ms: {text}")

    def agent(self, service: ServiceKey | None = None, delay_ms: int = 0, churned: bool = True) -> Agent:
        rng = self.sim.rng
        agent = self.sim.add_agent(service or rng.choice(SERVICES), instance_for(self.next_index), delay_ms)
        self.next_index += 1
        if churned:
            self.churned.append(agent)
        return agent

    def heal(self) -> None:
        self.sim.network.heal()
        self.note("heal")

    def fault(self) -> None:
        rng, network = self.sim.rng, self.sim.network
        if rng.random() < 0.5:
            self.heal()
        kind = rng.choice(self.kinds)
        a, b = rng.sample(self.sim.addresses, 2)
        if kind == "cut":
            network.cut(a, b)
            self.note(f"cut {a} - {b}")
        elif kind == "isolate":
            from_clients = rng.random() < 0.5
            network.isolate(a, from_clients=from_clients)
            self.note(f"isolate {a} ({'from clients too' if from_clients else 'clients still reach it'})")
        elif kind == "drop":
            network.drop_rate = 0.2
            self.note("drop 20%")
        elif kind == "delay":
            network.extra_delay_ms = 400
            self.note("delay up to 400 ms more")

    def churn(self) -> None:
        rng = self.sim.rng
        live = [a for a in self.churned if a.state == "live"]
        roll = rng.random()
        if roll < 0.3 or not live:
            self.agent()
        elif roll < 0.6:
            chosen = rng.choice(live)
            chosen.update(replace(chosen.instance, metadata=freeze({"version": str(rng.randint(0, 999))})))
        elif roll < 0.8:
            rng.choice(live).deregister()
        else:
            rng.choice(live).go_silent()

    def run(self, phases: int, churn_rate: float = 0.5) -> None:
        """`phases` random faults of 8-25 s each; every simulated second a churn with `churn_rate`."""
        rng = self.sim.rng
        for _ in range(phases):
            self.fault()
            for _ in range(rng.randint(8, 25)):
                self.sim.run_for(1000)
                if churn_rate and rng.random() < churn_rate:
                    self.churn()

    def describe(self) -> str:
        return f"seed {self.sim.seed}; timeline:\n  " + "\n  ".join(self.timeline)


def found_on(node: SimNode, agent: Agent) -> Instance | None:
    service = node.registry.service(agent.service)
    return service.instances.get(agent.key) if service is not None else None


def as_registered(instance: Instance) -> Instance:
    """An instance as its client registered it (the server adds the id, health may change)."""
    return replace(instance, instance_id="", healthy=True)


def start_cluster(sim: Simulation, chaos: Chaos, steady: int = 0, churned: int = 0) -> list[Agent]:
    """Start every member and the agents (`steady` ones that beat throughout, `churned` ones the
    chaos may change), registering over the first 8 s; answer the steady agents."""
    sim.start_all()
    kept = [chaos.agent(SERVICES[i % len(SERVICES)], sim.rng.randint(0, 8000), churned=False) for i in range(steady)]
    for _ in range(churned):
        chaos.agent(delay_ms=sim.rng.randint(0, 8000))
    sim.run_for(15_000)
    assert sim.views_agree(), f"seed {sim.seed}: the members did not agree on the view at start"
    return kept


def run_until(sim: Simulation, condition, limit_ms: int, step_ms: int = 100) -> int | None:
    """Run until `condition()` holds (answers the time it took) or `limit_ms` passed (None)."""
    started = sim.now
    while not condition():
        if sim.now - started >= limit_ms:
            return None
        sim.run_for(step_ms)
    return sim.now - started


def missing_or_unhealthy(sim: Simulation, agents: list[Agent]) -> list[str]:
    return [
        f"{agent.key.ip} of {agent.service.name} on {node.address}: {found_on(node, agent)}"
        for agent in agents
        for node in sim.live_nodes()
        if (found := found_on(node, agent)) is None or not found.healthy or as_registered(found) != agent.instance
    ]


# -- 1. convergence -----------------------------------------------------------------------


@pytest.mark.parametrize("seed, members", [(1, 3), (2, 3), (3, 3), (4, 3), (5, 4), (6, 5)])
def test_registries_converge_after_random_partitions_and_heals(seed, members):
    sim = Simulation(seed, n=members)
    chaos = Chaos(sim)
    start_cluster(sim, chaos, churned=30)
    chaos.run(phases=10)
    chaos.heal()
    sim.run_for(SETTLE_MS)

    context = chaos.describe()
    assert sim.views_agree(), context
    # Same services, same instances (every field), same (revision, modified): see the docstring.
    assert sim.differences(stamps=True) == [], context
    for agent in sim.agents:
        assert agent.state in ("live", "gone", "silent"), f"{agent.key.ip} still {agent.state}; {context}"
        for node in sim.live_nodes():
            found = found_on(node, agent)
            if agent.state == "live":
                assert found is not None and found.healthy, f"{agent.key.ip} lost on {node.address}; {context}"
                # An update acknowledged on one side of a partition may lose to the other side's
                # state of the service (the higher revision wins), and beats carry no fields
                # that would restore it: the instance holds one of the versions its client
                # registered, not necessarily the last.
                assert as_registered(found) in agent.versions, f"{agent.key.ip} on {node.address}; {context}"
            else:
                assert found is None, f"{agent.key.ip} ({agent.state}) still on {node.address}; {context}"


# -- 2. instances that keep beating -------------------------------------------------------


PARTITIONS = ("cut", "isolate", "drop", "delay", "none")
LOSSY = ("drop", "delay", "none")


@pytest.mark.parametrize("faults", [PARTITIONS, LOSSY], ids=["partitions", "drops-and-delays"])
@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_instances_that_keep_beating_are_never_lost_for_good(seed, faults):
    sim = Simulation(seed)
    chaos = Chaos(sim, kinds=faults)
    steady = start_cluster(sim, chaos, steady=24, churned=12)
    steady_set = set(map(id, steady))
    monitor = LossMonitor(sim, lambda agent: id(agent) in steady_set and agent.state == "live")
    views = ViewMonitor(sim)
    chaos.run(phases=8)
    chaos.heal()
    agreed = run_until(sim, sim.views_agree, 10_000)
    context = chaos.describe()
    assert agreed is not None, context
    # A client's beat that was failing over when the network healed (three tries of 3 s, then
    # its 5 s pause) may land a beat timeout after its previous one: that verdict is right.
    settled_at = sim.now + 3 * CLIENT_TIMEOUT_MS + BEAT_INTERVAL_MS + 2 * VERIFY_MS
    sim.run_for(SETTLE_MS)

    # A member never judges an instance whose beats it heard: every verdict against a beating
    # instance comes from a member its beats did not reach for a whole beat timeout (the far
    # side of a partition, or a client whose three tries all timed out under drops).
    assert [loss for loss in monitor.losses if loss.by_verdict and loss.heard] == [], context
    # The owner loses an instance that beats to it only when the members' views disagreed
    # (just before): two members owned the service, and the state written by the one the
    # beats did not reach replaced the other's (see the module docstring).
    on_owner = [loss for loss in monitor.losses if loss.owner and loss.heard]
    assert [loss for loss in on_owner if not views.disagreed_near(loss.time_ms, GRACE_MS)] == [], context
    # Once the views agree again and the clients' beats got through, nothing is lost anywhere.
    assert monitor.since(settled_at) == [], context
    assert missing_or_unhealthy(sim, steady) == [], context
    assert sim.differences() == [], context


@pytest.mark.parametrize("members", [3, 5])
@pytest.mark.parametrize("seed", [18, 19])
def test_a_member_cut_off_from_everyone_judges_nothing_and_wipes_nothing(seed, members):
    # Alone in its view it owns every service, and hears no beat: were it to judge them
    # (judges_health says no: it sees fewer than half the members) it would expire every
    # instance, and on healing its states - revisions ahead - would replace the others'.
    sim = Simulation(seed, n=members)
    chaos = Chaos(sim, kinds=())
    steady = start_cluster(sim, chaos, steady=24)
    steady_set = set(map(id, steady))
    monitor = LossMonitor(sim, lambda agent: id(agent) in steady_set and agent.state == "live")
    loner = sim.node(sim.rng.randrange(members))
    sim.network.isolate(loner.address, from_clients=True)
    chaos.note(f"isolate {loner.address} (from clients too)")
    sim.run_for(60_000)
    assert loner.healthy_view == (loner.address,)
    chaos.heal()
    sim.run_for(30_000)
    assert monitor.losses == [], chaos.describe()
    assert missing_or_unhealthy(sim, steady) == []
    assert sim.differences() == []


# -- 3. a member crashes, is taken over, and rejoins --------------------------------------


def stop(sim: Simulation, victim: SimNode, how: str) -> None:
    if how == "kill":  # the process dies; connections to it are refused
        victim.crash()
    elif how == "power_off":  # the machine is gone: requests to it time out
        sim.network.isolate(victim.address)
        victim.crash()
    else:  # SIGTERM: drain Distro, report DOWN, stop
        victim.leave()


@pytest.mark.parametrize("restart_with", ["empty registry", "its old registry"])
@pytest.mark.parametrize("how", ["kill", "power_off", "sigterm"])
@pytest.mark.parametrize("seed", [21, 22])
def test_a_crashed_member_is_taken_over_and_rejoins(seed, how, restart_with):
    sim = Simulation(seed)
    chaos = Chaos(sim, kinds=())
    steady = start_cluster(sim, chaos, steady=24, churned=12)
    steady_set = set(map(id, steady))
    monitor = LossMonitor(sim, lambda agent: id(agent) in steady_set and agent.state == "live")
    assert sim.differences() == []
    victim = sim.node(sim.rng.randrange(3))
    survivors = [n for n in sim.nodes.values() if n is not victim]
    victims_services = [s.key for s in victim.registry.all_services() if victim.owns(s.key)]
    assert victims_services, "pick a seed where the victim owns something"

    stop(sim, victim, how)
    chaos.note(f"{how} {victim.address}")
    down_after = run_until(sim, lambda: all(n.state_of(victim.address) == "DOWN" for n in survivors), 20_000)
    # Refused connections and a goodbye mark it DOWN at once; timeouts after more than
    # fail_threshold failed reports (of a PEER_TIMEOUT each) - or sooner, by failed forwards.
    limit = 1_500 if how != "power_off" else (SETTINGS.member_fail_threshold + 2) * 2_500
    assert down_after is not None and down_after <= limit, f"DOWN after {down_after} ms; {chaos.describe()}"
    assert run_until(sim, lambda: not victim.alive, LEAVE_TIMEOUT_MS + DRAIN_TIMEOUT_MS) is not None
    remaining = tuple(sorted(n.address for n in survivors))
    assert all(node.healthy_view == remaining for node in survivors)
    for _ in range(40):  # 40 s without it, clients still writing
        sim.run_for(1000)
        chaos.churn()
    context = chaos.describe()
    # Its services were taken over, and their instances' beats go to the new owners.
    for agent in steady:
        if agent.service in victims_services:
            new_owner = sim.nodes[responsible_member(agent.service.name, remaining) or ""]
            heard = monitor.last_beat(new_owner.address, agent.service, agent.key)
            assert heard is not None and sim.now - heard <= BEAT_INTERVAL_MS + 1_000, context
    # Nothing beating was judged unhealthy (the takeover grace) or lost, anywhere.
    assert monitor.losses == [], context
    assert missing_or_unhealthy(sim, steady) == [], context
    assert sim.differences() == [], context

    kept = victim.registry if restart_with == "its old registry" else None
    sim.network.heal()
    victim.start(kept)
    chaos.note(f"restart {victim.address} with {restart_with}")
    for _ in range(30):
        sim.run_for(1000)
        chaos.churn()
    sim.run_for(SETTLE_MS)

    context = chaos.describe()
    assert victim.joined_from is not None, f"it did not load a snapshot; {context}"
    assert sim.views_agree(), context
    assert sim.differences() == [], context
    # Nothing beating was judged unhealthy, or lost anywhere, from the crash to the end.
    assert monitor.losses == [], context
    assert missing_or_unhealthy(sim, steady) == [], context
    assert all(a.state in ("live", "gone", "silent") for a in sim.agents), context


@pytest.mark.parametrize("seed", range(41, 49))
def test_a_joining_member_keeps_what_it_was_sent_while_it_loaded(seed):
    """Found by this simulation: peers sent Distro batches to a member still STARTING, and its
    snapshot load then replaced what they sent with the snapshot's older states - changes
    acknowledged and lost there, and spread by verify for the services it came to own (seeds
    42, 44, 45 and 47 fail so). Now a member is sent changes only once it serves."""
    sim = Simulation(seed)
    chaos = Chaos(sim, kinds=())
    regressions: list[Change] = []

    def watch(event: object) -> None:
        if not (isinstance(event, Change) and event.causes == ("snapshot",) and event.before is not None):
            return
        if event.after is None or event.after.revision < event.before.revision:
            regressions.append(event)

    sim.listeners.append(watch)
    start_cluster(sim, chaos, churned=30)
    victim = sim.node(sim.rng.randrange(3))
    victim.crash()
    sim.run_for(sim.rng.randint(500, 10_000))
    for _ in range(150):  # a burst of registrations around its restart
        chaos.agent(delay_ms=sim.rng.randint(0, 2000))
    sim.run_for(sim.rng.randint(0, 1000))
    sim.network.extra_delay_ms = 300  # a slow network: the snapshot takes a while to arrive
    victim.start()
    sim.run_for(5_000)
    sim.network.heal()
    sim.run_for(20_000)
    assert regressions == []
    assert sim.views_agree() and sim.differences() == []


# -- 4. drift repair by verify ------------------------------------------------------------


def drift_setup(seed: int) -> tuple[Simulation, Chaos, list[Agent], ServiceKey, Service]:
    """A settled cluster of steady agents registering over 20 s; a service, and an older state
    of it as the cluster held it at 6 s."""
    sim = Simulation(seed)
    chaos = Chaos(sim, kinds=())
    sim.start_all()
    steady = [chaos.agent(SERVICES[i % 6], sim.rng.randint(0, 20_000), churned=False) for i in range(24)]
    sim.run_for(6_000)
    early = {s.key: s for s in sim.node(0).registry.all_services()}
    sim.run_for(30_000)
    assert sim.views_agree() and sim.differences() == []
    assert missing_or_unhealthy(sim, steady) == []
    current = {s.key: s for s in sim.node(0).registry.all_services()}
    changed = sorted(k for k in early if normalized(early[k]) != normalized(current[k]))
    assert changed, "pick a seed where some service changed after 6 s"
    key = sim.rng.choice(changed)
    return sim, chaos, steady, key, early[key]


def corrupt(node: SimNode, key: ServiceKey, how: str, older: Service) -> None:
    """Change a member's copy behind Distro's back (no watcher is told)."""
    current = node.registry.service(key)
    assert current is not None
    if how == "older":
        node.registry.apply_replicated(older, force=True)
    else:
        node.registry.apply_replicated(Dropped(key, (current.revision, current.modified_ms)), force=True)


def local_writes_after(sim: Simulation, time_ms: int, changes: list[Change]) -> list[Change]:
    return [c for c in changes if c.time_ms >= time_ms and not isinstance(c.causes[0], str)]


@pytest.mark.parametrize("how", ["older", "deleted", "stray"])
@pytest.mark.parametrize("seed", [31, 32, 33])
def test_verify_repairs_a_drifted_copy_on_a_member_that_does_not_own_it(seed, how):
    sim, chaos, steady, key, older = drift_setup(seed)
    changes: list[Change] = []
    sim.listeners.append(lambda event: changes.append(event) if isinstance(event, Change) else None)
    owner = sim.owner_of(key)
    victim = sim.rng.choice([n for n in sim.live_nodes() if n is not owner])
    if how == "stray":
        # A service nobody else has (left over from an old partition, say), owned by another member.
        key = next(
            k
            for k in (ServiceKey("public", f"DEFAULT_GROUP@@stray-{i}") for i in range(100))
            if sim.owner_of(k) is not victim
        )
        owner = sim.owner_of(key)
        victim.registry.apply_replicated(Service(key, revision=3, modified_ms=1, instances=instance_map([])), force=True)
    else:
        corrupt(victim, key, how, older)
    corrupted_at = sim.now

    def repaired() -> bool:
        theirs, mine = owner.registry.service(key), victim.registry.service(key)
        return (theirs is None and mine is None) or (
            theirs is not None and mine is not None and normalized(theirs) == normalized(mine)
        )

    took = run_until(sim, repaired, 3 * VERIFY_MS + 1_000)
    assert took is not None, f"not repaired after {3 * VERIFY_MS + 1_000} ms; {chaos.describe()}"
    assert local_writes_after(sim, corrupted_at, changes) == []
    repairs = [c for c in changes if c.node == victim.address and c.key == key]
    assert [c.causes for c in repairs] == [("dropped",) if how == "stray" else ("forced",)]
    sim.run_for(2 * VERIFY_MS)
    assert sim.differences() == []
    assert missing_or_unhealthy(sim, steady) == []


@pytest.mark.parametrize("how", ["older", "deleted"])
@pytest.mark.parametrize("seed", [34, 35])
def test_drift_on_the_owner_spreads_and_beats_restore_what_it_lost(seed, how):
    # The owner is the authority of its services: verify forces its copy on the others, so a
    # drifted owner copy is not repaired but spread. The clients' full beats re-register the
    # instances it lost, on the owner, and Distro sends them on.
    sim, chaos, steady, key, older = drift_setup(seed)
    corrupt(sim.owner_of(key), key, how, older)
    restored = run_until(sim, lambda: missing_or_unhealthy(sim, steady) == [], BEAT_INTERVAL_MS + 2 * VERIFY_MS)
    assert restored is not None, chaos.describe()
    sim.run_for(2 * VERIFY_MS)
    assert sim.differences() == []
    assert missing_or_unhealthy(sim, steady) == []


# -- 5. no service blocks replication -----------------------------------------------------


@pytest.mark.parametrize("seed, faults", [(41, False), (42, False), (43, True), (44, True)])
def test_a_service_too_large_for_its_peers_is_quarantined_and_every_other_service_replicates(seed, faults):
    # Peers take bodies up to 16 KiB here: one service whose instance carries 20 KB of metadata
    # can never be sent (every batch holding it is a 413). It is split off and quarantined on
    # its owner; every other service - those of the same owner above all - still replicates,
    # with random faults or without, and its quarantine is counted once per peer.
    settings = replace(SETTINGS, peer_max_body_bytes=16 * 1024)
    sim = Simulation(seed, settings=settings)
    chaos = Chaos(sim, kinds=("cut", "drop", "delay", "none"))
    steady = start_cluster(sim, chaos, steady=12)
    poison = ServiceKey("public", "DEFAULT_GROUP@@too-large")
    sim.add_agent(poison, instance_for(500, metadata={"blob": "x" * 20_000}))
    owner = sim.owner_of(poison)
    same_owner = [k for k in (ServiceKey("public", f"DEFAULT_GROUP@@small-{i}") for i in range(60)) if sim.owner_of(k) is owner]
    later = [chaos.agent(key, sim.rng.randint(0, 10_000), churned=False) for key in same_owner[:8]]
    if faults:
        chaos.run(phases=2, churn_rate=0)
        chaos.heal()
    took = run_until(sim, lambda: missing_or_unhealthy(sim, steady + later) == [], 20_000)
    assert took is not None, f"{missing_or_unhealthy(sim, steady + later)}; {chaos.describe()}"
    sim.run_for(2 * VERIFY_MS)
    assert [d for d in sim.differences() if "too-large" not in d] == [], chaos.describe()
    assert owner.registry.service(poison) is not None
    distro = owner.drivers[DISTRO]
    if not faults:  # (with faults, another member may have owned it for a while, and kept a copy)
        assert [n.address for n in sim.live_nodes() if n.registry.service(poison) is not None] == [owner.address]
        assert {peer: distro.core.held(peer) for peer in owner.peers} == {peer: (poison,) for peer in owner.peers}
    assert all(distro.core.quarantined(peer) == 1 for peer in owner.peers if distro.core.held(peer))
    assert any(distro.core.held(peer) == (poison,) for peer in owner.peers)


# -- 6. signed peer calls -------------------------------------------------------------------


@pytest.mark.parametrize("seed", [21, 22])
def test_members_calls_are_signed_and_accepted_through_every_fault(seed):
    sim = Simulation(seed, n=3)
    chaos = Chaos(sim)
    start_cluster(sim, chaos, churned=10)
    chaos.run(phases=4)
    chaos.heal()
    sim.run_for(10_000)

    assert sim.views_agree(), chaos.describe()
    assert {node.address: node.rejected for node in sim.live_nodes()} == {a: [] for a in sim.addresses}


def test_a_member_with_another_secret_is_never_a_member():
    sim = Simulation(31, n=3)
    stranger = sim.node(2)
    stranger.settings = replace(stranger.settings, cluster_secret="not-the-cluster-secret")
    sim.start_all()
    sim.run_for(10_000)
    members = [sim.node(0), sim.node(1)]
    agents = [sim.add_agent(SERVICES[0], instance_for(0)), sim.add_agent(SERVICES[1], instance_for(1))]
    agents[0].cursor, agents[1].cursor = 0, 2  # the second asks the stranger first
    sim.run_for(10_000)

    for node in members:
        assert node.state_of(stranger.address) == "DOWN"
        assert stranger.address not in node.healthy_view
        assert node.rejected and set(node.rejected) == {"bad_signature"}
        assert all(found_on(node, agent) is not None for agent in agents)
    # Every peer refuses it its snapshot: it never serves (clients move on) and holds nothing.
    assert [stranger.state_of(node.address) for node in members] == ["DOWN", "DOWN"]
    assert set(stranger.rejected) == {"bad_signature"}
    assert not stranger.serving
    assert stranger.registry.service_count == 0
    assert [agent.state for agent in agents] == ["live", "live"]
