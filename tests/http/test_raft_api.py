"""Raft over HTTP: persistent writes answer once committed (503 without a leader), and the
operator views /v1/ns/raft/state, /v1/ns/raft/leader and the members' raftMetaData."""

from __future__ import annotations

import asyncio
import json

import pytest

from nacos_actors.http.app import build_app
from nacos_actors.settings import Settings
from tests.http.conftest import BASE
from tests.nodes import registry_front, stop_actors

PERSISTENT = {"serviceName": "db", "ip": "127.0.0.1", "port": "3306", "ephemeral": "false"}
EPHEMERAL = {"serviceName": "web", "ip": "127.0.0.1", "port": "8080"}


async def wait_ready(client, front) -> None:
    for _ in range(200):
        if front.raft_board.status.leader is not None:
            return
        await asyncio.sleep(0.01)


async def test_a_persistent_registration_is_listed_once_answered(client, front):
    response = await client.post(f"{BASE}/instance", params=PERSISTENT)
    assert (response.status, await response.text()) == (200, "ok")
    listed = await (await client.get(f"{BASE}/instance/list", params={"serviceName": "db"})).json()
    assert [(h["port"], h["ephemeral"]) for h in listed["hosts"]] == [(3306, False)]
    service = front.service(next(iter(front.view.namespaces["public"].values())).key)
    assert service.definition is not None and service.revision == 0  # no ephemeral half was written


async def test_raft_state_and_leader_show_this_members_group(client, front):
    await wait_ready(client, front)
    await client.post(f"{BASE}/instance", params=PERSISTENT)
    state = await (await client.get(f"{BASE}/raft/state")).json()
    assert state["services"] == 1
    assert state["peers"] == [
        {"ip": "127.0.0.1:8848", "voteFor": "127.0.0.1:8848", "term": 1, "leaderDueMs": 0, "heartbeatDueMs": 0,
         "state": "LEADER"}
    ]
    assert state["raft"]["role"] == "leader" and state["raft"]["ready"] is True
    assert state["raft"]["appliedIndex"] == state["raft"]["commitIndex"] >= 1
    leader = await (await client.get(f"{BASE}/raft/leader")).json()
    assert json.loads(leader["leader"])["ip"] == "127.0.0.1:8848"  # a JSON string, as Nacos 1.x


async def test_the_members_view_carries_the_raft_port_and_metadata(client, front):
    await wait_ready(client, front)
    body = await (await client.get("/nacos/v1/core/cluster/nodes")).json()
    (member,) = body["data"]
    assert member["extendInfo"]["raftPort"] == "7848"
    group = member["extendInfo"]["raftMetaData"]["metaDataMap"]["naming_persistent_service"]
    assert group == {"leader": "127.0.0.1:7848", "raftGroupMember": ["127.0.0.1:7848"], "term": 1}


@pytest.fixture
def leaderless():
    front, _ = registry_front(Settings(), raft_leader=None)
    yield front
    stop_actors(front.bridge.actors)


async def test_without_a_leader_persistent_writes_are_a_503_and_ephemeral_ones_work(aiohttp_client, leaderless):
    client = await aiohttp_client(build_app(leaderless))
    response = await client.post(f"{BASE}/instance", params=PERSISTENT)
    assert response.status == 503 and "no Raft leader" in await response.text()
    response = await client.post(f"{BASE}/service", params={"serviceName": "s"})
    assert response.status == 503
    response = await client.post(f"{BASE}/instance", params=EPHEMERAL)
    assert (response.status, await response.text()) == (200, "ok")
    leader = await (await client.get(f"{BASE}/raft/leader")).json()
    assert leader == {"leader": None}


async def test_ephemeral_and_persistent_instances_of_one_service_live_side_by_side(client, front):
    await client.post(f"{BASE}/instance", params={**PERSISTENT, "serviceName": "mixed"})
    await client.post(f"{BASE}/instance", params={**EPHEMERAL, "serviceName": "mixed"})
    listed = await (await client.get(f"{BASE}/instance/list", params={"serviceName": "mixed"})).json()
    assert sorted((h["port"], h["ephemeral"]) for h in listed["hosts"]) == [(3306, False), (8080, True)]
    # A metadata batch naming both kinds answers both, each updated where it lives.
    instances = json.dumps([{"ip": "127.0.0.1", "port": 3306, "ephemeral": False},
                            {"ip": "127.0.0.1", "port": 8080, "ephemeral": True}])
    response = await client.put(f"{BASE}/instance/metadata/batch",
                                params={"serviceName": "mixed", "metadata": '{"a":"1"}', "instances": instances})
    assert sorted((await response.json())["updated"]) == [
        "127.0.0.1:3306:unknown:DEFAULT:persist", "127.0.0.1:8080:unknown:DEFAULT:ephemeral"]
    response = await client.delete(f"{BASE}/service", params={"serviceName": "mixed"})
    assert response.status == 400 and "is not empty" in await response.text()
    await client.delete(f"{BASE}/instance", params={**PERSISTENT, "serviceName": "mixed"})
    await client.delete(f"{BASE}/instance", params={**EPHEMERAL, "serviceName": "mixed"})
    response = await client.delete(f"{BASE}/service", params={"serviceName": "mixed"})
    assert (response.status, await response.text()) == (200, "ok")
    assert front.view.service_count == 0
