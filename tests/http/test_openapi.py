"""The OpenAPI document: valid, complete, served, and true to a running node.

The last test is a bounded schemathesis run (examples, coverage and fuzzing phases; positive and
negative data) against a real node on 127.0.0.1: no 5xx, and every status, content type and JSON
body it answers is documented. Each operation is one test item on a fresh, seeded node.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from dataclasses import replace
from typing import Any, Iterator

import pytest
import requests
import schemathesis
from aiohttp import web
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from nacos_actors.http.app import build_app, openapi_document
from nacos_actors.http.params.base import ParamError
from nacos_actors.http.params.instances import parse_ip
from nacos_actors.settings import Settings
from tests.nodes import registry_front, stop_actors

DOCUMENT: dict[str, Any] = json.loads(openapi_document())
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}

# The values the document gives as examples, so the examples phase reaches real data.
SEED_SERVICE = {"serviceName": "demo", "ip": "127.0.0.1", "port": "8080", "metadata": '{"version":"1"}'}

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 8848,
        "suppress-health-check": ["all"],
        "generation": {"mode": "all", "max-examples": 50, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
    }
)
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


def documented_routes() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in METHODS
    }


def test_document_is_valid_openapi():
    assert DOCUMENT["openapi"].startswith("3.")
    SCHEMA.validate()
    operations = list(SCHEMA.get_all_operations())
    errors = [result.err() for result in operations if isinstance(result, Err)]
    assert not errors
    assert {(r.ok().method.upper(), r.ok().path) for r in operations} == documented_routes()


def test_every_reference_resolves():
    def resolve(pointer: str) -> Any:
        assert pointer.startswith("#/"), pointer
        node: Any = DOCUMENT
        for part in pointer[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    for pointer in walk(DOCUMENT):
        assert resolve(pointer) is not None


def test_every_registered_route_is_documented_and_vice_versa(front):
    app = build_app(front)
    registered = {(route.method, route.resource.canonical) for route in app.router.routes()}
    # The catch-all that answers 404/405 for everything else is no endpoint.
    assert registered - {("*", "/{path}")} == documented_routes()


def test_every_operation_documents_its_error_statuses():
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            assert {"200", "413"} <= statuses, (method, path)
            if operation.get("parameters"):
                assert "400" in statuses, (method, path)
            if method != "get":
                assert "503" in statuses, (method, path)


async def test_the_node_serves_the_document(client):
    response = await client.get("/nacos/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == DOCUMENT


# -- schemathesis against a live node -------------------------------------------------------


class LiveNode:
    """A registry actor and the real app on a background event loop, listening on 127.0.0.1."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.failures: list[BaseException] = []
        self.front, _ = registry_front(replace(Settings(), port=port), self.failures.append)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="openapi-node-loop", daemon=True)
        self.runner: web.AppRunner | None = None

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> None:
        self.runner = web.AppRunner(build_app(self.front), access_log=None)
        await self.runner.setup()
        await web.SockSite(self.runner, self.sock).start()

    def stop(self) -> None:
        try:
            if self.thread.is_alive():
                if self.runner is not None:
                    asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(10)
            self.loop.close()
            self.sock.close()
        finally:
            stop_actors(self.front.bridge.actors)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A session that ignores proxy variables: traffic goes to 127.0.0.1 only."""
    with requests.Session() as http:
        http.trust_env = False
        yield http


@pytest.fixture
def live_node(session) -> Iterator[str]:
    """A fresh node holding the document's example instance (demo, 127.0.0.1:8080); stores only loopback."""
    node = LiveNode()
    try:
        node.start()
        seeded = session.post(f"{node.url}/nacos/v1/ns/instance", params=SEED_SERVICE, timeout=10)
        assert seeded.status_code == 200, seeded.text
        yield node.url
        stored = [i.ip for s in node.front.view.all_services() for i in s.instances.values()]
        assert all(_loopback(ip) == ip for ip in stored), f"non-loopback instances stored: {stored}"
    finally:
        node.stop()
    assert not node.failures, f"registry actor failed: {node.failures!r}"


def _loopback(value: Any) -> Any:
    """A usable non-loopback address becomes 127.0.0.1; anything else (bad input) stays."""
    if not isinstance(value, str):
        return value
    try:
        address = parse_ip(value, "ip")
    except ParamError:
        return value
    return value if address.startswith("127.") or address in ("::1", "localhost") else "127.0.0.1"


def _loopback_json(text: Any) -> Any:
    """The same inside a `beat` object or an `instances` array given as JSON text."""
    try:
        document = json.loads(text)
    except (TypeError, ValueError):
        return text
    items = document if isinstance(document, list) else [document]
    for item in items:
        if isinstance(item, dict) and "ip" in item:
            item["ip"] = _loopback(item["ip"])
    return json.dumps(document)


def keep_instance_addresses_on_loopback(case: Any) -> None:
    """Instance addresses stored by a test must be loopback: a health checker may probe them."""
    for values in (case.query, case.body):
        if not isinstance(values, dict):
            continue
        if "ip" in values:
            values["ip"] = _loopback(values["ip"])
        for name in ("beat", "instances"):
            if name in values:
                values[name] = _loopback_json(values[name])


@SCHEMA.parametrize()
def test_the_node_conforms_to_the_document(case, live_node, session):
    keep_instance_addresses_on_loopback(case)
    case.call_and_validate(base_url=live_node, session=session, checks=CHECKS, timeout=10)
