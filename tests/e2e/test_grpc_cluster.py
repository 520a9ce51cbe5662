"""A raw gRPC client on a member of a three-node cluster that is not responsible for its
service: the register is forwarded to the member that is, the instance is kept alive there by
beats the connection's member forwards (past the 15 s beat timeout), and the end of the
connection removes it everywhere; a member's death leaves its connections' instances to expire
on the survivors."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.e2e.conftest import NodeProcess
from tests.e2e.test_cluster import hosts, services_by_owner, wait_on_all
from tests.grpc.support import Client

pytestmark = pytest.mark.e2e
BEAT_TIMEOUT_S = 15.0
DELETE_TIMEOUT_S = 30.0


def register(port: int, service: str, instance_port: int) -> dict:
    return {
        "namespace": "public",
        "serviceName": service,
        "groupName": "DEFAULT_GROUP",
        "type": "registerInstance",
        "instance": {"ip": "127.0.0.1", "port": instance_port, "metadata": {"via": "grpc"}},
    }


def healthy_on(service: str, port: int):
    def check(node: NodeProcess) -> bool:
        host = hosts(node, service).get(("127.0.0.1", port))
        return host is not None and host["healthy"]

    return check


def gone_on(service: str, port: int):
    return lambda node: ("127.0.0.1", port) not in hosts(node, service)


def test_a_member_forwards_a_grpc_register_and_keeps_it_alive(start_cluster):
    cluster = start_cluster(3)
    entry = cluster.running[0]
    owned = services_by_owner(cluster.running, "grpc-fwd")
    (service,) = next(names for owner, names in owned.items() if owner != entry.address)

    async def scenario() -> None:
        client = Client(entry.grpc_port)
        try:
            await client.connect()
            await client.until_set_up()
            kind, body = await client.call("InstanceRequest", register(entry.grpc_port, service, 7001))
            assert (kind, body["resultCode"]) == ("InstanceResponse", 200), body
            wait_on_all(cluster.running, healthy_on(service, 7001), "the gRPC register on every member")
            # Past the beat timeout: the entry member beats it on the owner.
            await asyncio.sleep(BEAT_TIMEOUT_S + 3)
            for node in cluster.running:
                assert healthy_on(service, 7001)(node), node.address
            await client.end_stream()
            await asyncio.to_thread(
                wait_on_all, cluster.running, gone_on(service, 7001), "removed after the stream ended"
            )
        finally:
            await client.close()

    asyncio.run(scenario())


def test_a_dead_members_connections_expire_on_the_survivors(start_cluster):
    cluster = start_cluster(3, "--grpc-detect-idle-ms", "60000")
    entry = cluster.running[0]
    owned = services_by_owner(cluster.running, "grpc-death")
    (service,) = next(names for owner, names in owned.items() if owner != entry.address)

    async def registered() -> None:
        client = Client(entry.grpc_port)
        await client.connect()
        await client.until_set_up()
        kind, _ = await client.call("InstanceRequest", register(entry.grpc_port, service, 7002))
        assert kind == "InstanceResponse"
        entry.process.send_signal(signal.SIGKILL)
        await client.close()

    asyncio.run(registered())
    entry.process.wait(10)
    survivors = cluster.running
    started = time.monotonic()
    # Unhealthy after the beat timeout (shown healthy still: the protect threshold of a service
    # with no healthy instance), then removed after the delete timeout, as any silent instance.
    wait_on_all(survivors, gone_on(service, 7002), "expired after the delete timeout", DELETE_TIMEOUT_S + 15)
    assert time.monotonic() - started > DELETE_TIMEOUT_S - 8
