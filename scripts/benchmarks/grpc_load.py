"""A raw Nacos 2.x gRPC client and the bare grpc.aio server, for the gRPC benchmark rows (grpc.py).

Run as a worker process: `python -m scripts.benchmarks.grpc_load '<json>'` with `mode`:
- `load`: `channels` connections to `target`, each doing what a client does first (ServerCheck,
  then ConnectionSetupRequest on its stream), then one request at a time of `kind` (`register`:
  an InstanceRequest of a new instance, `query`: a ServiceQueryRequest, both shaped as
  nacos-sdk-python 3.2.0 sends them) for `warmup` + `duration` seconds; prints one JSON line with
  the measured part: requests, errors, the first error, latency percentiles (ms).
- `idle`: opens `channels` connections (ServerCheck + ConnectionSetupRequest), answers what the
  server sends on their streams (ClientDetectionRequest, NotifySubscriberRequest), prints
  `{"open": n, "failed": m}` and holds them until stdin closes.
- `ceiling`: serves `Request.request` with one fixed Payload (and drains any stream) on `port`:
  the bare unary handler gRPC throughputs are compared with.

Every message is our generated Payload (nacos_actors/grpc), its body JSON as the clients write it.
Every address is 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.any_pb2 import Any as AnyBody

from nacos_actors.grpc import nacos_grpc_service_pb2 as pb
from nacos_actors.grpc import nacos_grpc_service_pb2_grpc as pb_grpc

HOST = "127.0.0.1"
CHANNEL_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),  # one TCP connection per channel, as the SDKs have
    ("grpc.max_receive_message_length", 100 * 1024 * 1024),
]
SETUP_SETTLE_S = 0.1  # nacos-sdk-python waits this long after queueing the setup


def payload(kind: str, body: dict[str, Any]) -> pb.Payload:
    """A Payload as nacos-sdk-python 3.2.0 sends it: headers in metadata and in the body."""
    body = {"headers": {}, "requestId": "", "module": "", **body}
    return pb.Payload(
        metadata=pb.Metadata(type=kind, clientIp=HOST, headers={}),
        body=AnyBody(value=json.dumps(body, separators=(",", ":")).encode()),
    )


def decoded(message: pb.Payload) -> tuple[str, dict[str, Any]]:
    return message.metadata.type, json.loads(message.body.value or b"{}")


def instance_request(service: str, port: int, kind: str = "registerInstance") -> pb.Payload:
    return payload(
        "InstanceRequest",
        {
            "namespace": "public",
            "serviceName": service,
            "groupName": "DEFAULT_GROUP",
            "type": kind,
            "instance": {
                "instanceId": "", "ip": HOST, "port": port, "weight": 1.0, "healthy": True, "enabled": True,
                "ephemeral": True, "clusterName": "DEFAULT", "serviceName": "", "metadata": {},
            },
        },
    )


def query_request(service: str) -> pb.Payload:
    return payload(
        "ServiceQueryRequest",
        {"namespace": "public", "serviceName": service, "groupName": "DEFAULT_GROUP", "cluster": "",
         "healthOnly": False, "udpPort": 0},
    )


def subscribe_request(service: str) -> pb.Payload:
    return payload(
        "SubscribeServiceRequest",
        {"namespace": "public", "serviceName": service, "groupName": "DEFAULT_GROUP", "clusters": "",
         "subscribe": True},
    )


class Connection:
    """One channel set up as a client does; answers the server's requests on its stream and
    hands each NotifySubscriberRequest body to `on_push` (with its arrival, time.time_ns())."""

    def __init__(self, target: str, on_push: Callable[[dict[str, Any], int], None] | None = None) -> None:
        self.channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.unary = pb_grpc.RequestStub(self.channel).request
        self.on_push = on_push
        self.outgoing: asyncio.Queue[pb.Payload | None] = asyncio.Queue()
        self.reader: asyncio.Task[None] | None = None
        self.connection_id = ""

    async def open(self, timeout: float = 10.0) -> None:
        kind, body = decoded(await self.unary(payload("ServerCheckRequest", {}), timeout=timeout))
        if kind != "ServerCheckResponse":
            raise RuntimeError(f"ServerCheckRequest answered {kind} {body}")
        self.connection_id = body.get("connectionId", "")
        stream = pb_grpc.BiRequestStreamStub(self.channel).requestBiStream(self._outgoing())
        await self.outgoing.put(
            payload("ConnectionSetupRequest", {"clientVersion": "Nacos-Python-Client:v3.2.0", "tenant": "",
                                               "labels": {"source": "sdk", "module": "naming"}})
        )
        self.reader = asyncio.create_task(self._read(stream))

    async def _outgoing(self) -> AsyncIterator[pb.Payload]:
        while (message := await self.outgoing.get()) is not None:
            yield message

    async def _read(self, stream: Any) -> None:
        try:
            async for message in stream:
                arrived = time.time_ns()
                kind, body = decoded(message)
                if kind == "NotifySubscriberRequest":
                    if self.on_push is not None:
                        self.on_push(body, arrived)
                    answer = "NotifySubscriberResponse"
                elif kind == "ClientDetectionRequest":
                    answer = "ClientDetectionResponse"
                elif kind == "SetupAckRequest":
                    answer = "SetupAckResponse"
                else:
                    continue
                await self.outgoing.put(
                    pb.Payload(metadata=pb.Metadata(type=answer),
                               body=AnyBody(value=json.dumps({"resultCode": 200, "errorCode": 0,
                                                              "requestId": body.get("requestId", "")}).encode()))
                )
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            return

    async def request(self, message: pb.Payload, timeout: float = 10.0) -> tuple[str, dict[str, Any]]:
        return decoded(await self.unary(message, timeout=timeout))

    async def close(self) -> None:
        await self.outgoing.put(None)
        await self.channel.close()
        if self.reader is not None:
            self.reader.cancel()


async def run_load(config: dict[str, Any]) -> dict[str, Any]:
    """`channels` closed loops of one request at a time; counts only after `warmup` seconds."""
    target, kind = config["target"], config["kind"]
    services = [f"{config['prefix']}{n:05d}" for n in range(config.get("services", 1))]
    worker = config.get("worker", 0)
    connections = [Connection(target) for _ in range(config["channels"])]
    await asyncio.gather(*(c.open() for c in connections))
    await asyncio.sleep(SETUP_SETTLE_S)
    # every worker starts at the same wall-clock time, so their measured windows coincide
    await asyncio.sleep(max(0.0, config.get("start_at", 0) - time.time()))
    started = time.monotonic()
    measure_from = started + config["warmup"]
    stop_at = measure_from + config["duration"]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    ports = itertools.count()

    async def loop(index: int, connection: Connection) -> None:
        while (now := time.monotonic()) < stop_at:
            service = services[index % len(services)]
            if kind == "register":
                # a new instance each time; at most 5,000 per connection (the node bounds them)
                message = instance_request(service, 1 + (worker * 100_000 + next(ports)) % 60_000)
            elif kind == "query":
                message = query_request(service)
            else:
                message = payload("HealthCheckRequest", {})
            try:
                answer, body = await connection.request(message)
                ok = body.get("resultCode", 200) == 200 and answer != "ErrorResponse"
                error = None if ok else f"{answer} {body.get('errorCode')} {body.get('message')}"[:200]
            except grpc.aio.AioRpcError as failure:
                error = f"{failure.code().name} {failure.details()}"[:200]
            done = time.monotonic()
            if now >= measure_from:
                if error is None:
                    latencies.append((done - now) * 1000)
                else:
                    errors[error] = errors.get(error, 0) + 1

    await asyncio.gather(*(loop(i, c) for i, c in enumerate(connections)))
    await asyncio.gather(*(c.close() for c in connections))
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))] if latencies else 0.0

    return {"requests": len(latencies), "seconds": config["duration"], "errors": errors,
            "p50_ms": pct(50), "p99_ms": pct(99)}


async def hold_idle(config: dict[str, Any]) -> None:
    """Open `channels` connections in batches (a failed one is tried again on a new channel, up to
    twice, as a client reconnects), report, hold them until stdin closes."""
    connections: list[Connection] = []
    failed = retried = 0
    first_error = ""
    batch = config.get("batch", 100)
    for start in range(0, config["channels"], batch):
        wanted = min(batch, config["channels"] - start)
        for attempt in range(3):
            made = [Connection(config["target"]) for _ in range(wanted)]
            results = await asyncio.gather(*(c.open() for c in made), return_exceptions=True)
            wanted = 0
            for connection, result in zip(made, results, strict=True):
                if isinstance(result, BaseException):
                    wanted += 1
                    first_error = first_error or repr(result)[:300]
                    await connection.close()
                else:
                    connections.append(connection)
            if not wanted:
                break
            retried += wanted if attempt < 2 else 0
        failed += wanted
    print(json.dumps({"open": len(connections), "failed": failed, "retried": retried, "first_error": first_error}),
          flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    alive = sum(1 for c in connections if c.reader is not None and not c.reader.done())
    print(json.dumps({"still_streaming": alive}), flush=True)
    await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)


class BareRequest(pb_grpc.RequestServicer):
    """The ceiling: answers every unary call with the same small Payload (a ServerCheckResponse
    to a ServerCheckRequest, so that connections open as against a node)."""

    answer = pb.Payload(metadata=pb.Metadata(type="HealthCheckResponse"),
                        body=AnyBody(value=b'{"resultCode":200,"errorCode":0}'))
    server_check = pb.Payload(metadata=pb.Metadata(type="ServerCheckResponse"),
                              body=AnyBody(value=b'{"resultCode":200,"errorCode":0,"connectionId":"bare"}'))

    async def request(self, request: pb.Payload, context: Any) -> pb.Payload:  # type: ignore[override]
        return self.server_check if request.metadata.type == "ServerCheckRequest" else self.answer


class DrainStream(pb_grpc.BiRequestStreamServicer):
    async def requestBiStream(self, request_iterator: Any, context: Any) -> AsyncIterator[pb.Payload]:  # type: ignore[override]
        async for _ in request_iterator:
            pass
        return
        yield


async def serve_ceiling(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_RequestServicer_to_server(BareRequest(), server)
    pb_grpc.add_BiRequestStreamServicer_to_server(DrainStream(), server)
    server.add_insecure_port(f"{HOST}:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    config = json.loads(sys.argv[1])
    mode = config["mode"]
    if mode == "load":
        print(json.dumps(asyncio.run(run_load(config))), flush=True)
    elif mode == "idle":
        asyncio.run(hold_idle(config))
    elif mode == "ceiling":
        asyncio.run(serve_ceiling(config["port"]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
