"""The node's lifecycle: start the actors in dependency order, serve, stop them in reverse.

`run_node` runs on the main thread. The event loop (aiohttp on uvloop) runs on that thread
too; each actor has its own pykka thread. On SIGTERM or Ctrl-C the HTTP server stops
taking requests, the actors are stopped in reverse order, the registry is saved when a data
directory is set, and no thread is left behind.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
import time
from pathlib import Path

import prometheus_client
import pykka
import uvloop
from aiohttp import web
from prometheus_client import CollectorRegistry

from nacos_actors.actors.distro import DistroActor
from nacos_actors.actors.health import HealthCheckActor
from nacos_actors.actors.members import MemberActor
from nacos_actors.actors.push import PushActor, open_push_socket
from nacos_actors.actors.registry import RegistryActor
from nacos_actors.beats import BeatLog
from nacos_actors.bridge import ActorUnavailable, async_ask
from nacos_actors.clock import wall_clock_ms
from nacos_actors.core.codec import CodecError, decode_services, encode_services
from nacos_actors.core.distro import DistroConfig, DistroCore
from nacos_actors.core.health import HealthConfig, HealthCore
from nacos_actors.core.members import MemberBoard, MemberConfig, MemberCore, standalone_view
from nacos_actors.core.push import PushBoard, PushConfig, PushCore
from nacos_actors.core.registry import RegistryCore
from nacos_actors.render import lists as render
from nacos_actors.http.app import build_app
from nacos_actors.http.cluster import ClusterFront, async_join
from nacos_actors.http.front import Front
from nacos_actors.messages import Drain, Leave, Ping, Watch
from nacos_actors.metrics import NodeMetrics
from nacos_actors.model import Service, ServiceKey
from nacos_actors.peers import PeerLink
from nacos_actors.settings import Settings

log = logging.getLogger(__name__)
SNAPSHOT_FILE = "registry.msgpack"
ACTOR_STOP_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 3.0
LEAVE_TIMEOUT_S = 2.0
PEER_TIMEOUT_S = 2.0


class Shutdown:
    """A stop request that any thread may make; the event loop waits for it."""

    def __init__(self) -> None:
        self.exit_code = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._requested = False

    def attach(self, loop: asyncio.AbstractEventLoop) -> asyncio.Event:
        """Bind to the running loop (called on it); returns the event to wait on."""
        with self._lock:
            self._loop, self._event = loop, asyncio.Event()
            if self._requested:
                self._event.set()
            return self._event

    def request(self, exit_code: int = 0) -> None:
        """Ask the node to stop; a non-zero code wins over a clean one. Any thread."""
        with self._lock:
            self.exit_code = self.exit_code or exit_code
            self._requested = True
            if self._loop is not None and self._event is not None and not self._loop.is_closed():
                try:
                    self._loop.call_soon_threadsafe(self._event.set)
                except RuntimeError:  # the loop closed meanwhile: nothing waits on the event
                    pass

    def on_fatal(self, error: BaseException) -> None:
        """An actor hit a bug: stop the node with exit code 1 so a supervisor restarts it."""
        log.error("fatal error in an actor: %r; stopping", error)
        self.request(1)


# Python's default cyclic-GC thresholds (700, 10, 10) made a full collection every few seconds
# under a register load; each scans every tracked object (the whole registry) and paused the
# node for 100+ ms: register p99 129 ms, push max 132 ms (scripts/bench --only register,push).
# With these, full collections are rare: p99 14 ms and 15 ms. Refcounting still frees all
# acyclic garbage at once; only cycles wait longer.
GC_THRESHOLDS = (20_000, 50, 100)


def tune_garbage_collector() -> None:
    """Collect cycles less often, and never scan what exists now (the loaded registry) again.

    Runs on the main thread before any actor starts.
    """
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()


def load_snapshot(core: RegistryCore, data_dir: Path) -> None:
    path = data_dir / SNAPSHOT_FILE
    if not path.exists():
        return
    try:
        core.load(decode_services(path.read_bytes()))
    except CodecError as error:
        raise SystemExit(f"cannot load {path}: {error}") from None
    log.info("loaded %d services, %d instances from %s", core.service_count, core.instance_count, path)


def save_snapshot(core: RegistryCore, data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SNAPSHOT_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(encode_services(core.all_services()))
    os.replace(temporary, path)
    log.info("saved %d services, %d instances to %s", core.service_count, core.instance_count, path)


async def serve(settings: Settings, front: Front, shutdown: Shutdown) -> None:
    """Serve HTTP until a stop is requested (SIGTERM, SIGINT or a fatal actor error)."""
    loop = asyncio.get_running_loop()
    stop = shutdown.attach(loop)
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, shutdown.request)
    runner = web.AppRunner(
        build_app(front), handle_signals=False, access_log=logging.getLogger("nacos_actors.access") if settings.access_log else None
    )
    await runner.setup()
    joining: asyncio.Task[None] | None = None
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
        front.ready = True
        if front.cluster is not None:
            log.info("nacos-actors on http://%s%s joins its cluster", settings.self_address, settings.context_path)
            joining = loop.create_task(async_join(front))
        else:
            log.info("nacos-actors serving on http://%s%s", settings.self_address, settings.context_path)
        await stop.wait()
        log.info("stopping")
        if front.cluster is not None:
            await async_leave(front, joining)
    finally:
        front.ready = False
        await runner.cleanup()
        if front.cluster is not None:
            await front.cluster.link.async_close()


async def async_leave(front: Front, joining: asyncio.Task[None] | None) -> None:
    """A clean stop of a cluster member: send the changes peers have not got yet, then tell them
    this member is DOWN, so they take over its services at once (no failure detection wait)."""
    cluster, distro = front.cluster, front.distro
    assert cluster is not None and distro is not None
    if joining is not None and not joining.done():
        joining.cancel()
    try:
        left = await async_ask(distro, Drain, DRAIN_TIMEOUT_S)
        if left:
            log.warning("stopping with %d service changes not yet sent to peers", left)
    except ActorUnavailable as error:
        log.warning("distro drain did not finish: %s", error)
    try:
        await async_ask(cluster.member_actor, Leave, LEAVE_TIMEOUT_S)
    except ActorUnavailable as error:
        log.warning("leaving the cluster did not finish: %s", error)


def health_core(settings: Settings) -> HealthCore:
    return HealthCore(
        HealthConfig(
            check_beats=settings.health_check_enabled,
            expire_instances=settings.expire_instances,
            clean_empty_services=settings.empty_service_auto_clean,
            empty_service_ttl_ms=settings.empty_service_ttl_ms,
        )
    )


def subscriber_lifetime_ms(push_cache_ms: int) -> int:
    """How long a subscriber stays without a poll: half again the `cacheMillis` it is told.

    Clients poll `cacheMillis` after the previous answer arrived, so a lifetime of exactly
    `cacheMillis` would drop every subscriber for a moment before each poll, and a change in
    that moment would go unpushed (Nacos 1.x has the same edge, blurred by its 20 s sweep).
    """
    return push_cache_ms * 3 // 2


def push_core(settings: Settings) -> PushCore:
    """A PushCore whose packets carry what each subscriber's own list query would answer."""
    cache_millis = settings.push_cache_ms

    def render_list(
        service: Service | None, key: ServiceKey, clusters_text: str, clusters: tuple[str, ...], java_client: bool
    ) -> bytes:
        return render.list_body(service, key, clusters_text, clusters, False, java_client, cache_millis, wall_clock_ms())

    config = PushConfig(
        window_ms=settings.push_window_ms,
        subscriber_ttl_ms=subscriber_lifetime_ms(settings.push_cache_ms),
        ack_timeout_ms=settings.push_ack_timeout_ms,
        max_sends=settings.push_max_sends,
    )
    return PushCore(config, render_list, first_sequence=time.monotonic_ns())


def start_cluster(
    settings: Settings,
    loop: asyncio.AbstractEventLoop,
    core: RegistryCore,
    registry: pykka.ActorRef,
    health: pykka.ActorRef,
    metrics: NodeMetrics,
    shutdown: Shutdown,
    started: list[pykka.ActorRef],
) -> tuple[ClusterFront, pykka.ActorRef]:
    """Start the Distro and member actors of a cluster member (appended to `started`)."""
    me, now = settings.self_address, wall_clock_ms()
    peers = tuple(a for a in settings.members if a != me)
    metrics.cluster.start_peers(peers)
    link = PeerLink(loop, me, settings.context_path, settings.cluster_secret, PEER_TIMEOUT_S)
    distro_config = DistroConfig(
        sync_window_ms=settings.distro_sync_window_ms,
        retry_delay_ms=settings.distro_retry_delay_ms,
        verify_interval_ms=settings.distro_verify_interval_ms,
    )
    distro = DistroActor.start(DistroCore(me, peers, distro_config, now), core, link, metrics, shutdown.on_fatal)
    started.append(distro)
    registry.tell(Watch(distro))
    member_config = MemberConfig(settings.member_report_interval_ms, settings.member_fail_threshold)
    member_core = MemberCore(me, settings.members, member_config, now)
    board = metrics.cluster.states.board = MemberBoard(member_core.view)
    members = MemberActor.start(member_core, board, link, [distro, health], metrics, shutdown.on_fatal)
    started.append(members)
    return ClusterFront(me, board, link, members, settings.cluster_secret, peers=peers), distro


def run_node(settings: Settings) -> int:
    """Run one node until it is told to stop; returns the process exit code.

    The node's metrics live on one CollectorRegistry created here and passed, wrapped in a
    NodeMetrics, to every actor and to the front (which serves it). A cluster member also runs
    the Distro and member actors, which reach their peers through a PeerLink on the loop.
    """
    if not settings.standalone and settings.self_address not in settings.members:
        raise SystemExit(
            f"this node ({settings.self_address}) is not in the member list {', '.join(settings.members)}: "
            "set --host and --port to its own entry"
        )
    shutdown = Shutdown()
    core = RegistryCore()
    if settings.data_dir is not None:
        load_snapshot(core, settings.data_dir)
    tune_garbage_collector()
    # No `_created` series: Nacos exports none, and in the text format each is one more series.
    prometheus_client.disable_created_metrics()
    board = PushBoard()
    metrics = NodeMetrics(CollectorRegistry(), core, board)
    beats = BeatLog()
    started: list[pykka.ActorRef] = []
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            registry = RegistryActor.start(core, shutdown.on_fatal, metrics)
            started.append(registry)
            checker = health_core(settings)
            if not settings.standalone:
                checker.set_owner(lambda key: False, wall_clock_ms())  # nothing, until the member is UP
            health = HealthCheckActor.start(checker, registry, beats, metrics, shutdown.on_fatal)
            started.append(health)
            registry.tell(Watch(health))
            push = None
            if settings.push_enabled:
                push = PushActor.start(push_core(settings), open_push_socket(settings.host), board, metrics, shutdown.on_fatal)
                started.append(push)
                registry.tell(Watch(push))
            cluster, distro = None, None
            if settings.standalone:
                metrics.cluster.states.board = MemberBoard(standalone_view(settings.self_address))
            else:
                cluster, distro = start_cluster(settings, runner.get_loop(), core, registry, health, metrics, shutdown, started)
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
                cluster=cluster,
                distro=distro,
            )
            runner.run(serve(settings, front, shutdown))
    except OSError as error:
        log.error("cannot serve on %s: %s", settings.self_address, error)
        shutdown.request(1)
    finally:
        for actor in reversed(started):
            actor.stop(block=True, timeout=ACTOR_STOP_TIMEOUT_S)
        pykka.ActorRegistry.stop_all(block=True, timeout=ACTOR_STOP_TIMEOUT_S)
        if settings.data_dir is not None:
            save_snapshot(core, settings.data_dir)
    return shutdown.exit_code
