"""The loop-to-actor crossing: answers arrive on the loop, nothing blocks it, timeouts are clean."""

from __future__ import annotations

import asyncio
import time

import pykka
import pytest
from blockbuster import BlockingError, blockbuster_ctx

from nacos_actors.bridge import ActorUnavailable, async_request


class Echo(pykka.ThreadingActor):
    """Answers ('echo', x) with x after `delay` seconds; ignores ('drop', x)."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay

    def on_receive(self, message):
        kind, value, reply = message
        if kind == "drop":
            return
        time.sleep(self.delay)
        if isinstance(value, Exception):
            reply.fail(value)
        else:
            reply.resolve(value)


async def test_answer_arrives_while_the_loop_keeps_running():
    ref = Echo.start(delay=0.2)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    try:
        with blockbuster_ctx():
            assert await async_request(ref, lambda reply: ("echo", 7, reply), timeout=5) == 7
    finally:
        task.cancel()
        ref.stop()
    assert ticks >= 5, "the loop was blocked while the actor worked"


async def test_failure_is_raised_on_the_loop():
    ref = Echo.start()
    try:
        with pytest.raises(ValueError, match="nope"):
            await async_request(ref, lambda reply: ("echo", ValueError("nope"), reply), timeout=5)
    finally:
        ref.stop()


async def test_no_answer_in_time_is_actor_unavailable_and_a_late_answer_is_ignored():
    ref = Echo.start()
    try:
        with pytest.raises(ActorUnavailable):
            await async_request(ref, lambda reply: ("drop", 1, reply), timeout=0.05)
    finally:
        ref.stop()


async def test_a_stopped_actor_is_actor_unavailable():
    ref = Echo.start()
    ref.stop()
    with pytest.raises(ActorUnavailable):
        await async_request(ref, lambda reply: ("echo", 1, reply), timeout=1)


async def test_blockbuster_catches_blocking_on_the_loop():
    """Proof that the guard used by the HTTP tests is live."""
    with blockbuster_ctx():
        with pytest.raises(BlockingError):
            time.sleep(0.01)
