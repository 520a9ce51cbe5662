"""The workload that --instructions counts: `python -m scripts.benchmarks.instructions_driver OP N`
runs one operation N times in this process (under valgrind's cachegrind, started by
instructions.py) and prints one JSON line saying what it did.

A node comes from instructions_node.start_node (the only thing here that knows how a node is
built); requests reach it without sockets, the way aiohttp's server hands them over: the
application runs under an AppRunner with no site, each request is built by the server's
`request_factory` from a RawRequestMessage (what the HTTP parser would produce) on a stand-in
connection, and awaited through the server's `request_handler` (routing, then the handler).
Not counted, because there is no socket: parsing the request bytes, writing the response and
the system calls for both. Writes still cross to the registry actor on its own pykka thread,
and pushes leave through the push actor's real UDP socket to a socket here.

Operations (the node's paths under /nacos; health checks off):
  floor     GET / of a bare aiohttp app answering `ok` (no node): the same driving, for scale
  register  POST /v1/ns/instance, a new instance each time (instance k in service k mod 100)
  persistent_register  the same with ephemeral=false: through the node's Raft group of one,
            its journal in a temporary data directory with fsync off (CPU only, not the disk)
  beat      PUT /v1/ns/instance/beat, light beats over 100 registered healthy instances
  list      GET /v1/ns/instance/list of one unchanged 100-instance service, plain JSON (memoized)
  push      one change of a subscribed service (a re-register toggling its one instance's
            weight) -> the UDP datagram at the subscriber -> its ack
Set-up (the node, the instances a loop needs, a subscriber) runs in every run alike, so the
difference of two runs with different N holds only the N requests.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web
from aiohttp.http import HttpVersion11
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .instructions_node import start_node

CONTEXT = "/nacos"
HOST = "127.0.0.1"
POPULATION = 100  # the beat op's instances
POPULATION_SERVICES = 10
REGISTER_SERVICES = 100
LIST_SIZE = 100
PUSH_SERVICE = "bench-push-probe"
PUSH_AGENT = "Nacos-Java-Client:v1.4.8"  # an agent the node pushes to
PUSH_REPOLL = 50  # changes between two list polls that keep the subscription alive
PUSH_ACK_PAUSE_S = 0.005  # after an ack: the push actor's receiver thread hands it over first
PUSH_WAIT_S = 30.0


class Connection:
    """What a request asks of its connection (aiohttp's RequestHandler), without a socket:
    a client at 127.0.0.1, plain HTTP."""

    ssl_context = None
    peername = (HOST, 40000)
    sockname = (HOST, 8848)
    max_field_size = 8190
    max_line_length = 8190
    max_headers = 128
    transport = None
    writer = None


class Client:
    """Sends requests into a started application, as its server would."""

    def __init__(self, runner: web.AppRunner) -> None:
        server = runner.server
        assert server is not None
        self._make = server.request_factory
        self._handle: Callable[[Any], Awaitable[web.StreamResponse]] = server.request_handler
        self._connection = Connection()
        self.requests = 0

    async def call(self, method: str, path: str, query: str = "", headers: tuple[tuple[str, str], ...] = ()) -> web.Response:
        """One request without a body; raises unless it is answered 200."""
        target = f"{path}?{query}" if query else path
        message = RawRequestMessage(
            method, target, HttpVersion11,
            CIMultiDictProxy(CIMultiDict(headers)), tuple((k.encode(), v.encode()) for k, v in headers),
            False, None, False, False,
            URL.build(path=path, query_string=query, encoded=True),
        )
        # the stand-in connection, no writer (nothing is written) and the task, as the server passes them
        request = self._make(message, EMPTY_PAYLOAD, self._connection, None, asyncio.current_task())  # type: ignore[arg-type]
        response = await self._handle(request)
        self.requests += 1
        if response.status != 200 or not isinstance(response, web.Response):
            raise RuntimeError(f"{method} {target} answered {response.status}: {getattr(response, 'body', b'')!r:.300}")
        return response


def body(response: web.Response) -> bytes:
    return response.body if isinstance(response.body, bytes) else b""


def instance_query(service: str, idx: int, extra: str = "") -> str:
    """Instance idx as the bench's Lua scripts number them (127.0.0.1, port idx + 1)."""
    return f"serviceName={service}&ip={HOST}&port={idx % 65535 + 1}{extra}"


async def register(client: Client, n: int, done: dict[str, Any]) -> None:
    for k in range(n):
        service = f"bench-reg-{k % REGISTER_SERVICES:05d}"
        await client.call("POST", f"{CONTEXT}/v1/ns/instance", instance_query(service, k, "&ephemeral=true"))


async def persistent_register(client: Client, n: int, done: dict[str, Any]) -> None:
    for k in range(n):
        service = f"bench-persistent-{k % REGISTER_SERVICES:05d}"
        await client.call("POST", f"{CONTEXT}/v1/ns/instance", instance_query(service, k, "&ephemeral=false"))


async def beat_setup(client: Client) -> None:
    for k in range(POPULATION):
        service = f"bench-pop-{k % POPULATION_SERVICES:05d}"
        await client.call("POST", f"{CONTEXT}/v1/ns/instance", instance_query(service, k, "&ephemeral=true"))


async def beat(client: Client, n: int, done: dict[str, Any]) -> None:
    bad = 0
    for k in range(n):
        idx = k % POPULATION
        service = f"bench-pop-{idx % POPULATION_SERVICES:05d}"
        answer = await client.call("PUT", f"{CONTEXT}/v1/ns/instance/beat", instance_query(service, idx))
        if b'"code":10200' not in body(answer):
            bad += 1
    done["bad"] = bad


LIST_SERVICE = f"bench-list-{LIST_SIZE}-00000"


async def list_setup(client: Client) -> None:
    for k in range(LIST_SIZE):
        await client.call("POST", f"{CONTEXT}/v1/ns/instance", instance_query(LIST_SERVICE, k, "&ephemeral=true"))


async def list_(client: Client, n: int, done: dict[str, Any]) -> None:
    query = f"serviceName={LIST_SERVICE}"
    first = last = None
    for _ in range(n):
        last = await client.call("GET", f"{CONTEXT}/v1/ns/instance/list", query)
        first = first or last
    if first is not None and last is not None:
        done["hosts"] = [len(json.loads(body(r))["hosts"]) for r in (first, last)]
        done["bytes"] = len(body(last))


class Subscriber:
    """A Java-client-like subscriber on a local UDP socket: polls the list with its udpPort and
    acks every push."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.query = f"serviceName={PUSH_SERVICE}&udpPort={self.sock.getsockname()[1]}&clusters="
        self.datagrams = 0

    async def poll(self) -> None:
        await self.client.call("GET", f"{CONTEXT}/v1/ns/instance/list", self.query, (("User-Agent", PUSH_AGENT),))

    async def receive_and_ack(self) -> bytes:
        """The next push, acked. Awaited, not blocking: the node sends (and reads the ack) on
        this same event loop."""
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()
        loop.add_reader(self.sock.fileno(), lambda: readable.done() or readable.set_result(None))
        try:
            await asyncio.wait_for(readable, PUSH_WAIT_S)
        finally:
            loop.remove_reader(self.sock.fileno())
        payload, source = self.sock.recvfrom(65536)
        self.datagrams += 1
        at = payload.rindex(b'"lastRefTime":') + len(b'"lastRefTime":')
        end = at
        while payload[end:end + 1].isdigit():
            end += 1
        self.sock.sendto(b'{"type":"push-ack","lastRefTime":' + payload[at:end] + b',"data":""}', source)
        return payload


async def push(client: Client, n: int, done: dict[str, Any]) -> None:
    await client.call("POST", f"{CONTEXT}/v1/ns/instance", instance_query(PUSH_SERVICE, 0, "&ephemeral=true&weight=1"))
    subscriber = Subscriber(client)
    try:
        await subscriber.poll()
        wrong = 0
        for k in range(n):
            weight = 2 if k % 2 == 0 else 1
            await client.call(
                "POST", f"{CONTEXT}/v1/ns/instance", instance_query(PUSH_SERVICE, 0, f"&ephemeral=true&weight={weight}")
            )
            payload = await subscriber.receive_and_ack()
            if f'\\"weight\\":{weight}.0'.encode() not in payload:
                wrong += 1
            await asyncio.sleep(PUSH_ACK_PAUSE_S)  # the ack reaches the push driver before the next change
            if (k + 1) % PUSH_REPOLL == 0:
                await subscriber.poll()
        done["datagrams"] = subscriber.datagrams
        done["wrong_weight"] = wrong
        metrics = body(await client.call("GET", "/metrics"))
        for line in metrics.decode().splitlines():
            if line.startswith(("nacos_actors_pushes_total{", "nacos_actors_push_sends_total{")):
                series, _, value = line.rpartition(" ")
                done[series] = float(value)
    finally:
        subscriber.sock.close()


# Operations whose node keeps its Raft journal in a file (a temporary data directory), unsynced.
ON_DISK = {"persistent_register"}
OPS: dict[str, tuple[Callable[[Client], Awaitable[None]] | None, Callable[[Client, int, dict[str, Any]], Awaitable[None]]]] = {
    "register": (None, register),
    "persistent_register": (None, persistent_register),
    "beat": (beat_setup, beat),
    "list": (list_setup, list_),
    "push": (None, push),
}


def floor_app() -> web.Application:
    """A bare aiohttp app answering `ok`, like the ceiling server."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handle)
    return app


async def floor(client: Client, n: int, done: dict[str, Any]) -> None:
    for _ in range(n):
        await client.call("GET", "/")


async def run(op: str, n: int) -> dict[str, Any]:
    done: dict[str, Any] = {"op": op, "n": n}
    stop: Callable[[], Awaitable[None]] | None = None
    loop_body: Callable[[Client, int, dict[str, Any]], Awaitable[None]]
    data_dir = Path(tempfile.mkdtemp(prefix="instructions-node-")) if op in ON_DISK else None
    if op == "floor":
        app, loop_body, setup = floor_app(), floor, None
    else:
        setup, loop_body = OPS[op]
        overrides = {"data_dir": data_dir, "raft_fsync": False} if data_dir is not None else {}
        app, stop = await start_node(**overrides)
    try:
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            client = Client(runner)
            if setup is not None:
                await setup(client)
            before = client.requests
            started = time.monotonic()
            await loop_body(client, n, done)
            done["seconds"] = round(time.monotonic() - started, 3)
            done["requests"] = client.requests - before
        finally:
            await runner.cleanup()
    finally:
        if stop is not None:
            await stop()
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)
    return done


def main(argv: list[str]) -> int:
    op, n = argv[0], int(argv[1])
    if op != "floor" and op not in OPS:
        print(f"instructions_driver: no operation {op}", file=sys.stderr)
        return 2
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        done = runner.run(run(op, n))
    print("INSTRUCTIONS_JSON " + json.dumps(done), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
