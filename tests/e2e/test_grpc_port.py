"""The gRPC port of a real node: one node per port (a second one stops with a clear error, as on
a taken HTTP port), `--grpc-port 0` turns gRPC off, and a node with connected gRPC clients stops
cleanly, leaving their instances for them to register again elsewhere."""

from __future__ import annotations

import asyncio
import signal
import socket

import pytest

from tests.e2e.conftest import free_port
from tests.grpc.support import Client

pytestmark = pytest.mark.e2e


def test_a_second_node_on_the_same_grpc_port_does_not_start(start_node):
    first = start_node()
    second = start_node("--grpc-port", str(first.grpc_port), wait=False)
    assert second.wait_exit() != 0
    assert f"cannot listen for gRPC on 127.0.0.1:{first.grpc_port}" in second.stderr()
    assert first.get("/nacos/v1/console/health/readiness")[0] == 200


def test_grpc_port_zero_turns_grpc_off(start_node):
    port = free_port()
    node = start_node("--grpc-port", "0", port=port)
    assert node.grpc_port is None
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port + 1000)) != 0


def test_a_node_with_grpc_clients_stops_cleanly(start_node):
    node = start_node()

    async def connect_then_stop() -> None:
        client = Client(node.grpc_port)
        try:
            await client.connect()
            await client.until_set_up()
            kind, _ = await client.call(
                "InstanceRequest",
                {"serviceName": "svc", "type": "registerInstance", "instance": {"ip": "127.0.0.1", "port": 1}},
            )
            assert kind == "InstanceResponse"
            node.process.send_signal(signal.SIGTERM)
            status = None
            while status is None:
                got, body = await asyncio.wait_for(client.received.get(), 10)
                status = body["code"] if got == "status" else None
        finally:
            await client.close()

    asyncio.run(connect_then_stop())
    assert node.stop() == 0
    assert "Traceback" not in node.stderr()
