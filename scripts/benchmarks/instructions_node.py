"""The one place that knows how a node is assembled in-process, for --instructions.

Everything else in the instructions harness (instructions_driver.py, instructions.py) uses only
`start_node` and the node's HTTP paths, so when the package's wiring changes (the Front, the
actors, the push socket, node.py), rewriting this function is all the harness needs.

Written against nacos_actors at 9542e10: it mirrors run_node's standalone path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import prometheus_client
import pykka
from aiohttp import web
from prometheus_client import CollectorRegistry

from nacos_actors.actors.health import HealthCheckActor
from nacos_actors.actors.push import PushActor, open_push_socket
from nacos_actors.actors.registry import RegistryActor
from nacos_actors.beats import BeatLog
from nacos_actors.core.members import MemberBoard, standalone_view
from nacos_actors.core.push import PushBoard
from nacos_actors.core.registry import RegistryCore
from nacos_actors.http.app import build_app
from nacos_actors.http.front import Front
from nacos_actors.logs import configure_logging
from nacos_actors.messages import Ping, Watch
from nacos_actors.metrics import NodeMetrics
from nacos_actors.node import (
    ACTOR_STOP_TIMEOUT_S,
    Shutdown,
    health_core,
    push_core,
    tune_garbage_collector,
)
from nacos_actors.settings import Settings


def start_node(**overrides: Any) -> tuple[web.Application, Callable[[], None]]:
    """A standalone node in this process, as `nacos_actors.node.run_node` builds one: logging at
    WARNING (as the bench's nodes run), the garbage collector tuned, the registry, health-check
    and push actors started and pinged, the Front, and the aiohttp application over it.

    Health checks are off (`health_check_enabled=False`), so no beat deadline is scheduled while
    instructions are counted. `overrides` are further nacos_actors.settings.Settings fields.

    Call it on the thread that will run the event loop (as run_node does). Returns the
    application, not started: the caller runs it (e.g. an AppRunner without a site) and sends
    it requests. `stop()` stops every actor it started (pykka threads are not daemons), and
    with the push actor its UDP socket.
    """
    settings = Settings(**{"health_check_enabled": False, "log_level": "WARNING", **overrides})
    if not settings.standalone:
        raise ValueError("start_node builds a standalone node only")
    configure_logging(settings.log_level, settings.log_format)
    shutdown = Shutdown()
    core = RegistryCore()
    tune_garbage_collector()
    prometheus_client.disable_created_metrics()
    board = PushBoard()
    metrics = NodeMetrics(CollectorRegistry(), core, board)
    beats = BeatLog()
    started: list[pykka.ActorRef] = []

    def stop() -> None:
        front.ready = False
        for actor in reversed(started):
            actor.stop(block=True, timeout=ACTOR_STOP_TIMEOUT_S)
        pykka.ActorRegistry.stop_all(block=True, timeout=ACTOR_STOP_TIMEOUT_S)

    try:
        registry = RegistryActor.start(core, shutdown.on_fatal, metrics)
        started.append(registry)
        health = HealthCheckActor.start(health_core(settings), registry, beats, metrics, shutdown.on_fatal)
        started.append(health)
        registry.tell(Watch(health))
        push = None
        if settings.push_enabled:
            push = PushActor.start(push_core(settings), open_push_socket(settings.host), board, metrics, shutdown.on_fatal)
            started.append(push)
            registry.tell(Watch(push))
        metrics.cluster.states.board = MemberBoard(standalone_view(settings.self_address))
        for actor in started:
            actor.ask(Ping(), timeout=5)
        front = Front(
            settings=settings,
            registry=registry,
            view=core,
            metrics=metrics,
            beats=beats,
            push=push,
            push_board=board,
        )
        app = build_app(front)
        front.ready = True  # run_node's serve() sets it once the site listens
    except BaseException:
        for actor in reversed(started):
            actor.stop(block=True, timeout=ACTOR_STOP_TIMEOUT_S)
        raise
    return app, stop
