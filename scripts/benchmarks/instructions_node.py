"""The one place that knows how a node is assembled in-process, for --instructions.

Everything else in the instructions harness (instructions_driver.py, instructions.py) uses only
`start_node` and the node's HTTP paths, so when the package's wiring changes (the Front, the
actors, the push socket, node.py), rewriting this function is all the harness needs.

It uses the node's own async_start_node, so it builds exactly what run_node builds: the
registry core with the settings' limits, the actors, and the Raft group (a group of one, on a
free loopback port; its journal in memory unless a `data_dir` is given).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import prometheus_client
import pykka
from aiohttp import web
from prometheus_client import CollectorRegistry

from nacos_actors.beats import BeatLog
from nacos_actors.core.push import PushBoard
from nacos_actors.core.registry import RegistryCore, RegistryView
from nacos_actors.drivers.assembly import registry_limits
from nacos_actors.http.app import build_app
from nacos_actors.logs import configure_logging
from nacos_actors.messages import ActorName
from nacos_actors.metrics import NodeMetrics
from nacos_actors.node import (
    Shutdown,
    async_start_node,
    stop_actors,
    tune_garbage_collector,
    tune_memory_allocator,
)
from nacos_actors.settings import Settings


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def start_node(**overrides: Any) -> tuple[web.Application, Callable[[], Awaitable[None]]]:
    """A standalone node in this process, as `nacos_actors.node.run_node` builds one: logging at
    WARNING (as the bench's nodes run), the garbage collector tuned, the registry core with
    the settings' limits, the drivers started in their actors by the node's own
    `async_start_node` (registry, health, push, Raft; the push socket, the ticker, and the Raft
    group of one, waited for as run_node waits: until it leads, at most raft_ready_timeout_ms),
    and the aiohttp application over the Front it answers.

    Health checks are off (`health_check_enabled=False`), so no beat deadline is scheduled while
    instructions are counted. Everything binds 127.0.0.1; the Raft group gets a free port (its
    default, 8848 - 1000, may be anything's on this host). No data directory unless `overrides`
    give one (`data_dir`, and `raft_fsync=False` to leave the disk out of a CPU count): without
    one, the Raft journal is in memory. `overrides` are further nacos_actors.settings.Settings
    fields.

    Run it on the event loop that will serve the requests. Returns the application, not
    started: the caller runs it (e.g. an AppRunner without a site) and sends it requests.
    `await stop()` closes what lives on the loop and stops every actor it started.
    """
    settings = Settings(**{
        "health_check_enabled": False, "log_level": "WARNING", "host": "127.0.0.1", "raft_port": free_loopback_port(),
        **overrides,
    })
    if not settings.standalone:
        raise ValueError("start_node builds a standalone node only")
    configure_logging(settings.log_level, settings.log_format)
    shutdown = Shutdown(settings.shutdown_timeout_ms / 1000)
    halted = threading.Event()
    core = RegistryCore(registry_limits(settings))
    tune_garbage_collector()
    tune_memory_allocator()
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    board = PushBoard()
    metrics = NodeMetrics(CollectorRegistry(), RegistryView(core), board)
    started: list[tuple[ActorName, pykka.ActorRef[Any]]] = []
    try:
        front = await async_start_node(settings, core, metrics, BeatLog(), board, shutdown.on_fatal, started, halted)
    except BaseException:
        stop_actors(started, halted, shutdown)
        raise
    app = build_app(front)
    front.ready = True  # run_node's serve() sets it once the site listens

    async def stop() -> None:
        front.ready = False
        await front.async_close()
        stop_actors(started, halted, shutdown)

    return app, stop
