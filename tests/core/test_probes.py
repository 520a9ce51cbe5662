"""The probe core: what to probe when, and the verdicts after consecutive results, driven
together with the registry (persistent writes and verdicts through a one-member Raft)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import ip_network
from types import MappingProxyType
from urllib.parse import urljoin, urlsplit

import pytest
from hypothesis import example, given, note, settings
from hypothesis import strategies as st

from nacos_actors.core.distro import judges_health, responsible_member
from nacos_actors.core.members import DOWN, UP, MemberStatus, MemberView
from nacos_actors.core.probes import (
    ProbeConfig,
    ProbeCore,
    ProbeVerdict,
    expected_status,
    http_headers,
    http_path,
)
from nacos_actors.core.probing import (
    MYSQL_READ_ONLY_CHECK,
    PROBE_ERROR,
    PROBE_KINDS,
    PROBE_OK,
    PROBE_REFUSED,
    PROBE_TIMEOUT,
    ProbeResult,
    ProbeTarget,
)
from nacos_actors.core.registry import Rejected
from nacos_actors.messages import (
    ApplyProbeVerdict,
    Command,
    CreateService,
    DeleteService,
    DeregisterInstance,
    RegisterInstance,
    UpdateCluster,
)
from nacos_actors.model import NO_SELECTOR, ClusterConfig, Instance, InstanceKey, ServiceKey, freeze
from tests.core.combined import LocalRegistry

SVC = ServiceKey("public", "DEFAULT_GROUP@@db")
IP = "127.0.0.1"
TCP = ClusterConfig()
NONE = ClusterConfig(freeze({"type": "NONE"}))
HTTP = ClusterConfig(freeze({"type": "HTTP", "path": "/health", "headers": "", "expectedResponseCode": 200}))
MYSQL = ClusterConfig(freeze({"type": "MYSQL", "user": "probe", "pwd": "secret", "cmd": ""}))


def persistent(port: int = 3306, **fields) -> Instance:
    return Instance(fields.pop("ip", IP), port, ephemeral=False, **fields)


def key(port: int = 3306, cluster: str = "DEFAULT") -> InstanceKey:
    return InstanceKey(IP, port, cluster, False)


def result(probe: ProbeTarget, outcome: str, immediate: bool = False) -> ProbeResult:
    return ProbeResult(probe.probe_id, probe.kind, outcome, immediate, f"{probe.kind.lower()}:{outcome}", 1.0)


def never_random() -> float:
    return 0.0


@dataclass
class World:
    """A registry (tests.core.combined) and a probe core wired as the actors wire them: the
    core sees every change the registry publishes, and its verdicts go through Raft as
    ApplyProbeVerdict (unless a test holds them back). `draws` is the core's random."""

    config: ProbeConfig = field(default_factory=ProbeConfig)
    draws: Callable[[], float] = never_random
    compare_all: bool = False
    now: int = 0

    def __post_init__(self) -> None:
        self.local = LocalRegistry()
        self.core = ProbeCore(self.config, self.draws)
        self.write(CreateService(SVC, 0.0, freeze({}), NO_SELECTOR))  # clusters need their service

    def write(self, command: Command) -> None:
        seen = len(self.local.changes)
        self.local.apply(command, self.now)
        self._feed(seen)

    def register(self, *instances: Instance, service: ServiceKey = SVC) -> None:
        for instance in instances:
            self.write(RegisterInstance(service, instance))

    def apply(self, verdict: ProbeVerdict) -> None:
        """Propose a verdict through Raft, as the probe driver does."""
        seen = len(self.local.changes)
        k = verdict.instance
        self.local.propose(
            ApplyProbeVerdict(verdict.service, k.ip, k.port, k.cluster, verdict.healthy, verdict.kind), self.now
        )
        self._feed(seen)

    def _feed(self, seen: int) -> None:
        changes = self.local.changes[seen:]
        if self.compare_all:
            changes = [replace(change, touched=None) for change in changes]
        self.core.observe_changes(changes, self.now)

    def due(self, at: int | None = None) -> list[ProbeTarget]:
        if at is not None:
            self.now = at
        return self.core.due(self.now)

    def next_probes(self) -> list[ProbeTarget]:
        """Wake at the core's next deadline and start what is due."""
        deadline = self.core.next_deadline()
        assert deadline is not None
        self.now = max(self.now, deadline)
        return self.core.due(self.now)

    def cycle(self, outcome: str, immediate: bool = False, apply: bool = True, took: int = 10) -> list[ProbeVerdict]:
        """The next round: start the probes due, finish each `took` ms later with `outcome`;
        answers the verdicts (proposed through Raft when `apply`)."""
        probes = self.next_probes()
        assert probes, "nothing was due"
        self.now += took
        verdicts = self.core.finished([result(p, outcome, immediate) for p in probes], self.now)
        if apply:
            for verdict in verdicts:
                self.apply(verdict)
        return verdicts

    def instance(self, k: InstanceKey, service: ServiceKey = SVC) -> Instance | None:
        snapshot = self.local.service(service)
        return snapshot.instances.get(k) if snapshot is not None else None


def unhealthy_verdict(count: int = 3, detail: str = "tcp:timeout", k: InstanceKey | None = None) -> ProbeVerdict:
    return ProbeVerdict(SVC, k or key(), False, "TCP", detail, count)


# -- Nacos's counters ------------------------------------------------------------------------------


@pytest.mark.parametrize("compare_all", [False, True])
def test_check_times_soft_failures_mark_a_healthy_instance_unhealthy(compare_all):
    world = World(compare_all=compare_all)
    world.register(persistent())
    assert world.cycle(PROBE_TIMEOUT) == []
    assert world.cycle(PROBE_ERROR) == []
    assert world.cycle(PROBE_TIMEOUT) == [unhealthy_verdict()]
    assert world.instance(key()).healthy is False
    assert [world.cycle(PROBE_TIMEOUT) for _ in range(5)] == [[]] * 5  # unhealthy already


def test_an_immediate_failure_marks_a_healthy_instance_unhealthy_at_once():
    world = World()
    world.register(persistent())
    assert world.cycle(PROBE_REFUSED, immediate=True) == [unhealthy_verdict(1, "tcp:refused")]
    assert world.instance(key()).healthy is False
    assert world.cycle(PROBE_REFUSED, immediate=True) == []


@pytest.mark.parametrize("compare_all", [False, True])
def test_check_times_successes_revive_an_unhealthy_instance(compare_all):
    world = World(compare_all=compare_all)
    world.register(persistent(healthy=False))
    assert world.cycle(PROBE_OK) == []
    assert world.cycle(PROBE_OK) == []
    assert world.cycle(PROBE_OK) == [ProbeVerdict(SVC, key(), True, "TCP", "tcp:ok", 3)]
    assert world.instance(key()).healthy is True
    assert [world.cycle(PROBE_OK) for _ in range(5)] == [[]] * 5


def test_check_times_comes_from_the_config():
    world = World(ProbeConfig(check_times=1))
    world.register(persistent())
    assert world.cycle(PROBE_TIMEOUT) == [unhealthy_verdict(1)]
    assert world.cycle(PROBE_OK) == [ProbeVerdict(SVC, key(), True, "TCP", "tcp:ok", 1)]


def test_a_result_the_other_way_resets_the_count():
    world = World()
    world.register(persistent())
    outcomes = [PROBE_TIMEOUT, PROBE_TIMEOUT, PROBE_OK, PROBE_TIMEOUT, PROBE_TIMEOUT]
    assert [world.cycle(outcome) for outcome in outcomes] == [[]] * 5
    assert world.cycle(PROBE_TIMEOUT) == [unhealthy_verdict()]
    outcomes = [PROBE_OK, PROBE_OK, PROBE_TIMEOUT, PROBE_OK, PROBE_OK]
    assert [world.cycle(outcome) for outcome in outcomes] == [[]] * 5
    assert world.cycle(PROBE_REFUSED, immediate=True) == []  # unhealthy: no verdict, but the count resets
    assert [world.cycle(PROBE_OK) for _ in range(2)] == [[]] * 2
    assert world.cycle(PROBE_OK)[0].healthy is True


def test_counters_start_afresh_after_a_verdict():
    world = World()
    world.register(persistent())
    assert world.cycle(PROBE_OK) == []
    world.cycle(PROBE_REFUSED, immediate=True)
    assert world.instance(key()).healthy is False
    assert world.cycle(PROBE_OK) == [] and world.cycle(PROBE_OK) == []
    assert world.cycle(PROBE_OK)[0].healthy is True
    assert world.cycle(PROBE_TIMEOUT) == [] and world.cycle(PROBE_TIMEOUT) == []
    assert world.cycle(PROBE_TIMEOUT) == [unhealthy_verdict()]


def test_another_registration_of_the_same_target_keeps_the_counters():
    world = World()
    world.register(persistent())
    world.cycle(PROBE_TIMEOUT)
    world.cycle(PROBE_TIMEOUT)
    world.register(persistent(weight=5.0, metadata=freeze({"zone": "b"})))
    assert world.cycle(PROBE_TIMEOUT) == [unhealthy_verdict()]


def test_a_new_target_starts_the_counters_afresh():
    world = World()
    world.register(persistent())
    world.cycle(PROBE_TIMEOUT)
    world.cycle(PROBE_TIMEOUT)
    world.write(UpdateCluster(SVC, "DEFAULT", ClusterConfig(check_port=9000, use_instance_port=False)))
    (probe,) = world.next_probes()
    assert probe.port == 9000
    assert world.core.finished([result(probe, PROBE_TIMEOUT)], world.now) == []
    assert world.cycle(PROBE_TIMEOUT) == []
    assert world.cycle(PROBE_TIMEOUT) == [unhealthy_verdict()]


# -- what is probed, and with what -----------------------------------------------------------------


def test_none_checkers_marked_ephemeral_and_host_name_instances_are_never_probed():
    world = World()
    world.write(UpdateCluster(SVC, "manual", NONE))
    world.register(
        persistent(1, cluster="manual"),
        persistent(2, marked=True),
        Instance(IP, 3, ephemeral=True),
        persistent(4, ip="db.example"),
        persistent(5),
    )
    assert world.core.target_count == 1
    for _ in range(5):
        probes = world.next_probes()
        assert [(p.ip, p.port) for p in probes] == [(IP, 5)]
        world.now += 3_000
        assert world.core.finished([result(p, PROBE_OK) for p in probes], world.now) == []


def test_marking_an_instance_or_setting_its_checker_to_none_stops_its_probes():
    world = World()
    world.register(persistent(1), persistent(2))
    world.register(persistent(1, marked=True))
    assert world.core.target_count == 1
    world.write(UpdateCluster(SVC, "DEFAULT", NONE))
    assert world.core.target_count == 0
    assert world.core.next_deadline() is None
    assert world.due(100_000) == []


def test_with_health_checks_off_nothing_is_probed():
    world = World(ProbeConfig(enabled=False))
    world.register(persistent(1), persistent(2))
    assert world.core.target_count == 0
    assert world.core.next_deadline() is None
    assert world.due(100_000) == []


@pytest.mark.parametrize(
    "config, probed_port",
    [
        (TCP, 3306),
        (ClusterConfig(check_port=9000, use_instance_port=False), 9000),
        (replace(HTTP, check_port=9000), 3306),
        (replace(HTTP, check_port=9000, use_instance_port=False), 9000),
        (replace(MYSQL, check_port=9000, use_instance_port=False), 3306),  # Nacos: always the instance's
    ],
)
def test_the_port_probed_depends_on_the_checker(config, probed_port):
    world = World()
    world.write(UpdateCluster(SVC, "c1", config))
    world.register(persistent(cluster="c1"))
    (probe,) = world.next_probes()
    assert (probe.kind, probe.ip, probe.port) == (config.health_checker_type, IP, probed_port)
    assert probe.timeout_ms == 500


def test_an_http_target_carries_the_path_headers_and_expected_status():
    checker = freeze(
        {"type": "HTTP", "path": "status?full=1", "headers": "Host:db| X-Probe : yes |", "expectedResponseCode": 204}
    )
    world = World(ProbeConfig(timeout_ms=750))
    world.write(UpdateCluster(SVC, "DEFAULT", ClusterConfig(checker)))
    world.register(persistent(8080))
    (probe,) = world.next_probes()
    assert probe == ProbeTarget(probe.probe_id, "HTTP", IP, 8080, 750, path="/status?full=1",
                                headers=(("Host", "db"), ("X-Probe", "yes")), expected_status=204)  # fmt: skip


def test_a_mysql_target_carries_the_login_and_nacos_s_master_check_when_no_command_is_given():
    world = World()
    world.write(UpdateCluster(SVC, "DEFAULT", MYSQL))
    world.write(UpdateCluster(SVC, "c1", ClusterConfig(freeze({"type": "MYSQL", "cmd": "select 1"}))))
    world.register(persistent(3306), persistent(3307, cluster="c1"))
    probes = sorted(world.next_probes(), key=lambda p: p.port)
    assert [(p.user, p.password, p.command) for p in probes] == [
        ("probe", "secret", MYSQL_READ_ONLY_CHECK),
        ("", "", "select 1"),
    ]


def test_only_instances_inside_the_probe_networks_are_probed():
    networks = (ip_network("127.0.0.0/8"), ip_network("::1/128"))
    world = World(ProbeConfig(networks=networks))
    world.register(persistent(1), persistent(2, ip="10.0.0.1"), persistent(3, ip="::1"), persistent(4, ip="fd00::1"))
    assert sorted((p.ip, p.port) for p in world.next_probes()) == [("127.0.0.1", 1), ("::1", 3)]
    assert world.core.target_count == 2


def test_an_ipv6_instance_is_probed_at_its_address():
    world = World()
    world.register(persistent(ip="::1"))
    (probe,) = world.next_probes()
    assert (probe.ip, probe.port) == ("::1", 3306)


@pytest.mark.parametrize(
    "raw, path",
    [
        ("", "/"),
        (None, "/"),
        (7, "/"),
        ("/", "/"),
        ("/health", "/health"),
        ("health", "/health"),
        ("/a/b?c=d&e=/f", "/a/b?c=d&e=/f"),
        ("//evil.example/x", "/evil.example/x"),
        ("http://evil.example/x", "/http://evil.example/x"),
        ("@evil.example/x", "/@evil.example/x"),
    ],
)
def test_an_http_path_starts_with_exactly_one_slash(raw, path):
    assert http_path(raw) == path


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=30))
def test_no_http_path_changes_the_host_probed(raw):
    path = http_path(raw)
    assert path.startswith("/") and not path.startswith("//")
    for base in ("http://127.0.0.1:8080", "http://127.0.0.1:8080/"):
        assert urlsplit(urljoin(base, path)).hostname == "127.0.0.1"
        assert urlsplit("http://127.0.0.1:8080" + path).hostname == "127.0.0.1"


@pytest.mark.parametrize(
    "raw, headers",
    [
        ("", ()),
        (None, ()),
        ("k1:v1|k2:v2", (("k1", "v1"), ("k2", "v2"))),
        (" k : v |", (("k", "v"),)),
        ("|k:v||", (("k", "v"),)),
        ("k: ", (("k", ""),)),
        ("Referer:http://a", (("Referer", "http://a"),)),  # the value is all after the first ':'
        ("Host:db.example", (("Host", "db.example"),)),
        # Stored text the edge would refuse now (an older version's): no headers at all.
        ("a:b:c|d:e|bad name:v", ()),
        (":v", ()),
    ],
)
def test_http_headers_are_read_as_the_edge_reads_them(raw, headers):
    assert http_headers(raw) == headers


@pytest.mark.parametrize(
    "raw, status", [(None, 200), (204, 204), (599, 599), (99, 200), (600, 200), ("204", 200), (True, 200)]
)
def test_the_expected_status_defaults_to_200(raw, status):
    assert expected_status(raw) == status


# -- the schedule ----------------------------------------------------------------------------------


class Draws:
    """The core's random: the values given, round and round; `taken` counts them."""

    def __init__(self, values: list[float]) -> None:
        self.values = values
        self.taken = 0

    def __call__(self) -> float:
        value = self.values[self.taken % len(self.values)]
        self.taken += 1
        return value


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=20),
    st.integers(100, 5_000),
    st.integers(0, 3_000),
    st.integers(1, 400),
)
def test_first_probes_spread_over_one_interval_then_one_interval_plus_jitter_after_each_result(
    values, interval, jitter, took
):
    world = World(ProbeConfig(interval_ms=interval, jitter_ms=jitter), Draws(values))
    world.now = 1_000
    world.register(*(persistent(port) for port in range(1, 6)))
    for port in range(1, 6):
        assert 1_000 <= world.core.scheduled_at(SVC, key(port)) < 1_000 + interval
    for _ in range(15):
        probes = world.next_probes()
        world.now += took
        world.core.finished([result(p, PROBE_OK) for p in probes], world.now)
        for probe in probes:
            delay = world.core.scheduled_at(SVC, key(probe.port)) - world.now
            assert interval <= delay < interval + max(jitter, 1)


def test_an_instance_is_never_due_while_its_probe_runs():
    world = World()
    world.register(persistent())
    (probe,) = world.next_probes()
    assert world.core.is_probing(SVC, key()) and world.core.scheduled_at(SVC, key()) is None
    assert world.due(world.now + 2_400) == []
    world.core.finished([result(probe, PROBE_OK)], world.now)
    assert not world.core.is_probing(SVC, key())
    assert world.core.scheduled_at(SVC, key()) == world.now + 2_000


def test_no_more_than_max_in_flight_probes_run_and_a_freed_slot_starts_the_next():
    world = World(ProbeConfig(max_in_flight=2))
    world.register(*(persistent(port) for port in range(1, 6)))
    first = world.due(0)
    assert len(first) == 2 and world.core.in_flight == 2
    assert world.due(0) == []
    assert world.core.next_deadline() == 2_500  # only the running probes' expiry: no busy wake
    world.now = 100
    world.core.finished([result(first[0], PROBE_OK)], world.now)
    assert world.core.next_deadline() == 0  # a probe waits for the freed slot
    second = world.due(100)
    assert len(second) == 1 and world.core.in_flight == 2
    running = {p.port for p in (first[1], *second)}
    assert len(running) == 2
    world.core.finished([result(p, PROBE_OK) for p in (first[1], *second)], 200)
    third = world.due(200)
    assert len(third) == 2
    assert {p.port for p in first + second + third} == {1, 2, 3, 4, 5}


def test_a_probe_never_answered_is_lost_its_slot_freed_and_nothing_counted():
    world = World()
    world.register(persistent())
    (lost,) = world.next_probes()
    assert world.core.next_deadline() == 2_500  # 500 ms timeout, twice more and 1 s of grace
    assert world.due(2_499) == [] and world.core.in_flight == 1
    assert world.due(2_500) == [] and world.core.in_flight == 0
    assert world.core.scheduled_at(SVC, key()) == 4_500
    world.now = 2_600
    assert world.core.finished([result(lost, PROBE_TIMEOUT)], world.now) == []  # too late
    assert world.cycle(PROBE_TIMEOUT) == [] and world.cycle(PROBE_TIMEOUT) == []
    assert world.cycle(PROBE_TIMEOUT) == [unhealthy_verdict()]


def test_unknown_and_repeated_results_are_ignored():
    world = World()
    world.register(persistent())
    (probe,) = world.next_probes()
    assert world.core.finished([result(replace(probe, probe_id=999), PROBE_REFUSED, True)], 10) == []
    assert world.core.finished([result(probe, PROBE_TIMEOUT)], 10) == []
    assert world.core.finished([result(probe, PROBE_REFUSED, True)], 11) == []
    assert world.core.scheduled_at(SVC, key()) == 2_010


# -- verdicts: proposed once, again only when they do not land ---------------------------------------


def test_a_verdict_is_proposed_once_and_again_after_the_retry_time_while_results_say_so():
    world = World(ProbeConfig(verdict_retry_ms=5_000))
    world.register(persistent())
    world.cycle(PROBE_TIMEOUT)
    world.cycle(PROBE_TIMEOUT)
    assert world.cycle(PROBE_TIMEOUT, apply=False) == [unhealthy_verdict()]
    proposed_at = world.now
    while world.now < proposed_at + 5_000 - 2_010:
        assert world.cycle(PROBE_TIMEOUT, apply=False) == []
    again = world.cycle(PROBE_TIMEOUT, apply=False)
    assert world.now >= proposed_at + 5_000 and again == [unhealthy_verdict()]
    world.apply(again[0])
    assert world.instance(key()).healthy is False
    assert [world.cycle(PROBE_TIMEOUT) for _ in range(6)] == [[]] * 6


def test_a_verdict_seen_in_a_snapshot_is_not_proposed_again():
    world = World(ProbeConfig(verdict_retry_ms=1))
    world.register(persistent())
    (verdict,) = world.cycle(PROBE_REFUSED, immediate=True, apply=False)
    world.apply(verdict)
    assert [world.cycle(PROBE_REFUSED, immediate=True) for _ in range(4)] == [[]] * 4


def test_results_that_turn_against_a_pending_verdict_count_from_it():
    world = World(ProbeConfig(verdict_retry_ms=1))
    world.register(persistent())
    assert world.cycle(PROBE_REFUSED, immediate=True, apply=False) == [unhealthy_verdict(1, "tcp:refused")]
    assert world.cycle(PROBE_OK, apply=False) == [] and world.cycle(PROBE_OK, apply=False) == []
    (undo,) = world.cycle(PROBE_OK, apply=False)
    assert undo.healthy is True
    # Healthy is what the snapshot shows already: nothing more to propose.
    assert [world.cycle(PROBE_OK, apply=False) for _ in range(4)] == [[]] * 4
    world.cycle(PROBE_TIMEOUT)
    world.cycle(PROBE_TIMEOUT)
    assert world.cycle(PROBE_TIMEOUT) == [unhealthy_verdict()]


def test_a_verdict_applied_late_is_judged_again():
    """The unhealthy verdict lands after the healthy one that undid it was found unneeded."""
    world = World(ProbeConfig(verdict_retry_ms=1))
    world.register(persistent())
    (late,) = world.cycle(PROBE_REFUSED, immediate=True, apply=False)
    for _ in range(4):
        world.cycle(PROBE_OK, apply=False)
    world.apply(late)
    assert world.instance(key()).healthy is False
    world.cycle(PROBE_OK)
    world.cycle(PROBE_OK)
    assert world.cycle(PROBE_OK)[0].healthy is True
    assert world.instance(key()).healthy is True


# -- changes while a probe runs --------------------------------------------------------------------


def test_the_result_of_a_probe_started_under_another_checker_is_ignored():
    world = World()
    world.register(persistent())
    (tcp,) = world.next_probes()
    world.now += 5
    world.write(UpdateCluster(SVC, "DEFAULT", HTTP))
    assert world.core.target_count == 1 and not world.core.is_probing(SVC, key())
    assert world.now <= world.core.scheduled_at(SVC, key()) < world.now + 2_000
    assert world.core.finished([result(tcp, PROBE_REFUSED, True)], world.now) == []
    assert world.core.in_flight == 0
    (http,) = world.next_probes()
    assert http.kind == "HTTP" and http.path == "/health"
    world.now += 10
    assert world.core.finished([result(http, PROBE_REFUSED, True)], world.now) == [
        ProbeVerdict(SVC, key(), False, "HTTP", "http:refused", 1)
    ]


def test_a_probe_of_an_instance_removed_or_set_to_none_meanwhile_is_ignored():
    world = World()
    world.register(persistent(1), persistent(2))
    probes = world.next_probes()
    world.write(DeregisterInstance(SVC, key(1)))
    world.write(UpdateCluster(SVC, "DEFAULT", NONE))
    assert world.core.target_count == 0 and world.core.in_flight == 2  # their slots until they end
    assert world.core.finished([result(p, PROBE_REFUSED, True) for p in probes], world.now + 10) == []
    assert world.core.in_flight == 0 and world.core.next_deadline() is None


def test_a_deleted_service_is_forgotten():
    world = World()
    world.register(persistent())
    (probe,) = world.next_probes()
    world.write(DeregisterInstance(SVC, key()))
    world.write(DeleteService(SVC))
    assert world.core.target_count == 0
    assert world.core.finished([result(probe, PROBE_REFUSED, True)], world.now) == []
    assert world.core.next_deadline() is None


# -- ownership ---------------------------------------------------------------------------------------


def test_a_lost_service_stops_at_once_and_a_regained_one_starts_within_an_interval_afresh():
    world = World(draws=Draws([0.5]))
    world.register(persistent())
    world.cycle(PROBE_TIMEOUT)
    world.cycle(PROBE_TIMEOUT)
    (running,) = world.next_probes()
    world.core.set_owner(lambda service: False, world.now)
    assert world.core.target_count == 0 and not world.core.is_probing(SVC, key())
    assert world.core.finished([result(running, PROBE_TIMEOUT)], world.now + 10) == []
    assert world.core.next_deadline() is None
    world.now = 50_000
    world.register(persistent(weight=2.0))  # seen while not owned
    assert world.core.target_count == 0
    world.core.set_owner(lambda service: True, world.now)
    assert world.core.scheduled_at(SVC, key()) == 51_000
    assert world.cycle(PROBE_TIMEOUT) == [] and world.cycle(PROBE_TIMEOUT) == []
    assert world.cycle(PROBE_TIMEOUT) == [unhealthy_verdict()]


MEMBERS = ("127.0.0.1:8848", "127.0.0.2:8848", "127.0.0.3:8848")
SERVICES = [ServiceKey("public", f"DEFAULT_GROUP@@svc-{n}") for n in range(6)]
PORTS = [1, 2, 3]
CLUSTERS = ["DEFAULT", "c1"]


def view_of(me: str, healthy: frozenset[str]) -> MemberView:
    members = MappingProxyType({a: MemberStatus(a, UP if a in healthy else DOWN) for a in MEMBERS})
    return MemberView(me, members, tuple(sorted(healthy)))


def owner_of(service: ServiceKey, healthy: frozenset[str]) -> str | None:
    view = tuple(sorted(healthy))
    return responsible_member(service.name, view) if judges_health(view, len(MEMBERS)) else None


steps = st.one_of(
    st.tuples(st.just("register"), st.sampled_from(SERVICES), st.sampled_from(PORTS), st.sampled_from(CLUSTERS),
              st.booleans()),
    st.tuples(st.just("deregister"), st.sampled_from(SERVICES), st.sampled_from(PORTS), st.sampled_from(CLUSTERS)),
    st.tuples(st.just("checker"), st.sampled_from(SERVICES), st.sampled_from(CLUSTERS),
              st.sampled_from([TCP, NONE, HTTP, replace(TCP, use_instance_port=False)])),
    st.tuples(st.just("view"), st.frozensets(st.sampled_from(MEMBERS))),
    st.tuples(st.just("advance"), st.integers(0, 3_000), st.sampled_from([PROBE_OK, PROBE_TIMEOUT, PROBE_REFUSED])),
)  # fmt: skip


@example([("register", SERVICES[0], 1, "DEFAULT", False), ("register", SERVICES[0], 2, "c1", False)], 1, False)
@settings(max_examples=300, deadline=None)
@given(st.lists(steps, max_size=40), st.integers(0, 2**32), st.booleans())
def test_one_member_probes_each_instance_and_a_takeover_leaves_no_gap(script, seed, compare_all):
    """Members fed the same changes and views: at every moment at most one member has an
    instance scheduled or in flight (exactly the responsible one, while it judges), and a
    member that takes a service over has each of its instances due within one interval."""
    config = ProbeConfig()
    draws = random.Random(seed)
    local = LocalRegistry()
    cores = {member: ProbeCore(config, draws.random) for member in MEMBERS}
    healthy = frozenset(MEMBERS)
    now = 0
    running: dict[str, list[ProbeTarget]] = {member: [] for member in MEMBERS}
    for member, core in cores.items():
        core.members_changed(view_of(member, healthy), now)

    def feed(seen: int) -> None:
        changes = local.changes[seen:]
        if compare_all:
            changes = [replace(change, touched=None) for change in changes]
        for core in cores.values():
            core.observe_changes(changes, now)

    def write(command) -> None:
        seen = len(local.changes)
        try:
            local.apply(command, now)
        except Rejected:
            return
        feed(seen)

    def probed_instances() -> list[tuple[ServiceKey, InstanceKey, bool]]:
        found = []
        for service in SERVICES:
            snapshot = local.service(service)
            if snapshot is None or snapshot.definition is None:
                continue
            for k, instance in snapshot.definition.instances.items():
                kind = snapshot.cluster_config(k.cluster).health_checker_type
                found.append((service, k, kind in PROBE_KINDS and not instance.marked))
        return found

    def holders(service: ServiceKey, k: InstanceKey) -> list[str]:
        return [
            m for m, core in cores.items() if core.scheduled_at(service, k) is not None or core.is_probing(service, k)
        ]

    for step in script:
        note(f"at {now}: {step}")
        match step:
            case ("register", service, port, cluster, marked):
                write(RegisterInstance(service, Instance(IP, port, cluster, ephemeral=False, marked=marked)))
            case ("deregister", service, port, cluster):
                write(DeregisterInstance(service, InstanceKey(IP, port, cluster, False)))
            case ("checker", service, cluster, config_):
                write(UpdateCluster(service, cluster, config_))
            case ("view", members):
                before = {service: owner_of(service, healthy) for service in SERVICES}
                healthy = members
                for member, core in cores.items():
                    core.members_changed(view_of(member, healthy), now)
                for service, k, probed in probed_instances():
                    owner = owner_of(service, healthy)
                    if probed and owner is not None and owner != before[service]:
                        assert now <= cores[owner].scheduled_at(service, k) < now + config.interval_ms
            case ("advance", elapsed, outcome):
                now += elapsed
                for member, core in cores.items():
                    finishing, running[member] = running[member], core.due(now)
                    results = [result(p, outcome, outcome == PROBE_REFUSED) for p in finishing]
                    for verdict in core.finished(results, now):
                        k = verdict.instance
                        seen = len(local.changes)
                        local.propose(
                            ApplyProbeVerdict(verdict.service, k.ip, k.port, k.cluster, verdict.healthy, verdict.kind),
                            now,
                        )
                        feed(seen)
                    running[member].extend(core.due(now))
        for service, k, probed in probed_instances():
            owner = owner_of(service, healthy)
            assert holders(service, k) == ([owner] if probed and owner is not None else [])
        for core in cores.values():
            assert core.in_flight <= config.max_in_flight
