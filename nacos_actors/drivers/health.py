"""HealthDriver: turns missed beat deadlines into ordinary registry writes."""

from __future__ import annotations

from typing import ClassVar, assert_never

from nacos_actors.beats import BeatLog
from nacos_actors.core.health import HealthCore
from nacos_actors.drivers.outbox import Outbox
from nacos_actors.messages import (
    HEALTH,
    NO_REPLY,
    REGISTRY,
    ActorName,
    HealthMessage,
    MembersChanged,
    ServicesChanged,
    Tick,
    WriteBatch,
)


class HealthDriver:
    """Feeds the HealthCore the registry's changes (it watches the registry), the membership
    (in a cluster it judges only the services this node is responsible for) and Ticks at the
    core's next deadline; tells the registry the verdicts (MarkUnhealthy, ExpireInstance,
    RemoveEmptyService) as one WriteBatch nobody waits for, so they reach snapshots,
    subscribers and peers by the same path as a register.

    Reads last beats from the BeatLog the event loop writes, and carries out the core's beat
    clocks there (start the clock of instances that appear without a beat, forget those that
    left). Runs on the health actor's thread (or the simulation's).
    """

    NAME: ClassVar[ActorName] = HEALTH

    def __init__(self, core: HealthCore, beats: BeatLog, outbox: Outbox) -> None:
        self.core = core
        self._beats = beats
        self._outbox = outbox

    def start(self, now_ms: int) -> None:
        self._outbox.wake_at(self.NAME, self.core.next_deadline())

    def stop(self) -> None:
        pass

    def handle(self, message: object, now_ms: int) -> object:
        received: HealthMessage = message  # type: ignore[assignment]  # what may arrive; the match covers it
        match received:
            case ServicesChanged(changes):
                beats = self._beats
                clocks = self.core.observe_changes(changes, now_ms, beats.last)
                for service, key in clocks.start:
                    beats.record_if_absent(service, key, now_ms)
                for service, key, left_ms in clocks.forget:
                    beats.forget_if_before(service, key, left_ms)
            case MembersChanged(view):
                self.core.members_changed(view, now_ms)
            case Tick():
                commands = self.core.due(now_ms, self._beats.last)
                if commands:
                    self._outbox.tell(REGISTRY, WriteBatch(tuple(commands), NO_REPLY))
            case _:
                assert_never(received)
        self._outbox.wake_at(self.NAME, self.core.next_deadline())
        return None
