"""An in-process node for gRPC tests: a real registry (and Raft) actor behind the real
GrpcServer on a free port of 127.0.0.1."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from nacos_actors.grpc.server import GrpcServer
from nacos_actors.settings import Settings
from tests.grpc.support import Client
from tests.nodes import registry_front, stop_actors


@pytest.fixture
def settings() -> Settings:
    return replace(Settings(), grpc_detect_idle_ms=400, grpc_detect_timeout_ms=300)


@pytest.fixture
async def node(settings):
    """(GrpcServer, Front) serving on a free port."""
    front, _ = registry_front(settings)
    server = GrpcServer(settings, front.metrics.grpc, asyncio.get_running_loop())
    server.attach(front)
    await server.async_start("127.0.0.1", 0)
    yield server, front
    await server.async_stop(0.5)
    stop_actors(front.bridge.actors)


@pytest.fixture
async def client(node):
    server, _ = node
    opened = Client(server.port)
    yield opened
    await opened.close()
