"""PUT /v1/ns/instance/beat: light beats, full beats (re-registration), overrides, bad beats."""

from __future__ import annotations

import json

import pytest

from tests.http.conftest import BASE

SERVICE = "demo"
IP = "127.0.0.1"
BEAT_OK = {"clientBeatInterval": 5000, "code": 10200, "lightBeatEnabled": True}
BEAT_NOT_FOUND = {"clientBeatInterval": 5000, "code": 20404}




async def register(client, port=8080, **extra):
    response = await client.post(
        f"{BASE}/instance", params={"serviceName": SERVICE, "ip": IP, "port": str(port), **extra}
    )
    assert (response.status, await response.text()) == (200, "ok")


async def beat(client, params=None, data=None, expect=200):
    response = await client.put(f"{BASE}/instance/beat", params=params, data=data)
    assert response.status == expect, await response.text()
    if expect == 200:
        assert response.content_type == "application/json"
        return await response.json()
    return await response.text()


async def hosts(client, service=SERVICE, **extra):
    response = await client.get(f"{BASE}/instance/list", params={"serviceName": service, **extra})
    assert response.status == 200
    return (await response.json())["hosts"]


async def detail(client, port=8080, **extra):
    response = await client.get(
        f"{BASE}/instance", params={"serviceName": SERVICE, "ip": IP, "port": str(port), **extra}
    )
    assert response.status == 200, await response.text()
    return await response.json()


def beat_json(**fields):
    return json.dumps({"ip": IP, "port": 8080, **fields})


# -- light beats -------------------------------------------------------------------------


async def test_light_beat_for_a_known_instance(client):
    await register(client)
    answer = await beat(client, {"serviceName": SERVICE, "ip": IP, "port": "8080"})
    assert answer == BEAT_OK


async def test_light_beat_in_a_form_body(client):
    await register(client)
    answer = await beat(client, data={"serviceName": SERVICE, "ip": IP, "port": "8080"})
    assert answer == BEAT_OK


async def test_light_beat_for_an_unknown_instance_is_20404_and_registers_nothing(client):
    answer = await beat(client, {"serviceName": SERVICE, "ip": IP, "port": "8080"})
    assert answer == BEAT_NOT_FOUND
    assert (await client.get(f"{BASE}/service", params={"serviceName": SERVICE})).status == 404
    await register(client, port=9090)
    answer = await beat(client, {"serviceName": SERVICE, "ip": IP, "port": "8080"})
    assert answer == BEAT_NOT_FOUND
    assert [h["port"] for h in await hosts(client)] == [9090]


async def test_light_beat_looks_in_the_named_cluster(client):
    await register(client, clusterName="c1")
    assert await beat(client, {"serviceName": SERVICE, "ip": IP, "port": "8080"}) == BEAT_NOT_FOUND
    assert await beat(client, {"serviceName": SERVICE, "ip": IP, "port": "8080", "clusterName": "c1"}) == BEAT_OK


async def test_light_beat_only_finds_ephemeral_instances(client):
    await register(client, ephemeral="false")
    assert await beat(client, {"serviceName": SERVICE, "ip": IP, "port": "8080"}) == BEAT_NOT_FOUND


async def test_light_beat_respects_group_and_namespace(client):
    await register(client, groupName="grp", namespaceId="dev")
    light = {"serviceName": SERVICE, "ip": IP, "port": "8080"}
    assert await beat(client, light) == BEAT_NOT_FOUND
    assert await beat(client, {**light, "groupName": "grp"}) == BEAT_NOT_FOUND
    assert await beat(client, {**light, "groupName": "grp", "namespaceId": "dev"}) == BEAT_OK
    assert await beat(client, {**light, "serviceName": "grp@@demo", "namespaceId": "dev"}) == BEAT_OK


# -- full beats --------------------------------------------------------------------------


async def test_full_beat_in_the_query_registers_an_unknown_instance(client):
    document = beat_json(weight=3, metadata={"k": "v"}, cluster="c1", serviceName="DEFAULT_GROUP@@demo")
    answer = await beat(client, {"serviceName": "DEFAULT_GROUP@@demo", "groupName": "DEFAULT_GROUP",
                                 "beat": document})
    assert answer == BEAT_OK
    [host] = await hosts(client)
    assert (host["ip"], host["port"], host["clusterName"]) == (IP, 8080, "c1")
    assert (host["healthy"], host["enabled"], host["ephemeral"]) == (True, True, True)
    assert (host["weight"], host["metadata"]) == (3.0, {"k": "v"})
    assert host["instanceId"] == "127.0.0.1#8080#c1#DEFAULT_GROUP@@demo"


async def test_full_beat_in_a_form_body_registers_an_unknown_instance(client):
    # the Java client's shape: params in the query, the BeatInfo JSON in the form body
    document = beat_json(weight=2.5, cluster="DEFAULT", serviceName="DEFAULT_GROUP@@demo", metadata={},
                         scheduled=False, period=5000, stopped=False)
    response = await client.put(
        f"{BASE}/instance/beat",
        params={"serviceName": "DEFAULT_GROUP@@demo", "namespaceId": "public", "clusterName": "DEFAULT"},
        data={"beat": document},
    )
    assert response.status == 200
    assert await response.json() == BEAT_OK
    [host] = await hosts(client)
    assert (host["ip"], host["port"], host["weight"], host["healthy"]) == (IP, 8080, 2.5, True)


async def test_full_beat_for_a_known_instance_changes_nothing(client):
    await register(client, weight="7", metadata="a=1")
    answer = await beat(client, {"serviceName": SERVICE, "beat": beat_json(weight=1, metadata={"b": "2"})})
    assert answer == BEAT_OK
    body = await detail(client)
    assert (body["weight"], body["metadata"]) == (7.0, {"a": "1"})


async def test_beat_json_overrides_ip_port_and_cluster_params(client):
    params = {"serviceName": SERVICE, "ip": "127.0.0.9", "port": "1", "clusterName": "x",
              "beat": json.dumps({"ip": "127.0.0.2", "port": 9000, "cluster": "c2", "weight": 1})}
    assert await beat(client, params) == BEAT_OK
    assert [(h["ip"], h["port"], h["clusterName"]) for h in await hosts(client)] == [("127.0.0.2", 9000, "c2")]


async def test_beat_json_falls_back_to_params(client):
    params = {"serviceName": SERVICE, "ip": IP, "port": "7000", "clusterName": "c3",
              "beat": json.dumps({"cluster": "", "weight": 1})}
    assert await beat(client, params) == BEAT_OK
    assert [(h["ip"], h["port"], h["clusterName"]) for h in await hosts(client)] == [(IP, 7000, "c3")]
    params = {"serviceName": SERVICE, "beat": json.dumps({"ip": IP, "port": "7001"})}
    assert await beat(client, params) == BEAT_OK
    assert sorted((h["port"], h["clusterName"]) for h in await hosts(client)) == [(7000, "c3"), (7001, "DEFAULT")]


async def test_full_beat_can_register_a_persistent_instance(client):
    assert await beat(client, {"serviceName": SERVICE, "beat": beat_json(ephemeral=False)}) == BEAT_OK
    [host] = await hosts(client)
    assert host["ephemeral"] is False


async def test_beat_without_weight_registers_weight_one(client):
    assert await beat(client, {"serviceName": SERVICE, "beat": beat_json()}) == BEAT_OK
    [host] = await hosts(client)
    assert host["weight"] == 1.0


async def test_python_client_beat_shape(client):
    # nacos-sdk-python: grouped serviceName + groupName in the query, beat JSON without cluster
    document = json.dumps({"serviceName": "DEFAULT_GROUP@@demo", "ip": IP, "port": 8080, "weight": 1.0,
                           "ephemeral": True})
    await register(client, clusterName="None")
    answer = await beat(client, {"serviceName": "DEFAULT_GROUP@@demo", "groupName": "DEFAULT_GROUP",
                                 "beat": document})
    assert answer == BEAT_OK
    # as in Nacos: the beat looked in DEFAULT and registered a second copy there
    assert sorted(h["clusterName"] for h in await hosts(client)) == ["DEFAULT", "None"]


# -- intervals and revival ---------------------------------------------------------------


async def test_preserved_heart_beat_interval_is_returned(client):
    await register(client, metadata='{"preserved.heart.beat.interval":"7000"}')
    answer = await beat(client, {"serviceName": SERVICE, "ip": IP, "port": "8080"})
    assert answer == {"clientBeatInterval": 7000, "code": 10200, "lightBeatEnabled": True}


async def test_preserved_heart_beat_interval_of_a_beat_registration(client):
    document = beat_json(metadata={"preserved.heart.beat.interval": "2500"})
    answer = await beat(client, {"serviceName": SERVICE, "beat": document})
    assert answer == {"clientBeatInterval": 2500, "code": 10200, "lightBeatEnabled": True}


async def test_beat_revives_an_unhealthy_instance(client, front):
    await register(client, healthy="false")
    assert (await detail(client))["healthy"] is False
    assert await beat(client, {"serviceName": SERVICE, "ip": IP, "port": "8080"}) == BEAT_OK
    assert (await detail(client))["healthy"] is True
    [host] = await hosts(client, healthyOnly="true")
    assert host["healthy"] is True
    assert front.metrics.health_transitions["revived"]._value.get() == 1


async def test_full_beat_revives_an_unhealthy_instance(client):
    await register(client, healthy="false", port=8080)
    await register(client, port=8081)  # keep the threshold from masking health
    assert await beat(client, {"serviceName": SERVICE, "beat": beat_json()}) == BEAT_OK
    assert (await detail(client))["healthy"] is True


async def test_beat_records_the_last_beat_for_the_console(client, front):
    await register(client)
    front.clock = lambda: 1_900_000_000_000
    assert await beat(client, {"serviceName": SERVICE, "ip": IP, "port": "8080"}) == BEAT_OK
    response = await client.get(f"{BASE}/catalog/instances", params={
        "serviceName": SERVICE, "clusterName": "DEFAULT", "pageNo": "1", "pageSize": "10"})
    [row] = (await response.json())["list"]
    assert row["lastBeat"] == 1_900_000_000_000


# -- bad beats ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, named",
    [
        ("{", "beat"),
        ("[1]", "beat"),
        ('"text"', "beat"),
        ("1", "beat"),
        ("null", "beat"),
        ("true", "beat"),
        ('{"ip": "127.0.0.1", "port": "x"}', "beat.port"),
        ('{"ip": "127.0.0.1", "port": 0}', "beat.port"),
        ('{"ip": "127.0.0.1", "port": 65536}', "beat.port"),
        ('{"ip": "127.0.0.1", "port": true}', "beat.port"),
        ('{"ip": "127.0.0.1", "port": 80.5}', "beat.port"),
        ('{"ip": "999.0.0.1", "port": 80}', "beat.ip"),
        ('{"ip": 17, "port": 80}', "beat.ip"),
        ('{"ip": "127.0.0.1", "port": 80, "weight": -1}', "beat.weight"),
        ('{"ip": "127.0.0.1", "port": 80, "weight": 10001}', "beat.weight"),
        ('{"ip": "127.0.0.1", "port": 80, "weight": "abc"}', "beat.weight"),
        ('{"ip": "127.0.0.1", "port": 80, "weight": null}', "beat.weight"),
        ('{"ip": "127.0.0.1", "port": 80, "cluster": "a_b"}', "beat.cluster"),
        ('{"ip": "127.0.0.1", "port": 80, "cluster": "a.b"}', "beat.cluster"),
        ('{"ip": "127.0.0.1", "port": 80, "cluster": ["c"]}', "beat"),
        ('{"ip": "127.0.0.1", "port": 80, "cluster": "DEFAULT\\n"}', "beat.cluster"),
        ('{"ip": "127.0.0.1", "port": 80, "metadata": [1]}', "beat.metadata"),
        ('{"ip": "127.0.0.1", "port": 80, "metadata": {"a": {"b": 1}}}', "beat.metadata"),
        ('{"ip": "127.0.0.1", "port": 80, "ephemeral": "yes"}', "beat"),
        ('{"port": 80}', "ip"),
        ('{"ip": "127.0.0.1"}', "port"),
    ],
)
@pytest.mark.parametrize("via", ["query", "form"])
async def test_malformed_beat_is_a_400_naming_it_and_stores_nothing(client, front, raw, named, via):
    params = {"serviceName": SERVICE}
    if via == "query":
        text = await beat(client, {**params, "beat": raw}, expect=400)
    else:
        text = await beat(client, params, data={"beat": raw}, expect=400)
    assert named in text
    assert front.view.namespaces == {}
    assert await hosts(client) == []


@pytest.mark.parametrize(
    "params, named",
    [
        ({}, "serviceName"),
        ({"serviceName": SERVICE, "port": "8080"}, "ip"),
        ({"serviceName": SERVICE, "ip": IP}, "port"),
        ({"serviceName": SERVICE, "ip": IP, "port": "x"}, "port"),
        ({"serviceName": SERVICE, "ip": "bad ip", "port": "1"}, "ip"),
        ({"serviceName": SERVICE, "ip": IP, "port": "1", "clusterName": "a_b"}, "clusterName"),
        ({"serviceName": "a@@b@@c", "ip": IP, "port": "1"}, "serviceName"),
        ({"serviceName": SERVICE, "ip": IP, "port": "1", "namespaceId": "a b"}, "namespaceId"),
        ({"serviceName": SERVICE, "ip": "bad ip", "beat": beat_json()}, "ip"),
        ({"serviceName": SERVICE, "port": "0", "beat": beat_json()}, "port"),
    ],
)
async def test_bad_light_beat_params_are_400s(client, front, params, named):
    text = await beat(client, params, expect=400)
    assert named in text
    assert front.view.namespaces == {}
