"""An in-process node for HTTP tests: a real registry actor behind the real aiohttp app."""

from __future__ import annotations

from dataclasses import replace

import pytest
from blockbuster import blockbuster_ctx

from nacos_actors.http.app import build_app
from nacos_actors.settings import Settings
from tests.nodes import registry_front, stop_actors

BASE = "/nacos/v1/ns"


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def front(settings):
    """A Front wired to a running registry actor (stopped after the test), sharing one NodeMetrics
    on a fresh CollectorRegistry."""
    front, _ = registry_front(settings)
    yield front
    stop_actors(front.bridge.actors)


@pytest.fixture
async def client(aiohttp_client, front, monkeypatch):
    """An aiohttp test client for the node's app.

    Blocking calls on the loop fail the test, and so does any 5xx answer (a 5xx is a bug); a
    test that wants one on purpose asks through `client.session` directly.
    """
    app = build_app(front)
    test_client = await aiohttp_client(app)
    server_errors: list[tuple[str, str, int]] = []
    original = test_client._request

    async def recording(method, path, **kwargs):
        response = await original(method, path, **kwargs)
        if response.status >= 500:
            server_errors.append((method, str(path), response.status))
        return response

    monkeypatch.setattr(test_client, "_request", recording)
    with blockbuster_ctx("nacos_actors"):
        yield test_client
    assert server_errors == [], f"5xx answers: {server_errors}"


@pytest.fixture
def small_body_settings() -> Settings:
    return replace(Settings(), max_body_bytes=1024)
