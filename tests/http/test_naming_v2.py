"""The Nacos 2.x HTTP API (/v2/ns/...) through the real app: the envelope and Nacos's codes,
every endpoint, bad input refused with nothing stored, and v1/v2 seeing each other's writes.

Every test runs against a real RegistryActor; no response may be a 5xx.
"""

from __future__ import annotations

import pytest

from nacos_actors.core.streams import ConnectionSummary
from nacos_actors.model import InstanceKey, ServiceKey
from tests.http.support import enveloped, enveloped_data

V1 = "/nacos/v1/ns"
V2 = "/nacos/v2/ns"
SERVICE = "demo"
IP = "127.0.0.1"
GROUPED = f"DEFAULT_GROUP@@{SERVICE}"


async def answer(client, method, path, params=None, via="query", status=200):
    """The enveloped answer of `method` V2+`path`, which must have `status`."""
    return await enveloped(client, method, f"{V2}{path}", params, via, status)


async def data(client, method, path, params=None, via="query"):
    """The `data` of a successful call (code 0, message success)."""
    return await enveloped_data(client, method, f"{V2}{path}", params, via)


async def register(client, ip=IP, port=8080, service=SERVICE, **extra):
    params = {"serviceName": service, "ip": ip, "port": str(port), **extra}
    assert await data(client, "POST", "/instance", params) == "ok"


async def hosts(client, service=SERVICE, **extra):
    return (await data(client, "GET", "/instance/list", {"serviceName": service, **extra}))["hosts"]


def stored(front, service=SERVICE, namespace="public"):
    found = front.service(ServiceKey(namespace, f"DEFAULT_GROUP@@{service}"))
    return {} if found is None else dict(found.instances)


# -- instances -----------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["query", "form"])
async def test_register_list_detail_deregister(client, via):
    params = {"serviceName": SERVICE, "ip": IP, "port": "8080", "weight": "2", "metadata": '{"v":"1"}'}
    assert await data(client, "POST", "/instance", params, via) == "ok"
    [host] = await hosts(client)
    assert (host["ip"], host["port"], host["weight"], host["metadata"]) == (IP, 8080, 2.0, {"v": "1"})
    assert host["serviceName"] == GROUPED
    info = await data(client, "GET", "/instance/list", {"serviceName": SERVICE})
    assert (info["name"], info["groupName"], info["clusters"]) == (SERVICE, "DEFAULT_GROUP", "")
    detail = await data(client, "GET", "/instance", {"serviceName": SERVICE, "ip": IP, "port": "8080"})
    assert detail == {
        "serviceName": GROUPED,
        "ip": IP,
        "port": 8080,
        "clusterName": "DEFAULT",
        "weight": 2.0,
        "healthy": True,
        "instanceId": f"{IP}#8080#DEFAULT#{GROUPED}",
        "metadata": {"v": "1"},
    }
    assert await data(client, "DELETE", "/instance", {"serviceName": SERVICE, "ip": IP, "port": "8080"}, via) == "ok"
    assert await hosts(client) == []


async def test_update_needs_the_instance_and_replaces_it(client, front):
    params = {"serviceName": SERVICE, "ip": IP, "port": "8080", "weight": "3"}
    refused = await answer(client, "PUT", "/instance", params, status=400)
    assert (refused["code"], refused["message"]) == (21004, "instance error"), refused
    assert stored(front) == {}
    await register(client, port=1)
    refused = await answer(client, "PUT", "/instance", params, status=400)
    assert (refused["code"], refused["message"]) == (21003, "instance not found"), refused
    await register(client)
    assert await data(client, "PUT", "/instance", params) == "ok"
    assert {h["port"]: h["weight"] for h in await hosts(client)} == {1: 1.0, 8080: 3.0}


async def test_patch_answers_plain_ok(client):
    await register(client, metadata='{"a":"1"}')
    response = await client.patch(
        f"{V2}/instance", params={"serviceName": SERVICE, "ip": IP, "port": "8080", "weight": "5"}
    )
    assert (response.status, await response.text()) == (200, "ok")
    [host] = await hosts(client)
    assert (host["weight"], host["metadata"]) == (5.0, {"a": "1"})


async def test_list_by_cluster_and_healthy_only(client):
    await register(client, port=1, clusterName="a")
    await register(client, port=2, clusterName="b", healthy="false")
    assert [h["port"] for h in await hosts(client, clusterName="a")] == [1]
    assert sorted(h["port"] for h in await hosts(client, clusterName="b,a")) == [1, 2]
    assert [h["port"] for h in await hosts(client, healthyOnly="true")] == [1]


async def test_list_of_an_unknown_service_is_empty(client):
    info = await data(client, "GET", "/instance/list", {"serviceName": "nothing"})
    assert info["hosts"] == []


async def test_detail_of_an_unknown_instance_is_404_resource_not_found(client):
    document = await answer(client, "GET", "/instance", {"serviceName": SERVICE, "ip": IP, "port": "1"}, status=404)
    assert (document["code"], document["message"]) == (20004, "resource not found")
    assert "no service" in document["data"]


async def test_metadata_batch(client):
    await register(client, port=1)
    await register(client, port=2)
    targets = '[{"ip":"127.0.0.1","port":1,"clusterName":"DEFAULT","ephemeral":true}]'
    params = {"serviceName": SERVICE, "metadata": '{"k":"v"}', "instances": targets}
    updated = await data(client, "PUT", "/instance/metadata/batch", params)
    assert updated == {"updated": [f"{IP}:1:unknown:DEFAULT"]} or len(updated["updated"]) == 1
    assert {h["port"]: h["metadata"] for h in await hosts(client)} == {1: {"k": "v"}, 2: {}}
    await data(client, "DELETE", "/instance/metadata/batch", params)
    assert {h["port"]: h["metadata"] for h in await hosts(client)} == {1: {}, 2: {}}


async def test_beat_answers_as_v1(client):
    await register(client)
    response = await client.put(f"{V2}/instance/beat", params={"serviceName": SERVICE, "ip": IP, "port": "8080"})
    assert response.status == 200
    assert (await response.json())["code"] == 10200
    response = await client.put(f"{V2}/instance/beat", params={"serviceName": SERVICE, "ip": IP, "port": "9"})
    assert (await response.json())["code"] == 20404


# -- bad input: 400 naming the parameter, Nacos's code, nothing stored ---------------------


@pytest.mark.parametrize(
    ("params", "code", "named"),
    [
        ({"ip": IP, "port": "8080"}, 10000, "serviceName"),
        ({"serviceName": SERVICE, "port": "8080"}, 10000, "ip"),
        ({"serviceName": SERVICE, "ip": IP}, 10000, "port"),
        ({"serviceName": SERVICE, "ip": IP, "port": "0"}, 20002, "port"),
        ({"serviceName": SERVICE, "ip": "not an ip", "port": "1"}, 20002, "ip"),
        ({"serviceName": SERVICE, "ip": IP, "port": "1", "weight": "10001"}, 21001, "weight"),
        ({"serviceName": SERVICE, "ip": IP, "port": "1", "metadata": "x"}, 20002, "metadata"),
        ({"serviceName": SERVICE, "ip": IP, "port": "1", "healthy": "maybe"}, 20002, "healthy"),
        ({"serviceName": "a b", "ip": IP, "port": "1"}, 20002, "serviceName"),
        ({"serviceName": SERVICE, "ip": IP, "port": "1", "namespaceId": "../x"}, 20002, "namespaceId"),
    ],
)
async def test_bad_register_is_refused_and_stores_nothing(client, front, params, code, named):
    document = await answer(client, "POST", "/instance", params, status=400)
    assert document["code"] == code, document
    assert f"'{named}'" in document["data"], document
    assert front.view.instance_count == 0


async def test_missing_parameter_messages(client):
    document = await answer(client, "GET", "/instance/list", {}, status=400)
    assert document == {"code": 10000, "message": "parameter missing", "data": "Param 'serviceName' is required."}


# -- v1 and v2 see each other ----------------------------------------------------------------


async def test_v1_and_v2_see_each_others_instances(client):
    await register(client, port=1)
    response = await client.post(f"{V1}/instance", params={"serviceName": SERVICE, "ip": IP, "port": "2"})
    assert response.status == 200
    v1_list = await (await client.get(f"{V1}/instance/list", params={"serviceName": SERVICE})).json()
    assert sorted(h["port"] for h in v1_list["hosts"]) == [1, 2]
    assert sorted(h["port"] for h in await hosts(client)) == [1, 2]
    response = await client.delete(f"{V1}/instance", params={"serviceName": SERVICE, "ip": IP, "port": "1"})
    assert response.status == 200
    assert [h["port"] for h in await hosts(client)] == [2]


# -- services ------------------------------------------------------------------------------


async def test_service_crud(client):
    params = {"serviceName": "svc", "protectThreshold": "0.5", "metadata": '{"m":"1"}'}
    assert await data(client, "POST", "/service", params) == "ok"
    again = await answer(client, "POST", "/service", params, status=400)
    assert (again["code"], again["message"]) == (21007, "service already exist")
    detail = await data(client, "GET", "/service", {"serviceName": "svc"})
    assert detail == {
        "namespace": "public",
        "serviceName": "svc",
        "groupName": "DEFAULT_GROUP",
        "clusterMap": {},
        "metadata": {"m": "1"},
        "protectThreshold": 0.5,
        "selector": {"type": "none"},
        "ephemeral": True,
    }
    # PUT replaces every field; the absent ones take their defaults.
    assert await data(client, "PUT", "/service", {"serviceName": "svc", "metadata": '{"n":"2"}'}) == "ok"
    detail = await data(client, "GET", "/service", {"serviceName": "svc"})
    assert (detail["protectThreshold"], detail["metadata"]) == (0.0, {"n": "2"})
    assert await data(client, "DELETE", "/service", {"serviceName": "svc"}) == "ok"
    missing = await answer(client, "GET", "/service", {"serviceName": "svc"}, status=400)
    assert (missing["code"], missing["message"]) == (21008, "service not exist")


async def test_a_service_with_instances_is_not_deleted(client):
    await register(client)
    refused = await answer(client, "DELETE", "/service", {"serviceName": SERVICE}, status=400)
    assert (refused["code"], refused["message"]) == (21009, "service delete failure")


async def test_service_detail_shows_clusters(client):
    await register(client, clusterName="c1")
    detail = await data(client, "GET", "/service", {"serviceName": SERVICE})
    assert list(detail["clusterMap"]) == ["c1"]
    assert detail["clusterMap"]["c1"]["healthChecker"]["type"] == "TCP"


async def test_service_list_pages_grouped_names_of_one_group(client):
    for name in ("s1", "s2", "s3"):
        await register(client, service=name)
    await register(client, service="other", groupName="G")
    listed = await data(client, "GET", "/service/list", {"pageSize": "2"})
    assert listed == {"count": 3, "services": ["DEFAULT_GROUP@@s1", "DEFAULT_GROUP@@s2"]}
    listed = await data(client, "GET", "/service/list", {"pageNo": "2", "pageSize": "2"})
    assert listed["services"] == ["DEFAULT_GROUP@@s3"]
    assert await data(client, "GET", "/service/list", {"groupName": "G"}) == {"count": 1, "services": ["G@@other"]}
    refused = await answer(client, "GET", "/service/list", {"pageNo": "0"}, status=400)
    assert "'pageNo'" in refused["data"]


# -- health ---------------------------------------------------------------------------------


async def test_health_of_an_instance_under_a_checker_is_refused(client):
    await register(client, ephemeral="false")
    params = {"serviceName": SERVICE, "ip": IP, "port": "8080", "healthy": "false"}
    refused = await answer(client, "PUT", "/health/instance", params, status=400)
    assert refused["code"] == 21011
    missing = await answer(client, "PUT", "/health", {"serviceName": SERVICE, "ip": IP, "port": "8080"}, status=400)
    assert (missing["code"], missing["data"]) == (10000, "Param 'healthy' is required.")


async def test_health_set_by_hand_where_the_checker_is_none(client):
    await register(client, ephemeral="false")
    cluster = {
        "serviceName": SERVICE,
        "clusterName": "DEFAULT",
        "checkPort": "80",
        "useInstancePort4Check": "true",
        "healthChecker": '{"type":"NONE"}',
    }
    assert (await client.put(f"{V1}/cluster", params=cluster)).status == 200
    params = {"serviceName": SERVICE, "ip": IP, "port": "8080", "healthy": "false"}
    assert await data(client, "PUT", "/health/instance", params) == "ok"
    detail = await data(client, "GET", "/instance", {"serviceName": SERVICE, "ip": IP, "port": "8080"})
    assert detail["healthy"] is False


# -- clients --------------------------------------------------------------------------------


def summary(connection_id="1700000000000_127.0.0.1_50001", published=(), subscribed=()):
    return ConnectionSummary(
        connection_id=connection_id,
        client_ip="127.0.0.9",
        remote_ip="127.0.0.1",
        remote_port=50001,
        client_version="Nacos-Python-Client:v3.2.0",
        namespace="public",
        labels=(("AppName", "shop"), ("source", "sdk")),
        connected_ms=1,
        last_active_ms=2,
        published=published,
        subscribed=subscribed,
    )


async def test_ip_port_clients_of_http_registrations(client):
    await register(client, port=1)
    await register(client, port=1, service="other")
    await register(client, port=2, ephemeral="false")
    ids = await data(client, "GET", "/client/list")
    assert ids == [f"{IP}:1#true", f"{IP}:2#false"]
    detail = await data(client, "GET", "/client", {"clientId": f"{IP}:1#true"})
    assert {k: detail[k] for k in ("clientId", "ephemeral", "clientType", "clientIp", "clientPort")} == {
        "clientId": f"{IP}:1#true",
        "ephemeral": True,
        "clientType": "ipPort",
        "clientIp": IP,
        "clientPort": "1",
    }
    assert detail["lastUpdatedTime"] > 0
    published = await data(client, "GET", "/client/publish/list", {"clientId": f"{IP}:1#true"})
    assert sorted(row["serviceName"] for row in published) == ["demo", "other"]
    assert published[0]["registeredInstance"] == {"ip": IP, "port": 1, "cluster": "DEFAULT"}
    assert await data(client, "GET", "/client/subscribe/list", {"clientId": f"{IP}:1#true"}) == []
    publishers = await data(client, "GET", "/client/service/publisher/list", {"serviceName": SERVICE})
    assert publishers == [{"ip": IP, "port": 1, "cluster": "DEFAULT", "clientId": f"{IP}:1#true"}]
    persistent = {"serviceName": SERVICE, "ephemeral": "false"}
    assert [r["clientId"] for r in await data(client, "GET", "/client/service/publisher/list", persistent)] == [
        f"{IP}:2#false"
    ]


async def test_connection_clients(client, front):
    service = ServiceKey("public", GROUPED)
    await register(client, port=7)
    connection = summary(published=((service, InstanceKey(IP, 7, "DEFAULT", True)),), subscribed=((service, ""),))
    front.connections = lambda: (connection,)
    assert await data(client, "GET", "/client/list") == [connection.connection_id]
    detail = await data(client, "GET", "/client", {"clientId": connection.connection_id})
    assert detail == {
        "clientId": connection.connection_id,
        "ephemeral": True,
        "lastUpdatedTime": 2,
        "clientType": "connection",
        "connectType": "GRPC",
        "appName": "shop",
        "version": "Nacos-Python-Client:v3.2.0",
        "clientIp": "127.0.0.9",
        "clientPort": "50001",
    }
    published = await data(client, "GET", "/client/publish/list", {"clientId": connection.connection_id})
    assert published == [
        {
            "namespace": "public",
            "group": "DEFAULT_GROUP",
            "serviceName": SERVICE,
            "registeredInstance": {"ip": IP, "port": 7, "cluster": "DEFAULT"},
        }
    ]
    subscribed = await data(client, "GET", "/client/subscribe/list", {"clientId": connection.connection_id})
    assert subscribed == [
        {
            "namespace": "public",
            "group": "DEFAULT_GROUP",
            "serviceName": SERVICE,
            "subscriberInfo": {"app": "shop", "agent": "Nacos-Python-Client:v3.2.0", "addr": "127.0.0.9"},
        }
    ]
    publishers = await data(client, "GET", "/client/service/publisher/list", {"serviceName": SERVICE})
    assert [row["clientId"] for row in publishers] == [connection.connection_id]
    subscribers = await data(client, "GET", "/client/service/subscriber/list", {"serviceName": SERVICE})
    assert subscribers == [{"clientId": connection.connection_id, "ip": "127.0.0.9", "port": 0}]
    narrowed = {"serviceName": SERVICE, "ip": "127.0.0.8"}
    assert await data(client, "GET", "/client/service/subscriber/list", narrowed) == []


async def test_an_unknown_client_is_404(client):
    refused = await answer(client, "GET", "/client", {"clientId": "nobody"}, status=404)
    assert refused == {"code": 20004, "message": "resource not found", "data": "clientId [ nobody ] not exist"}
    missing = await answer(client, "GET", "/client/publish/list", {}, status=400)
    assert missing["code"] == 10000


# -- operator -------------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["/operator", "/ops"])
async def test_operator_views(client, front, base):
    assert await data(client, "GET", f"{base}/metrics") == {"status": "UP"}
    await register(client, port=1)
    await register(client, port=2, ephemeral="false")
    front.connections = lambda: (summary(subscribed=((ServiceKey("public", GROUPED), ""),)),)
    full = await data(client, "GET", f"{base}/metrics", {"onlyStatus": "false"})
    assert {k: full[k] for k in full if k not in ("load", "cpu", "mem")} == {
        "status": "UP",
        "serviceCount": 1,
        "instanceCount": 2,
        "subscribeCount": 1,
        "clientCount": 3,
        "connectionBasedClientCount": 1,
        "ephemeralIpPortClientCount": 1,
        "persistentIpPortClientCount": 1,
        "responsibleClientCount": 3,
    }
    switches = await data(client, "GET", f"{base}/switches")
    assert switches["name"] == "00-00---000-NACOS_SWITCH_DOMAIN-000---00-00"


async def test_bytes_that_are_not_utf8_are_echoed_as_escapes(client):
    response = await client.get(f"{V2}/client?clientId=%FF%FE")
    assert response.status == 404
    document = await response.json()
    assert document["data"] == "clientId [ \\udcff\\udcfe ] not exist"


# Every endpoint refuses a bad parameter in the envelope, naming it, and stores nothing.
BAD_REQUESTS = [
    ("DELETE", "/instance", {"serviceName": SERVICE, "ip": IP, "port": "65536"}, "port"),
    ("PUT", "/instance", {"serviceName": SERVICE, "ip": IP, "port": "1", "enabled": "x"}, "enabled"),
    ("PATCH", "/instance", {"serviceName": SERVICE, "ip": IP, "port": "1", "weight": "nan"}, "weight"),
    ("GET", "/instance", {"serviceName": SERVICE, "ip": IP}, "port"),
    ("GET", "/instance/list", {"serviceName": SERVICE, "healthyOnly": "x"}, "healthyOnly"),
    ("GET", "/instance/list", {"serviceName": SERVICE, "port": "-1"}, "port"),
    ("PUT", "/instance/metadata/batch", {"serviceName": SERVICE}, "metadata"),
    ("DELETE", "/instance/metadata/batch", {"serviceName": SERVICE, "metadata": "a=b", "instances": "{"}, "instances"),
    ("PUT", "/instance/beat", {"serviceName": SERVICE, "beat": "[]"}, "beat"),
    ("POST", "/service", {"serviceName": SERVICE, "protectThreshold": "2"}, "protectThreshold"),
    ("PUT", "/service", {"serviceName": SERVICE, "selector": "{}"}, "selector"),
    ("DELETE", "/service", {"groupName": "a b", "serviceName": SERVICE}, "groupName"),
    ("GET", "/service", {}, "serviceName"),
    ("GET", "/service/list", {"pageSize": "x"}, "pageSize"),
    ("PUT", "/health/instance", {"serviceName": SERVICE, "ip": IP, "port": "1", "healthy": "x"}, "healthy"),
    ("GET", "/client", {}, "clientId"),
    ("GET", "/client/service/publisher/list", {"serviceName": SERVICE, "ip": "x y"}, "ip"),
    ("GET", "/client/service/subscriber/list", {"serviceName": SERVICE, "port": "0"}, "port"),
    ("GET", "/operator/metrics", {"onlyStatus": "x"}, "onlyStatus"),
]


@pytest.mark.parametrize(("method", "path", "params", "named"), BAD_REQUESTS)
async def test_every_endpoint_refuses_a_bad_parameter_in_the_envelope(client, front, method, path, params, named):
    await register(client, service="kept")
    before = (front.view.service_count, front.view.instance_count)
    document = await answer(client, method, path, params, status=400)
    assert document["code"] in (10000, 20002, 21001), document
    assert f"'{named}'" in document["data"], document
    assert (front.view.service_count, front.view.instance_count) == before
