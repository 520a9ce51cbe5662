"""A raw gRPC client of the Nacos 2.x protocol for tests, built from our generated module: unary
requests, and a connection (a channel with its stream set up) that answers the server's
requests on the stream the way the real clients do."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import grpc
import orjson
from grpc import aio

from nacos_actors.grpc import nacos_grpc_service_pb2 as schema

REQUEST = "/Request/request"
STREAM = "/BiRequestStream/requestBiStream"
EVENT_TIMEOUT_S = 5.0


def payload(
    kind: str, body: Mapping[str, Any] | bytes, headers: Mapping[str, str] | None = None, client_ip: str = ""
) -> bytes:
    message = schema.Payload()
    message.metadata.type = kind
    message.metadata.clientIp = client_ip
    for name, value in (headers or {}).items():
        message.metadata.headers[name] = value
    message.body.value = body if isinstance(body, bytes) else orjson.dumps(body)
    return message.SerializeToString()


def read(data: bytes) -> tuple[str, dict[str, Any]]:
    message = schema.Payload()
    message.ParseFromString(data)
    return message.metadata.type, orjson.loads(message.body.value)


class Client:
    """One channel to the server: `call` makes unary requests; `connect` opens the stream and
    sends ConnectionSetupRequest; server requests arrive in `received` and are answered unless
    `answer_detection` is false."""

    def __init__(self, port: int) -> None:
        # A subchannel of its own, as the Python client opens it: else two clients in one
        # process share one HTTP/2 connection, which the server rightly sees as one connection.
        self.channel = aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        self._call = self.channel.unary_unary(REQUEST)
        self.received: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.answer_detection = True
        self._outgoing: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self.stream: Any = None

    async def call(
        self, kind: str, body: Mapping[str, Any] | bytes, headers: Mapping[str, str] | None = None
    ) -> tuple[str, dict[str, Any]]:
        return read(await self._call(payload(kind, body, headers), timeout=EVENT_TIMEOUT_S))

    async def connect(self, version: str = "Nacos-Python-Client:v3.2.0", tenant: str = "") -> str:
        """Server check, then the stream with its setup; answers the connection id."""
        kind, body = await self.call("ServerCheckRequest", {"headers": {}, "requestId": ""})
        assert kind == "ServerCheckResponse", body
        self.stream = self.channel.stream_stream(STREAM)(self._requests())
        await self.send(
            "ConnectionSetupRequest",
            {"clientVersion": version, "tenant": tenant, "labels": {"source": "sdk"}, "abilityTable": {}},
        )
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return str(body["connectionId"])

    async def send(self, kind: str, body: Mapping[str, Any]) -> None:
        await self._outgoing.put(payload(kind, body, client_ip="127.0.0.1"))

    async def until_set_up(self) -> None:
        """Wait until a unary call no longer gets 301."""
        for _ in range(200):
            kind, _body = await self.call("HealthCheckRequest", {})
            if kind == "HealthCheckResponse":
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the connection never got set up")

    async def _requests(self):  # type: ignore[no-untyped-def]
        while True:
            data = await self._outgoing.get()
            if data is None:
                return
            yield data

    async def _read(self) -> None:
        try:
            async for data in self.stream:
                kind, body = read(data)
                await self.received.put((kind, body))
                if kind == "ClientDetectionRequest" and self.answer_detection:
                    await self.send(
                        "ClientDetectionResponse", {"resultCode": 200, "errorCode": 0, "requestId": body["requestId"]}
                    )
        except aio.AioRpcError as error:
            await self.received.put(("status", {"code": error.code().name}))
            return
        await self.received.put(("status", {"code": grpc.StatusCode.OK.name}))

    async def end_stream(self) -> None:
        await self._outgoing.put(None)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.channel.close()
