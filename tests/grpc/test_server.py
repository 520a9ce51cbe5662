"""The gRPC server against a raw client built from our generated module: the connection
sequence (server check, setup, 301 before it, health check, detection and eviction, the end of a
stream), the naming requests with Nacos's fields and codes, bad input answered 400 naming the
field with nothing stored, and server requests written through the StreamSink."""

from __future__ import annotations

import asyncio

import pytest

from nacos_actors.core.streams import StreamPush
from nacos_actors.model import InstanceKey, ServiceKey
from tests.grpc.support import EVENT_TIMEOUT_S, Client

SERVICE = ServiceKey("public", "DEFAULT_GROUP@@svc")


def instance_request(port: int = 8080, kind: str = "registerInstance", **instance) -> dict:
    return {
        "namespace": "public",
        "serviceName": "svc",
        "groupName": "DEFAULT_GROUP",
        "type": kind,
        "instance": {"ip": "127.0.0.1", "port": port, **instance},
        "headers": {},
        "requestId": "",
    }


def ports(front, key: ServiceKey = SERVICE) -> list[int]:
    service = front.service(key)
    return sorted(k.port for k in service.instances) if service is not None else []


async def until(condition, timeout: float = EVENT_TIMEOUT_S) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def received(client: Client, kind: str) -> dict:
    while True:
        got, body = await asyncio.wait_for(client.received.get(), EVENT_TIMEOUT_S)
        if got == kind:
            return body


async def test_server_check_answers_before_setup(client):
    kind, body = await client.call("ServerCheckRequest", {"headers": {}, "requestId": ""})
    assert kind == "ServerCheckResponse"
    assert body["resultCode"] == 200 and body["errorCode"] == 0
    assert body["supportAbilityNegotiation"] is False
    assert body["connectionId"].startswith("127.0.0.1_")
    assert "requestId" not in body and "message" not in body


async def test_a_request_before_setup_gets_301(client, node):
    kind, body = await client.call("InstanceRequest", instance_request())
    assert (kind, body["resultCode"], body["errorCode"]) == ("ErrorResponse", 500, 301)
    assert ports(node[1]) == []


async def test_an_unknown_type_gets_302_and_bad_bodies_400(client):
    kind, body = await client.call("NoSuchRequest", {})
    assert (kind, body["errorCode"], body["message"]) == ("ErrorResponse", 302, "RequestHandler Not Found")
    for bad in (b"{not json", b"[1, 2]", b'"text"'):
        kind, body = await client.call("InstanceRequest", bad)
        assert (kind, body["resultCode"], body["errorCode"]) == ("ErrorResponse", 500, 400), bad
        assert "InstanceRequest" in body["message"]


async def test_setup_then_health_check_and_register_query_deregister(client, node):
    server, front = node
    connection_id = await client.connect()
    await client.until_set_up()
    kind, body = await client.call("HealthCheckRequest", {"requestId": None})
    assert (kind, body) == ("HealthCheckResponse", {"resultCode": 200, "errorCode": 0})
    kind, body = await client.call("InstanceRequest", instance_request(metadata={"k": "v"}, weight=2.5))
    assert (kind, body) == ("InstanceResponse", {"resultCode": 200, "errorCode": 0, "type": "registerInstance"})
    stored = front.service(SERVICE).instances[InstanceKey("127.0.0.1", 8080, "DEFAULT", True)]
    assert (stored.weight, dict(stored.metadata)) == (2.5, {"k": "v"})
    assert stored.instance_id == "127.0.0.1#8080#DEFAULT#DEFAULT_GROUP@@svc"
    assert server.table.owner_of(SERVICE, stored.key) == connection_id
    # Python's `healthOnly`, Rust's nulls
    query = {"namespace": None, "serviceName": "svc", "groupName": None, "cluster": None, "healthOnly": True}
    kind, body = await client.call("ServiceQueryRequest", query)
    assert kind == "QueryServiceResponse"
    info = body["serviceInfo"]
    assert (info["name"], info["groupName"], info["clusters"]) == ("svc", "DEFAULT_GROUP", "")
    assert [h["port"] for h in info["hosts"]] == [8080]
    (summary,) = front.connections()
    assert summary.connection_id == connection_id and summary.client_version == "Nacos-Python-Client:v3.2.0"
    kind, body = await client.call("InstanceRequest", instance_request(kind="deregisterInstance"))
    assert (kind, body["type"]) == ("InstanceResponse", "deregisterInstance")
    assert ports(front) == []
    assert server.table.owner_of(SERVICE, stored.key) is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "updateInstance"}, "type"),
        ({"serviceName": None}, "serviceName"),
        ({"serviceName": "bad name"}, "serviceName"),
        ({"namespace": "bad/ns"}, "namespace"),
        ({"groupName": 7}, "groupName"),
        ({"instance": {"ip": "not an ip!", "port": 1}}, "instance.ip"),
        ({"instance": {"ip": "127.0.0.1", "port": 0}}, "instance.port"),
        ({"instance": {"ip": "127.0.0.1", "port": 1, "weight": -1}}, "instance.weight"),
        ({"instance": {"ip": "127.0.0.1", "port": 1, "clusterName": "a b"}}, "instance.clusterName"),
        ({"instance": {"ip": "127.0.0.1", "port": 1, "metadata": {"k": [1]}}}, "instance.metadata"),
        ({"instance": {"ip": "127.0.0.1", "port": 1, "metadata": {"k": "x" * 20_000}}}, "instance.metadata"),
        ({"instance": {"ip": "127.0.0.1", "port": 1, "healthy": "yes"}}, "instance.healthy"),
        ({"instance": {"ip": "127.0.0.1", "port": 1, "ephemeral": False}}, "instance.ephemeral"),
        ({"instance": None}, "instance"),
    ],
)
async def test_bad_fields_get_400_naming_them_and_store_nothing(client, node, change, field):
    await client.connect()
    await client.until_set_up()
    kind, body = await client.call("InstanceRequest", {**instance_request(), **change})
    assert (kind, body["resultCode"], body["errorCode"]) == ("ErrorResponse", 500, 400)
    assert f"'{field}'" in body["message"], body["message"]
    assert node[1].view.instance_count == 0


async def test_batch_register_replaces_the_connections_set(client, node):
    _server, front = node
    await client.connect()
    await client.until_set_up()
    batch = {"namespace": "public", "serviceName": "svc", "groupName": "DEFAULT_GROUP", "type": "batchRegisterInstance"}
    listed = [{"ip": "127.0.0.1", "port": p} for p in (1, 2, 3)]
    kind, body = await client.call("BatchInstanceRequest", {**batch, "instances": listed})
    assert (kind, body["type"]) == ("BatchInstanceResponse", "batchRegisterInstance")
    assert ports(front) == [1, 2, 3]
    await client.call("BatchInstanceRequest", {**batch, "instances": listed[1:]})
    assert ports(front) == [2, 3]
    await client.call("BatchInstanceRequest", {**batch, "instances": []})  # Python's batch deregister
    assert ports(front) == []
    kind, body = await client.call("BatchInstanceRequest", {**batch, "type": "batchDeregisterInstance"})
    assert (kind, body["errorCode"]) == ("ErrorResponse", 400)
    kind, body = await client.call("BatchInstanceRequest", {**batch, "instances": [{"ip": "127.0.0.1"}]})
    assert (kind, body["errorCode"]) == ("ErrorResponse", 400)
    assert "instances[0].port" in body["message"]


async def test_the_end_of_a_stream_removes_its_instances_but_not_persistent_ones(client, node):
    _server, front = node
    await client.connect()
    await client.until_set_up()
    await client.call("InstanceRequest", instance_request(1))
    kind, body = await client.call("PersistentInstanceRequest", instance_request(2))
    assert (kind, body["type"]) == ("InstanceResponse", "registerInstance")
    assert front.service(SERVICE).instances[InstanceKey("127.0.0.1", 2, "DEFAULT", False)].ephemeral is False
    await client.end_stream()
    await until(lambda: ports(front) == [2])
    assert front.connections() == ()
    # the connection is gone: its next call gets 301
    kind, body = await client.call("HealthCheckRequest", {})
    assert (kind, body["errorCode"]) == ("ErrorResponse", 301)


async def test_a_takeover_is_not_undone_when_the_old_connection_closes(node):
    server, front = node
    old, new = Client(server.port), Client(server.port)
    try:
        old_id = await old.connect()
        await old.until_set_up()
        await old.call("InstanceRequest", instance_request(1))
        await old.call("InstanceRequest", instance_request(2))
        new_id = await new.connect()
        await new.until_set_up()
        assert new_id != old_id
        await new.call("InstanceRequest", instance_request(1))
        assert server.table.owner_of(SERVICE, InstanceKey("127.0.0.1", 1, "DEFAULT", True)) == new_id
        assert server.table.owner_of(SERVICE, InstanceKey("127.0.0.1", 2, "DEFAULT", True)) == old_id
        await old.end_stream()
        await until(lambda: ports(front) == [1])
        assert [c.connection_id for c in front.connections()] == [new_id]
    finally:
        await old.close()
        await new.close()


async def test_a_silent_client_is_asked_and_evicted(client, node):
    _server, front = node
    client.answer_detection = False
    await client.connect()
    await client.until_set_up()
    await client.call("InstanceRequest", instance_request(1))
    detection = await received(client, "ClientDetectionRequest")
    assert detection["headers"] == {} and detection["requestId"]
    status = await received(client, "status")
    assert status["code"] == "UNAVAILABLE"
    await until(lambda: ports(front) == [])
    sample = front.metrics.registry.get_sample_value
    assert sample("nacos_actors_grpc_connections_closed_total", {"reason": "unanswered"}) == 1


async def test_a_client_that_answers_stays(client, node):
    _server, front = node
    await client.connect()
    await client.until_set_up()
    await client.call("InstanceRequest", instance_request(1))
    await received(client, "ClientDetectionRequest")
    await received(client, "ClientDetectionRequest")  # asked again after another idle period: still there
    assert ports(front) == [1]
    assert len(front.connections()) == 1


async def test_subscribe_answers_every_instance_and_list_services_pages(client, node):
    server, front = node
    connection_id = await client.connect()
    await client.until_set_up()
    await client.call("InstanceRequest", instance_request(1, healthy=False))
    subscribe = {"namespace": "public", "serviceName": "svc", "groupName": "DEFAULT_GROUP", "clusters": "DEFAULT"}
    kind, body = await client.call("SubscribeServiceRequest", {**subscribe, "subscribe": True})
    assert (kind, body["message"]) == ("SubscribeServiceResponse", "success")
    assert body["serviceInfo"]["clusters"] == "DEFAULT"
    assert [h["port"] for h in body["serviceInfo"]["hosts"]] == [1]
    assert front.connections()[0].subscribed == ((SERVICE, "DEFAULT"),)
    await client.call("SubscribeServiceRequest", {**subscribe, "subscribe": False})
    assert front.connections()[0].subscribed == ()
    for name in ("b", "c", "d"):
        await client.call("InstanceRequest", {**instance_request(1), "serviceName": name})
    kind, body = await client.call("ServiceListRequest", {"namespace": "", "pageNo": 2, "pageSize": 3, "groupName": ""})
    assert kind == "ServiceListResponse"
    assert (body["count"], body["serviceNames"]) == (4, ["DEFAULT_GROUP@@svc"])
    kind, body = await client.call("ServiceListRequest", {"pageNo": 1, "pageSize": 2, "selector": None})
    assert body["serviceNames"] == ["DEFAULT_GROUP@@b", "DEFAULT_GROUP@@c"]
    assert server.table.client_ip(connection_id) == "127.0.0.1"


async def test_stream_pushes_are_written_and_dropped_when_they_cannot_be(client, node):
    server, front = node
    connection_id = await client.connect()
    await client.until_set_up()
    body = b'{"headers":{},"requestId":"7","serviceInfo":{}}'
    server.async_send([StreamPush(connection_id, "NotifySubscriberRequest", body), StreamPush("nobody_1", "X", b"{}")])
    pushed = await received(client, "NotifySubscriberRequest")
    assert pushed["requestId"] == "7"
    sample = front.metrics.registry.get_sample_value
    assert sample("nacos_actors_grpc_stream_dropped_total") == 1


async def test_metrics_count_connections_and_requests(client, node):
    _server, front = node
    await client.connect("Nacos-Rust-Client:0.8.0")
    await client.until_set_up()
    await client.call("InstanceRequest", instance_request(1))
    await client.call("InstanceRequest", instance_request(0))
    sample = front.metrics.registry.get_sample_value
    assert sample("nacos_actors_grpc_connections", {"client": "rust"}) == 1
    assert sample("nacos_actors_grpc_client_versions", {"version": "Nacos-Rust-Client:0.8.0"}) == 1
    assert sample("nacos_actors_grpc_requests_total", {"type": "InstanceRequest", "outcome": "ok"}) == 1
    assert sample("nacos_actors_grpc_requests_total", {"type": "InstanceRequest", "outcome": "error"}) == 1
    assert sample("nacos_actors_grpc_request_seconds_count", {"type": "InstanceRequest"}) == 2
    assert sample("nacos_monitor", {"module": "core", "name": "longConnection"}) == 1
    await client.end_stream()
    await until(lambda: sample("nacos_actors_grpc_connections", {"client": "rust"}) == 0)
    assert sample("nacos_monitor", {"module": "core", "name": "longConnection"}) == 0


async def test_a_node_that_does_not_serve_yet_answers_300(client, node):
    _, front = node
    front.ready = False
    kind, body = await client.call("ServerCheckRequest", {})
    assert (kind, body["errorCode"]) == ("ErrorResponse", 300)


async def test_streams_past_grpc_max_connections_are_refused(settings):
    from dataclasses import replace

    from nacos_actors.grpc.server import GrpcServer
    from tests.nodes import registry_front, stop_actors

    settings = replace(settings, grpc_max_connections=1)
    front, _ = registry_front(settings)
    server = GrpcServer(settings, front.metrics.grpc, asyncio.get_running_loop())
    server.attach(front)
    await server.async_start("127.0.0.1", 0)
    first, second = Client(server.port), Client(server.port)
    try:
        await first.connect()
        await first.until_set_up()
        await second.connect()
        status = await received(second, "status")
        assert status["code"] == "RESOURCE_EXHAUSTED"
        assert front.metrics.registry.get_sample_value("nacos_actors_grpc_connections_refused_total") == 1
        assert len(front.connections()) == 1
    finally:
        await first.close()
        await second.close()
        await server.async_stop(0.5)
        stop_actors(front.bridge.actors)
