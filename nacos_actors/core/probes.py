"""Active health probes of persistent instances: what to probe when, and the verdicts. Pure.

Nacos probes persistent instances (they do not beat) with their cluster's checker: TCP (the
default), HTTP or MYSQL; NONE leaves health to PUT /v1/ns/health/instance. This core decides,
for the services this member is responsible for, which instance to probe next and with what
(a ProbeTarget), and turns the probes' results into verdicts after consecutive outcomes (Nacos
1.4's HealthCheckCommon: `checkTimes` successes make an unhealthy instance healthy, `checkTimes`
soft failures make a healthy one unhealthy, a hard failure does so at once). The driver runs
the probes on the event loop and proposes each verdict through Raft.

Each probed instance has its own due time in one heap (lazy deletion, as core.health does): a
probe costs O(log n) and nothing sweeps every instance on a tick. An instance is first due at
a uniform point of the next interval (so a takeover spreads its probes and leaves no gap longer
than one interval), then one interval plus a uniform jitter after each result.

No threads, sockets or clock: time comes in as `now_ms` and randomness from the `random`
function passed in (values in [0, 1)).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any, Final

from nacos_actors.core.distro import health_judged_here
from nacos_actors.core.health import Owns, owns_everything
from nacos_actors.core.members import MemberView
from nacos_actors.core.probing import MYSQL_READ_ONLY_CHECK, PROBE_KINDS, PROBE_OK, ProbeResult, ProbeTarget
from nacos_actors.core.values import InvalidValue, checker_headers, is_ip_literal
from nacos_actors.messages import ServiceChange
from nacos_actors.model import (
    HTTP_CHECKER,
    MYSQL_CHECKER,
    ClusterConfig,
    Instance,
    InstanceKey,
    Service,
    ServiceKey,
)

DEFAULT_EXPECTED_STATUS: Final = 200
LOST_GRACE_MS: Final = 1_000
"""A probe not finished within its timeout, twice its timeout again and this many ms is lost:
its slot is freed and its instance probed again (the prober answers every probe it started, so
this only guards against a result that never comes)."""


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    """`enabled` is the node's `health_check_enabled`. Each instance is probed every
    `interval_ms` plus a uniform jitter in [0, `jitter_ms`); a probe gives up after
    `timeout_ms`. `check_times` consecutive results change a verdict (Nacos's `checkTimes`).
    At most `max_in_flight` probes run at once (more wait for a slot). A verdict proposed but
    not yet seen in a snapshot is proposed again after `verdict_retry_ms`. With `networks`,
    only instances whose IP lies in one of them are probed (none given: any IP)."""

    enabled: bool = True
    interval_ms: int = 2_000
    jitter_ms: int = 1_000
    timeout_ms: int = 500
    check_times: int = 3
    max_in_flight: int = 1_024
    verdict_retry_ms: int = 5_000
    networks: tuple[IPv4Network | IPv6Network, ...] = ()


@dataclass(frozen=True, slots=True)
class ProbeVerdict:
    """An instance's health changes: propose `healthy` for it through Raft. `kind` is the
    checker that judged, `detail` the last result's detail, `count` the consecutive results
    that led here (1 for an immediate failure)."""

    service: ServiceKey
    instance: InstanceKey
    healthy: bool
    kind: str
    detail: str
    count: int


def http_path(raw: Any) -> str:
    """The request path of an HTTP checker's `path`: "/" when empty, else the path with exactly
    one leading "/". Nacos resolves the path against the instance's URL, so "//host/x" or
    "http://host/x" would probe another host; here either stays a path on the instance."""
    text = raw if isinstance(raw, str) else ""
    return "/" + text.lstrip("/")


def http_headers(raw: Any) -> tuple[tuple[str, str], ...]:
    """An HTTP checker's `headers` ("k1:v1|k2:v2") as the edge read them when they were stored
    (core.values.checker_headers); none when the stored text no longer reads."""
    if not isinstance(raw, str) or not raw:
        return ()
    try:
        return checker_headers(raw, "healthChecker.headers")
    except InvalidValue:
        return ()


def expected_status(raw: Any) -> int:
    """An HTTP checker's `expectedResponseCode`: a status in 100..599, else 200."""
    if isinstance(raw, int) and not isinstance(raw, bool) and 100 <= raw <= 599:
        return raw
    return DEFAULT_EXPECTED_STATUS


def probe_target(instance: Instance, cluster: ClusterConfig, timeout_ms: int) -> ProbeTarget | None:
    """What probing `instance` under its cluster's checker means (probe_id 0), or None when it
    is not probed: ephemeral, marked, a host name rather than an IP literal, or a checker that
    does not probe (NONE). TCP and HTTP probe the instance's port, or the cluster's check port
    when the cluster does not use instance ports; MYSQL always the instance's port (Nacos)."""
    if instance.ephemeral or instance.marked:
        return None
    kind = cluster.health_checker_type
    if kind not in PROBE_KINDS or not is_ip_literal(instance.ip):
        return None
    checker = cluster.health_checker
    if kind == MYSQL_CHECKER:
        return ProbeTarget(
            0,
            kind,
            instance.ip,
            instance.port,
            timeout_ms,
            user=_text(checker, "user"),
            password=_text(checker, "pwd"),
            command=_text(checker, "cmd") or MYSQL_READ_ONLY_CHECK,
        )
    port = instance.port if cluster.use_instance_port else cluster.check_port
    if kind == HTTP_CHECKER:
        return ProbeTarget(
            0,
            kind,
            instance.ip,
            port,
            timeout_ms,
            path=http_path(checker.get("path")),
            headers=http_headers(checker.get("headers")),
            expected_status=expected_status(checker.get("expectedResponseCode")),
        )
    return ProbeTarget(0, kind, instance.ip, port, timeout_ms)


def in_networks(ip: str, networks: Sequence[IPv4Network | IPv6Network]) -> bool:
    """Whether the IP literal `ip` lies in one of `networks` (always, when there are none)."""
    if not networks:
        return True
    address = ip_address(ip)
    return any(address in network for network in networks)


def _text(checker: Mapping[str, Any], field: str) -> str:
    value = checker.get(field)
    return value if isinstance(value, str) else ""


@dataclass(slots=True)
class _Pending:
    """A verdict proposed and not yet seen in a snapshot: proposed again at `retry_ms`."""

    healthy: bool
    count: int
    retry_ms: int


@dataclass(slots=True, eq=False)
class _Probed:
    """One instance probed here: its target (probe_id 0), the health its latest snapshot shows,
    its counters, and either its due time (with the heap entry that counts) or its probe in
    flight."""

    service: ServiceKey
    key: InstanceKey
    target: ProbeTarget
    healthy: bool
    ok_count: int = 0
    fail_count: int = 0
    due_ms: int | None = None
    schedule: int = -1
    probe_id: int | None = None
    pending: _Pending | None = None


@dataclass(slots=True)
class _Running:
    """A probe started by `due`: its instance (None once abandoned) and when it counts as lost."""

    probed: _Probed | None
    expires_ms: int


class ProbeCore:
    """Probe schedules and consecutive-result counters of the persistent instances this member
    probes. Runs on the probe actor's thread only.

    Guarantees: only instances of services `owns` says yes to are scheduled or in flight; an
    instance is never due while its probe is in flight; at most `max_in_flight` probes started
    by `due` are unanswered (abandoned ones included, until their result or expiry); a result
    counts only for the probe the instance is waiting on (a result of a probe abandoned by a
    loss of ownership, a removal or a change of target is ignored).

    A verdict proposed and not yet seen in a snapshot is proposed again by `finished` once
    `verdict_retry_ms` passed and a result still says so (the instance is probed all along, so
    a retry needs no deadline of its own).
    """

    def __init__(self, config: ProbeConfig, random: Callable[[], float]) -> None:
        self.config = config
        self._random = random
        self._owns: Owns = owns_everything
        self._snapshots: dict[ServiceKey, Service] = {}
        self._probed: dict[ServiceKey, dict[InstanceKey, _Probed]] = {}
        self._target_count = 0
        self._due: list[tuple[int, int, _Probed]] = []
        self._schedules = 0
        self._running: dict[int, _Running] = {}
        self._expiry: list[tuple[int, int]] = []
        self._probe_ids = 0
        self._lost_after_ms = 3 * config.timeout_ms + LOST_GRACE_MS

    # -- read-only figures ------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Probes started and not yet answered (nor lost)."""
        return len(self._running)

    @property
    def target_count(self) -> int:
        """Instances probed here."""
        return self._target_count

    def scheduled_at(self, service: ServiceKey, key: InstanceKey) -> int | None:
        """When the instance is next due here; None when it is not probed here or in flight."""
        probed = self._probed.get(service, {}).get(key)
        return probed.due_ms if probed is not None else None

    def is_probing(self, service: ServiceKey, key: InstanceKey) -> bool:
        """Whether a probe of the instance started here is waited on."""
        probed = self._probed.get(service, {}).get(key)
        return probed is not None and probed.probe_id is not None

    # -- inputs -----------------------------------------------------------------------------

    def set_owner(self, owns: Owns, now_ms: int) -> None:
        """Responsibility moved: probe the services `owns` says yes to, starting newly owned
        ones within one interval; forget schedules, counters and in-flight probes of the rest
        (their results, when they come, are ignored)."""
        before, self._owns = self._owns, owns
        if not self.config.enabled:
            return
        for key, snapshot in self._snapshots.items():
            had, has = before(key), owns(key)
            if has and not had:
                self._derive_all(key, snapshot, now_ms)
            elif had and not has:
                self._drop_service(key)

    def members_changed(self, view: MemberView, now_ms: int) -> None:
        """The cluster's membership changed: probe only the services this member judges
        (core.distro.health_judged_here, as the beat checker does)."""
        self.set_owner(health_judged_here(view.healthy, len(view.members), view.self_address), now_ms)

    def observe_changes(self, changes: Iterable[ServiceChange], now_ms: int) -> None:
        """Take the latest snapshots (a persistent instance added, changed or removed, a
        cluster's checker changed, a service deleted). Costs O(touched) per change, or
        O(persistent instances) when its clusters changed or `touched` is unknown."""
        if not self.config.enabled:
            return
        for change in changes:
            key, snapshot = change.key, change.snapshot
            if snapshot is None or snapshot.definition is None or not snapshot.definition.instances:
                self._snapshots.pop(key, None)
                self._drop_service(key)
                continue
            previous = self._snapshots.get(key)
            self._snapshots[key] = snapshot
            if not self._owns(key):
                continue
            if (
                previous is None
                or change.touched is None
                or (previous.clusters is not snapshot.clusters and previous.clusters != snapshot.clusters)
            ):
                self._derive_all(key, snapshot, now_ms)
                continue
            for instance_key in change.touched:
                if not instance_key.ephemeral:
                    self._derive(key, instance_key, snapshot.instances.get(instance_key), snapshot, now_ms)

    def due(self, now_ms: int) -> list[ProbeTarget]:
        """The probes to start now: instances whose time came, at most up to `max_in_flight`
        running, never two at once for one instance. Frees the slots of lost probes first."""
        self._expire_lost(now_ms)
        started: list[ProbeTarget] = []
        limit = self.config.max_in_flight
        heap = self._due
        while heap and heap[0][0] <= now_ms and len(self._running) < limit:
            _, schedule, probed = heapq.heappop(heap)
            if probed.schedule != schedule:
                continue
            probed.due_ms, probed.schedule = None, -1
            self._probe_ids += 1
            probe_id = self._probe_ids
            probed.probe_id = probe_id
            expires_ms = now_ms + self._lost_after_ms
            self._running[probe_id] = _Running(probed, expires_ms)
            heapq.heappush(self._expiry, (expires_ms, probe_id))
            started.append(replace(probed.target, probe_id=probe_id))
        return started

    def finished(self, results: Sequence[ProbeResult], now_ms: int) -> list[ProbeVerdict]:
        """Count the results of probes started by `due` (unknown or abandoned ids are ignored)
        and answer the verdicts to propose. A freed slot may let a waiting probe start: then
        `next_deadline` answers a time already come."""
        verdicts: list[ProbeVerdict] = []
        for result in results:
            running = self._running.pop(result.probe_id, None)
            if running is None:
                continue
            probed = running.probed
            if probed is None or probed.probe_id != result.probe_id:
                continue
            self._schedule_next_round(probed, now_ms)
            verdict = self._count(probed, result, now_ms)
            if verdict is not None:
                verdicts.append(verdict)
        return verdicts

    def next_deadline(self) -> int | None:
        """When `due` next has something to do (a probe's time while a slot is free, a lost
        probe's expiry); None when nothing is scheduled."""
        due, expiry = self._due, self._expiry
        while due and due[0][2].schedule != due[0][1]:
            heapq.heappop(due)
        while expiry and self._expiry_stale(expiry[0]):
            heapq.heappop(expiry)
        candidates = []
        if due and len(self._running) < self.config.max_in_flight:
            candidates.append(due[0][0])
        if expiry:
            candidates.append(expiry[0][0])
        return min(candidates) if candidates else None

    # -- schedules --------------------------------------------------------------------------

    def _uniform(self, span_ms: int) -> int:
        """A uniform whole number of ms in [0, span_ms) (0 when the span is empty)."""
        if span_ms <= 0:
            return 0
        return min(span_ms - 1, int(self._random() * span_ms))

    def _schedule(self, probed: _Probed, due_ms: int) -> None:
        self._schedules += 1
        probed.due_ms, probed.schedule = due_ms, self._schedules
        heapq.heappush(self._due, (due_ms, self._schedules, probed))

    def _schedule_next_round(self, probed: _Probed, now_ms: int) -> None:
        """Its probe ended (answered or lost): due again one interval and a jitter on."""
        probed.probe_id = None
        self._schedule(probed, now_ms + self.config.interval_ms + self._uniform(self.config.jitter_ms))

    def _expiry_stale(self, entry: tuple[int, int]) -> bool:
        running = self._running.get(entry[1])
        return running is None or running.expires_ms != entry[0]

    def _expire_lost(self, now_ms: int) -> None:
        """Free the slots of probes unanswered past their expiry and probe their instances again
        one interval on; nothing is counted."""
        expiry = self._expiry
        while expiry and expiry[0][0] <= now_ms:
            entry = heapq.heappop(expiry)
            if self._expiry_stale(entry):
                continue
            probed = self._running.pop(entry[1]).probed
            if probed is not None and probed.probe_id == entry[1]:
                self._schedule_next_round(probed, now_ms)

    # -- targets ----------------------------------------------------------------------------

    def _derive_all(self, service: ServiceKey, snapshot: Service, now_ms: int) -> None:
        """Bring every persistent instance of `service` in line with `snapshot`."""
        definition = snapshot.definition
        instances = definition.instances if definition is not None else None
        current = self._probed.get(service)
        if current is not None:
            for key in [k for k in current if instances is None or k not in instances]:
                self._forget(current[key])
        if instances is not None:
            for key, instance in instances.items():
                self._derive(service, key, instance, snapshot, now_ms)

    def _derive(
        self, service: ServiceKey, key: InstanceKey, instance: Instance | None, snapshot: Service, now_ms: int
    ) -> None:
        """Start, keep, restart or stop probing one instance as its latest snapshot says. The
        counters and schedule survive a change that leaves the target as it was; a new target
        (address, port or checker) starts afresh."""
        target = None
        if instance is not None:
            target = probe_target(instance, snapshot.cluster_config(instance.cluster), self.config.timeout_ms)
            if target is not None and not in_networks(target.ip, self.config.networks):
                target = None
        probed = self._probed.get(service, {}).get(key)
        if target is None or instance is None:
            if probed is not None:
                self._forget(probed)
            return
        if probed is not None and probed.target == target:
            probed.healthy = instance.healthy
            if probed.pending is not None and probed.pending.healthy == instance.healthy:
                probed.pending = None
            return
        if probed is not None:
            self._forget(probed)
        probed = _Probed(service, key, target, instance.healthy)
        self._probed.setdefault(service, {})[key] = probed
        self._target_count += 1
        self._schedule(probed, now_ms + self._uniform(self.config.interval_ms))

    def _forget(self, probed: _Probed) -> None:
        """Stop probing an instance: its schedule is void and its probe in flight abandoned (the
        slot stays taken until the result or the expiry)."""
        probes = self._probed[probed.service]
        del probes[probed.key]
        if not probes:
            del self._probed[probed.service]
        self._target_count -= 1
        probed.due_ms, probed.schedule = None, -1
        if probed.probe_id is not None:
            running = self._running.get(probed.probe_id)
            if running is not None:
                running.probed = None
            probed.probe_id = None

    def _drop_service(self, service: ServiceKey) -> None:
        probes = self._probed.get(service)
        if probes is not None:
            for probed in list(probes.values()):
                self._forget(probed)

    # -- verdicts ---------------------------------------------------------------------------

    def _count(self, probed: _Probed, result: ProbeResult, now_ms: int) -> ProbeVerdict | None:
        """Nacos's HealthCheckCommon: checkOK, checkFail and checkFailNow, judged against the
        health the instance has or was last proposed to have."""
        pending = probed.pending
        healthy = pending.healthy if pending is not None else probed.healthy
        check_times = self.config.check_times
        if result.outcome == PROBE_OK:
            probed.fail_count = 0
            if healthy:
                return self._retry(probed, result, now_ms)
            probed.ok_count += 1
            if probed.ok_count >= check_times:
                return self._propose(probed, True, result, probed.ok_count, now_ms)
            return None
        probed.ok_count = 0
        if not healthy:
            return self._retry(probed, result, now_ms)
        if result.immediate:
            return self._propose(probed, False, result, 1, now_ms)
        probed.fail_count += 1
        if probed.fail_count >= check_times:
            return self._propose(probed, False, result, probed.fail_count, now_ms)
        return None

    def _propose(self, probed: _Probed, healthy: bool, result: ProbeResult, count: int, now_ms: int) -> ProbeVerdict:
        probed.ok_count = probed.fail_count = 0
        probed.pending = _Pending(healthy, count, now_ms + self.config.verdict_retry_ms)
        return ProbeVerdict(probed.service, probed.key, healthy, probed.target.kind, result.detail, count)

    def _retry(self, probed: _Probed, result: ProbeResult, now_ms: int) -> ProbeVerdict | None:
        """A result that agrees with a pending verdict: propose it again once its retry time
        came, unless the latest snapshot shows it already (a verdict that changed nothing,
        having undone one still pending, brings no snapshot)."""
        pending = probed.pending
        if pending is None or now_ms < pending.retry_ms:
            return None
        if probed.healthy == pending.healthy:
            probed.pending = None
            return None
        pending.retry_ms = now_ms + self.config.verdict_retry_ms
        return ProbeVerdict(
            probed.service, probed.key, pending.healthy, probed.target.kind, result.detail, pending.count
        )
