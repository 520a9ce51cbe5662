"""Subscribing through instance/list, and the push endpoints: push/state, service/subscribers."""

from __future__ import annotations

from dataclasses import replace

import pykka
import pytest

from nacos_actors.core.push import PushStats, Refusing, SubscriberKey, Subscription
from nacos_actors.messages import PUSH, QuerySubscribers, Subscribe
from nacos_actors.model import ServiceKey
from tests.http.conftest import BASE

JAVA = {"User-Agent": "Nacos-Java-Client:v1.4.8"}
NODE = {"User-Agent": "Nacos-Java-Client:v1.0.0", "Client-Version": "Nacos-Java-Client:v1.0.0"}
PYTHON = {"User-Agent": "Nacos-Python-Client:v0.1.16"}


class FakePusher(pykka.ThreadingActor):
    """Stands in for the PushActor: keeps the Subscribe messages and answers QuerySubscribers."""

    def __init__(self) -> None:
        super().__init__()
        self.subscriptions: dict[SubscriberKey, Subscription] = {}

    def on_receive(self, message):
        if isinstance(message, Subscribe):
            self.subscriptions[message.subscription.key] = message.subscription
        elif isinstance(message, QuerySubscribers):
            found = tuple(s for k, s in self.subscriptions.items() if k.service.namespace == message.namespace)
            message.reply.resolve(found)
        return None

    def told(self) -> list[Subscription]:
        return list(self.subscriptions.values())


@pytest.fixture
def pusher():
    ref = FakePusher.start()
    yield ref
    ref.stop()


@pytest.fixture
def front(front, pusher):
    front.bridge.actors.add(PUSH, pusher)
    front.push_enabled = True
    return front


def subscribed(pusher) -> list[Subscription]:
    return pusher.proxy().told().get(timeout=5)


async def list_json(client, headers, **params):
    response = await client.get(f"{BASE}/instance/list", params={"serviceName": "orders", **params}, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


@pytest.mark.parametrize("headers", [JAVA, NODE, {"User-Agent": "Nacos-Go-Client:v2.2.0"}, {"User-Agent": "Nacos-DNS:v1.0.0"}])
async def test_a_push_client_with_udp_port_subscribes_its_source_address(client, pusher, headers):
    body = await list_json(client, headers, udpPort="40001", clusters="A,B", app="shop")
    assert body["cacheMillis"] == 10_000
    (subscription,) = subscribed(pusher)
    assert subscription.key == SubscriberKey(ServiceKey("public", "DEFAULT_GROUP@@orders"), "A,B", "127.0.0.1", 40001)
    assert subscription.clusters == ("A", "B")
    assert subscription.app == "shop"


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        (PYTHON, {"udpPort": "40001"}),
        ({"User-Agent": "curl/8"}, {"udpPort": "40001"}),
        ({"User-Agent": "Nacos-Go-Client:v0.0.9"}, {"udpPort": "40001"}),
        ({"User-Agent": "Nacos-DNS:v0.4.2"}, {"udpPort": "40001"}),
        (JAVA, {}),
        (JAVA, {"udpPort": "0"}),
    ],
)
async def test_no_subscription_without_a_push_client_and_a_udp_port(client, pusher, headers, params):
    body = await list_json(client, headers, **params)
    assert body["cacheMillis"] == 3_000
    assert subscribed(pusher) == []


async def test_a_different_client_ip_is_not_trusted_by_default(client, pusher):
    await list_json(client, JAVA, udpPort="40001", clientIP="127.0.0.2")
    (subscription,) = subscribed(pusher)
    assert subscription.key.address == "127.0.0.1"


class TestTrustedClientIp:
    @pytest.fixture
    def settings(self, settings):
        return replace(settings, push_trust_client_ip=True)

    async def test_a_trusted_client_ip_becomes_the_target(self, client, pusher):
        await list_json(client, JAVA, udpPort="40001", clientIP="127.0.0.2")
        (subscription,) = subscribed(pusher)
        assert subscription.key.address == "127.0.0.2"

    async def test_a_host_name_is_never_a_target(self, client, pusher):
        await list_json(client, JAVA, udpPort="40001", clientIP="localhost")
        (subscription,) = subscribed(pusher)
        assert subscription.key.address == "127.0.0.1"


class TestPushOff:
    @pytest.fixture
    def front(self, front):
        front.push_enabled = False
        return front

    async def test_without_push_nobody_subscribes_and_cache_millis_stays_3000(self, client):
        body = await list_json(client, JAVA, udpPort="40001")
        assert body["cacheMillis"] == 3_000
        response = await client.get(f"{BASE}/service/subscribers", params={"serviceName": "orders"})
        assert await response.json() == {"subscribers": [], "count": 0}


@pytest.mark.parametrize(("name", "value"), [("udpPort", "65536"), ("udpPort", "x"), ("udpPort", "-1"), ("clientIP", "1.2.3")])
async def test_bad_push_parameters_are_400s_naming_them(client, pusher, name, value):
    response = await client.get(f"{BASE}/instance/list", params={"serviceName": "orders", name: value}, headers=JAVA)
    assert response.status == 400
    assert name in await response.text()
    assert subscribed(pusher) == []


async def test_subscribers_are_listed_with_nacos_fuzzy_matching_and_paging(client, pusher):
    await list_json(client, JAVA, udpPort="40001")
    await list_json(client, JAVA, serviceName="orders-v2", udpPort="40002")
    await list_json(client, JAVA, serviceName="users", udpPort="40003")
    await list_json(client, JAVA, udpPort="40004", namespaceId="dev")
    response = await client.get(f"{BASE}/service/subscribers", params={"serviceName": "orders"})
    body = await response.json()
    assert body["count"] == 2
    assert [row["serviceName"] for row in body["subscribers"]] == ["DEFAULT_GROUP@@orders", "DEFAULT_GROUP@@orders-v2"]
    assert body["subscribers"][0] == {
        "addrStr": "127.0.0.1:40001",
        "agent": "Nacos-Java-Client:v1.4.8",
        "app": "",
        "ip": "127.0.0.1",
        "port": 40001,
        "namespaceId": "public",
        "serviceName": "DEFAULT_GROUP@@orders",
        "cluster": "",
    }
    paged = await (await client.get(f"{BASE}/service/subscribers", params={"serviceName": "orders", "pageNo": "2", "pageSize": "1"})).json()
    assert paged["count"] == 2 and [r["port"] for r in paged["subscribers"]] == [40002]
    dev = await (await client.get(f"{BASE}/service/subscribers", params={"serviceName": "orders", "namespaceId": "dev"})).json()
    assert [r["port"] for r in dev["subscribers"]] == [40004]


@pytest.mark.parametrize(
    "params",
    [{}, {"serviceName": "orders", "pageNo": "0"}, {"serviceName": "orders", "aggregation": "maybe"}, {"serviceName": "bad name"}],
)
async def test_bad_subscriber_queries_are_400s(client, params):
    response = await client.get(f"{BASE}/service/subscribers", params=params)
    assert response.status == 400


async def test_push_state_reports_the_published_counters(client, front):
    front.push_board.stats = PushStats(
        subscribers=2, total=12, acked=6, failed=2, superseded=1, dropped=1, cost_total_ms=12, cost_max_ms=5, refused=3
    )
    body = await (await client.get(f"{BASE}/operator/push/state")).json()
    # succeed: acknowledged; ratio: acknowledged of those that ended acknowledged, failed or dropped
    assert body["succeed"] == 6 and body["total"] == 12 and body["ratio"] == 6 / 9
    assert (body["failed"], body["acked"], body["superseded"], body["avgPushCost"], body["maxPushCost"]) == (2, 6, 1, 2.0, 5)
    assert (body["dropped"], body["refusedSubscriptions"]) == (1, 3)
    assert body["reset"] is False
    same = await (await client.get(f"{BASE}/ops/push/state", params={"detail": "true", "reset": "true"})).json()
    assert same["total"] == 12
    bad = await client.get(f"{BASE}/operator/push/state", params={"reset": "yes"})
    assert bad.status == 400 and "reset" in await bad.text()


async def test_push_state_of_a_fresh_node_has_ratio_zero(client):
    body = await (await client.get(f"{BASE}/operator/push/state")).json()
    assert (body["succeed"], body["total"], body["ratio"]) == (0, 0, 0)


async def test_push_state_ratio_is_zero_while_nothing_was_acknowledged(client, front):
    # The finding: 5,000 pushes sent, none acked yet, and Nacos's formula said ratio 1.0.
    front.push_board.stats = PushStats(subscribers=5_000, total=5_000, awaiting_ack=5_000)
    body = await (await client.get(f"{BASE}/operator/push/state")).json()
    assert (body["succeed"], body["total"], body["ratio"], body["awaitingAck"]) == (0, 5_000, 0, 5_000)
    front.push_board.stats = PushStats(subscribers=5_000, total=5_000, failed=5_000)
    body = await (await client.get(f"{BASE}/operator/push/state")).json()
    assert (body["succeed"], body["ratio"]) == (0, 0)


async def test_a_push_client_where_subscriptions_are_refused_is_told_to_poll_at_the_polling_pace(client, front, pusher):
    front.push_board.refusing = Refusing(addresses=frozenset({"127.0.0.1"}))
    body = await list_json(client, JAVA, udpPort="40001")
    assert body["cacheMillis"] == 3000  # it may not be pushed to
    assert [s.key.port for s in subscribed(pusher)] == [40001]  # a known subscriber still refreshes
    front.push_board.refusing = Refusing()
    assert (await list_json(client, JAVA, udpPort="40001"))["cacheMillis"] == 10_000


async def test_switches_show_the_push_and_health_settings(client):
    body = await (await client.get(f"{BASE}/operator/switches")).json()
    assert body["pushEnabled"] is True and body["healthCheckEnabled"] is True
    assert body["defaultPushCacheMillis"] == 10_000


async def test_a_v2_list_with_a_udp_port_subscribes_as_v1s_does(client, front, pusher):
    params = {"serviceName": "orders", "port": "40001", "clusterName": "A,B", "app": "shop"}
    response = await client.get("/nacos/v2/ns/instance/list", params=params, headers=JAVA)
    document = await response.json()
    assert document["data"]["cacheMillis"] == front.settings.push_cache_ms
    [subscription] = subscribed(pusher)
    assert subscription.key == SubscriberKey(ServiceKey("public", "DEFAULT_GROUP@@orders"), "A,B", "127.0.0.1", 40001)
    assert (subscription.clusters, subscription.app) == (("A", "B"), "shop")
    # The subscriber view lists it as Nacos 2.x names a UDP subscriber.
    view = await client.get("/nacos/v2/ns/client/service/subscriber/list", params={"serviceName": "orders"})
    assert (await view.json())["data"] == [{"clientId": "127.0.0.1:40001#true", "ip": "127.0.0.1", "port": 40001}]
