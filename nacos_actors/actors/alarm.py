"""A per-actor timer: tells the actor Tick() when the deadline it was last set to comes."""

from __future__ import annotations

import threading
from typing import Any, Callable

import pykka

from nacos_actors.clock import wall_clock_ms
from nacos_actors.messages import Tick


class Alarm:
    """One thread that sleeps until the deadline (wall-clock ms) and then tells `actor` a Tick.

    `set` may be called from any thread (the actor calls it after each message) and replaces
    the deadline; None means nothing is due. After telling a Tick the alarm is unset until the
    actor sets it again, so a slow actor never gets a pile of Ticks. `stop` ends the thread.
    """

    def __init__(self, actor: pykka.ActorRef[Any], name: str, clock: Callable[[], int] = wall_clock_ms) -> None:
        self._actor = actor
        self._clock = clock
        self._condition = threading.Condition()
        self._deadline: int | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"{name}-alarm", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def set(self, deadline_ms: int | None) -> None:
        with self._condition:
            if deadline_ms != self._deadline:
                self._deadline = deadline_ms
                self._condition.notify()

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._condition.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        with self._condition:
            while not self._stopped:
                if self._deadline is None:
                    self._condition.wait()
                    continue
                delay_ms = self._deadline - self._clock()
                if delay_ms > 0:
                    self._condition.wait(delay_ms / 1000)
                    continue
                self._deadline = None
                try:
                    self._actor.tell(Tick())
                except pykka.ActorDeadError:
                    return
