"""The one crossing from the event loop into the actors, and back.

The loop never awaits a pykka future and never calls `.get()`: pykka's `Future.__await__`
blocks the whole loop until the actor answers. Instead the loop `tell`s a message that carries
a `BatchReply`; the actor resolves it with `call_soon_threadsafe`, and each request awaits a
plain asyncio future. Writes issued during one turn of the loop travel as one message and come
back as one callback, so under load a write costs a fraction of a thread handoff. This module
is the only place that crosses.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Sequence

import pykka

from nacos_actors.messages import Reply

MAX_BATCH = 256


class ActorUnavailable(Exception):
    """The actor did not answer in time, or is no longer running."""


class BatchReply:
    """A Reply that completes one asyncio future per batched request. Any thread, once.

    `resolve` takes one outcome per request: a value, or an exception to raise in that request.
    `fail` raises the same error in every request of the batch. One timer per batch (not one
    per request: `wait_for` cost microseconds a request) fails whatever is still unanswered
    with ActorUnavailable after `timeout` seconds.
    """

    __slots__ = ("_futures", "_loop", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, futures: Sequence[asyncio.Future], timeout: float) -> None:
        self._loop = loop
        self._futures = futures
        self._timer = loop.call_later(timeout, self._expire, timeout)

    def resolve(self, outcomes: Sequence[Any]) -> None:
        self._call(outcomes)

    def fail(self, error: BaseException) -> None:
        self._call([error] * len(self._futures))

    def _call(self, outcomes: Sequence[Any]) -> None:
        try:
            self._loop.call_soon_threadsafe(self._complete, outcomes)
        except RuntimeError:  # the loop closed (the node stopped): nobody waits any more
            pass

    def _complete(self, outcomes: Sequence[Any]) -> None:
        self._timer.cancel()
        for future, outcome in zip(self._futures, outcomes, strict=True):
            # A request may have timed out and gone away already.
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _expire(self, timeout: float) -> None:
        for future in self._futures:
            if not future.done():
                future.set_exception(ActorUnavailable(f"no answer within {timeout} s"))


class WriteBatcher:
    """Gathers the writes issued during one loop turn and tells them to an actor as one message.

    Loop thread only. `make_message(commands, reply)` builds the actor's batch message.
    """

    def __init__(
        self,
        actor: pykka.ActorRef,
        make_message: Callable[[tuple[Any, ...], Reply], Any],
        timeout: float,
    ) -> None:
        self._actor = actor
        self._make_message = make_message
        self._timeout = timeout
        self._pending: list[tuple[Any, asyncio.Future]] = []

    async def async_submit(self, command: Any) -> Any:
        """Apply `command` on the actor; return its outcome, raise its refusal or ActorUnavailable."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._pending:
            loop.call_soon(self._async_flush, loop)
        self._pending.append((command, future))
        if len(self._pending) >= MAX_BATCH:
            self._async_flush(loop)
        return await future

    def _async_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        futures = [future for _, future in batch]
        try:
            self._actor.tell(self._make_message(tuple(c for c, _ in batch), BatchReply(loop, futures, self._timeout)))
        except pykka.ActorDeadError:
            for future in futures:
                if not future.done():
                    future.set_exception(ActorUnavailable("the actor is not running"))


async def async_ask(actor: pykka.ActorRef, make_message: Callable[[Reply], Any], timeout: float) -> Any:
    """Tell `actor` the message `make_message(reply)` builds and await the one value it resolves
    `reply` with (as a one-element sequence). Loop thread; raises ActorUnavailable."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    try:
        actor.tell(make_message(BatchReply(loop, [future], timeout)))
    except pykka.ActorDeadError as error:
        raise ActorUnavailable("the actor is not running") from error
    return await future
