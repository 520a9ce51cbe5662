"""Active probes of persistent instances in the cluster simulation (issue 17), seeded: a failing
seed replays exactly.

Three members run the production drivers (the ProbeDriver and its ProbeCore among them) on the
simulated network; the loop's prober is the simulation's (`SimNode.run_probes`): a probe of an
address ends as `Simulation.probe_answers` says. What must hold:

1. Only the member responsible for a service probes its instances, and a verdict reached there
   goes through Raft to every member.
2. A refused connection fails an instance at once (Nacos's checkFailNow); timeouts only after
   `health_check_times` consecutive ones; `health_check_times` successes revive it.
3. When the prober dies, the next owner takes the probing over: no instance goes unprobed for
   longer than the failure detection plus one probe interval, and once the view settled no
   instance is probed by two members.
"""

from __future__ import annotations

import pytest

from nacos_actors.core.distro import responsible_member
from nacos_actors.core.probing import PROBE_REFUSED, PROBE_TIMEOUT
from nacos_actors.messages import RegisterInstance
from nacos_actors.model import Instance, InstanceKey, ServiceKey
from tests.sim.cluster import SETTINGS, SimNode, Simulation
from tests.sim.test_cluster_sim import run_until

SERVICES = [ServiceKey("public", f"DEFAULT_GROUP@@db-{i}") for i in range(8)]
IP = "127.0.0.1"
INTERVAL_MS = SETTINGS.health_probe_interval_ms
JITTER_MS = SETTINGS.health_probe_jitter_ms
CHECK_TIMES = SETTINGS.health_check_times


def port_of(index: int) -> int:
    return 20_000 + index


def start(seed: int) -> Simulation:
    """Three members agreeing on their view, one persistent instance per service (TCP checker,
    the default) registered through Raft and seen everywhere."""
    sim = Simulation(seed)
    sim.start_all()
    sim.run_for(15_000)
    assert sim.views_agree(), f"seed {seed}: no agreed view at start"
    answers: list[object] = []
    for index, service in enumerate(SERVICES):
        instance = Instance(ip=IP, port=port_of(index), ephemeral=False)
        sim.node(index % 3).propose(RegisterInstance(service, instance), answers.append)
    sim.run_for(1_000)
    assert len(answers) == len(SERVICES), answers
    return sim


def health_on(node: SimNode, index: int) -> bool | None:
    service = node.registry.service(SERVICES[index])
    if service is None:
        return None
    found = service.instances.get(InstanceKey(IP, port_of(index), "DEFAULT", False))
    return None if found is None else found.healthy


def everywhere(sim: Simulation, index: int, healthy: bool) -> bool:
    return all(health_on(node, index) is healthy for node in sim.live_nodes())


def owner_of(sim: Simulation, index: int) -> str:
    healthy = tuple(sorted(node.address for node in sim.live_nodes()))
    owner = responsible_member(SERVICES[index].name, healthy)
    assert owner is not None
    return owner


def probers_since(sim: Simulation, mark: int) -> dict[int, set[str]]:
    """Which members probed each instance (by service index) since `mark` (an index into
    `probes_run`)."""
    seen: dict[int, set[str]] = {}
    for address, probe in sim.probes_run[mark:]:
        seen.setdefault(probe.port - 20_000, set()).add(address)
    return seen


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", [171, 172, 173])
def test_only_the_owner_probes_and_every_member_sees_its_verdicts(seed):
    sim = start(seed)
    mark = len(sim.probes_run)
    sim.run_for(3 * (INTERVAL_MS + JITTER_MS))
    probed = probers_since(sim, mark)
    assert sorted(probed) == list(range(len(SERVICES))), probed
    for index, members in probed.items():
        assert members == {owner_of(sim, index)}, (index, members)

    # Refused: unhealthy at the next probe, on every member.
    sim.probe_answers[(IP, port_of(0))] = (PROBE_REFUSED, True)
    took = run_until(sim, lambda: everywhere(sim, 0, False), INTERVAL_MS + JITTER_MS + 1_000, step_ms=20)
    assert took is not None, f"seed {seed}: a refused instance was not failed everywhere"

    # Timeouts: only after CHECK_TIMES of them.
    sim.probe_answers[(IP, port_of(1))] = (PROBE_TIMEOUT, False)
    started = sim.now
    took = run_until(sim, lambda: everywhere(sim, 1, False), CHECK_TIMES * (INTERVAL_MS + JITTER_MS) + 1_000, 20)
    assert took is not None, f"seed {seed}: timeouts did not fail the instance"
    assert sim.now - started >= (CHECK_TIMES - 1) * INTERVAL_MS, "failed before checkTimes timeouts"

    # Answering again: healthy after CHECK_TIMES successes, everywhere.
    del sim.probe_answers[(IP, port_of(0))]
    started = sim.now
    took = run_until(sim, lambda: everywhere(sim, 0, True), CHECK_TIMES * (INTERVAL_MS + JITTER_MS) + 1_000, 20)
    assert took is not None, f"seed {seed}: a recovered instance was not revived"
    assert sim.now - started >= (CHECK_TIMES - 1) * INTERVAL_MS, "revived before checkTimes successes"
    assert everywhere(sim, 1, False)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", [174, 175, 176])
def test_killing_the_prober_hands_probing_over_without_a_gap_or_a_double(seed):
    sim = start(seed)
    sim.run_for(2 * (INTERVAL_MS + JITTER_MS))
    victim_address = owner_of(sim, 0)
    victim = sim.nodes[victim_address]
    owned = [index for index in range(len(SERVICES)) if owner_of(sim, index) == victim_address]
    killed_at = sim.now
    victim.crash()
    survivors_agree = run_until(sim, sim.views_agree, 10_000, step_ms=20)
    assert survivors_agree is not None, f"seed {seed}: the survivors did not agree on a view"
    settled_at = sim.now
    mark = len(sim.probes_run)
    sim.run_for(3 * (INTERVAL_MS + JITTER_MS))

    # No gap: each of the victim's instances was probed by its next owner within one interval
    # (and jitter) of the view change.
    first_probe: dict[int, int] = {}
    for (address, probe), at in zip(sim.probes_run[mark:], sim.probe_times[mark:], strict=True):
        index = probe.port - 20_000
        assert address != victim_address
        first_probe.setdefault(index, at)
    for index in owned:
        assert index in first_probe, f"seed {seed}: db-{index} was not probed after the takeover"
        assert first_probe[index] - settled_at <= INTERVAL_MS + JITTER_MS, (index, first_probe[index] - killed_at)
    # No double: one prober per instance once the view settled.
    for index, members in probers_since(sim, mark).items():
        assert members == {owner_of(sim, index)}, (index, members)

    # And the new owner's verdicts reach both survivors.
    sim.probe_answers[(IP, port_of(0))] = (PROBE_REFUSED, True)
    took = run_until(sim, lambda: everywhere(sim, 0, False), INTERVAL_MS + JITTER_MS + 1_000, step_ms=20)
    assert took is not None, f"seed {seed}: the new owner's verdict did not reach every survivor"
