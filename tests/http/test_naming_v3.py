"""The Nacos 3.x client API (/v3/client/ns/instance) through the real app: register, beat,
deregister, list; the envelope and codes; bad input refused with nothing stored; v1 visibility.

Every test runs against a real RegistryActor; no response may be a 5xx.
"""

from __future__ import annotations

import pytest

from tests.http.support import enveloped, enveloped_data

V1 = "/nacos/v1/ns"
V3 = "/nacos/v3/client/ns/instance"
SERVICE = "demo"
IP = "127.0.0.1"


async def answer(client, method, path="", params=None, status=200, via="query"):
    return await enveloped(client, method, f"{V3}{path}", params, via, status)


async def data(client, method, path="", params=None, via="query"):
    return await enveloped_data(client, method, f"{V3}{path}", params, via)


def instance(port=8080, **extra):
    return {"serviceName": SERVICE, "ip": IP, "port": str(port), **extra}


@pytest.mark.parametrize("via", ["query", "form"])
async def test_register_list_deregister(client, via):
    assert await data(client, "POST", params=instance(metadata='{"v":"1"}'), via=via) == "ok"
    [host] = await data(client, "GET", "/list", {"serviceName": SERVICE})
    assert (host["ip"], host["port"], host["metadata"], host["clusterName"]) == (IP, 8080, {"v": "1"}, "DEFAULT")
    assert await data(client, "DELETE", params=instance(), via=via) == "ok"
    assert await data(client, "GET", "/list", {"serviceName": SERVICE}) == []


async def test_list_is_of_the_default_cluster_unless_named_and_ignores_healthy_only(client):
    await data(client, "POST", params=instance(1))
    await data(client, "POST", params=instance(2, clusterName="b", healthy="false"))
    await data(client, "POST", params=instance(3, clusterName="b"))
    assert [h["port"] for h in await data(client, "GET", "/list", {"serviceName": SERVICE})] == [1]
    both = {"serviceName": SERVICE, "clusterName": "DEFAULT,b", "healthyOnly": "true"}
    assert sorted(h["port"] for h in await data(client, "GET", "/list", both)) == [1, 2, 3]


async def test_heart_beat_keeps_an_instance_or_answers_instance_not_found(client, front):
    await data(client, "POST", params=instance())
    assert await data(client, "POST", params=instance(heartBeat="true")) == "ok"
    unknown = await answer(client, "POST", params=instance(9, heartBeat="true"))
    assert unknown == {"code": 21003, "message": "instance not found", "data": None}
    assert front.view.instance_count == 1


@pytest.mark.parametrize(
    ("params", "code", "named"),
    [
        ({"ip": IP, "port": "1"}, 10000, "serviceName"),
        ({"serviceName": SERVICE, "port": "1"}, 10000, "ip"),
        ({"serviceName": SERVICE, "ip": IP, "port": "x"}, 20002, "port"),
        ({"serviceName": SERVICE, "ip": IP, "port": "1", "weight": "-1"}, 21001, "weight"),
        ({"serviceName": SERVICE, "ip": IP, "port": "1", "heartBeat": "often"}, 20002, "heartBeat"),
    ],
)
async def test_bad_register_is_refused_and_stores_nothing(client, front, params, code, named):
    document = await answer(client, "POST", params=params, status=400)
    assert document["code"] == code, document
    assert f"'{named}'" in document["data"], document
    assert front.view.instance_count == 0


async def test_bad_list_names_the_parameter(client):
    document = await answer(client, "GET", "/list", {"serviceName": SERVICE, "clusterName": "a b"}, status=400)
    assert (document["code"], document["message"]) == (20002, "parameter validate error")
    assert "'clusterName'" in document["data"]


async def test_v1_and_v3_see_each_others_instances(client):
    await data(client, "POST", params=instance(1))
    assert (await client.post(f"{V1}/instance", params=instance(2))).status == 200
    listed = await (await client.get(f"{V1}/instance/list", params={"serviceName": SERVICE})).json()
    assert sorted(h["port"] for h in listed["hosts"]) == [1, 2]
    assert sorted(h["port"] for h in await data(client, "GET", "/list", {"serviceName": SERVICE})) == [1, 2]
