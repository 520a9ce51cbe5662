"""RegistryActor: the single writer of the service map."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, assert_never

import pykka

from nacos_actors.core.registry import RegistryCore, Rejected
from nacos_actors.messages import Ping, RegistryMessage, WriteBatch

log = logging.getLogger(__name__)


def wall_clock_ms() -> int:
    """Milliseconds since the epoch (what Nacos serves as lastRefTime)."""
    return time.time_ns() // 1_000_000


class RegistryActor(pykka.ThreadingActor):
    """Applies each WriteBatch to the RegistryCore on this actor's thread and answers its reply.

    A refused command (Rejected) is answered as that command's outcome and the batch goes on;
    anything else is a bug: the whole reply fails, and the error is
    logged and reported through `on_fatal`, which stops the node so a supervisor restarts
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
        received: RegistryMessage = message  # what may arrive here; mypy checks the match covers it
        match received:
            case WriteBatch(commands, reply):
                now_ms = self._clock()
                outcomes: list[Any] = []
                for command in commands:
                    try:
                        outcomes.append(self.core.apply(command, now_ms).value)
                    except Rejected as refusal:
                        outcomes.append(refusal)
                    except BaseException as error:
                        reply.fail(error)
                        raise
                reply.resolve(tuple(outcomes))
                return None
            case Ping():
                return "pong"
            case _:
                assert_never(received)

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        log.error("registry actor failed; stopping the node", exc_info=exception_value)
        self._on_fatal(exception_value)
