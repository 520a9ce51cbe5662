"""The npm `nacos` package's NacosNamingClient (nacos-naming) against a real node process.

Each test runs tests/e2e/node/driver.js, which drives the client and reports on stdout as JSON
lines (see its header). The client is the one pinned in tests/e2e/node/package.json, installed by
scripts/test. It poses as `Nacos-Java-Client:v1.0.0`, puts every parameter in the query string,
and sends `namespaceId` on every call; the node pushes changes to its subscriptions by UDP
(tests/e2e/test_push.py measures that). PROTOCOL.md section 8.3 describes 2.6.0; the 2.6.3
pinned here defaults to namespace `public` (2.6.0: `default`) and deregisters with the grouped
service name (2.6.0: the bare name, so the group was lost).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
from typing import Any, Callable

import pytest

from tests.e2e.node_driver import DRIVER, NODE_DIR, RUN_TIMEOUT_S, driver_environment

pytestmark = pytest.mark.e2e

CHANGE_BOUND_S = 15.0  # the poll bound; pushed changes arrive far sooner (tests/e2e/test_push.py)
IP1, IP2, IP3, IP4, IP5 = (f"127.0.0.{n}" for n in range(1, 6))


def run_driver(node_bin: str, node, **scenario: Any) -> list[dict[str, Any]]:
    """Run a scenario to its end (bounded) and return its events; every step must succeed."""
    scenario = {"server": node.address, "timeoutMs": int(RUN_TIMEOUT_S * 1000), **scenario}
    try:
        done = subprocess.run(
            [node_bin, str(DRIVER), json.dumps(scenario)],
            cwd=NODE_DIR,
            env=driver_environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=RUN_TIMEOUT_S + 5,
        )
    except subprocess.TimeoutExpired as error:  # subprocess.run has killed it
        pytest.fail(f"driver timed out:\n{error.stdout!r}\n{error.stderr!r}")
    events = [json.loads(line) for line in done.stdout.splitlines()]
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, f"driver exited with {done.returncode}: {events}\n{stderr}"
    assert events[-1]["event"] == "closed", events
    return events


def results(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The value of every tagged step, by tag."""
    return {e["tag"]: e["value"] for e in events if e["event"] == "result" and e.get("tag")}


def problems(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Warnings and errors the client logged or emitted, and failed requests."""
    return [
        e
        for e in events
        if e["event"] in ("log", "clientError", "timeout", "garbage") or (e["event"] == "http" and e["status"] != 200)
    ]


def http(events: list[dict[str, Any]], method: str, suffix: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "http" and e["method"] == method and e["path"].endswith(suffix)]


def endpoints(hosts: list[dict[str, Any]]) -> set[tuple[str, int, str]]:
    return {(h["ip"], h["port"], h["clusterName"]) for h in hosts}


def node_list(node, service: str, namespace: str | None = None, **extra: str) -> dict[str, Any]:
    query = {"serviceName": service, **extra}
    if namespace is not None:
        query["namespaceId"] = namespace
    status, body = node.get("/nacos/v1/ns/instance/list?" + urllib.parse.urlencode(query))
    assert status == 200, body
    return json.loads(body)


def register(
    service: str, ip: str, port: int, client: str = "main", group: str | None = None, **fields: Any
) -> dict[str, Any]:
    instance = {"ip": ip, "port": port, **fields}
    step = {"op": "registerInstance", "client": client, "serviceName": service, "instance": instance}
    return step if group is None else {**step, "groupName": group}


def deregister(
    service: str, ip: str, port: int, client: str = "main", group: str | None = None, **fields: Any
) -> dict[str, Any]:
    return {**register(service, ip, port, client, group, **fields), "op": "deregisterInstance"}


def query(op: str, tag: str, service: str, client: str = "main", **args: Any) -> dict[str, Any]:
    return {"op": op, "tag": tag, "client": client, "serviceName": service, **args}


# -- (a) register, list, select, deregister -------------------------------------------------


def test_register_list_select_deregister_across_namespaces_and_groups(node_bin, node):
    metadata = {"version": "2", "zone": "a"}
    events = run_driver(
        node_bin,
        node,
        namespace="default",
        clients={"dev": {"namespace": "dev"}, "plain": {}},
        trace=True,
        steps=[
            register("orders", IP1, 8080, weight=2.5, metadata=metadata, clusterName="c1"),
            register("orders", IP2, 8080),
            register("orders", IP3, 8080, client="dev", group="BLUE", metadata={"env": "dev"}),
            register("orders", IP4, 8080, client="plain"),
            query("getAllInstances", "all-subscribed", "orders"),  # udpPort: a subscription
            query("getAllInstances", "all", "orders", subscribe=False),  # udpPort=0: one query
            query("selectInstances", "healthy", "orders", subscribe=False),
            query("selectInstances", "unhealthy", "orders", healthy=False, subscribe=False),
            query("getAllInstances", "c1", "orders", clusters="c1", subscribe=False),
            query("getAllInstances", "dev-blue", "orders", client="dev", groupName="BLUE", subscribe=False),
            query("getAllInstances", "dev-default-group", "orders", client="dev", subscribe=False),
            query("getAllInstances", "default-blue", "orders", groupName="BLUE", subscribe=False),
            query("getAllInstances", "plain", "orders", client="plain", subscribe=False),
            deregister("orders", IP1, 8080, clusterName="c1"),
            query("getAllInstances", "after-deregister", "orders", subscribe=False),
            deregister("orders", IP3, 8080, client="dev", group="BLUE"),
        ],
    )
    assert problems(events) == []
    found = results(events)

    both = {(IP1, 8080, "c1"), (IP2, 8080, "DEFAULT")}
    assert endpoints(found["all"]) == both
    assert endpoints(found["all-subscribed"]) == both
    assert endpoints(found["healthy"]) == both
    assert found["unhealthy"] == []
    first = {(h["ip"], h["port"]): h for h in found["all"]}[(IP1, 8080)]
    assert first["weight"] == 2.5
    assert first["metadata"] == metadata
    assert first["instanceId"] == f"{IP1}#8080#c1#DEFAULT_GROUP@@orders"
    assert first["serviceName"] == "DEFAULT_GROUP@@orders"  # grouped: the client poses as Java >= 1.0
    assert first["healthy"] is first["valid"] is first["enabled"] is first["ephemeral"] is True
    second = {(h["ip"], h["port"]): h for h in found["all"]}[(IP2, 8080)]
    assert (second["weight"], second["metadata"]) == (1.0, {})
    assert endpoints(found["c1"]) == {(IP1, 8080, "c1")}
    assert endpoints(found["dev-blue"]) == {(IP3, 8080, "DEFAULT")}
    assert found["dev-blue"][0]["metadata"] == {"env": "dev"}
    assert found["dev-blue"][0]["serviceName"] == "BLUE@@orders"
    assert found["dev-default-group"] == []
    assert found["default-blue"] == []
    assert endpoints(found["plain"]) == {(IP4, 8080, "DEFAULT")}
    assert endpoints(found["after-deregister"]) == {(IP2, 8080, "DEFAULT")}

    # What the client sent, and what the node holds now.
    registers = http(events, "POST", "/v1/ns/instance")
    assert [r["params"]["namespaceId"] for r in registers] == ["default", "default", "dev", "public"]
    assert registers[2]["params"]["serviceName"] == "BLUE@@orders"
    assert registers[2]["params"]["groupName"] == "BLUE"
    deregisters = http(events, "DELETE", "/v1/ns/instance")
    # 2.6.3 deregisters with the grouped name and no groupName; the node honours the group in it.
    assert deregisters[1]["params"]["serviceName"] == "BLUE@@orders"
    assert "groupName" not in deregisters[1]["params"]
    assert node_list(node, "orders", "dev", groupName="BLUE")["hosts"] == []
    assert endpoints(node_list(node, "orders", "default")["hosts"]) == {(IP2, 8080, "DEFAULT")}
    assert endpoints(node_list(node, "orders")["hosts"]) == {(IP4, 8080, "DEFAULT")}  # public
    lists = http(events, "GET", "/v1/ns/instance/list")
    assert lists and all(r["params"]["clientIP"] == "127.0.0.1" for r in lists)
    main_udp_port = str(events[0]["udpPort"])
    assert {r["params"]["udpPort"] for r in lists if r["client"] == "main"} == {main_udp_port, "0"}


# -- (b) server status ----------------------------------------------------------------------


def test_server_status_is_up_and_down_once_the_node_stops(start_driver, node):
    driver = start_driver(namespace="default")
    assert driver.step(op="getServerStatus")["value"] == "UP"
    assert node.stop() == 0
    assert driver.step(op="getServerStatus")["value"] == "DOWN"
    events = driver.finish()
    # The failed probe is logged (connection refused, once per retry), nothing else.
    assert {e["event"] for e in problems(events)} <= {"log"}


# -- (c) service list -----------------------------------------------------------------------


def test_service_list_pages_the_services_of_a_group(node_bin, node):
    names = [f"svc-{n}" for n in range(1, 6)]
    steps = [register(name, IP1, 9000 + n) for n, name in enumerate(names)]
    steps += [register("svc-other", IP2, 9100, group="G"), register("svc-dev", IP3, 9200, client="dev")]
    steps += [{"op": "getServiceList", "tag": f"page-{n}", "pageNo": n, "pageSize": 2} for n in range(1, 5)]
    steps += [
        {"op": "getServiceList", "tag": "explicit-group", "pageNo": 1, "pageSize": 10, "groupName": "DEFAULT_GROUP"},
        {"op": "getServiceList", "tag": "group-g", "pageNo": 1, "pageSize": 10, "groupName": "G"},
        {"op": "getServiceList", "tag": "dev", "client": "dev", "pageNo": 1, "pageSize": 10},
    ]
    events = run_driver(node_bin, node, namespace="default", clients={"dev": {"namespace": "dev"}}, steps=steps)
    assert problems(events) == []
    found = results(events)

    pages = [found[f"page-{n}"] for n in range(1, 5)]
    assert [p["count"] for p in pages] == [5, 5, 5, 5]
    assert [len(p["data"]) for p in pages] == [2, 2, 1, 0]
    assert sorted(sum((p["data"] for p in pages), [])) == names
    assert found["explicit-group"] == {"count": 5, "data": names}
    assert found["group-g"] == {"count": 1, "data": ["svc-other"]}
    assert found["dev"] == {"count": 1, "data": ["svc-dev"]}


# -- (d) subscribe (the node pushes; tests/e2e/test_push.py measures it) --------------------


def test_a_subscriber_sees_each_change(start_driver, capsys):
    writer = start_driver(namespace="default")
    subscriber = start_driver(namespace="default", trace=True)
    udp_port = str(subscriber.events[0]["udpPort"])
    writer.step(**register("watched", IP1, 7000))
    writer.step(**register("watched", IP2, 7000))

    def hosts_event(expected: set[tuple[str, int, str]]) -> Callable[[dict[str, Any]], bool]:
        return lambda e: e["event"] == "hosts" and endpoints(e["hosts"]) == expected

    subscriber.send(op="subscribe", serviceName="watched", id="w")
    first = subscriber.wait_for(hosts_event({(IP1, 7000, "DEFAULT"), (IP2, 7000, "DEFAULT")}), 5, "the first list")
    assert all(h["healthy"] and h["serviceName"] == "DEFAULT_GROUP@@watched" for h in first["hosts"])

    delays = []
    changes = [
        (register("watched", IP3, 7000), {(IP1, 7000, "DEFAULT"), (IP2, 7000, "DEFAULT"), (IP3, 7000, "DEFAULT")}),
        (deregister("watched", IP1, 7000), {(IP2, 7000, "DEFAULT"), (IP3, 7000, "DEFAULT")}),
    ]
    for step, expected in changes:
        sent_ms = time.time() * 1000  # the drivers stamp events with Date.now(), the same clock
        writer.step(**step)
        seen = subscriber.wait_for(hosts_event(expected), CHANGE_BOUND_S, f"the list after {step['op']}")
        delays.append((seen["t"] - sent_ms) / 1000)
    with capsys.disabled():
        print(f"\nnode client subscribe: change seen after {', '.join(f'{d:.3f} s' for d in delays)}")
    assert all(0 <= d < CHANGE_BOUND_S for d in delays)

    # After unsubscribe the listener hears nothing more, though the node still pushes to the
    # client (it stays a subscriber until its last poll is push_cache_ms old).
    subscriber.step(op="unsubscribe", serviceName="watched", id="w")
    writer.step(**register("watched", IP4, 7000))
    time.sleep(1.0)  # a push arrives within milliseconds
    writer.step(**deregister("watched", IP4, 7000))
    events = subscriber.finish()
    writer.finish()
    late = [e for e in events if e["event"] == "hosts" and IP4 in json.dumps(e["hosts"])]
    assert late == []
    assert problems(events) == []
    polls = http(events, "GET", "/v1/ns/instance/list")
    assert len(polls) >= 1
    assert all(p["params"]["clientIP"] == "127.0.0.1" and p["params"]["udpPort"] == udp_port for p in polls)
    assert all('"cacheMillis":10000' in p["body"] for p in polls)  # bodies are clipped to 2000 chars
    assert all(p["params"]["clusters"] == "DEFAULT" for p in polls)


# -- (e) beats ------------------------------------------------------------------------------


def test_beats_keep_an_ephemeral_instance_registered_and_healthy(start_driver, node, capsys):
    started = time.monotonic()
    driver = start_driver(namespace="default", trace=True)
    driver.step(**register("beating", IP5, 6000, clusterName="c1", metadata={"k": "v"}))
    beats = [_last_beat(node, "beating", "c1")]
    # The client's beat loop sleeps 10 s before its first round, then the clientBeatInterval the
    # node answers (5000 ms): beats come about 10 s and 15 s after the client starts.
    for _ in range(2):
        driver.wait_for(
            lambda e: e["event"] == "http" and e["path"].endswith("/instance/beat"), 20, "a beat"
        )
        deadline = time.monotonic() + 2
        while _last_beat(node, "beating", "c1") == beats[-1] and time.monotonic() < deadline:
            time.sleep(0.05)
        beats.append(_last_beat(node, "beating", "c1"))
        assert beats[-1] > beats[-2], "a beat did not advance lastBeat"
        listed = node_list(node, "beating", "default", healthyOnly="true")
        assert endpoints(listed["hosts"]) == {(IP5, 6000, "c1")}
    with capsys.disabled():
        gaps = [f"{(b - a) / 1000:.2f} s" for a, b in zip(beats, beats[1:])]
        print(f"\nnode client beats: lastBeat advanced after {', '.join(gaps)} ({time.monotonic() - started:.1f} s)")

    driver.step(**deregister("beating", IP5, 6000, clusterName="c1"))
    assert node_list(node, "beating", "default")["hosts"] == []
    events = driver.finish()
    assert problems(events) == []
    sent = http(events, "PUT", "/v1/ns/instance/beat")
    assert len(sent) >= 2
    for request in sent:
        beat = json.loads(request["params"]["beat"])
        assert (beat["ip"], beat["port"], beat["cluster"]) == (IP5, 6000, "c1")
        assert beat["serviceName"] == request["params"]["serviceName"] == "DEFAULT_GROUP@@beating"
        assert beat["metadata"] == {"k": "v"}
        answer = json.loads(request["body"])
        assert (answer["code"], answer["clientBeatInterval"]) == (10200, 5000)


def _last_beat(node, service: str, cluster: str) -> int:
    status, body = node.get(
        f"/nacos/v1/ns/catalog/instances?serviceName={service}&clusterName={cluster}"
        "&pageNo=1&pageSize=10&namespaceId=default"
    )
    assert status == 200, body
    (row,) = json.loads(body)["list"]
    assert row["healthy"] is True
    return row["lastBeat"]
