"""Metrics over HTTP: /nacos/actuator/prometheus and /metrics, what requests and beats record,
and Prometheus HTTP service discovery at /nacos/prometheus (Nacos 2.2+'s shape)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nacos_actors.model import Instance, Service, ServiceKey, freeze, instance_map
from nacos_actors.render import prometheus as render
from nacos_actors.settings import Settings
from tests.http.conftest import BASE

IP = "127.0.0.1"
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


async def register(client, service="demo", ip=IP, port=8080, **extra):
    params = {"serviceName": service, "ip": ip, "port": str(port), **extra}
    response = await client.post(f"{BASE}/instance", params=params)
    assert (response.status, await response.text()) == (200, "ok")


async def scrape(client, path="/nacos/actuator/prometheus") -> dict:
    """(sample name, sorted labels) -> value, from the node's text exposition."""
    response = await client.get(path)
    assert response.status == 200
    assert response.headers["Content-Type"] == TEXT_FORMAT
    samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, sample_name, /, **labels):
    return samples.get((sample_name, tuple(sorted(labels.items()))))


def requests_of(samples, route, method="GET", status="200"):
    count = "nacos_actors_http_request_duration_seconds_count"
    return value(samples, count, route=route, method=method, status=status)


async def get_json(client, path, status=200):
    response = await client.get(path)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


# -- the exposition --------------------------------------------------------------------------


async def test_both_paths_serve_the_same_families_in_the_text_format(client):
    nacos = await scrape(client)
    root = await scrape(client, "/metrics")
    assert {name for name, _ in nacos} - {name for name, _ in root} <= {
        "nacos_actors_http_request_duration_seconds_bucket",
        "nacos_actors_http_request_duration_seconds_count",
        "nacos_actors_http_request_duration_seconds_sum",
        "nacos_actors_http_request_duration_seconds_created",
    }
    assert value(root, "nacos_monitor", module="naming", name="leaderStatus") == 0


async def test_counts_agree_with_the_operator_metrics_and_what_was_registered(client):
    await register(client, "a", port=1)
    await register(client, "a", port=2)
    await register(client, "b", port=3, namespaceId="dev")
    await register(client, "c", port=4, ephemeral="false")
    samples = await scrape(client)
    operator = await get_json(client, f"{BASE}/operator/metrics")
    services = value(samples, "nacos_monitor", module="naming", name="serviceCount")
    instances = value(samples, "nacos_monitor", module="naming", name="ipCount")
    assert (services, instances) == (operator["serviceCount"], operator["instanceCount"]) == (3, 4)


async def test_each_request_is_observed_once_under_its_route_pattern(client):
    await register(client)
    for _ in range(3):
        assert (await client.get(f"{BASE}/instance/list", params={"serviceName": "demo"})).status == 200
    assert (await client.get(f"{BASE}/instance/list", params={"serviceName": "bad name"})).status == 400
    assert (await client.get("/nacos/prometheus/namespaceId/public/service/demo")).status == 200
    assert (await client.get("/nacos/prometheus/namespaceId/dev/service/other")).status == 200
    samples = await scrape(client)
    assert requests_of(samples, f"{BASE}/instance", "POST") == 1
    assert requests_of(samples, f"{BASE}/instance/list") == 3
    assert requests_of(samples, f"{BASE}/instance/list", status="400") == 1
    assert requests_of(samples, "/nacos/prometheus/namespaceId/{namespaceId}/service/{service}") == 2
    routes = {dict(labels)["route"] for name, labels in samples if name.startswith("nacos_actors_http_request")}
    assert not any("demo" in route or "public" in route for route in routes)


async def test_unknown_paths_and_methods_share_bounded_labels(client):
    for path in ("/nope", "/nacos/v1/ns/nothing", "/x/y/z?a=b"):
        assert (await client.get(path)).status == 404
    # Methods outside the usual verbs (the HTTP parser lets WebDAV's through) are `other`.
    assert (await client.request("PROPFIND", "/elsewhere")).status == 404
    assert (await client.request("PROPFIND", f"{BASE}/instance/list")).status == 405
    samples = await scrape(client)
    assert requests_of(samples, "unmatched", status="404") == 3
    assert requests_of(samples, "unmatched", method="other", status="404") == 1
    assert requests_of(samples, "unmatched", method="other", status="405") == 1


async def test_not_found_answers_raised_by_handlers_are_observed(client):
    response = await client.get(f"{BASE}/service", params={"serviceName": "missing"})
    assert response.status == 404
    samples = await scrape(client)
    assert requests_of(samples, f"{BASE}/service", status="404") == 1


async def test_beats_are_counted_by_outcome(client):
    await register(client, port=1)
    await register(client, port=2, healthy="false")
    light = {"serviceName": "demo", "ip": IP}
    assert (await client.put(f"{BASE}/instance/beat", params={**light, "port": "1"})).status == 200
    assert (await client.put(f"{BASE}/instance/beat", params={**light, "port": "1"})).status == 200
    assert (await client.put(f"{BASE}/instance/beat", params={**light, "port": "2"})).status == 200
    unknown = await client.put(f"{BASE}/instance/beat", params={**light, "port": "3"})
    assert (await unknown.json())["code"] == 20404
    full = json.dumps({"ip": IP, "port": 4, "serviceName": "demo"})
    assert (await client.put(f"{BASE}/instance/beat", params={"serviceName": "demo", "beat": full})).status == 200
    samples = await scrape(client)
    outcomes = ("recorded", "revived", "reregistered", "not_found")
    counts = {o: value(samples, "nacos_actors_beats_total", outcome=o) for o in outcomes}
    assert counts == {"recorded": 2, "revived": 1, "reregistered": 1, "not_found": 1}
    writes = "nacos_actors_registry_writes_total"
    assert value(samples, writes, command="beat_instance", outcome="applied") == 2
    assert value(samples, writes, command="register_instance", outcome="applied") == 2


async def test_rejected_writes_are_counted(client):
    response = await client.delete(f"{BASE}/service", params={"serviceName": "missing"})
    assert response.status == 400
    samples = await scrape(client)
    assert value(samples, "nacos_actors_registry_writes_total", command="delete_service", outcome="rejected") == 1
    # Refused at the edge (no such service), before it could reach Raft or the registry.
    assert value(samples, "nacos_actors_registry_write_batch_size_count") == 0


async def test_a_500_is_counted_as_a_nacos_exception(client, front, monkeypatch):
    def broken(key):
        raise RuntimeError("boom")

    monkeypatch.setattr(front, "service", broken)
    response = await client.session.get(client.make_url(f"{BASE}/instance/list"), params={"serviceName": "demo"})
    assert response.status == 500
    samples = await scrape(client)
    assert value(samples, "nacos_exception_total", module="naming", name="requestFailed") == 1
    assert requests_of(samples, f"{BASE}/instance/list", status="500") == 1


async def test_the_registry_actor_mailbox_and_handling_time_are_exported(client):
    await register(client)
    count = "nacos_actors_actor_message_duration_seconds_count"
    # The actor answers the write before it records the batch's handling time: wait for it.
    for _ in range(200):
        samples = await scrape(client)
        if value(samples, count, actor="registry", message="WriteBatch") == 1:
            break
        await asyncio.sleep(0.01)
    assert value(samples, "nacos_actors_actor_mailbox_depth", actor="registry") == 0
    assert value(samples, count, actor="registry", message="WriteBatch") == 1


class TestAnotherContextPath:
    @pytest.fixture
    def settings(self) -> Settings:
        return replace(Settings(), context_path="/registry")

    async def test_it_moves_everything_but_metrics(self, client):
        assert (await client.get("/registry/actuator/prometheus")).status == 200
        assert (await client.get("/metrics")).status == 200
        assert (await client.get("/registry/prometheus")).status == 200
        assert (await client.get("/nacos/actuator/prometheus")).status == 404


# -- Prometheus HTTP service discovery -------------------------------------------------------


async def test_sd_lists_a_target_group_per_instance_with_cluster_and_metadata_labels(client):
    metadata = json.dumps({"version": "2", "app.name": "orders", "zone-id": "a"})
    await register(client, "orders", port=8080, clusterName="c1", metadata=metadata)
    await register(client, "orders", port=8081, healthy="false", enabled="false")
    await register(client, "orders", ip="127.0.0.2", port=8082, ephemeral="false")
    await register(client, "grp@@orders", port=9000)
    await register(client, "orders", port=7000, namespaceId="dev")
    everything = await get_json(client, "/nacos/prometheus")
    assert everything == [
        {"targets": ["127.0.0.1:7000"], "labels": {"__meta_clusterName": "DEFAULT"}},  # namespace dev first
        {
            "targets": ["127.0.0.1:8080"],
            "labels": {"__meta_clusterName": "c1", "version": "2", "app_name": "orders", "zone_id": "a"},
        },
        {"targets": ["127.0.0.1:8081"], "labels": {"__meta_clusterName": "DEFAULT"}},
        {"targets": ["127.0.0.2:8082"], "labels": {"__meta_clusterName": "DEFAULT"}},
        {"targets": ["127.0.0.1:9000"], "labels": {"__meta_clusterName": "DEFAULT"}},
    ]
    assert await get_json(client, "/nacos/prometheus/namespaceId/public") == everything[1:]
    assert await get_json(client, "/nacos/prometheus/namespaceId/dev") == everything[:1]
    # The service path matches the bare name in every group, as Nacos's Service.getName().
    assert await get_json(client, "/nacos/prometheus/namespaceId/public/service/orders") == everything[1:]
    assert await get_json(client, "/nacos/prometheus/namespaceId/dev/service/orders") == everything[:1]


async def test_sd_answers_an_empty_array_for_nothing(client):
    assert await get_json(client, "/nacos/prometheus") == []
    await register(client, "orders")
    assert await get_json(client, "/nacos/prometheus/namespaceId/unknown") == []
    assert await get_json(client, "/nacos/prometheus/namespaceId/public/service/missing") == []
    created = await client.post(f"{BASE}/service", params={"serviceName": "empty"})
    assert created.status == 200
    assert len(await get_json(client, "/nacos/prometheus")) == 1


async def test_sd_follows_changes(client):
    await register(client, "orders", port=1)
    assert len(await get_json(client, "/nacos/prometheus")) == 1
    await register(client, "orders", port=2)
    assert len(await get_json(client, "/nacos/prometheus")) == 2
    response = await client.delete(f"{BASE}/instance", params={"serviceName": "orders", "ip": IP, "port": "1"})
    assert response.status == 200
    assert [g["targets"] for g in await get_json(client, "/nacos/prometheus")] == [["127.0.0.1:2"]]


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/nacos/prometheus/namespaceId/a@b", "namespaceId"),
        (f"/nacos/prometheus/namespaceId/{'n' * 129}", "namespaceId"),
        ("/nacos/prometheus/namespaceId/public/service/grp@@orders", "service"),
        ("/nacos/prometheus/namespaceId/public/service/a%2Fb", "service"),
        ("/nacos/prometheus/namespaceId/bad%20id/service/x", "namespaceId"),
    ],
)
async def test_sd_refuses_malformed_path_values_naming_them(client, path, named):
    response = await client.get(path)
    assert response.status == 400
    assert f"Param '{named}'" in await response.text()


async def test_sd_of_an_ipv6_instance_is_a_bracketed_target(client):
    await register(client, "v6", ip="::1", port=80)
    assert await get_json(client, "/nacos/prometheus") == [
        {"targets": ["[::1]:80"], "labels": {"__meta_clusterName": "DEFAULT"}}
    ]


# -- the SD rendering, pure ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "label"),
    [
        ("version", "version"),
        ("app.name", "app_name"),
        ("zone-id", "zone_id"),
        ("a/b c", "a_b_c"),
        ("9lives", "_9lives"),
        ("", "_"),
        ("ключ", "____"),
        ("__meta_x", "__meta_x"),
    ],
)
def test_label_names_are_always_valid(key, label):
    assert render.label_name(key) == label


def test_the_cluster_label_and_the_first_of_colliding_keys_win():
    instance = Instance(IP, 80, cluster="c1", metadata=freeze({"a.b": "1", "a-b": "2", "__meta_clusterName": "x"}))
    assert render.prometheus_target(instance) == {
        "targets": ["127.0.0.1:80"],
        "labels": {"__meta_clusterName": "c1", "a_b": "1"},
    }


def test_the_targets_are_rendered_service_by_service_and_skip_empty_services():
    key = ServiceKey("public", "DEFAULT_GROUP@@demo")
    instance = Instance(IP, 80)
    service = Service(key=key, instances=instance_map([instance]))
    parts = render.prometheus_target_parts([Service(key=key), service, Service(key=key), service])
    assert next(parts) == b"["  # nothing rendered before it is asked for
    targets = render.prometheus_targets(service)
    assert b"".join(parts) == targets + b"," + targets + b"]"
    assert json.loads(render.prometheus_target_list([service, Service(key=key)])) == [
        {"targets": ["127.0.0.1:80"], "labels": {"__meta_clusterName": "DEFAULT"}}
    ]
