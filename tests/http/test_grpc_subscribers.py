"""gRPC push in process: a real push actor watching the registry is told a GrpcSubscribe (as
the gRPC connection layer does); its NotifySubscriberRequests cross the bridge to a StreamSink
on the loop, and /v1/ns/service/subscribers and /operator/push/state show the subscriber."""

from __future__ import annotations

import asyncio
import json

import pytest

from nacos_actors.bridge import ActorOutbox, DriverActor
from nacos_actors.core.push import PushBoard
from nacos_actors.core.streams import GrpcSubscription
from nacos_actors.drivers.push import PushDriver
from nacos_actors.messages import PUSH, REGISTRY, GrpcConnectionClosed, GrpcSubscribe, Ping, Watch
from nacos_actors.model import ServiceKey
from nacos_actors.node import push_cores
from tests.http.conftest import BASE
from tests.nodes import fail_test

ORDERS = ServiceKey("public", "DEFAULT_GROUP@@orders")


class RecordingSink:
    """Stands in for the gRPC connection layer: keeps what it is handed, on the loop."""

    def __init__(self) -> None:
        self.pushes: list = []
        self.arrived = asyncio.Event()

    def async_send(self, pushes) -> None:
        self.pushes.extend(pushes)
        self.arrived.set()

    async def next_bodies(self, count: int) -> list[dict]:
        while len(self.pushes) < count:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 5)
        taken, self.pushes = self.pushes[:count], self.pushes[count:]
        return [json.loads(push.body) for push in taken]


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
async def front(front, sink):
    """The front with a real push actor watching the registry, writing to `sink` on the loop."""
    board = PushBoard()
    outbox = ActorOutbox(asyncio.get_running_loop(), front.bridge.actors, streams=sink)
    driver = PushDriver(push_cores(front.settings), board, outbox, front.metrics, front.view.service)
    front.bridge.actors.add(PUSH, DriverActor.start(driver, front.metrics, fail_test))
    front.bridge.actors.tell(REGISTRY, Watch(PUSH))
    front.push_enabled = True
    front.push_board = board
    return front


async def grpc_subscribe(front, connection: str, service: ServiceKey = ORDERS, clusters: str = "") -> None:
    subscription = GrpcSubscription(
        connection,
        service,
        clusters,
        tuple(filter(None, clusters.split(","))),
        "10.1.2.3",
        "Nacos-Python-Client:v3.2.0",
        "shop",
    )
    await told(front, GrpcSubscribe(subscription))


async def told(front, message: object) -> None:
    """Tell the push actor `message` and wait (off the loop) until it has handled it."""
    actor = front.bridge.actors.get(PUSH)
    actor.tell(message)
    await asyncio.to_thread(actor.ask, Ping(), timeout=5)


async def test_a_grpc_subscriber_is_listed_as_nacos_2_lists_it(client, front):
    await grpc_subscribe(front, "conn-1", clusters="A,B")
    await grpc_subscribe(front, "conn-2", ServiceKey("public", "DEFAULT_GROUP@@users"))
    body = await (await client.get(f"{BASE}/service/subscribers", params={"serviceName": "orders"})).json()
    assert body == {
        "subscribers": [
            {
                "addrStr": "10.1.2.3",
                "agent": "Nacos-Python-Client:v3.2.0",
                "app": "shop",
                "ip": "10.1.2.3",
                "port": 0,
                "namespaceId": "public",
                "serviceName": "DEFAULT_GROUP@@orders",
                "cluster": "A,B",
            }
        ],
        "count": 1,
    }


async def test_push_state_counts_grpc_pushes_and_a_closed_connection_leaves_the_list(client, front):
    await grpc_subscribe(front, "conn-1")
    state = await (await client.get(f"{BASE}/operator/push/state")).json()
    assert (state["total"], state["subscriberCount"], state["awaitingAck"]) == (1, 1, 1)
    assert (state["grpc"]["total"], state["grpc"]["subscriberCount"], state["grpc"]["awaitingAck"]) == (1, 1, 1)
    await told(front, GrpcConnectionClosed("conn-1"))
    body = await (await client.get(f"{BASE}/service/subscribers", params={"serviceName": "orders"})).json()
    assert body == {"subscribers": [], "count": 0}
    state = await (await client.get(f"{BASE}/operator/push/state")).json()
    assert (state["grpc"]["abandoned"], state["grpc"]["subscriberCount"], state["failed"]) == (1, 0, 0)


async def test_a_subscriber_is_pushed_at_once_and_after_each_change_through_the_stream_sink(client, front, sink):
    await grpc_subscribe(front, "conn-1", clusters="DEFAULT")
    (first,) = await sink.next_bodies(1)
    assert first["serviceInfo"]["hosts"] == [] and first["serviceInfo"]["clusters"] == "DEFAULT"
    response = await client.post(
        f"{BASE}/instance", params={"serviceName": "orders", "ip": "127.0.0.1", "port": "8080"}
    )
    assert response.status == 200
    (second,) = await sink.next_bodies(1)
    info = second["serviceInfo"]
    assert [(h["ip"], h["port"]) for h in info["hosts"]] == [("127.0.0.1", 8080)]
    assert info["lastRefTime"] == front.view.service(ORDERS).last_ref_ms
    assert int(second["requestId"]) > int(first["requestId"])
    assert (second["namespace"], second["serviceName"], second["groupName"]) == ("public", "orders", "DEFAULT_GROUP")
