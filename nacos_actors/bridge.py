"""The one crossing from the event loop into the actors, and back.

The loop never awaits a pykka future and never calls `.get()`: pykka's `Future.__await__`
blocks the whole loop until the actor answers. Instead the loop `tell`s a message that carries
a `LoopReply`; the actor resolves it with `call_soon_threadsafe`, and the loop awaits a plain
asyncio future. This module is the only place that does this.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import pykka

from nacos_actors.messages import Reply


class ActorUnavailable(Exception):
    """The actor did not answer in time, or is no longer running."""


class LoopReply:
    """A Reply that completes an asyncio future on its loop. Callable from any thread, once."""

    __slots__ = ("_loop", "_future")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future) -> None:
        self._loop = loop
        self._future = future

    def resolve(self, value: Any) -> None:
        self._loop.call_soon_threadsafe(self._complete, value, None)

    def fail(self, error: BaseException) -> None:
        self._loop.call_soon_threadsafe(self._complete, None, error)

    def _complete(self, value: Any, error: BaseException | None) -> None:
        # The request may have timed out and gone away already.
        if self._future.done():
            return
        if error is not None:
            self._future.set_exception(error)
        else:
            self._future.set_result(value)


async def async_request(
    actor: pykka.ActorRef, make_message: Callable[[Reply], Any], timeout: float
) -> Any:
    """Tell `actor` the message built around a fresh reply and await the answer on this loop.

    Raises whatever the actor failed the reply with, or ActorUnavailable.
    """
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    try:
        actor.tell(make_message(LoopReply(loop, future)))
    except pykka.ActorDeadError as error:
        raise ActorUnavailable("registry is not running") from error
    try:
        return await asyncio.wait_for(future, timeout)
    except asyncio.TimeoutError as error:
        raise ActorUnavailable(f"no answer within {timeout} s") from error
