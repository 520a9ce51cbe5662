"""HealthCheckActor: turns missed beat deadlines into ordinary registry writes."""

from __future__ import annotations

import logging
from time import perf_counter
from typing import Any, Callable, assert_never

import pykka

from nacos_actors.actors.base import NodeActor
from nacos_actors.beats import BeatLog
from nacos_actors.clock import wall_clock_ms
from nacos_actors.core.distro import health_judged_here
from nacos_actors.core.health import HealthCore
from nacos_actors.messages import NO_REPLY, HealthMessage, MembersChanged, Ping, ServicesChanged, Tick, WriteBatch
from nacos_actors.metrics import NodeMetrics

log = logging.getLogger(__name__)


class HealthCheckActor(NodeActor):
    """Keeps the HealthCore fed with snapshots (it watches the registry) and wakes at its next
    deadline (an Alarm), then tells the registry the verdicts (MarkUnhealthy, ExpireInstance,
    RemoveEmptyService) as one WriteBatch nobody waits for. The registry applies them like any
    write, so they reach snapshots, subscribers and peers by the same path as a register.

    In a cluster the member actor tells it MembersChanged, and it judges only the services this
    node is responsible for, and only while it sees at least half the members (judges_health). Runs on its own pykka thread; reads last beats from the BeatLog, starts the clock of
    instances that appear without one, and forgets those that left.
    """

    NAME = "health"

    def __init__(
        self,
        core: HealthCore,
        registry: pykka.ActorRef[Any],
        beats: BeatLog,
        metrics: NodeMetrics,
        on_fatal: Callable[[BaseException], None],
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        super().__init__(metrics, on_fatal, clock)
        self.core = core
        self._registry = registry
        self._beats = beats
        self._changed_seconds = metrics.message_seconds(self.NAME, ServicesChanged)
        self._tick_seconds = metrics.message_seconds(self.NAME, Tick)

    def on_receive(self, message: Any) -> Any:
        received: HealthMessage = message
        match received:
            case ServicesChanged(changes, _):
                started = perf_counter()
                self.core.observe_changes(changes, self._clock(), self._beats)
                self._alarm.set(self.core.next_deadline())
                self._changed_seconds.observe(perf_counter() - started)
                return None
            case MembersChanged(view):
                owns = health_judged_here(view.healthy, len(view.members), view.self_address)
                self.core.set_owner(owns, self._clock())
                self._alarm.set(self.core.next_deadline())
                return None
            case Tick():
                started = perf_counter()
                commands = self.core.due(self._clock(), self._beats.last)
                if commands:
                    try:
                        self._registry.tell(WriteBatch(tuple(commands), NO_REPLY))
                    except pykka.ActorDeadError:
                        return None  # the node is stopping
                self._alarm.set(self.core.next_deadline())
                self._tick_seconds.observe(perf_counter() - started)
                return None
            case Ping():
                return "pong"
            case _:
                assert_never(received)
