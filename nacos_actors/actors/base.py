"""What every actor of a node shares: its mailbox gauge, its alarm, and failing loudly."""

from __future__ import annotations

import logging
from typing import Any, Callable, ClassVar

import pykka

from nacos_actors.actors.alarm import Alarm
from nacos_actors.clock import wall_clock_ms
from nacos_actors.metrics import NodeMetrics

log = logging.getLogger(__name__)


class NodeActor(pykka.ThreadingActor):
    """A pykka actor of a node, named `NAME` (the `actor` label of its metrics).

    While it runs its mailbox depth is exported. With `timed`, an Alarm (its own timer thread)
    tells it Tick() at the deadline it last set with `self._alarm.set`. A message that raises is
    a bug: it is logged at ERROR, counted (nacos_exception_total{name="actorFailed"}) and
    reported through `on_fatal`, which stops the node so a supervisor restarts it, rather than
    leaving it half alive. Subclasses that hold more (a socket, a thread) extend `_release`.
    """

    NAME: ClassVar[str]

    def __init__(
        self,
        metrics: NodeMetrics,
        on_fatal: Callable[[BaseException], None],
        clock: Callable[[], int] = wall_clock_ms,
        timed: bool = True,
    ) -> None:
        super().__init__()
        self._metrics = metrics
        self._on_fatal = on_fatal
        self._clock = clock
        self._timer = Alarm(self.actor_ref, self.NAME, clock) if timed else None

    @property
    def _alarm(self) -> Alarm:
        assert self._timer is not None, f"{self.NAME} actor has no alarm"
        return self._timer

    def on_start(self) -> None:
        if self._timer is not None:
            self._timer.start()
        self._metrics.mailboxes.watch(self.NAME, self.actor_ref)

    def on_stop(self) -> None:
        self._release()

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        self._release()
        self._metrics.exceptions_actor.inc()
        log.error("%s actor failed; stopping the node", self.NAME, exc_info=exception_value)
        self._on_fatal(exception_value)

    def _tell_me(self, message: Any) -> None:
        """Tell this actor `message` (from any thread; dropped once it has stopped)."""
        try:
            self.actor_ref.tell(message)
        except pykka.ActorDeadError:
            pass

    def _release(self) -> None:
        """Stop the alarm and the mailbox gauge (on stop and on failure)."""
        if self._timer is not None:
            self._timer.stop()
        self._metrics.mailboxes.forget(self.NAME)
