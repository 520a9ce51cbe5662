"""RegistryActor: the single writer of the service map."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, assert_never

import pykka

from nacos_actors.core.registry import RegistryCore, Rejected
from nacos_actors.messages import Ping, Write

log = logging.getLogger(__name__)


def wall_clock_ms() -> int:
    """Milliseconds since the epoch (what Nacos serves as lastRefTime)."""
    return time.time_ns() // 1_000_000


class RegistryActor(pykka.ThreadingActor):
    """Applies each Write to the RegistryCore on this actor's thread and answers its reply.

    A refused command (Rejected) fails the reply and the actor goes on; anything else is a bug:
    it is logged and reported through `on_fatal`, which stops the node so a supervisor restarts
    it rather than leaving it half alive.
    """

    def __init__(
        self,
        core: RegistryCore,
        on_fatal: Callable[[BaseException], None],
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        super().__init__()
        self.core = core
        self._on_fatal = on_fatal
        self._clock = clock

    def on_receive(self, message: Any) -> Any:
        match message:
            case Write(command, reply):
                try:
                    applied = self.core.apply(command, self._clock())
                except Rejected as refusal:
                    reply.fail(refusal)
                    return None
                except BaseException as error:
                    reply.fail(error)
                    raise
                reply.resolve(applied.value)
                return None
            case Ping():
                return "pong"
            case _:
                assert_never(message)

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        log.error("registry actor failed; stopping the node", exc_info=exception_value)
        self._on_fatal(exception_value)
