"""A MYSQL checker's password never leaves the node in an answer: every GET endpoint the OpenAPI
document lists is asked about a service whose cluster holds one (each with the parameters that
reach that service), and none shows it; the answers that show a checker show it masked. The
switches show this node's probe settings. The node here runs with health_check_times=5."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from nacos_actors.http.app import openapi_document
from nacos_actors.model import ServiceKey
from nacos_actors.render.views import MASKED_PASSWORD, checker_json
from nacos_actors.settings import Settings
from tests.http.support import ok

SECRET = "pwd-8c1f-never-shown"
SERVICE = "demo"
KEY = ServiceKey("public", "DEFAULT_GROUP@@demo")
CHECKER = {"type": "MYSQL", "user": "probe", "pwd": SECRET, "cmd": "select 1"}
PARAMS = {
    "serviceName": SERVICE,
    "namespaceId": "public",
    "groupName": "DEFAULT_GROUP",
    "ip": "127.0.0.1",
    "port": "8080",
    "clusterName": "DEFAULT",
    "clusters": "DEFAULT",
    "pageNo": "1",
    "pageSize": "100",
    "detail": "true",
}
PATH_PARAMETERS = {"{namespaceId}": "public", "{service}": SERVICE}


def get_routes(document: dict) -> list[str]:
    routes = []
    for path, item in document["paths"].items():
        if "get" in item:
            for placeholder, value in PATH_PARAMETERS.items():
                path = path.replace(placeholder, value)
            routes.append(path)
    return routes


GET_ROUTES = get_routes(json.loads(openapi_document()))  # read here: the test's loop must not block


@pytest.fixture
def settings() -> Settings:
    return replace(Settings(), health_check_times=5)


async def test_no_answer_shows_a_stored_password(client, front):
    for ephemeral, port in (("true", "8080"), ("false", "8081")):
        await ok(
            client,
            "POST",
            "/instance",
            {"serviceName": SERVICE, "ip": "127.0.0.1", "port": port, "ephemeral": ephemeral},
        )
    cluster = {
        "serviceName": SERVICE,
        "clusterName": "DEFAULT",
        "checkPort": "3306",
        "useInstancePort4Check": "true",
        "healthChecker": json.dumps(CHECKER),
    }
    await ok(client, "PUT", "/cluster", cluster)
    assert front.service(KEY).cluster_config("DEFAULT").health_checker["pwd"] == SECRET

    masked_in = set()
    assert "/nacos/v1/ns/service" in GET_ROUTES and "/nacos/v2/ns/service" in GET_ROUTES
    for route in GET_ROUTES:
        for extra in ({}, {"withInstances": "true"}):
            response = await client.get(route, params={**PARAMS, **extra})
            body = await response.text()
            assert SECRET not in body, (route, extra)
            if MASKED_PASSWORD in body:
                masked_in.add(route)
    assert {"/nacos/v1/ns/service", "/nacos/v2/ns/service"} <= masked_in


def test_checker_json_masks_only_a_password():
    assert checker_json({"type": "TCP"}) == {"type": "TCP"}
    assert checker_json({"type": "MYSQL", "user": "u"}) == {"type": "MYSQL", "user": "u"}
    assert checker_json({"type": "MYSQL", "user": "u", "pwd": ""}) == {"type": "MYSQL", "user": "u", "pwd": "******"}
    http = {"type": "HTTP", "path": "/pwd", "headers": "pwd:x", "expectedResponseCode": 200}
    assert checker_json(http) == http


@pytest.mark.parametrize("base", ["/nacos/v1/ns/operator", "/nacos/v1/ns/ops"])
async def test_the_switches_show_the_checks_in_a_row_that_change_a_verdict(client, base):
    body = await (await client.get(f"{base}/switches")).json()
    assert (body["checkTimes"], body["healthCheckEnabled"]) == (5, True)
    v2 = await (await client.get("/nacos/v2/ns/operator/switches")).json()
    assert v2["data"]["checkTimes"] == 5
