"""Console and operator endpoints: catalog, metrics, servers, switches, health, namespaces,
readiness/liveness and instance metadata/batch."""

from __future__ import annotations

import json

import pytest

from tests.http.conftest import BASE

CONSOLE = "/nacos/v1/console"
SERVICE = "demo"
IP = "127.0.0.1"




async def register(client, service=SERVICE, port=8080, **extra):
    response = await client.post(
        f"{BASE}/instance", params={"serviceName": service, "ip": IP, "port": str(port), **extra}
    )
    assert (response.status, await response.text()) == (200, "ok")


async def deregister(client, service=SERVICE, port=8080, **extra):
    response = await client.delete(
        f"{BASE}/instance", params={"serviceName": service, "ip": IP, "port": str(port), **extra}
    )
    assert (response.status, await response.text()) == (200, "ok")


async def get_json(client, path, params=None, status=200, **kwargs):
    response = await client.get(path, params=params, **kwargs)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def catalog_services(client, **params):
    return await get_json(client, f"{BASE}/catalog/services", {"pageNo": "1", "pageSize": "10", **params})


async def catalog_instances(client, service=SERVICE, cluster="DEFAULT", page_no=1, page_size=10, **params):
    return await get_json(client, f"{BASE}/catalog/instances", {
        "serviceName": service, "clusterName": cluster, "pageNo": str(page_no), "pageSize": str(page_size), **params})


# -- catalog/services --------------------------------------------------------------------


async def test_catalog_services_summary(client):
    await register(client, port=1, clusterName="a")
    await register(client, port=2, clusterName="b", healthy="false")
    await register(client, service="grp@@other", port=3)
    created = await client.post(f"{BASE}/service", params={"serviceName": "empty", "protectThreshold": "0.5"})
    assert created.status == 200
    body = await catalog_services(client)
    assert body == {
        "count": 3,
        "serviceList": [
            {"name": SERVICE, "groupName": "DEFAULT_GROUP", "clusterCount": 2, "ipCount": 2,
             "healthyInstanceCount": 1, "triggerFlag": "false"},
            {"name": "empty", "groupName": "DEFAULT_GROUP", "clusterCount": 0, "ipCount": 0,
             "healthyInstanceCount": 0, "triggerFlag": "false"},
            {"name": "other", "groupName": "grp", "clusterCount": 1, "ipCount": 1,
             "healthyInstanceCount": 1, "triggerFlag": "false"},
        ],
    }


async def test_catalog_services_trigger_flag(client):
    await register(client, port=1, healthy="false")
    await register(client, port=2)
    [row] = (await catalog_services(client))["serviceList"]
    assert row["triggerFlag"] == "false"
    response = await client.put(f"{BASE}/service", params={"serviceName": SERVICE, "protectThreshold": "0.5"})
    assert response.status == 200
    [row] = (await catalog_services(client))["serviceList"]
    assert row["triggerFlag"] == "true"


async def test_catalog_services_filters_and_paging(client):
    for name in ("alpha", "beta", "alphabet"):
        await register(client, service=name)
    await register(client, service="grp@@alpha")
    await client.post(f"{BASE}/service", params={"serviceName": "empty"})
    body = await catalog_services(client, serviceNameParam="alpha")
    assert [(r["groupName"], r["name"]) for r in body["serviceList"]] == [
        ("DEFAULT_GROUP", "alpha"), ("DEFAULT_GROUP", "alphabet"), ("grp", "alpha")]
    body = await catalog_services(client, groupNameParam="grp")
    assert [r["name"] for r in body["serviceList"]] == ["alpha"]
    body = await catalog_services(client, hasIpCount="true")
    assert body["count"] == 4 and "empty" not in [r["name"] for r in body["serviceList"]]
    body = await catalog_services(client, pageNo="2", pageSize="2")
    assert body["count"] == 5 and len(body["serviceList"]) == 2
    body = await catalog_services(client, pageNo="4", pageSize="2")
    assert (body["count"], body["serviceList"]) == (5, [])
    assert (await catalog_services(client, namespaceId="dev")) == {"count": 0, "serviceList": []}


async def test_catalog_services_with_instances(client):
    await register(client, port=1, clusterName="a", weight="2", metadata="k=v")
    await register(client, port=2, clusterName="b", healthy="false", enabled="false")
    body = await get_json(client, f"{BASE}/catalog/services", {"withInstances": "true"})
    assert body == [
        {
            "serviceName": SERVICE,
            "groupName": "DEFAULT_GROUP",
            "metadata": {},
            "clusterMap": {
                "a": {"hosts": [{"ip": IP, "port": 1, "valid": True, "weight": 2.0, "enabled": True,
                                 "metadata": {"k": "v"}}]},
                "b": {"hosts": [{"ip": IP, "port": 2, "valid": False, "weight": 1.0, "enabled": False,
                                 "metadata": {}}]},
            },
        }
    ]
    paged = await get_json(client, f"{BASE}/catalog/services",
                           {"withInstances": "True", "pageNo": "2", "pageSize": "1"})
    assert paged == []


@pytest.mark.parametrize("missing", ["pageNo", "pageSize"])
async def test_catalog_services_needs_paging_without_instances(client, missing):
    params = {"pageNo": "1", "pageSize": "10"}
    del params[missing]
    response = await client.get(f"{BASE}/catalog/services", params=params)
    assert response.status == 400
    assert missing in await response.text()


# -- catalog/service ---------------------------------------------------------------------


async def test_catalog_service_shows_the_settings_and_each_cluster_s_checker(client):
    await register(client, port=1, clusterName="a")
    checker = {"type": "MYSQL", "user": "probe", "pwd": "s3cret", "cmd": "SELECT 1"}
    response = await client.put(f"{BASE}/cluster", params={
        "serviceName": SERVICE, "clusterName": "db", "checkPort": "3306", "useInstancePort4Check": "false",
        "healthChecker": json.dumps(checker)})
    assert (response.status, await response.text()) == (200, "ok")
    body = await get_json(client, f"{BASE}/catalog/service", {"serviceName": SERVICE})
    assert body["service"] == {
        "name": SERVICE, "protectThreshold": 0.0, "groupName": "DEFAULT_GROUP", "selector": {"type": "none"},
        "metadata": {},
    }
    clusters = {c["name"]: c for c in body["clusters"]}
    assert clusters["a"]["healthChecker"] == {"type": "TCP"}
    assert clusters["db"]["healthChecker"] == {**checker, "pwd": "******"}
    assert (clusters["db"]["defaultCheckPort"], clusters["db"]["useIPPort4Check"]) == (3306, False)


async def test_catalog_service_of_an_unknown_service_is_a_404(client):
    response = await client.get(f"{BASE}/catalog/service", params={"serviceName": "nope", "groupName": "g"})
    assert (response.status, await response.text()) == (404, "service g@@nope is not found!")


# -- catalog/instances -------------------------------------------------------------------


async def test_catalog_instances_full_json_and_paging(client, front):
    front.clock = lambda: 1_800_000_000_000
    await register(client, port=1, clusterName="a", app="shop", metadata='{"preserved.heart.beat.timeout":"9000"}')
    await register(client, port=2, clusterName="a")
    await register(client, port=3, clusterName="b")
    body = await catalog_instances(client, cluster="a")
    assert body["count"] == 2
    first = body["list"][0]
    assert first == {
        "instanceId": "127.0.0.1#1#a#DEFAULT_GROUP@@demo",
        "ip": IP,
        "port": 1,
        "weight": 1.0,
        "healthy": True,
        "enabled": True,
        "ephemeral": True,
        "clusterName": "a",
        "serviceName": "DEFAULT_GROUP@@demo",
        "metadata": {"preserved.heart.beat.timeout": "9000"},
        "lastBeat": 1_800_000_000_000,
        "marked": False,
        "app": "shop",
        "instanceHeartBeatInterval": 5000,
        "instanceHeartBeatTimeOut": 9000,
        "ipDeleteTimeout": 30000,
        "instanceIdGenerator": "simple",
    }
    page = await catalog_instances(client, cluster="a", page_no=2, page_size=1)
    assert (page["count"], [r["port"] for r in page["list"]]) == (2, [2])
    beyond = await catalog_instances(client, cluster="a", page_no=3, page_size=1)
    assert (beyond["count"], beyond["list"]) == (2, [])
    grouped = await catalog_instances(client, service="DEFAULT_GROUP@@demo", cluster="b")
    assert [r["port"] for r in grouped["list"]] == [3]


async def test_catalog_instances_404s(client):
    response = await client.get(f"{BASE}/catalog/instances", params={
        "serviceName": SERVICE, "clusterName": "DEFAULT", "pageNo": "1", "pageSize": "10"})
    assert (response.status, await response.text()) == (404, "service DEFAULT_GROUP@@demo is not found!")
    await register(client)
    response = await client.get(f"{BASE}/catalog/instances", params={
        "serviceName": SERVICE, "clusterName": "c9", "pageNo": "1", "pageSize": "10"})
    assert (response.status, await response.text()) == (404, "cluster c9 is not found!")


@pytest.mark.parametrize("missing", ["serviceName", "clusterName", "pageNo", "pageSize"])
async def test_catalog_instances_required_params(client, missing):
    await register(client)
    params = {"serviceName": SERVICE, "clusterName": "DEFAULT", "pageNo": "1", "pageSize": "10"}
    del params[missing]
    response = await client.get(f"{BASE}/catalog/instances", params=params)
    assert response.status == 400
    assert missing in await response.text()


# -- operator ----------------------------------------------------------------------------


@pytest.mark.parametrize("base", [f"{BASE}/operator", f"{BASE}/ops"])
async def test_metrics_counts_agree_with_registrations(client, base):
    metrics = await get_json(client, f"{base}/metrics")
    assert metrics["status"] == "UP"
    assert (metrics["serviceCount"], metrics["instanceCount"]) == (0, 0)
    for field in ("raftNotifyTaskCount", "responsibleServiceCount", "responsibleInstanceCount", "cpu", "load", "mem"):
        assert field in metrics
    await register(client, port=1)
    await register(client, port=2)
    await register(client, port=2, clusterName="c1")
    await register(client, port=2, ephemeral="false")
    await register(client, service="other", port=1, namespaceId="dev")
    await register(client, port=1)  # a replacement is not a new instance
    await client.post(f"{BASE}/service", params={"serviceName": "empty"})
    metrics = await get_json(client, f"{base}/metrics")
    assert (metrics["serviceCount"], metrics["instanceCount"]) == (3, 5)
    assert (metrics["responsibleServiceCount"], metrics["responsibleInstanceCount"]) == (3, 5)
    await deregister(client, port=1)
    await deregister(client, port=99)
    await client.delete(f"{BASE}/service", params={"serviceName": "empty"})
    metrics = await get_json(client, f"{base}/metrics")
    assert (metrics["serviceCount"], metrics["instanceCount"]) == (2, 4)


async def test_metrics_status_while_not_ready(client, front):
    front.ready = False
    metrics = await get_json(client, f"{BASE}/operator/metrics")
    assert metrics["status"] != "UP"


@pytest.mark.parametrize("base", [f"{BASE}/operator", f"{BASE}/ops"])
async def test_servers_lists_this_node(client, base):
    body = await get_json(client, f"{base}/servers")
    [member] = body["servers"]
    assert (member["ip"], member["port"], member["state"], member["address"]) == (
        "127.0.0.1", 8848, "UP", "127.0.0.1:8848")
    assert member["extendInfo"]["raftPort"] == "7848"
    healthy = await get_json(client, f"{base}/servers", {"healthy": "true"})
    assert [m["address"] for m in healthy["servers"]] == ["127.0.0.1:8848"]


@pytest.mark.parametrize("base", [f"{BASE}/operator", f"{BASE}/ops"])
async def test_switches(client, base):
    body = await get_json(client, f"{base}/switches")
    assert body["name"] == "00-00---000-NACOS_SWITCH_DOMAIN-000---00-00"
    assert (body["clientBeatInterval"], body["lightBeatEnabled"], body["defaultInstanceEphemeral"]) == (
        5000, True, True)
    assert (body["defaultPushCacheMillis"], body["distroThreshold"], body["checkTimes"]) == (10000, 0.7, 3)
    assert body["tcpHealthParams"] == {"max": 5000, "min": 1000, "factor": 0.75}


async def test_health_server(client):
    await register(client)
    body = await get_json(client, f"{BASE}/health/server")
    assert body["msg"].startswith("Hello! I am Nacos-Naming and healthy! total services: 1")
    assert "local port:8848" in body["msg"]


# -- console -----------------------------------------------------------------------------


async def test_namespaces_lists_public_and_every_namespace_in_use(client):
    body = await get_json(client, f"{CONSOLE}/namespaces")
    assert body["code"] == 200
    assert body["data"] == [
        {"namespace": "", "namespaceShowName": "public", "quota": 200, "configCount": 0, "type": 0}]
    await register(client, namespaceId="test")
    await register(client, namespaceId="dev")
    await register(client)
    await client.post(f"{BASE}/service", params={"serviceName": "x", "namespaceId": "empty-ns"})
    body = await get_json(client, f"{CONSOLE}/namespaces")
    assert [(d["namespace"], d["namespaceShowName"], d["type"]) for d in body["data"]] == [
        ("", "public", 0), ("dev", "dev", 2), ("empty-ns", "empty-ns", 2), ("test", "test", 2)]
    await client.delete(f"{BASE}/service", params={"serviceName": "x", "namespaceId": "empty-ns"})
    body = await get_json(client, f"{CONSOLE}/namespaces")
    assert [d["namespace"] for d in body["data"]] == ["", "dev", "test"]


async def test_readiness_and_liveness(client, front):
    for path in ("readiness", "liveness"):
        response = await client.get(f"{CONSOLE}/health/{path}")
        assert (response.status, await response.text()) == (200, "OK")
    front.ready = False
    # the one deliberate 5xx: asked past the recording wrapper
    response = await client.session.get(client.make_url(f"{CONSOLE}/health/readiness"))
    assert response.status == 503
    response = await client.get(f"{CONSOLE}/health/liveness")
    assert response.status == 200


# -- instance/metadata/batch -------------------------------------------------------------


async def batch(client, method, params, via="query", status=200):
    if via == "query":
        response = await client.request(method, f"{BASE}/instance/metadata/batch", params=params)
    else:
        response = await client.request(method, f"{BASE}/instance/metadata/batch", data=params)
    assert response.status == status, await response.text()
    return await response.json() if status == 200 else await response.text()


async def metadata_of(client, **extra):
    listed = await get_json(client, f"{BASE}/instance/list", {"serviceName": SERVICE, **extra})
    return sorted((h["port"], h["clusterName"], h["ephemeral"], h["metadata"]) for h in listed["hosts"])


@pytest.mark.parametrize("via", ["query", "form"])
async def test_metadata_batch_by_consistency_type(client, via):
    await register(client, port=1, metadata="a=1")
    await register(client, port=2, clusterName="c1")
    await register(client, port=3, ephemeral="false", metadata="a=0")
    body = await batch(client, "PUT", {"serviceName": SERVICE, "metadata": '{"b":"2"}',
                                       "consistencyType": "ephemeral"}, via)
    assert sorted(body["updated"]) == ["127.0.0.1:1:unknown:DEFAULT:ephemeral",
                                       "127.0.0.1:2:unknown:c1:ephemeral"]
    assert await metadata_of(client) == [
        (1, "DEFAULT", True, {"a": "1", "b": "2"}), (2, "c1", True, {"b": "2"}), (3, "DEFAULT", False, {"a": "0"})]
    body = await batch(client, "DELETE", {"serviceName": SERVICE, "metadata": "a=x,b=y",
                                          "consistencyType": "ephemeral"}, via)
    assert len(body["updated"]) == 2
    assert await metadata_of(client) == [
        (1, "DEFAULT", True, {}), (2, "c1", True, {}), (3, "DEFAULT", False, {"a": "0"})]
    body = await batch(client, "PUT", {"serviceName": SERVICE, "metadata": "c=3", "consistencyType": "persist"}, via)
    assert body == {"updated": ["127.0.0.1:3:unknown:DEFAULT:persist"]}


async def test_metadata_batch_by_instances(client):
    await register(client, port=1)
    await register(client, port=2, clusterName="c1")
    await register(client, port=3)
    instances = json.dumps([{"ip": IP, "port": 1}, {"ip": IP, "port": 2, "clusterName": "c1", "ephemeral": True},
                            {"ip": IP, "port": 9}])
    body = await batch(client, "PUT", {"serviceName": SERVICE, "metadata": "k=v", "instances": instances})
    assert sorted(body["updated"]) == ["127.0.0.1:1:unknown:DEFAULT:ephemeral", "127.0.0.1:2:unknown:c1:ephemeral"]
    assert await metadata_of(client) == [(1, "DEFAULT", True, {"k": "v"}), (2, "c1", True, {"k": "v"}),
                                         (3, "DEFAULT", True, {})]


async def test_metadata_batch_on_unknown_service_updates_nothing(client, front):
    body = await batch(client, "PUT", {"serviceName": SERVICE, "metadata": "k=v", "consistencyType": "ephemeral"})
    assert body == {"updated": []}
    assert front.view.namespaces == {}


async def test_metadata_batch_changes_the_list_answer(client):
    await register(client)
    assert await metadata_of(client) == [(8080, "DEFAULT", True, {})]
    await batch(client, "PUT", {"serviceName": SERVICE, "metadata": "k=v", "consistencyType": "ephemeral"})
    assert await metadata_of(client) == [(8080, "DEFAULT", True, {"k": "v"})]


@pytest.mark.parametrize(
    "params, named",
    [
        ({"consistencyType": "ephemeral"}, "metadata"),
        ({"metadata": "k=v"}, "instances"),
        ({"metadata": "k=v", "consistencyType": "both"}, "consistencyType"),
        ({"metadata": "[1]", "consistencyType": "ephemeral"}, "metadata"),
        ({"metadata": "k=v", "instances": "{"}, "instances"),
        ({"metadata": "k=v", "instances": '{"ip":"127.0.0.1"}'}, "instances"),
        ({"metadata": "k=v", "instances": "[1]"}, "instances"),
        ({"metadata": "k=v", "instances": '[{"ip":"bad ip!","port":1}]'}, "instances.ip"),
        ({"metadata": "k=v", "instances": '[{"ip":"127.0.0.1","port":0}]'}, "instances.port"),
        ({"metadata": "k=v", "instances": '[{"ip":"127.0.0.1"}]'}, "instances.port"),
        ({"metadata": "k=v", "instances": '[{"ip":"127.0.0.1","port":1,"clusterName":"a_b"}]'}, "instances.clusterName"),
        ({"metadata": "k=v", "instances": '[{"ip":"127.0.0.1","port":1,"ephemeral":"yes"}]'}, "instances"),
    ],
)
@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_metadata_batch_bad_input(client, params, named, method):
    await register(client, metadata="a=1")
    text = await batch(client, method, {"serviceName": SERVICE, **params}, status=400)
    assert named in text
    assert await metadata_of(client) == [(8080, "DEFAULT", True, {"a": "1"})]
