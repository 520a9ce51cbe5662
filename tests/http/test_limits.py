"""Growth limits at the HTTP edge (issue 14, finding 5): metadata sizes, instances per service
and services per namespace, each refused with a 400 naming the limit and storing nothing.

Every test runs against a real registry actor built with the front's settings; no response
may be a 5xx.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from nacos_actors.model import ServiceKey
from nacos_actors.settings import Settings
from tests.http.conftest import BASE

IP = "127.0.0.1"
CLUSTER = {"serviceName": "demo", "clusterName": "DEFAULT", "checkPort": "80", "useInstancePort4Check": "true",
           "healthChecker": '{"type":"TCP"}'}  # fmt: skip
KEY = ServiceKey("public", "DEFAULT_GROUP@@demo")


@pytest.fixture
def settings() -> Settings:
    return replace(
        Settings(),
        max_instance_metadata_bytes=20,
        max_service_metadata_bytes=10,
        max_instances_per_service=3,
        max_services_per_namespace=4,
    )


async def answer(client, method, path, params, via="query"):
    if via == "query":
        response = await client.request(method, f"{BASE}{path}", params=params)
    else:
        response = await client.request(method, f"{BASE}{path}", data=params)
    return response.status, await response.text()


def register_params(service="demo", port=80, **extra):
    return {"serviceName": service, "ip": IP, "port": str(port), **extra}


async def hosts_of(client, service="demo"):
    response = await client.get(f"{BASE}/instance/list", params={"serviceName": service})
    return {h["port"]: h["metadata"] for h in (await response.json())["hosts"]}


# -- metadata -----------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["query", "form"])
async def test_instance_metadata_at_the_limit_is_taken_and_past_it_refused(client, via):
    at_limit = '{"key":"' + "v" * 17 + '"}'  # 3 + 17 = 20 bytes
    assert await answer(client, "POST", "/instance", register_params(metadata=at_limit), via) == (200, "ok")
    status, text = await answer(client, "POST", "/instance", register_params(port=81, metadata="key=" + "v" * 18), via)
    assert status == 400
    assert "Param 'metadata'" in text and "21 bytes" in text and "max_instance_metadata_bytes" in text
    assert list(await hosts_of(client)) == [80]


async def test_metadata_counts_utf8_bytes():
    from nacos_actors.model import metadata_size

    assert metadata_size({"k": "v", "ключ": "é"}) == 2 + 8 + 2


@pytest.mark.parametrize(
    ("method", "path", "params", "named"),
    [
        ("PUT", "/instance", register_params(metadata="k=" + "v" * 30), "'metadata'"),
        ("PATCH", "/instance", register_params(metadata="k=" + "v" * 30), "'metadata'"),
        (
            "PUT",
            "/instance/beat",
            {"serviceName": "demo", "beat": json.dumps({"ip": IP, "port": 82, "metadata": {"k": "v" * 30}})},
            "'beat.metadata'",
        ),
        (
            "PUT",
            "/instance/metadata/batch",
            {"serviceName": "demo", "consistencyType": "ephemeral", "metadata": "k=" + "v" * 30},
            "'metadata'",
        ),
    ],
)
async def test_every_instance_write_that_carries_metadata_is_limited(client, method, path, params, named):
    assert await answer(client, "POST", "/instance", register_params(metadata="a=1")) == (200, "ok")
    status, text = await answer(client, method, path, params)
    assert status == 400, text
    assert named in text and "max_instance_metadata_bytes" in text
    assert await hosts_of(client) == {80: {"a": "1"}}


async def test_a_metadata_batch_merge_past_the_limit_is_refused_whole(client):
    """Each change is small, but merged into what an instance holds it would pass the limit:
    the registry core refuses the whole command and no instance changes."""
    assert await answer(client, "POST", "/instance", register_params(metadata="k1=" + "v" * 10)) == (200, "ok")
    assert await answer(client, "POST", "/instance", register_params(port=81)) == (200, "ok")
    status, text = await answer(
        client, "PUT", "/instance/metadata/batch",
        {"serviceName": "demo", "consistencyType": "ephemeral", "metadata": "k2=" + "v" * 10},
    )  # fmt: skip
    assert status == 400 and "max_instance_metadata_bytes" in text and "24 bytes" in text
    assert await hosts_of(client) == {80: {"k1": "v" * 10}, 81: {}}
    status, _ = await answer(
        client, "PUT", "/instance/metadata/batch",
        {"serviceName": "demo", "consistencyType": "ephemeral", "metadata": "k2=v"},
    )  # fmt: skip
    assert status == 200
    assert await hosts_of(client) == {80: {"k1": "v" * 10, "k2": "v"}, 81: {"k2": "v"}}


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("POST", "/service", {"serviceName": "other", "metadata": "k=" + "v" * 10}),
        ("PUT", "/service", {"serviceName": "demo", "protectThreshold": "0", "metadata": "k=" + "v" * 10}),
        ("PUT", "/cluster", {**CLUSTER, "metadata": "k=" + "v" * 10}),
    ],
)
async def test_service_and_cluster_metadata_are_limited(client, front, method, path, params):
    assert await answer(client, "POST", "/instance", register_params()) == (200, "ok")
    revision = front.service(KEY).revision
    status, text = await answer(client, method, path, params)
    assert status == 400 and "max_service_metadata_bytes" in text and "11 bytes" in text
    assert front.service(KEY).revision == revision
    assert front.service(ServiceKey("public", "DEFAULT_GROUP@@other")) is None
    ok_params = {**params, "metadata": "k=" + "v" * 9}
    assert (await answer(client, method, path, ok_params))[0] == 200


@pytest.mark.parametrize("settings", [Settings()])
async def test_a_mebibyte_of_metadata_is_refused_by_default(client):
    """Finding 5: every list of 300 such instances was 314 MB."""
    big = json.dumps({"blob": "x" * 1_000_000})
    status, text = await answer(client, "POST", "/instance", register_params(metadata=big), via="form")
    assert status == 400 and "over the limit of 16384 (max_instance_metadata_bytes)" in text
    assert await hosts_of(client) == {}


# -- counts -------------------------------------------------------------------------------------


async def test_instances_per_service_are_limited(client):
    for port in (80, 81, 82):
        assert await answer(client, "POST", "/instance", register_params(port=port)) == (200, "ok")
    status, text = await answer(client, "POST", "/instance", register_params(port=83))
    assert status == 400 and "holds 3 instances" in text and "max_instances_per_service" in text
    assert await answer(client, "POST", "/instance", register_params(port=82, weight="2")) == (200, "ok")  # a replace
    status, _ = await answer(client, "PUT", "/instance/beat", {
        "serviceName": "demo", "beat": json.dumps({"ip": IP, "port": 84})})  # fmt: skip
    assert status == 400
    assert await answer(client, "DELETE", "/instance", register_params(port=80)) == (200, "ok")
    assert await answer(client, "POST", "/instance", register_params(port=83)) == (200, "ok")
    assert sorted(await hosts_of(client)) == [81, 82, 83]


async def test_services_per_namespace_are_limited_in_one_batch_too(client, front):
    """Registrations issued together travel in one write batch: the limit counts the new
    services the batch holds before it publishes them."""
    results = await asyncio.gather(
        *(answer(client, "POST", "/instance", register_params(service=f"s{i}")) for i in range(10))
    )
    assert sorted(status for status, _ in results) == [200] * 4 + [400] * 6
    assert all("max_services_per_namespace" in text for status, text in results if status == 400)
    assert len(front.services_in("public")) == 4
    status, text = await answer(client, "POST", "/service", {"serviceName": "explicit"})
    assert status == 400 and "namespace public already holds 4 services" in text
    assert await answer(client, "POST", "/instance", register_params(service="s0", port=81)) == (200, "ok")
    elsewhere = register_params(service="s9", namespaceId="other")
    assert await answer(client, "POST", "/instance", elsewhere) == (200, "ok")


@pytest.mark.parametrize(
    "settings", [replace(Settings(), max_instances_per_service=0, max_services_per_namespace=0)]
)
async def test_zero_means_no_limit(client, front):
    results = await asyncio.gather(
        *(answer(client, "POST", "/instance", register_params(service=f"s{i % 3}", port=i + 1)) for i in range(30))
    )
    assert {status for status, _ in results} == {200}
    assert front.view.instance_count == 30
