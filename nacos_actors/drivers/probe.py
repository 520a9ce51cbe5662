"""ProbeDriver: runs the ProbeCore, hands its probes to the loop and its verdicts to Raft."""

from __future__ import annotations

import logging
from typing import ClassVar, Protocol, assert_never

from nacos_actors.core.probes import ProbeCore, ProbeVerdict
from nacos_actors.drivers.outbox import Outbox
from nacos_actors.logs import event
from nacos_actors.messages import (
    NO_REPLY,
    PROBE,
    RAFT,
    ActorName,
    ApplyProbeVerdict,
    MembersChanged,
    ProbeMessage,
    ProbesFinished,
    Propose,
    ServicesChanged,
    Tick,
)

log = logging.getLogger(__name__)


class ProbeRecorder(Protocol):
    """Where the driver records its figures (nacos_actors.metrics.ProbeMetrics)."""

    def probe_started(self, kind: str) -> None: ...

    def probe_finished(self, kind: str, outcome: str, seconds: float) -> None: ...

    def verdict(self, kind: str, healthy: bool) -> None: ...

    def figures(self, in_flight: int, targets: int) -> None: ...


class ProbeDriver:
    """Feeds the ProbeCore the registry's changes to persistent halves (it watches the registry
    for what Raft applies), the membership (a
    cluster member probes only the services it is responsible for), the probes' results and
    Ticks at the core's next deadline. Starts the core's probes on the loop (Outbox.start_probes)
    and proposes each verdict through Raft (ApplyProbeVerdict, answered to nobody: the core
    proposes it again if no snapshot shows it in time), with one log line per verdict. Runs on
    the probe actor's thread (or the simulation's)."""

    NAME: ClassVar[ActorName] = PROBE

    def __init__(self, core: ProbeCore, outbox: Outbox, recorder: ProbeRecorder) -> None:
        self.core = core
        self._outbox = outbox
        self._recorder = recorder

    def start(self, now_ms: int) -> None:
        self._outbox.wake_at(self.NAME, self.core.next_deadline())

    def stop(self) -> None:
        pass

    def handle(self, message: object, now_ms: int) -> object:
        received: ProbeMessage = message  # type: ignore[assignment]  # what may arrive; the match covers it
        core = self.core
        match received:
            case ServicesChanged(changes):
                core.observe_changes(changes, now_ms)
            case MembersChanged(view):
                core.members_changed(view, now_ms)
            case ProbesFinished(results):
                for result in results:
                    self._recorder.probe_finished(result.kind, result.outcome, result.elapsed_ms / 1000)
                for verdict in core.finished(results, now_ms):
                    self._propose(verdict, now_ms)
            case Tick():
                pass
            case _:
                assert_never(received)
        probes = core.due(now_ms)
        if probes:
            for probe in probes:
                self._recorder.probe_started(probe.kind)
            self._outbox.start_probes(probes)
        self._recorder.figures(core.in_flight, core.target_count)
        self._outbox.wake_at(self.NAME, core.next_deadline())
        return None

    def _propose(self, verdict: ProbeVerdict, now_ms: int) -> None:
        key = verdict.instance
        command = ApplyProbeVerdict(verdict.service, key.ip, key.port, key.cluster, verdict.healthy, verdict.kind)
        self._outbox.tell(RAFT, Propose(command, now_ms, NO_REPLY))
        self._recorder.verdict(verdict.kind, verdict.healthy)
        state = "healthy" if verdict.healthy else "unhealthy"
        log.info(
            "%s probe of %s:%d (cluster %s) in %s (namespace %s): proposing %s after %d result(s), last %s",
            verdict.kind,
            key.ip,
            key.port,
            key.cluster,
            verdict.service.name,
            verdict.service.namespace,
            state,
            verdict.count,
            verdict.detail,
            extra=event(
                "probe_verdict",
                namespace=verdict.service.namespace,
                service=verdict.service.name,
                ip=key.ip,
                port=key.port,
                cluster=key.cluster,
                checker=verdict.kind,
                healthy=verdict.healthy,
                results=verdict.count,
                detail=verdict.detail,
            ),
        )
