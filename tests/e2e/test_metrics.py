"""A real node, exercised, then scraped: the dashboard's metrics exist, the counts agree, and the
service discovery and JSON event logs show what was done."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.grafana import equality_matchers, load_dashboard, metric_names, queries
from tests.grpc.support import Client

pytestmark = pytest.mark.e2e

NS = "/nacos/v1/ns"
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


def send(node, method: str, path: str, **params: object) -> tuple[int, bytes]:
    url = node.url(f"{path}?{urllib.parse.urlencode(params)}")
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.read()


def get_json(node, path: str):
    status, body = node.get(path)
    assert status == 200, body
    return json.loads(body)


def scrape(node, path: str) -> list[tuple[str, dict[str, str], float]]:
    with urllib.request.urlopen(node.url(path), timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == TEXT_FORMAT
        text = response.read().decode()
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def monitor(samples, name: str) -> float:
    (found,) = [v for n, labels, v in samples if n == "nacos_monitor" and labels == {"module": "naming", "name": name}]
    return found


def exercise(node) -> tuple[int, int]:
    """Register, list, beat and deregister; returns the (services, instances) left registered."""
    for port in (8080, 8081, 8082):
        assert send(node, "POST", f"{NS}/instance", serviceName="orders", ip="127.0.0.1", port=port) == (200, b"ok")
    metadata = json.dumps({"version": "2", "app.name": "pay"})
    assert send(node, "POST", f"{NS}/instance", serviceName="payments", ip="127.0.0.2", port=9090,
                clusterName="c1", metadata=metadata) == (200, b"ok")
    assert send(node, "POST", f"{NS}/instance", serviceName="stock", ip="127.0.0.3", port=7070,
                namespaceId="dev") == (200, b"ok")
    for _ in range(3):
        status, _ = node.get(f"{NS}/instance/list?serviceName=orders")
        assert status == 200
    light = {"serviceName": "orders", "ip": "127.0.0.1", "port": 8080}
    for _ in range(2):
        assert json.loads(send(node, "PUT", f"{NS}/instance/beat", **light)[1])["code"] == 10200
    assert json.loads(send(node, "PUT", f"{NS}/instance/beat", **{**light, "port": 1})[1])["code"] == 20404
    full = json.dumps({"ip": "127.0.0.1", "port": 8083, "serviceName": "orders"})
    assert json.loads(send(node, "PUT", f"{NS}/instance/beat", serviceName="orders", beat=full)[1])["code"] == 10200
    assert send(node, "DELETE", f"{NS}/instance", serviceName="orders", ip="127.0.0.1", port=8081) == (200, b"ok")
    status, _ = node.get("/nacos/no/such/path")
    assert status == 404
    return 3, 5  # orders (8080, 8082, 8083), payments, dev/stock


def touch_grpc(node) -> None:
    """A gRPC client connects (server check, setup), health-checks, and goes: the gRPC panels'
    series then exist (the version gauge has a series per version seen)."""

    async def visit() -> None:
        client = Client(node.grpc_port)
        try:
            await client.connect("Nacos-Python-Client:v3.2.0")
            await client.until_set_up()
        finally:
            await client.close()

    asyncio.run(visit())


# Series a standalone node never has: it has no peers and no member ever changes state.
CLUSTER_ONLY = ("nacos_actors_distro_", "nacos_actors_member_state_changes")


def assert_dashboard_queries_exported(samples, include_distro: bool) -> None:
    """Every metric a dashboard panel queries is in the scrape, with the label values the query
    selects. A standalone node has no Distro, so its cluster-only panels are skipped there."""
    exported = {name for name, _, _ in samples}
    for query in queries(load_dashboard()):
        names = metric_names(query.expr)
        if not include_distro and any(n.startswith(CLUSTER_ONLY) for n in names):
            continue
        missing = names - exported
        assert not missing, (query.panel, missing)
        for metric, labels in equality_matchers(query.expr):
            assert any(n == metric and labels.items() <= got.items() for n, got, _ in samples), (query.panel, labels)


def test_a_scraped_cluster_member_exports_the_cluster_panels_metrics(start_cluster):
    """Writes on every member of a 3-node cluster (so some are forwarded and all replicate): each
    member's scrape holds every dashboard metric, member states for all three, and Distro figures
    per peer that agree with what was done."""
    cluster = start_cluster(3)
    for index, node in enumerate(cluster.running):
        for port in (8080, 8081):
            status, _ = send(node, "POST", f"{NS}/instance", serviceName=f"metrics-{index}", ip="127.0.0.1", port=port)
            assert status == 200
    for node in cluster.running:
        touch_grpc(node)
        samples = scrape(node, "/nacos/actuator/prometheus")
        assert_dashboard_queries_exported(samples, include_distro=True)
        states = {labels["member"] for n, labels, v in samples if n == "nacos_actors_member_state" and v == 1.0}
        assert states == set(cluster.addresses)
        peers = {labels["peer"] for n, labels, _ in samples if n == "nacos_actors_distro_batches_total"}
        assert peers == set(cluster.addresses) - {node.address}
    forwarded = sum(
        v
        for node in cluster.running
        for n, labels, v in scrape(node, "/nacos/actuator/prometheus")
        if n == "nacos_actors_distro_forwarded_requests_total" and labels["outcome"] == "ok"
    )
    owners = {json.loads(node.get(f"{NS}/operator/distro/server?serviceName=metrics-{i}")[1])["responsibleServer"]
              for i, node in enumerate(cluster.running)}
    assert owners <= set(cluster.addresses)
    expected = sum(2 for i, node in enumerate(cluster.running)
                   if json.loads(node.get(f"{NS}/operator/distro/server?serviceName=metrics-{i}")[1])["responsibleServer"]
                   != node.address)
    assert forwarded == expected


def test_a_scraped_node_exports_every_metric_the_dashboard_queries(start_node):
    node = start_node("--log-format", "json")
    services, instances = exercise(node)
    touch_grpc(node)
    samples = scrape(node, "/nacos/actuator/prometheus")
    exported = {name for name, _, _ in samples}
    health_checks = {"type": "HealthCheckRequest", "outcome": "ok"}
    assert [v for n, labels, v in samples if n == "nacos_actors_grpc_requests_total" and labels == health_checks] == [1.0]

    assert_dashboard_queries_exported(samples, include_distro=False)
    assert ("nacos_actors_member_state", {"member": node.address, "state": "UP"}, 1.0) in samples

    operator = get_json(node, f"{NS}/operator/metrics")
    assert monitor(samples, "serviceCount") == operator["serviceCount"] == services
    assert monitor(samples, "ipCount") == operator["instanceCount"] == instances
    assert monitor(samples, "leaderStatus") == 0

    beats = {labels["outcome"]: v for n, labels, v in samples if n == "nacos_actors_beats_total"}
    assert beats == {"recorded": 2, "revived": 0, "reregistered": 1, "not_found": 1}
    requests = {
        (labels["route"], labels["method"], labels["status"]): v
        for n, labels, v in samples
        if n == "nacos_actors_http_request_duration_seconds_count"
    }
    assert requests[(f"{NS}/instance", "POST", "200")] == 5
    assert requests[(f"{NS}/instance/list", "GET", "200")] == 3
    assert requests[("unmatched", "GET", "404")] == 1
    # No `_created` series on a node (Nacos has none).
    assert not [name for name in exported if name.endswith("_created")]

    root = scrape(node, "/metrics")
    assert {n for n, _, _ in root} >= exported - {n for n in exported if n.startswith("nacos_actors_http_")}
    assert monitor(root, "ipCount") == instances


def test_service_discovery_and_json_event_logs(start_node):
    node = start_node("--log-format", "json")
    exercise(node)
    targets = get_json(node, "/nacos/prometheus")
    assert sorted(t for group in targets for t in group["targets"]) == [
        "127.0.0.1:8080",
        "127.0.0.1:8082",
        "127.0.0.1:8083",
        "127.0.0.2:9090",
        "127.0.0.3:7070",
    ]
    payments = [g for g in targets if g["targets"] == ["127.0.0.2:9090"]]
    labels = {"__meta_clusterName": "c1", "version": "2", "app_name": "pay"}
    assert payments == [{"targets": ["127.0.0.2:9090"], "labels": labels}]
    assert get_json(node, "/nacos/prometheus/namespaceId/dev/service/stock") == [
        {"targets": ["127.0.0.3:7070"], "labels": {"__meta_clusterName": "DEFAULT"}}
    ]

    assert node.stop() == 0
    lines = [json.loads(line) for line in node.stderr().splitlines() if line.strip()]
    assert all({"timestamp", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line.get("event") == "raft_role" and line["role"] == "leader" for line in lines)
    events = [
        (line["event"], line["service"], line["ip"], line["port"])
        for line in lines
        if line.get("event") in ("register", "deregister")
    ]
    assert events == [
        ("register", "DEFAULT_GROUP@@orders", "127.0.0.1", 8080),
        ("register", "DEFAULT_GROUP@@orders", "127.0.0.1", 8081),
        ("register", "DEFAULT_GROUP@@orders", "127.0.0.1", 8082),
        ("register", "DEFAULT_GROUP@@payments", "127.0.0.2", 9090),
        ("register", "DEFAULT_GROUP@@stock", "127.0.0.3", 7070),
        ("deregister", "DEFAULT_GROUP@@orders", "127.0.0.1", 8081),
    ]


def test_the_default_log_format_is_text_with_one_line_per_event(node):
    assert send(node, "POST", f"{NS}/instance", serviceName="orders", ip="127.0.0.1", port=8080) == (200, b"ok")
    assert send(node, "DELETE", f"{NS}/instance", serviceName="orders", ip="127.0.0.1", port=8080) == (200, b"ok")
    assert node.stop() == 0
    text = node.stderr()
    assert "INFO nacos_actors.drivers.registry registered 127.0.0.1:8080 in DEFAULT_GROUP@@orders" in text
    assert "INFO nacos_actors.drivers.registry deregistered 127.0.0.1:8080 in DEFAULT_GROUP@@orders" in text
    assert "nacos_actors.access" not in text  # the access log is off by default
