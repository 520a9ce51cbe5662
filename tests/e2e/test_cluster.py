"""Three member processes on loopback (`--members`): the AP cluster as clients see it.

- A write on any member (raw HTTP, nacos-sdk-python pointed at all three) is visible on all.
- Beats sent to a member that is not responsible for the service keep instances healthy past the
  real 15 s default; a silent control instance turns unhealthy on every member.
- kill -9 of a member: the survivors mark it DOWN, take over its services, and lose or misjudge
  no beating instance; restarted, it serves only once it holds a snapshot, then converges.
- A UDP subscriber on one member hears a change made on another.
- SIGTERM: the member reports DOWN as it leaves, and its data lives on in the others.
- `peer lag ms: ...` (printed with -s, written to peer_lag.json in the pytest base temp dir):
  register on one member -> first seen on another that is not responsible for the service.

Members ask each other every 500 ms and a refused connection marks a peer DOWN at once
(PROTOCOL.md section 6); Distro sends changes within a 20 ms window (section 5).
"""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Self

import nacos
import pytest

from tests.e2e.conftest import NODES_KEY, Cluster, NodeLauncher, NodeProcess, launch_cluster, member_states
from tests.e2e.push_support import (
    NS,
    call,
    deregister,
    get_json,
    listed,
    ok,
    register,
    report,
    summary,
)

pytestmark = pytest.mark.e2e

GROUP = "DEFAULT_GROUP"
VISIBLE_S = 2.0  # a write is visible on every member within this
BEAT_EVERY_S = 2.0
DEFAULT_BEAT_TIMEOUT_S = 15.0
VERDICT_SLACK_S = 2.0  # a health verdict reaches every member within this after its deadline
LEAVE_SEEN_S = 1.0  # a member stopped with SIGTERM is DOWN on the others within this
LONG = {"preserved.heart.beat.timeout": "120000", "preserved.ip.delete.timeout": "240000"}  # never expire here
OK_BEAT = 10200


# -- helpers -------------------------------------------------------------------------------


def owner_of(node: NodeProcess, service: str) -> str:
    """The member `node` says is responsible for `service` (GET /v1/ns/operator/distro/server)."""
    return get_json(node, f"{NS}/operator/distro/server", serviceName=service)["responsibleServer"]


def services_by_owner(nodes: list[NodeProcess], prefix: str, per_owner: int = 1) -> dict[str, list[str]]:
    """`per_owner` service names `prefix-k` for each member, on which every member in `nodes` agrees."""
    found: dict[str, list[str]] = {n.address: [] for n in nodes}
    k = 0
    while any(len(names) < per_owner for names in found.values()):
        name = f"{prefix}-{k}"
        owners = {owner_of(n, name) for n in nodes}
        assert len(owners) == 1, f"members disagree on the owner of {name}: {owners}"
        owner = owners.pop()
        if len(found.setdefault(owner, [])) < per_owner:
            found[owner].append(name)
        k += 1
        assert k < 100 * per_owner * len(nodes), f"no even spread of owners: {found}"
    return found


def hosts(node: NodeProcess, service: str) -> dict[tuple[str, int], dict[str, Any]]:
    """The hosts of a plain list query (healthy or not), keyed by (ip, port)."""
    return {(h["ip"], h["port"]): h for h in listed(node, service, healthyOnly="false")}


def wait_on_all(
    nodes: list[NodeProcess], check: Callable[[NodeProcess], bool], what: str, timeout: float = VISIBLE_S
) -> dict[str, float]:
    """Poll every node until `check(node)` holds; ms from the call to each node's first success."""
    start = time.monotonic()
    lags: dict[str, float] = {}
    while len(lags) < len(nodes):
        for node in nodes:
            if node.address not in lags and check(node):
                lags[node.address] = (time.monotonic() - start) * 1000
        if time.monotonic() - start > timeout:
            missing = [n.address for n in nodes if n.address not in lags]
            pytest.fail(f"not within {timeout} s on {missing}: {what}")
        time.sleep(0.005)
    return lags


def service_detail(node: NodeProcess, service: str) -> dict[str, Any] | None:
    status, body = call(node, "GET", f"{NS}/service", serviceName=service)
    return json.loads(body) if status == 200 else None


def full_beat(node: NodeProcess, service: str, ip: str, port: int, metadata: dict[str, str]) -> int:
    """One beat as nacos-sdk-python sends it (the `beat` JSON, grouped service name); its code."""
    grouped = f"{GROUP}@@{service}"
    document = {"serviceName": grouped, "ip": ip, "port": port, "weight": 1.0, "ephemeral": True, "metadata": metadata}
    body = ok(node, "PUT", f"{NS}/instance/beat", serviceName=grouped, groupName=GROUP, beat=json.dumps(document))
    return json.loads(body)["code"]


@dataclass(frozen=True)
class Beating:
    """An ephemeral instance a test keeps alive with beats."""

    service: str
    ip: str
    port: int
    metadata: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def address(self) -> tuple[str, int]:
        return self.ip, self.port


class Repeating:
    """Calls `step(n)` for n = 0, 1, 2... every `every` s on a thread, from `with` until its end."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def step(self, n: int) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            self.step(n)
            n += 1
            self._stop.wait(self.every)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)


class Beater(Repeating):
    """Beats every instance every `every` s (the first round at once) to the member
    `target(instance, round)` picks, on a thread; remembers every beat that failed."""

    def __init__(
        self, instances: list[Beating], target: Callable[[Beating, int], NodeProcess], every: float = BEAT_EVERY_S
    ) -> None:
        super().__init__(every)
        self.instances, self.target = instances, target
        self.sent = 0
        self.failures: list[str] = []

    def step(self, round_: int) -> None:
        for instance in self.instances:
            node = self.target(instance, round_)
            try:
                code = full_beat(node, instance.service, instance.ip, instance.port, instance.metadata)
                if code != OK_BEAT:
                    self.failures.append(f"{instance} via {node.address}: code {code}")
            except (OSError, AssertionError) as error:
                self.failures.append(f"{instance} via {node.address}: {error}")
            self.sent += 1


def register_all(node: NodeProcess, instances: list[Beating]) -> None:
    for instance in instances:
        register(node, instance.service, instance.ip, instance.port, metadata=instance.metadata or None)


def all_listed(nodes: list[NodeProcess], instances: list[Beating], healthy: bool = True) -> None:
    """Every instance is listed, healthy when `healthy`, on every node, within VISIBLE_S."""
    services = {i.service for i in instances}

    def complete(node: NodeProcess) -> bool:
        seen = {s: hosts(node, s) for s in services}
        return all(
            i.address in seen[i.service] and (not healthy or seen[i.service][i.address]["healthy"]) for i in instances
        )

    wait_on_all(nodes, complete, f"{len(instances)} instances listed")


def stay_healthy(nodes: list[NodeProcess], instances: list[Beating], seconds: float, what: str) -> None:
    """For `seconds`, every instance is listed and healthy on every node at every poll."""
    services = {i.service for i in instances}
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        for node in nodes:
            seen = {s: hosts(node, s) for s in services}
            for instance in instances:
                found = seen[instance.service].get(instance.address)
                assert found is not None, f"{instance} lost on {node.address} {elapsed:.1f} s {what}"
                assert found["healthy"], f"{instance} unhealthy on {node.address} {elapsed:.1f} s {what}"
        time.sleep(0.25)


def sdk_client(addresses: list[str], log_dir: str) -> nacos.NacosClient:
    """nacos-sdk-python pointed at every member (it uses the first until it fails)."""
    return nacos.NacosClient(",".join(addresses), logDir=log_dir)


def others(cluster: Cluster, *excluded: str) -> list[NodeProcess]:
    return [n for n in cluster.nodes if n.address not in excluded]


# -- one cluster for the tests whose services do not meet ----------------------------------


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory) -> Iterator[Cluster]:
    launcher = NodeLauncher(tmp_path_factory.mktemp("cluster-logs"))
    try:
        yield launch_cluster(launcher, 3)
    finally:
        problems = launcher.stop_all()
        if problems:
            pytest.fail("\n\n".join(problems))


@pytest.fixture
def trio(shared_cluster, request) -> Cluster:
    """The module's three members, settled; their stderr joins the report of a failed test."""
    request.node.stash[NODES_KEY] = shared_cluster.launcher.nodes
    shared_cluster.wait_settled()
    return shared_cluster


# -- 1. a write on any member is visible on all ------------------------------------------------


def test_registers_and_deregisters_on_any_member_are_visible_on_all(trio, capsys, tmp_path_factory):
    """Each member in turn registers one instance in a service of each owner (so some writes are
    forwarded, some not); then another member deregisters it."""
    nodes = trio.nodes
    owned = services_by_owner(nodes, "anywhere")
    lags: list[float] = []
    for w, writer in enumerate(nodes):
        for service in (names[0] for names in owned.values()):
            ip, port = f"127.0.0.{w + 2}", 8000 + w
            register(writer, service, ip, port, metadata={"writer": writer.address})

            def present(
                node: NodeProcess, service: str = service, ip: str = ip, port: int = port, by: str = writer.address
            ) -> bool:
                found = hosts(node, service).get((ip, port))
                return found is not None and found["healthy"] and found["metadata"] == {"writer": by}

            lags.extend(
                wait_on_all(nodes, present, f"{ip}:{port} registered in {service} on {writer.address}").values()
            )
    for w in range(len(nodes)):
        remover = nodes[(w + 1) % len(nodes)]
        for service in (names[0] for names in owned.values()):
            ip, port = f"127.0.0.{w + 2}", 8000 + w
            deregister(remover, service, ip, port)
            wait_on_all(
                nodes,
                lambda node, service=service, ip=ip, port=port: (ip, port) not in hosts(node, service),
                f"{ip}:{port} deregistered from {service} on {remover.address}",
            )
    for service in (names[0] for names in owned.values()):
        assert all(hosts(node, service) == {} for node in nodes)
    report(
        capsys,
        tmp_path_factory,
        "cluster_write_lag.json",
        f"write visible on every member ms: {summary(lags)}",
        {"lags_ms": lags},
    )


def test_the_python_sdk_pointed_at_all_members_writes_through_any_of_them(trio, nacos_log_dir):
    """One NacosClient per member, each listing every member but starting with a different one."""
    nodes = trio.nodes
    addresses = trio.addresses
    services = [names[0] for names in services_by_owner(nodes, "sdk").values()]
    for first in range(len(nodes)):
        client = sdk_client(addresses[first:] + addresses[:first], nacos_log_dir)
        ip = f"127.0.0.{first + 2}"
        for service in services:
            assert client.add_naming_instance(service, ip, 8100, cluster_name="c1", metadata={"v": "1"})
            wait_on_all(
                nodes,
                lambda node, service=service, ip=ip: (
                    hosts(node, service).get((ip, 8100), {}).get("metadata") == {"v": "1"}
                ),
                f"sdk register of {ip} in {service} via {addresses[first]}",
            )
            assert client.modify_naming_instance(service, ip, 8100, cluster_name="c1", metadata={"v": "2"}, weight=3)
            wait_on_all(
                nodes,
                lambda node, service=service, ip=ip: (
                    (h := hosts(node, service).get((ip, 8100))) is not None
                    and h["metadata"] == {"v": "2"}
                    and h["weight"] == 3.0
                ),
                f"sdk update of {ip} in {service} via {addresses[first]}",
            )
            listed_by_sdk = client.list_naming_instance(service)
            assert (ip, 8100) in {(h["ip"], h["port"]) for h in listed_by_sdk["hosts"]}
            assert client.remove_naming_instance(service, ip, 8100, cluster_name="c1")
            wait_on_all(
                nodes,
                lambda node, service=service, ip=ip: (ip, 8100) not in hosts(node, service),
                f"sdk deregister of {ip} in {service} via {addresses[first]}",
            )


def test_service_create_update_and_delete_on_any_member_are_visible_on_all(trio):
    nodes = trio.nodes
    services = [names[0] for names in services_by_owner(nodes, "described").values()]
    for index, service in enumerate(services):
        creator, updater, deleter = (nodes[(index + k) % len(nodes)] for k in range(3))
        ok(creator, "POST", f"{NS}/service", serviceName=service, protectThreshold="0.25", metadata='{"tier":"gold"}')
        wait_on_all(
            nodes,
            lambda node, service=service: (
                (d := service_detail(node, service)) is not None
                and d["metadata"] == {"tier": "gold"}
                and d["protectThreshold"] == 0.25
            ),
            f"{service} created on {creator.address}",
        )
        ok(updater, "PUT", f"{NS}/service", serviceName=service, protectThreshold="0.5", metadata="tier=silver,zone=a")
        wait_on_all(
            nodes,
            lambda node, service=service: (
                (d := service_detail(node, service)) is not None
                and d["metadata"] == {"tier": "silver", "zone": "a"}
                and d["protectThreshold"] == 0.5
            ),
            f"{service} updated on {updater.address}",
        )
        ok(deleter, "DELETE", f"{NS}/service", serviceName=service)
        wait_on_all(nodes, lambda node, service=service: service_detail(node, service) is None, f"{service} deleted")


# -- 2. beats to a member that is not the owner --------------------------------------------------


def test_beats_to_a_member_that_is_not_the_owner_keep_instances_healthy_past_the_default_timeout(trio):
    """Two beating instances and one silent control instance in a service of each owner, all with
    the default timeouts. Beats go (alternately) to the two members that are not responsible.
    After 21 s every beating instance is still healthy everywhere; each control turned unhealthy
    on every member 15 s after it was registered (the owner's verdict, replicated)."""
    nodes = trio.nodes
    owned = {owner: names[0] for owner, names in services_by_owner(nodes, "beaten").items()}
    beating = [
        Beating(service, f"127.0.0.{k + 2}", 8200, {"beat": str(k)}) for service in owned.values() for k in range(2)
    ]
    controls = [Beating(service, "127.0.0.9", 8299) for service in owned.values()]
    owner_by_service = {service: owner for owner, service in owned.items()}

    def not_the_owner(instance: Beating, round_: int) -> NodeProcess:
        choices = others(trio, owner_by_service[instance.service])
        return choices[round_ % len(choices)]

    registered = time.monotonic()
    register_all(nodes[0], beating + controls)
    unhealthy_seen: dict[tuple[str, str], float] = {}
    with Beater(beating, not_the_owner) as beater:
        all_listed(nodes, beating + controls)
        while (elapsed := time.monotonic() - registered) < DEFAULT_BEAT_TIMEOUT_S + 6:
            for node in nodes:
                for service in owned.values():
                    seen = hosts(node, service)
                    for instance in beating:
                        if instance.service == service:
                            assert instance.address in seen, f"{instance} lost on {node.address} after {elapsed:.1f} s"
                            assert seen[instance.address]["healthy"], (
                                f"{instance} unhealthy on {node.address} after {elapsed:.1f} s; beat failures "
                                f"{beater.failures}"
                            )
                            assert seen[instance.address]["metadata"] == instance.metadata
                    control = seen[("127.0.0.9", 8299)]
                    if not control["healthy"]:
                        unhealthy_seen.setdefault((node.address, service), time.monotonic() - registered)
            time.sleep(0.25)
    assert beater.failures == []
    assert beater.sent >= len(beating) * 10
    for node in nodes:
        for service in owned.values():
            at = unhealthy_seen.get((node.address, service))
            assert at is not None, f"the control in {service} never turned unhealthy on {node.address}"
            assert DEFAULT_BEAT_TIMEOUT_S <= at <= DEFAULT_BEAT_TIMEOUT_S + VERDICT_SLACK_S, (node.address, service, at)
    for instance in beating + controls:
        deregister(nodes[0], instance.service, instance.ip, instance.port)


# -- 5. push across members --------------------------------------------------------------------


def test_a_subscriber_on_one_member_hears_a_change_made_on_another(trio, udp):
    """The service's owner is a third member: the write is forwarded there, replicated to the
    subscriber's member, which pushes."""
    nodes = trio.nodes
    owner, service = next((o, names[0]) for o, names in services_by_owner(nodes, "heard").items())
    writer, listener = others(trio, owner)
    register(writer, service, "127.0.0.2", 8300)
    wait_on_all([listener], lambda node: ("127.0.0.2", 8300) in hosts(node, service), "the first instance")
    subscriber = udp()
    subscriber.poll(listener, service)

    register(writer, service, "127.0.0.3", 8300)
    packet = subscriber.wait(
        lambda p: {(h["ip"], h["port"]) for h in p.hosts} == {("127.0.0.2", 8300), ("127.0.0.3", 8300)},
        VISIBLE_S,
        "a push with the instance registered on another member",
    )
    assert packet.data["name"] == f"{GROUP}@@{service}"
    deregister(writer, service, "127.0.0.2", 8300)
    subscriber.wait(
        lambda p: {(h["ip"], h["port"]) for h in p.hosts} == {("127.0.0.3", 8300)},
        VISIBLE_S,
        "a push without the instance deregistered on another member",
    )
    deregister(writer, service, "127.0.0.3", 8300)


# -- peer lag ---------------------------------------------------------------------------------


class WriteLoad(Repeating):
    """A light steady write load on other services: a register or deregister every `every` s,
    rotating over the members."""

    def __init__(self, nodes: list[NodeProcess], every: float = 0.01) -> None:
        super().__init__(every)
        self.nodes = nodes
        self.writes = 0
        self.errors: list[str] = []

    def step(self, k: int) -> None:
        node = self.nodes[k % len(self.nodes)]
        service, port = f"load-{k % 16}", 9000 + (k // 16) % 8
        try:
            if (k // 128) % 2 == 0:
                register(node, service, "127.0.0.7", port, metadata=LONG)
            else:
                deregister(node, service, "127.0.0.7", port)
        except (OSError, AssertionError) as error:
            self.errors.append(str(error))
        self.writes += 1


def test_peer_lag_from_a_register_on_one_member_to_another_seeing_it(trio, capsys, tmp_path_factory):
    """~100 probes under ~100 writes/s elsewhere. Each probe registers an instance in a service
    owned by member O, on O itself or on a second member (forwarded to O), and polls a member
    that is not O until it lists the instance: Distro's replication, end to end."""
    nodes = trio.nodes
    per_owner = 34
    owned = services_by_owner(nodes, "lag", per_owner)
    probes = [
        (owner, service) for k in range(per_owner) for owner, names in owned.items() for service in names[k : k + 1]
    ]
    lags: dict[str, list[float]] = {"via the owner": [], "forwarded": []}
    with WriteLoad(nodes) as load:
        for index, (owner, service) in enumerate(probes):
            rest = others(trio, owner)
            observer = rest[index % 2]
            writer = trio.node_at(owner) if index % 2 == 0 else rest[(index + 1) % 2]
            register(writer, service, "127.0.0.5", 8400 + index)
            answered = time.monotonic()
            while ("127.0.0.5", 8400 + index) not in hosts(observer, service):
                assert time.monotonic() - answered < VISIBLE_S, f"probe {index} not on {observer.address}"
            lag = (time.monotonic() - answered) * 1000
            lags["via the owner" if writer.address == owner else "forwarded"].append(lag)
    assert load.errors == []
    every = lags["via the owner"] + lags["forwarded"]
    document = {
        "probes": len(every),
        "background_writes": load.writes,
        "all": summary(every),
        **{name: summary(values) for name, values in lags.items()},
        "lags_ms": lags,
    }
    line = (
        f"peer lag ms (register answered -> listed on a non-owner, {len(every)} probes, "
        f"{load.writes} background writes): {summary(every)}"
    )
    report(capsys, tmp_path_factory, "peer_lag.json", line, document)
    for index, (_, service) in enumerate(probes):
        deregister(nodes[0], service, "127.0.0.5", 8400 + index)


# -- 3. kill -9 -------------------------------------------------------------------------------


def test_after_kill_9_of_an_owner_the_survivors_take_over_and_lose_no_beating_instance(
    start_cluster, nacos_log_dir, capsys, tmp_path_factory
):
    """Two services of each owner, two beating instances each (default timeouts), beats going
    round-robin to the two members that will survive; one more instance beaten by
    nacos-sdk-python configured with every member, the victim first. The victim is killed with
    SIGKILL. For 21 s after the kill, every beating instance stays listed and healthy on both
    survivors; a silent control in a service the victim owned (4 s timeout, registered just before
    the kill) is judged by its new owner: unhealthy on both survivors."""
    cluster = start_cluster(3)
    victim = cluster.nodes[1]
    survivors = others(cluster, victim.address)
    owned = services_by_owner(cluster.nodes, "survive", 2)
    beating = [
        Beating(service, f"127.0.0.{k + 2}", 8500) for names in owned.values() for service in names for k in range(2)
    ]
    register_all(survivors[0], beating)
    victim_services = owned[victim.address]
    sdk_service = victim_services[0]
    client = sdk_client([victim.address] + [n.address for n in survivors], nacos_log_dir)
    assert client.add_naming_instance(
        sdk_service, "127.0.0.8", 8501, cluster_name="DEFAULT", heartbeat_interval=BEAT_EVERY_S
    )
    try:
        with Beater(beating, lambda instance, round_: survivors[round_ % 2]) as beater:
            everything = beating + [Beating(sdk_service, "127.0.0.8", 8501)]
            all_listed(cluster.nodes, everything)
            time.sleep(2 * BEAT_EVERY_S)
            control = Beating(victim_services[1], "127.0.0.9", 8599, {"preserved.heart.beat.timeout": "4000"})
            register_all(survivors[0], [control])
            all_listed(cluster.nodes, [control])

            victim.process.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            victim.process.wait(5)
            wait_on_all(
                survivors,
                lambda node: member_states(node).get(victim.address) == "DOWN",
                f"{victim.address} DOWN on the survivors",
            )
            down_after = time.monotonic() - killed
            for service in victim_services:
                new_owners = {owner_of(node, service) for node in survivors}
                assert len(new_owners) == 1 and new_owners <= {n.address for n in survivors}, (service, new_owners)

            control_unhealthy: dict[str, float] = {}
            while (elapsed := time.monotonic() - killed) < DEFAULT_BEAT_TIMEOUT_S + 6:
                for node in survivors:
                    seen = {s: hosts(node, s) for s in {i.service for i in everything}}
                    for instance in everything:
                        found = seen[instance.service].get(instance.address)
                        assert found is not None, f"{instance} lost on {node.address} {elapsed:.1f} s after the kill"
                        assert found["healthy"], (
                            f"{instance} unhealthy on {node.address} {elapsed:.1f} s after the kill; "
                            f"beat failures {beater.failures}"
                        )
                    silent = seen[control.service].get(control.address)
                    assert silent is not None, f"the control was removed on {node.address}"
                    if not silent["healthy"]:
                        control_unhealthy.setdefault(node.address, elapsed)
                time.sleep(0.25)
        assert beater.failures == []
    finally:
        for task in list(client.heartbeats.values()):
            task.stop()
    assert down_after < 2.0, f"the survivors took {down_after:.2f} s to see the kill"
    # The new owner counts the control's silence from the takeover: unhealthy 4 s after it.
    assert set(control_unhealthy) == {n.address for n in survivors}, control_unhealthy
    assert all(4.0 <= at <= down_after + 4.0 + VERDICT_SLACK_S for at in control_unhealthy.values()), control_unhealthy
    figures = {"down_seen_ms": round(down_after * 1000), "beats": beater.sent}
    report(capsys, tmp_path_factory, "cluster_kill.json", f"kill -9: {figures}", figures)


# -- 4. restart after kill -9 -------------------------------------------------------------------


def test_a_member_restarted_after_kill_9_serves_a_complete_snapshot_then_converges(
    start_cluster, capsys, tmp_path_factory
):
    """Instances (long timeouts, no beats needed) in services of every owner; one member is
    killed, the others change things while it is down; restarted on its port, its very first
    successful list answer already holds everything, later writes anywhere reach it, and it
    owns its services again. Meanwhile "pulse" instances (3 s beat timeout) beaten every second
    through the survivors stay healthy everywhere as their services move to a survivor and back."""
    cluster = start_cluster(3)
    victim_index = 2
    survivors = others(cluster, cluster.addresses[victim_index])
    owned = services_by_owner(cluster.nodes, "restart", 3)
    short = {"preserved.heart.beat.timeout": "3000", "preserved.ip.delete.timeout": "120000"}
    pulses = [
        Beating(names[0], f"127.0.0.{k + 2}", 8650, short)
        for names in services_by_owner(cluster.nodes, "pulse").values()
        for k in range(2)
    ]
    register_all(survivors[0], pulses)
    with Beater(pulses, lambda instance, round_: survivors[round_ % 2], every=1.0) as beater:
        all_listed(cluster.nodes, pulses)
        restart_and_converge(cluster, victim_index, owned, pulses, capsys, tmp_path_factory)
    assert beater.failures == []


def restart_and_converge(
    cluster: Cluster, victim_index: int, owned: dict[str, list[str]], pulses: list[Beating], capsys, tmp_path_factory
) -> None:
    """The steps of the test above, while the pulses beat."""
    victim = cluster.nodes[victim_index]
    survivors = others(cluster, victim.address)
    services = [s for names in owned.values() for s in names]
    expected: dict[str, set[tuple[str, int]]] = {s: set() for s in services}
    for index, service in enumerate(services):
        for k in range(2):
            register(cluster.nodes[(index + k) % 3], service, f"127.0.0.{k + 2}", 8600, metadata=LONG)
            expected[service].add((f"127.0.0.{k + 2}", 8600))
    wait_on_all(
        cluster.nodes, lambda node: all(set(hosts(node, s)) == expected[s] for s in services), "the first instances"
    )

    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(5)
    wait_on_all(survivors, lambda node: member_states(node).get(victim.address) == "DOWN", "the victim DOWN")
    stay_healthy(survivors, pulses, 1.0, "after the kill")
    for index, service in enumerate(services):  # changes the victim misses
        writer = survivors[index % 2]
        register(writer, service, "127.0.0.4", 8601, metadata=LONG)
        expected[service].add(("127.0.0.4", 8601))
        if index % 3 == 0:
            deregister(writer, service, "127.0.0.2", 8600)
            expected[service].discard(("127.0.0.2", 8600))
    wait_on_all(survivors, lambda node: all(set(hosts(node, s)) == expected[s] for s in services), "the changes")
    stay_healthy(survivors, pulses, 3.5, "after the kill")  # past the 3 s timeout, owned by survivors

    restarted = cluster.start_member(victim_index, wait=False)
    first_service = services[0]
    started = time.monotonic()
    while True:
        assert restarted.process.poll() is None, restarted.stderr()
        assert time.monotonic() - started < 15, "the restarted member never answered a list"
        try:
            status, body = call(restarted, "GET", f"{NS}/instance/list", serviceName=first_service)
        except OSError:
            status = 0
        if status == 200:
            break
        assert status in (0, 503), (status, body)
        time.sleep(0.01)
    first_list_after = time.monotonic() - started
    first_answer = {(h["ip"], h["port"]) for h in json.loads(body)["hosts"]}
    assert first_answer == expected[first_service]
    for service in services:
        assert set(hosts(restarted, service)) == expected[service], service
    cluster.wait_settled()
    settled_after = time.monotonic() - started

    for index, node in enumerate(cluster.nodes):  # writes after the restart, anywhere
        for service in services[index::3]:
            register(node, service, "127.0.0.5", 8602, metadata=LONG)
            expected[service].add(("127.0.0.5", 8602))
    wait_on_all(
        cluster.nodes,
        lambda node: all(set(hosts(node, s)) == expected[s] for s in services),
        "writes after the restart",
    )
    for service in owned[restarted.address]:
        assert {owner_of(node, service) for node in cluster.nodes} == {restarted.address}, service
    stay_healthy(cluster.nodes, pulses, 4.0, "after the restart")  # the restarted owner judges its pulses
    assert get_json(restarted, f"{NS}/operator/metrics")["responsibleServiceCount"] >= len(owned[restarted.address])
    figures = {"first_list_ms": round(first_list_after * 1000), "settled_ms": round(settled_after * 1000)}
    report(capsys, tmp_path_factory, "cluster_restart.json", f"restart after kill -9: {figures}", figures)


# -- 6. clean stop ---------------------------------------------------------------------------


def test_a_member_stopped_with_sigterm_is_down_at_once_and_its_services_live_on(
    start_cluster, capsys, tmp_path_factory
):
    """Writes to the leaving member's services land on it just before SIGTERM; it drains them to
    the others, reports DOWN as it leaves (the others see it well before failure detection
    could), exits 0, and the survivors own and serve everything."""
    cluster = start_cluster(3)
    leaving = cluster.nodes[0]
    survivors = others(cluster, leaving.address)
    owned = services_by_owner(cluster.nodes, "leave", 2)
    services = [s for names in owned.values() for s in names]
    expected: dict[str, set[tuple[str, int]]] = {s: set() for s in services}
    for service in services:
        register(cluster.nodes[1], service, "127.0.0.2", 8700, metadata=LONG)
        expected[service].add(("127.0.0.2", 8700))
    wait_on_all(
        cluster.nodes, lambda node: all(set(hosts(node, s)) == expected[s] for s in services), "the first instances"
    )
    for service in owned[leaving.address]:  # the last writes, on the leaving member itself
        register(leaving, service, "127.0.0.3", 8701, metadata=LONG)
        expected[service].add(("127.0.0.3", 8701))

    leaving.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    seen_down = wait_on_all(
        survivors, lambda node: member_states(node).get(leaving.address) == "DOWN", "the leaving member DOWN"
    )
    assert max(seen_down.values()) < LEAVE_SEEN_S * 1000, seen_down
    assert leaving.process.wait(5) == 0, leaving.stderr()
    assert "Traceback" not in leaving.stderr()
    stopped_after = time.monotonic() - signalled

    for service in services:
        owners = {owner_of(node, service) for node in survivors}
        assert len(owners) == 1 and owners <= {n.address for n in survivors}, (service, owners)
    for node in survivors:
        for service in services:
            assert set(hosts(node, service)) == expected[service], (node.address, service)
    for index, service in enumerate(owned[leaving.address]):  # its services take writes on the survivors
        register(survivors[index % 2], service, "127.0.0.4", 8702, metadata=LONG)
        expected[service].add(("127.0.0.4", 8702))
    wait_on_all(
        survivors, lambda node: all(set(hosts(node, s)) == expected[s] for s in services), "writes after the stop"
    )
    assert stopped_after < 5
    figures = {"down_seen_ms": round(max(seen_down.values())), "exited_ms": round(stopped_after * 1000)}
    report(capsys, tmp_path_factory, "cluster_leave.json", f"SIGTERM: {figures}", figures)


# -- 7. no service blocks replication (issue 14, finding 3) ------------------------------------

BLOB = "x" * 500_000  # three instances of this are a 1.5 MB service
FEW_S = 5.0  # "within a few seconds"
# Ephemeral (Distro carries them; persistent instances go through Raft), with timeouts long enough
# that nothing expires while the test runs.
LONG_LIVED = {"preserved.heart.beat.timeout": "600000", "preserved.ip.delete.timeout": "600000"}


def register_large(node: NodeProcess, service: str, ip: str, port: int) -> None:
    """A register whose 500 KB of metadata travels in a form body (no query string is that long)."""
    body = urllib.parse.urlencode(
        {"serviceName": service, "ip": ip, "port": port, "metadata": json.dumps({"blob": BLOB, **LONG_LIVED})}
    ).encode()
    connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    try:
        connection.request(
            "POST", f"{NS}/instance", body=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        answer = connection.getresponse()
        assert (answer.status, answer.read()) == (200, b"ok")
    finally:
        connection.close()


def large_then_small(nodes: list[NodeProcess], prefix: str) -> tuple[str, str, list[str]]:
    """Three 500 KB instances in one service, then one small instance in each of four services of
    the same owner, all sent to a member that is not the owner; (owner, large, small services)."""
    by_owner = services_by_owner(nodes, prefix, 5)
    owner = nodes[0].address
    large, *small = by_owner[owner]
    writer = next(n for n in nodes if n.address != owner)
    for k in range(3):
        register_large(writer, large, "127.0.0.2", 8800 + k)
    for service in small:
        register(writer, service, "127.0.0.3", 8810)
    return owner, large, small


def test_a_service_over_a_mebibyte_replicates_and_holds_up_nothing(start_cluster):
    """Clients may send 1 MiB bodies (here with the metadata limit raised to let them); peers
    take whole services (peer_max_body_bytes, 256 MiB by default), so a 1.5 MB service
    replicates like any other and so do the small ones after it."""
    trio = start_cluster(3, "--max-instance-metadata-bytes", "1048576")
    nodes = trio.nodes
    owner, large, small = large_then_small(nodes, "big")
    wait_on_all(
        nodes,
        lambda node: all(("127.0.0.3", 8810) in hosts(node, s) for s in small),
        "the small services after a 1.5 MB one",
        FEW_S,
    )
    wait_on_all(nodes, lambda node: len(hosts(node, large)) == 3, "the 1.5 MB service", FEW_S)
    assert "quarantined" not in trio.node_at(owner).stderr()
    for k in range(3):
        deregister(nodes[0], large, "127.0.0.2", 8800 + k, ephemeral="false")
    for service in small:
        deregister(nodes[0], service, "127.0.0.3", 8810)


def test_a_service_too_large_for_its_peers_is_quarantined_and_the_others_flow(start_cluster):
    """With peers limited to 1 MiB, the 1.5 MB service can never be sent: its batches fail with
    413, it is split off and quarantined (one warning per peer, the metrics say so), and the
    small services of the same owner still reach every member within a few seconds."""
    cluster = start_cluster(3, "--peer-max-body-bytes", "1048576", "--max-instance-metadata-bytes", "1048576")
    nodes = cluster.nodes
    owner, large, small = large_then_small(nodes, "poison")
    wait_on_all(
        nodes,
        lambda node: all(("127.0.0.3", 8810) in hosts(node, s) for s in small),
        "the small services after one too large for the peers",
        FEW_S,
    )
    owner_node = cluster.node_at(owner)
    peers = [a for a in cluster.addresses if a != owner]

    def quarantined() -> dict[str, float]:
        status, body = owner_node.get("/metrics")
        assert status == 200
        found = {}
        for line in body.decode().splitlines():
            if line.startswith("nacos_actors_distro_quarantined_services{"):
                peer = line.split('peer="', 1)[1].split('"', 1)[0]
                found[peer] = float(line.rsplit(" ", 1)[1])
        return found

    deadline = time.monotonic() + FEW_S
    while quarantined() != {peer: 1.0 for peer in peers}:
        assert time.monotonic() < deadline, quarantined()
        time.sleep(0.05)
    for node in others(cluster, owner):
        assert len(hosts(node, large)) < 3  # never the 1.5 MB state
    assert len(hosts(owner_node, large)) == 3
    log = owner_node.stderr()
    for peer in peers:
        assert log.count(f"to {peer} quarantined") == 1, log
    register(nodes[1], small[0], "127.0.0.4", 8811)  # later changes still flow
    wait_on_all(nodes, lambda node: ("127.0.0.4", 8811) in hosts(node, small[0]), "a later change", FEW_S)
