"""gRPC subscribers in the v1 views: a real push actor is told a GrpcSubscribe (as the gRPC
connection layer does), and /v1/ns/service/subscribers and /operator/push/state show it."""

from __future__ import annotations

import asyncio

import pytest

from nacos_actors.bridge import ActorOutbox, DriverActor
from nacos_actors.core.push import PushBoard
from nacos_actors.core.streams import GrpcSubscription
from nacos_actors.drivers.push import PushDriver
from nacos_actors.messages import PUSH, GrpcConnectionClosed, GrpcSubscribe, Ping
from nacos_actors.model import ServiceKey
from nacos_actors.node import push_cores
from tests.http.conftest import BASE
from tests.nodes import fail_test

ORDERS = ServiceKey("public", "DEFAULT_GROUP@@orders")


@pytest.fixture
def front(front):
    """The front with a real push actor (its stream writes go nowhere: no connection layer)."""
    board = PushBoard()
    driver = PushDriver(
        push_cores(front.settings), board, ActorOutbox(None, front.bridge.actors), front.metrics, front.view.service
    )
    front.bridge.actors.add(PUSH, DriverActor.start(driver, front.metrics, fail_test))
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
