"""The crossings: answers arrive on the loop, nothing blocks it, timeouts are clean; the
ticker wakes a driver at the moment it asked for."""

from __future__ import annotations

import asyncio
import socket
import time

import pykka
import pytest
from blockbuster import BlockingError, blockbuster_ctx
from prometheus_client import CollectorRegistry

from nacos_actors.bridge import (
    ActorDirectory,
    ActorUnavailable,
    LoopBridge,
    PushEndpoint,
    Ticker,
    WriteBatcher,
    async_open_push_endpoint,
)
from nacos_actors.core.registry import Rejected
from nacos_actors.messages import PUSH, REGISTRY, DatagramsReceived, Ok, Refused, Tick
from nacos_actors.metrics import NodeMetrics


class Echo(pykka.ThreadingActor):
    """Answers a batch of commands after `delay` seconds: each command is its own outcome, a
    'refuse' one Refused. A batch containing 'drop' is never answered; one containing 'crash'
    fails as a whole.
    """

    def __init__(self, delay: float = 0.0, batch_sizes: list[int] | None = None) -> None:
        super().__init__()
        self.delay = delay
        self.batch_sizes = [] if batch_sizes is None else batch_sizes

    def on_receive(self, message):
        commands, reply = message
        self.batch_sizes.append(len(commands))
        if "drop" in commands:
            return None
        time.sleep(self.delay)
        if "crash" in commands:
            reply.fail(RuntimeError("crash"))
        else:
            reply.resolve([Refused(409, "refused") if c == "refuse" else Ok(c) for c in commands])
        return None


def batcher(ref, timeout=5.0) -> WriteBatcher:
    actors = ActorDirectory()
    actors.add(REGISTRY, ref)
    return WriteBatcher(actors, REGISTRY, lambda commands, reply: (commands, reply), timeout)


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
            assert await batcher(ref).async_submit(7) == 7
    finally:
        task.cancel()
        ref.stop()
    assert ticks >= 5, "the loop was blocked while the actor worked"


async def test_writes_of_one_loop_turn_travel_as_one_message_and_each_gets_its_answer():
    batch_sizes: list[int] = []
    ref = Echo.start(batch_sizes=batch_sizes)
    try:
        writes = batcher(ref)
        answers = await asyncio.gather(
            *(writes.async_submit(n) for n in range(5)), writes.async_submit("refuse"), return_exceptions=True
        )
        assert answers[:5] == [0, 1, 2, 3, 4]
        assert isinstance(answers[5], Rejected) and (answers[5].status, answers[5].message) == (409, "refused")
        assert batch_sizes == [6]  # appended before the answers were sent
    finally:
        ref.stop()


async def test_a_failed_batch_fails_every_request_in_it():
    ref = Echo.start()
    try:
        writes = batcher(ref)
        answers = await asyncio.gather(writes.async_submit(1), writes.async_submit("crash"), return_exceptions=True)
        assert [type(a) for a in answers] == [RuntimeError, RuntimeError]
    finally:
        ref.stop()


async def test_no_answer_in_time_is_actor_unavailable():
    ref = Echo.start()
    try:
        with pytest.raises(ActorUnavailable):
            await batcher(ref, timeout=0.05).async_submit("drop")
    finally:
        ref.stop()


async def test_a_stopped_actor_is_actor_unavailable():
    ref = Echo.start()
    ref.stop()
    with pytest.raises(ActorUnavailable):
        await batcher(ref, timeout=1).async_submit(1)


async def test_blockbuster_catches_blocking_on_the_loop():
    """Proof that the guard used by the HTTP tests is live."""
    with blockbuster_ctx():
        with pytest.raises(BlockingError):
            time.sleep(0.01)


class Recorder(pykka.ThreadingActor):
    """Keeps what it is told, with the wall-clock ms it arrived at."""

    def __init__(self) -> None:
        super().__init__()
        self.told: list[tuple[object, int]] = []

    def on_receive(self, message):
        self.told.append((message, time.time_ns() // 1_000_000))


async def test_the_ticker_wakes_a_driver_at_its_latest_wish_only():
    ref = Recorder.start()
    actors = ActorDirectory()
    actors.add(REGISTRY, ref)
    ticker = Ticker(asyncio.get_running_loop(), actors)
    try:
        now = time.time_ns() // 1_000_000
        ticker.async_set(REGISTRY, now + 30)
        ticker.async_set(REGISTRY, now + 60)  # replaces the first wish
        await asyncio.sleep(0.2)
        told = ref.proxy().told.get(timeout=5)
        assert [type(m) for m, _ in told] == [Tick]
        assert told[0][1] >= now + 60
        ticker.async_set(REGISTRY, now + 10_000)
        ticker.async_set(REGISTRY, None)
        await asyncio.sleep(0.05)
        assert len(ref.proxy().told.get(timeout=5)) == 1
    finally:
        ticker.async_stop()
        ref.stop()


async def test_the_ticker_never_rings_before_the_wall_clock_reaches_the_deadline():
    """The loop's timers run on its monotonic clock; when the wall clock is still short of the
    deadline as a timer fires, the Tick must wait (a driver woken early asks for the same
    deadline again, which its Outbox does not repeat: it would sleep for good)."""
    ref = Recorder.start()
    actors = ActorDirectory()
    actors.add(REGISTRY, ref)
    deadline = 1_000_000
    readings = iter([deadline - 20, deadline - 60, deadline])  # at the wish, at each firing
    ticker = Ticker(asyncio.get_running_loop(), actors, clock=lambda: next(readings))
    try:
        started = time.monotonic()
        ticker.async_set(REGISTRY, deadline)
        await asyncio.sleep(0.04)
        assert ref.proxy().told.get(timeout=5) == [], "rang while the wall clock was 60 ms short"
        await asyncio.sleep(0.2)
        told = ref.proxy().told.get(timeout=5)
        assert [type(m) for m, _ in told] == [Tick]
        assert time.monotonic() - started >= 0.08
    finally:
        ticker.async_stop()
        ref.stop()


async def test_an_ask_of_an_actor_that_is_not_running_fails_at_once():
    bridge = LoopBridge(ActorDirectory(), batcher(Recorder.start()))
    with pytest.raises(ActorUnavailable):
        await bridge.async_ask(REGISTRY, lambda reply: reply, 5)
    pykka.ActorRegistry.stop_all()


# -- the push socket's receive path (issue 14, finding 6) --------------------------------------


class Counts:
    service_count = 0
    instance_count = 0


class Holding(pykka.ThreadingActor):
    """Stands in for the push driver: keeps every DatagramsReceived and resolves its `handled`
    only when told to (`release`), as a busy push actor would late."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[DatagramsReceived] = []

    def on_receive(self, message):
        if isinstance(message, DatagramsReceived):
            self.batches.append(message)
        elif message == "release":
            for batch in self.batches:
                batch.handled.resolve(len(batch.datagrams))
        elif message == "count":
            return [len(b.datagrams) for b in self.batches]
        return None


async def settle_udp(endpoint: PushEndpoint, metrics: NodeMetrics, expected: int, timeout: float = 5.0) -> None:
    """Wait until `expected` datagrams were received (admitted or dropped) by the endpoint."""
    push = metrics.push
    deadline = time.monotonic() + timeout
    while True:
        seen = (
            endpoint.gate.in_flight
            + push.datagrams_oversized._value.get()
            + push.datagrams_overflow._value.get()
        )
        if seen >= expected or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.01)


async def test_the_push_socket_drops_large_datagrams_unread_and_bounds_those_in_flight():
    ref = Holding.start()
    actors = ActorDirectory()
    actors.add(PUSH, ref)
    metrics = NodeMetrics(CollectorRegistry(), Counts())
    endpoint = await async_open_push_endpoint("127.0.0.1", actors, metrics, max_in_flight=5)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with blockbuster_ctx("nacos_actors"):
            for _ in range(3):
                sender.sendto(b"x" * 60_000, endpoint.address)  # a flood of large datagrams
            ack = b'{"type":"push-ack","lastRefTime":1,"data":""}'
            for _ in range(8):
                sender.sendto(ack, endpoint.address)
            await settle_udp(endpoint, metrics, 11)
            assert metrics.push.datagrams_oversized._value.get() == 3
            assert metrics.push.datagrams_overflow._value.get() == 3  # 8 acks, room for 5
            assert endpoint.gate.in_flight == 5
            told = await asyncio.get_running_loop().run_in_executor(None, lambda: ref.ask("count"))
            assert sum(told) == 5 and len(told) <= 5  # batched per loop turn
            ref.tell("release")
            deadline = time.monotonic() + 5
            while endpoint.gate.in_flight and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert endpoint.gate.in_flight == 0  # room again once the driver handled them
            sender.sendto(ack, endpoint.address)
            await settle_udp(endpoint, metrics, 6 + 1)
            assert endpoint.gate.in_flight == 1
            assert metrics.push.datagrams_overflow._value.get() == 3
    finally:
        sender.close()
        endpoint.async_close()
        ref.stop()
