"""POST/PUT/DELETE/GET /v1/ns/service and GET /v1/ns/service/list."""

from __future__ import annotations

import pytest

from tests.http.conftest import BASE
from tests.http.support import ok, refused

SERVICE = "demo"
IP = "127.0.0.1"


async def get_service(client, service=SERVICE, **extra):
    response = await client.get(f"{BASE}/service", params={"serviceName": service, **extra})
    assert response.status == 200, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def register(client, service=SERVICE, port=8080, **extra):
    await ok(client, "POST", "/instance", {"serviceName": service, "ip": IP, "port": str(port), **extra})


async def service_list(client, page_no=1, page_size=10, **extra):
    response = await client.get(
        f"{BASE}/service/list", params={"pageNo": str(page_no), "pageSize": str(page_size), **extra}
    )
    assert response.status == 200, await response.text()
    return await response.json()


# -- create ------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["query", "form"])
async def test_create_then_get_shape(client, via):
    await ok(client, "POST", "/service", {"serviceName": SERVICE}, via)
    assert await get_service(client) == {
        "namespaceId": "public",
        "groupName": "DEFAULT_GROUP",
        "name": SERVICE,
        "protectThreshold": 0.0,
        "metadata": {},
        "selector": {"type": "none"},
        "clusters": [],
    }


async def test_create_with_threshold_metadata_selector_group_and_namespace(client):
    await ok(client, "POST", "/service", {
        "serviceName": SERVICE, "groupName": "grp", "namespaceId": "dev", "protectThreshold": "0.25",
        "metadata": "a=1,b=2", "selector": '{"type":"label","expression":"CONSUMER.label.a = PROVIDER.label.a"}',
    })
    body = await get_service(client, groupName="grp", namespaceId="dev")
    assert body == {
        "namespaceId": "dev",
        "groupName": "grp",
        "name": SERVICE,
        "protectThreshold": 0.25,
        "metadata": {"a": "1", "b": "2"},
        "selector": {"type": "label", "expression": "CONSUMER.label.a = PROVIDER.label.a"},
        "clusters": [],
    }
    assert await get_service(client, service="grp@@demo", namespaceId="dev") == body
    assert (await client.get(f"{BASE}/service", params={"serviceName": SERVICE})).status == 404


async def test_create_an_existing_service_is_a_400(client):
    await ok(client, "POST", "/service", {"serviceName": SERVICE, "protectThreshold": "0.5"})
    text = await refused(client, "POST", "/service", {"serviceName": SERVICE, "protectThreshold": "0.1"})
    assert text == "specified service already exists, serviceName : DEFAULT_GROUP@@demo"
    assert (await get_service(client))["protectThreshold"] == 0.5


async def test_create_a_service_made_by_a_registration_is_a_400(client):
    await register(client)
    text = await refused(client, "POST", "/service", {"serviceName": SERVICE})
    assert "already exists" in text


async def test_same_name_in_other_group_or_namespace_is_another_service(client):
    await ok(client, "POST", "/service", {"serviceName": SERVICE})
    await ok(client, "POST", "/service", {"serviceName": SERVICE, "groupName": "grp"})
    await ok(client, "POST", "/service", {"serviceName": SERVICE, "namespaceId": "dev"})


# -- get ---------------------------------------------------------------------------------


async def test_get_missing_service_is_a_404(client):
    response = await client.get(f"{BASE}/service", params={"serviceName": SERVICE})
    assert (response.status, await response.text()) == (404, "service DEFAULT_GROUP@@demo is not found!")


async def test_get_lists_the_clusters_in_use(client):
    await register(client, port=1, clusterName="b")
    await register(client, port=2, clusterName="a")
    await register(client, port=3, clusterName="a")
    body = await get_service(client)
    assert [c["name"] for c in body["clusters"]] == ["a", "b"]
    for cluster in body["clusters"]:
        assert cluster["healthChecker"] == {"type": "TCP"}
        assert cluster["metadata"] == {}


# -- update ------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["query", "form"])
async def test_update_threshold_metadata_and_selector(client, via):
    await ok(client, "POST", "/service", {"serviceName": SERVICE, "metadata": '{"a":"1","b":"2"}'})
    await ok(client, "PUT", "/service", {"serviceName": SERVICE, "protectThreshold": "0.75", "metadata": "c=3",
                                         "selector": '{"type":"label","expression":"x"}'}, via)
    body = await get_service(client)
    assert (body["protectThreshold"], body["metadata"], body["selector"]) == (
        0.75, {"c": "3"}, {"type": "label", "expression": "x"})
    # metadata and selector not given: kept
    await ok(client, "PUT", "/service", {"serviceName": SERVICE, "protectThreshold": "0"}, via)
    body = await get_service(client)
    assert (body["protectThreshold"], body["metadata"], body["selector"]) == (
        0.0, {"c": "3"}, {"type": "label", "expression": "x"})
    await ok(client, "PUT", "/service", {"serviceName": SERVICE, "protectThreshold": "1",
                                         "selector": '{"type":"none"}'}, via)
    body = await get_service(client)
    assert (body["protectThreshold"], body["selector"]) == (1.0, {"type": "none"})


async def test_update_requires_the_threshold(client):
    await ok(client, "POST", "/service", {"serviceName": SERVICE, "protectThreshold": "0.5"})
    text = await refused(client, "PUT", "/service", {"serviceName": SERVICE, "metadata": "a=1"})
    assert "protectThreshold" in text
    body = await get_service(client)
    assert (body["protectThreshold"], body["metadata"]) == (0.5, {})


async def test_update_of_a_missing_service_is_a_400(client):
    text = await refused(client, "PUT", "/service", {"serviceName": SERVICE, "protectThreshold": "0.5"})
    assert text == "service DEFAULT_GROUP@@demo not found!"
    assert (await client.get(f"{BASE}/service", params={"serviceName": SERVICE})).status == 404


async def test_update_keeps_the_instances(client):
    await register(client)
    await ok(client, "PUT", "/service", {"serviceName": SERVICE, "protectThreshold": "0.5"})
    listed = await (await client.get(f"{BASE}/instance/list", params={"serviceName": SERVICE})).json()
    assert [h["port"] for h in listed["hosts"]] == [8080]


# -- delete ------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["query", "form"])
async def test_delete_an_empty_service(client, via):
    await ok(client, "POST", "/service", {"serviceName": SERVICE})
    await ok(client, "DELETE", "/service", {"serviceName": SERVICE}, via)
    assert (await client.get(f"{BASE}/service", params={"serviceName": SERVICE})).status == 404
    await ok(client, "POST", "/service", {"serviceName": SERVICE})  # can be created again


async def test_delete_a_missing_service_is_a_400(client):
    text = await refused(client, "DELETE", "/service", {"serviceName": SERVICE})
    assert text == "specified service not exist, serviceName : DEFAULT_GROUP@@demo"


async def test_delete_a_non_empty_service_is_a_400_with_a_clear_message(client):
    await register(client)
    text = await refused(client, "DELETE", "/service", {"serviceName": SERVICE})
    assert "DEFAULT_GROUP@@demo is not empty" in text
    assert "unregister" in text
    assert (await get_service(client))["name"] == SERVICE
    await ok(client, "DELETE", "/instance", {"serviceName": SERVICE, "ip": IP, "port": "8080"})
    await ok(client, "DELETE", "/service", {"serviceName": SERVICE})
    metrics = await (await client.get(f"{BASE}/operator/metrics")).json()
    assert (metrics["serviceCount"], metrics["instanceCount"]) == (0, 0)


async def test_delete_only_touches_its_namespace_and_group(client):
    for extra in ({}, {"groupName": "grp"}, {"namespaceId": "dev"}):
        await ok(client, "POST", "/service", {"serviceName": SERVICE, **extra})
    await ok(client, "DELETE", "/service", {"serviceName": "grp@@demo"})
    assert (await get_service(client))["name"] == SERVICE
    assert (await get_service(client, namespaceId="dev"))["namespaceId"] == "dev"
    assert (await client.get(f"{BASE}/service", params={"serviceName": "grp@@demo"})).status == 404


# -- service/list ------------------------------------------------------------------------


async def test_list_of_an_empty_namespace(client):
    assert await service_list(client) == {"count": 0, "doms": []}
    assert await service_list(client, namespaceId="dev", groupName="*") == {"count": 0, "doms": []}


async def test_list_pages_are_one_based(client):
    for name in ("e", "c", "a", "d", "b"):
        await ok(client, "POST", "/service", {"serviceName": name})
    assert await service_list(client, 1, 2) == {"count": 5, "doms": ["a", "b"]}
    assert await service_list(client, 2, 2) == {"count": 5, "doms": ["c", "d"]}
    assert await service_list(client, 3, 2) == {"count": 5, "doms": ["e"]}
    assert await service_list(client, 4, 2) == {"count": 5, "doms": []}
    assert await service_list(client, 1, 100) == {"count": 5, "doms": ["a", "b", "c", "d", "e"]}
    assert await service_list(client, 2**31 - 1, 2**31 - 1) == {"count": 5, "doms": []}


async def test_list_in_a_form_body(client):
    await ok(client, "POST", "/service", {"serviceName": SERVICE})
    response = await client.get(f"{BASE}/service/list", data={"pageNo": "1", "pageSize": "10"})
    assert (response.status, await response.json()) == (200, {"count": 1, "doms": [SERVICE]})


async def test_list_includes_services_made_by_registration_and_empty_ones(client):
    await register(client, service="x")
    await register(client, service="y")
    await ok(client, "DELETE", "/instance", {"serviceName": "y", "ip": IP, "port": "8080"})
    assert await service_list(client) == {"count": 2, "doms": ["x", "y"]}


async def test_list_group_filter_and_all_groups(client):
    await ok(client, "POST", "/service", {"serviceName": "a"})
    await ok(client, "POST", "/service", {"serviceName": "b", "groupName": "grp"})
    await ok(client, "POST", "/service", {"serviceName": "grp@@c"})
    assert await service_list(client) == {"count": 1, "doms": ["a"]}
    assert await service_list(client, groupName="DEFAULT_GROUP") == {"count": 1, "doms": ["a"]}
    assert await service_list(client, groupName="grp") == {"count": 2, "doms": ["b", "c"]}
    assert await service_list(client, groupName="nope") == {"count": 0, "doms": []}
    # `*`: every group; as in Nacos the names keep their group prefix
    every = await service_list(client, groupName="*")
    assert every == {"count": 3, "doms": ["DEFAULT_GROUP@@a", "grp@@b", "grp@@c"]}
    assert await service_list(client, 2, 2, groupName="*") == {"count": 3, "doms": ["grp@@c"]}


async def test_list_keeps_namespaces_apart(client):
    await ok(client, "POST", "/service", {"serviceName": "a"})
    await ok(client, "POST", "/service", {"serviceName": "b", "namespaceId": "dev"})
    await register(client, service="c", namespaceId="test")
    assert await service_list(client) == {"count": 1, "doms": ["a"]}
    assert await service_list(client, namespaceId="public") == {"count": 1, "doms": ["a"]}
    assert await service_list(client, namespaceId="dev") == {"count": 1, "doms": ["b"]}
    assert await service_list(client, namespaceId="test") == {"count": 1, "doms": ["c"]}


@pytest.mark.parametrize("missing", ["pageNo", "pageSize"])
async def test_list_needs_page_no_and_page_size(client, missing):
    params = {"pageNo": "1", "pageSize": "10"}
    del params[missing]
    response = await client.get(f"{BASE}/service/list", params=params)
    assert response.status == 400
    assert missing in await response.text()
