"""In-process nodes for tests: the production drivers in real actors, wired by the bridge.

`registry_front` is a node with only the registry actor (what most HTTP tests need); other
actors may be stand-ins registered under a driver's name in the same ActorDirectory.
"""

from __future__ import annotations

from typing import Any

import pykka
from prometheus_client import CollectorRegistry

from nacos_actors.bridge import ActorDirectory, ActorOutbox, DriverActor, LoopBridge, WriteBatcher
from nacos_actors.core.consensus import RaftBoard
from nacos_actors.core.definitions import DefinitionCore
from nacos_actors.core.registry import RegistryCore, RegistryView
from nacos_actors.drivers.assembly import raft_driver_config, registry_limits
from nacos_actors.drivers.raft import RaftDriver
from nacos_actors.drivers.registry import RegistryDriver
from nacos_actors.http.front import Front
from nacos_actors.messages import RAFT, REGISTRY, PollRaft, WriteBatch
from nacos_actors.metrics import NodeMetrics
from nacos_actors.settings import Settings
from tests.consensus import ImmediateGroup


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


def start_raft(
    settings: Settings,
    metrics: NodeMetrics,
    actors: ActorDirectory,
    board: RaftBoard,
    on_fatal: Any = fail_test,
    leader: str | None = "127.0.0.1:7848",
) -> RaftDriver:
    """A RaftDriver around an ImmediateGroup (a one-member group that commits at once; with
    `leader` None it has no leader and fails every proposal) in a DriverActor, registered in
    `actors` with its waker."""
    driver = RaftDriver(
        DefinitionCore(registry_limits(settings)),
        ActorOutbox(None, actors),
        board,
        metrics.raft,
        raft_driver_config(settings, {"127.0.0.1:7848": settings.self_address}),
    )
    group = ImmediateGroup(driver.apply_entry, driver.save_state, driver.load_state, leader=leader)
    driver.attach(group)
    actors.add(RAFT, DriverActor.start(driver, metrics, on_fatal), wake=group.wake)
    actors.tell(RAFT, PollRaft())
    return driver


def registry_front(
    settings: Settings, on_fatal: Any = fail_test, raft_leader: str | None = "127.0.0.1:7848", **fields: Any
) -> tuple[Front, RegistryCore]:
    """A ready Front whose writes reach a running registry actor, and persistent writes a Raft
    actor around a one-member group that commits at once (stop `front.bridge.actors`); the
    registry has the limits `settings` give."""
    core = RegistryCore(registry_limits(settings))
    view = RegistryView(core)
    metrics = NodeMetrics(CollectorRegistry(), view)
    actors = ActorDirectory()
    start_registry(core, metrics, actors, on_fatal)
    board = RaftBoard()
    metrics.raft.state.board = board
    start_raft(settings, metrics, actors, board, on_fatal, raft_leader)
    fields.setdefault("raft_board", board)
    front = Front(settings=settings, bridge=bridge_to(actors, settings), view=view, metrics=metrics, ready=True, **fields)
    return front, core


def stop_actors(actors: ActorDirectory) -> None:
    for ref in reversed(actors.refs()):
        ref.stop()
