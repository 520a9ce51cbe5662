"""The connection guard in-process (nacos_actors.http.connections), with raw asyncio streams on
127.0.0.1: who is closed when the node is full, who is refused, and what the sweep closes; and
the app's answer to `Expect: 100-continue`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from nacos_actors.http.app import build_app
from nacos_actors.http.connections import ConnectionGuard, ConnectionLimits, RateLimitedLog
from nacos_actors.metrics import NodeMetrics
from nacos_actors.settings import Settings

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Counts:
    service_count = 0
    instance_count = 0


class Node:
    """A bare aiohttp Server behind a ConnectionGuard, listening on a free loopback port;
    `release` lets every held request answer."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.release = asyncio.Event()
        self.in_request = 0
        self.registry = CollectorRegistry()
        self.metrics = NodeMetrics(self.registry, Counts()).connections

        async def handler(request: web.BaseRequest) -> web.Response:
            if request.path == "/hold":
                self.in_request += 1
                await self.release.wait()
            return web.Response(text="done")

        self.server = web.Server(handler)
        self.guard: ConnectionGuard | None = None
        self.listener: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.guard = ConnectionGuard(loop, self.server, self.limits, self.metrics)
        self.listener = await loop.create_server(self.guard.protocol, "127.0.0.1", 0)
        self.guard.start()

    @property
    def port(self) -> int:
        assert self.listener is not None
        return self.listener.sockets[0].getsockname()[1]

    async def connect(self) -> Stream:
        return await asyncio.open_connection("127.0.0.1", self.port)

    def count(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    async def stop(self) -> None:
        self.release.set()
        assert self.guard is not None and self.listener is not None
        self.guard.stop()
        self.listener.close()
        await self.server.shutdown(1)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def get(stream: Stream, path: str) -> None:
    stream[1].write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await stream[1].drain()


async def answer(stream: Stream) -> bytes:
    return await asyncio.wait_for(stream[0].read(65536), 5)


async def closed(stream: Stream) -> bool:
    """Whether the server closed `stream` (reads and drops whatever it wrote first)."""
    try:
        while await asyncio.wait_for(stream[0].read(65536), 0.5):
            pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Awaitable[Node]]]:
    made: list[Node] = []

    async def make(max_connections: int = 2, header_s: float = 30.0, idle_s: float = 30.0) -> Node:
        node = Node(ConnectionLimits(max_connections, header_s, idle_s))
        await node.start()
        made.append(node)
        return node

    yield make
    for node in made:
        await node.stop()


async def test_a_full_node_closes_the_connection_waiting_longest_for_a_new_one(start):
    node = await start(max_connections=2)
    first, second = await node.connect(), await node.connect()
    await until(lambda: node.guard.open_count() == 2)
    await get(first, "/")  # `first` answered: it waits for less long than `second` now
    assert b"done" in await answer(first)
    third = await node.connect()
    assert await closed(second)
    assert not await closed(first)
    await get(third, "/")
    assert b"200 OK" in await answer(third)
    assert node.guard.open_count() == 2
    assert node.count("nacos_actors_connections_rejected_total", reason="evicted") == 1
    for stream in (first, third):
        stream[1].close()


async def test_when_every_connection_is_in_a_request_a_new_one_gets_503_and_is_closed(start):
    node = await start(max_connections=2)
    busy = [await node.connect() for _ in range(2)]
    for stream in busy:
        await get(stream, "/hold")
    await until(lambda: node.in_request == 2)
    refused = await node.connect()
    assert (await answer(refused)).startswith(b"HTTP/1.1 503 Service Unavailable")
    assert await closed(refused)
    assert node.count("nacos_actors_connections_rejected_total", reason="max_connections") == 1
    node.release.set()
    for stream in busy:
        assert b"200 OK" in await answer(stream)
        stream[1].close()


async def test_the_sweep_closes_slow_headers_with_408_and_idle_connections(start):
    node = await start(max_connections=10, header_s=0.3, idle_s=2.5)
    slow, idle, answered = await node.connect(), await node.connect(), await node.connect()
    started = asyncio.get_running_loop().time()
    slow[1].write(b"GET / HTTP/1.1\r\nHost: x\r\n")
    await get(answered, "/")
    assert b"done" in await answer(answered)
    assert (await answer(slow)).startswith(b"HTTP/1.1 408 Request Timeout")
    assert asyncio.get_running_loop().time() - started < 2.0
    assert not await closed(idle)  # long before its idle timeout
    await until(lambda: node.guard.open_count() == 0, timeout=10)
    assert await closed(idle) and await closed(answered)
    assert node.count("nacos_actors_connections_rejected_total", reason="header_timeout") == 1
    assert node.count("nacos_actors_connections_idle_closed_total") == 2


async def test_a_request_in_progress_is_never_swept(start):
    node = await start(max_connections=10, header_s=0.2, idle_s=0.2)
    stream = await node.connect()
    await get(stream, "/hold")
    await until(lambda: node.in_request == 1)
    await asyncio.sleep(1.0)  # five times either timeout
    node.release.set()
    assert b"200 OK" in await answer(stream)
    stream[1].close()


def test_the_rate_limited_log_says_how_many_lines_it_stood_for(caplog):
    now = [0.0]
    limited = RateLimitedLog(10.0, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="nacos_actors.http.connections"):
        for second in range(25):
            now[0] = float(second)
            limited.warning("refused %s", second)
    assert [r.getMessage() for r in caplog.records] == [
        "refused 0",
        "refused 10 (9 more like it since the last such line)",
        "refused 20 (9 more like it since the last such line)",
    ]


@pytest.fixture
def settings() -> Settings:
    return replace(Settings(), max_body_bytes=1000)


async def expect_continue(port: int, path: str, length: int) -> bytes:
    """What the app answers to headers announcing a `length`-byte body with Expect: 100-continue,
    before any of the body is sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


@pytest.mark.parametrize("path", ["/nacos/v1/ns/instance", "/no/such/path"])
async def test_100_continue_only_for_a_body_within_the_limit(aiohttp_server, front, path):
    server = await aiohttp_server(build_app(front))
    refused = await expect_continue(server.port, path, 1001)
    assert refused.startswith(b"HTTP/1.1 413 "), refused
    assert b"100 Continue" not in refused
    assert refused.endswith(b"request body is 1001 bytes; the limit (max_body_bytes) is 1000")
    assert (await expect_continue(server.port, path, 1000)).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
