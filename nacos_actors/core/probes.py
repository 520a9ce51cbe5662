"""Active health probes of persistent instances: what to probe when, and the verdicts. Pure.

Nacos probes persistent instances (they do not beat) with their cluster's checker: TCP (the
default), HTTP or MYSQL; NONE leaves health to PUT /v1/ns/health/instance. This core decides,
for the services this member is responsible for, which instance to probe next and with what
(a ProbeTarget), and turns the probes' results into verdicts after consecutive outcomes (Nacos
1.4's HealthCheckCommon: `checkTimes` successes make an unhealthy instance healthy, `checkTimes`
soft failures make a healthy one unhealthy, a hard failure does so at once). The driver runs
the probes on the event loop and proposes each verdict through Raft.

No threads, sockets or clock: time comes in as `now_ms` and randomness from the `random`
function passed in (values in [0, 1)).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from nacos_actors.core.health import Owns
from nacos_actors.core.members import MemberView
from nacos_actors.core.probing import ProbeResult, ProbeTarget
from nacos_actors.messages import ServiceChange
from nacos_actors.model import InstanceKey, ServiceKey


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    """`enabled` is the node's `health_check_enabled`. Each instance is probed every
    `interval_ms` plus a uniform jitter in [0, `jitter_ms`); a probe gives up after
    `timeout_ms`. `check_times` consecutive results change a verdict (Nacos's `checkTimes`).
    At most `max_in_flight` probes run at once (more wait for a slot). A verdict proposed but
    not yet seen in a snapshot is proposed again after `verdict_retry_ms`."""

    enabled: bool = True
    interval_ms: int = 2_000
    jitter_ms: int = 1_000
    timeout_ms: int = 500
    check_times: int = 3
    max_in_flight: int = 1_024
    verdict_retry_ms: int = 5_000


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


class ProbeCore:
    """Probe schedules and consecutive-result counters of the persistent instances this member
    probes. Runs on the probe actor's thread only."""

    def __init__(self, config: ProbeConfig, random: Callable[[], float]) -> None:
        self.config = config
        self._random = random
        raise NotImplementedError

    def set_owner(self, owns: Owns, now_ms: int) -> None:
        """Responsibility moved: probe the services `owns` says yes to, starting newly owned
        ones within one interval; forget schedules, counters and in-flight probes of the rest
        (their results, when they come, are ignored)."""
        raise NotImplementedError

    def members_changed(self, view: MemberView, now_ms: int) -> None:
        """The cluster's membership changed: probe only the services this member judges
        (core.distro.health_judged_here, as the beat checker does)."""
        raise NotImplementedError

    def observe_changes(self, changes: Iterable[ServiceChange], now_ms: int) -> None:
        """Take the latest snapshots (a persistent instance added, changed or removed, a
        cluster's checker changed, a service deleted)."""
        raise NotImplementedError

    def due(self, now_ms: int) -> list[ProbeTarget]:
        """The probes to start now: instances whose time came, at most up to `max_in_flight`
        running, never two at once for one instance."""
        raise NotImplementedError

    def finished(self, results: Sequence[ProbeResult], now_ms: int) -> list[ProbeVerdict]:
        """Count the results of probes started by `due` (unknown or abandoned ids are ignored)
        and answer the verdicts to propose."""
        raise NotImplementedError

    def next_deadline(self) -> int | None:
        """When `due` next has something to do (a probe's time, a lost probe's expiry, a
        verdict retry); None when nothing is scheduled."""
        raise NotImplementedError
