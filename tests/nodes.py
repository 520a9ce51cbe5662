"""In-process nodes for tests: the production drivers in real actors, wired by the bridge.

`registry_front` is a node with only the registry actor (what most HTTP tests need); other
actors may be stand-ins registered under a driver's name in the same ActorDirectory.
"""

from __future__ import annotations

from typing import Any

import pykka
from prometheus_client import CollectorRegistry

from nacos_actors.bridge import ActorDirectory, ActorOutbox, DriverActor, LoopBridge, WriteBatcher
from nacos_actors.core.registry import RegistryCore, RegistryView
from nacos_actors.drivers.assembly import registry_limits
from nacos_actors.drivers.registry import RegistryDriver
from nacos_actors.http.front import Front
from nacos_actors.messages import REGISTRY, WriteBatch
from nacos_actors.metrics import NodeMetrics
from nacos_actors.settings import Settings


def fail_test(error: BaseException) -> None:
    raise AssertionError(f"an actor failed: {error!r}")


def start_registry(
    core: RegistryCore, metrics: NodeMetrics, actors: ActorDirectory, on_fatal: Any = fail_test, clock: Any = None
) -> pykka.ActorRef[Any]:
    """A RegistryDriver in a DriverActor, registered in `actors` (it tells watchers there)."""
    driver = RegistryDriver(core, ActorOutbox(None, actors), metrics)
    ref = DriverActor.start(driver, metrics, on_fatal) if clock is None else DriverActor.start(driver, metrics, on_fatal, clock)
    actors.add(REGISTRY, ref)
    return ref


def bridge_to(actors: ActorDirectory, settings: Settings) -> LoopBridge:
    return LoopBridge(actors, WriteBatcher(actors, REGISTRY, WriteBatch, settings.request_timeout))


def registry_front(settings: Settings, on_fatal: Any = fail_test, **fields: Any) -> tuple[Front, RegistryCore]:
    """A ready Front whose writes reach a running registry actor (stop `front.bridge.actors`);
    the registry has the limits `settings` give."""
    core = RegistryCore(registry_limits(settings))
    view = RegistryView(core)
    metrics = NodeMetrics(CollectorRegistry(), view)
    actors = ActorDirectory()
    start_registry(core, metrics, actors, on_fatal)
    front = Front(settings=settings, bridge=bridge_to(actors, settings), view=view, metrics=metrics, ready=True, **fields)
    return front, core


def stop_actors(actors: ActorDirectory) -> None:
    for ref in reversed(actors.refs()):
        ref.stop()
