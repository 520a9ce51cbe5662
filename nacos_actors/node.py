"""The node's lifecycle: start the actors in dependency order, serve, stop them in reverse.

`run_node` runs on the main thread. The event loop (aiohttp on uvloop, the push socket, the
peer client and the ticker) runs on that thread too; each driver has its own pykka thread, and
nothing else does. On SIGTERM or Ctrl-C the HTTP server stops taking requests, the actors are
stopped in reverse order, the registry is saved when a data directory is set, and no thread is
left behind.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import prometheus_client
import pykka
import uvloop
from aiohttp import web
from prometheus_client import CollectorRegistry

from nacos_actors.beats import BeatLog
from nacos_actors.bridge import (
    ActorDirectory,
    ActorOutbox,
    ActorUnavailable,
    DriverActor,
    LoopBridge,
    Ticker,
    WriteBatcher,
    async_open_push_endpoint,
)
from nacos_actors.clock import wall_clock_ms
from nacos_actors.core.codec import CodecError, decode_services, encode_services
from nacos_actors.core.push import PushBoard, PushConfig, PushCore
from nacos_actors.core.registry import RegistryCore, RegistryView
from nacos_actors.drivers.assembly import build_drivers, registry_limits
from nacos_actors.http.app import build_app
from nacos_actors.http.cluster import async_join
from nacos_actors.http.front import ClusterFront, Front, PeerRejections
from nacos_actors.messages import DISTRO, MEMBERS, REGISTRY, Drain, Leave, Ping, WriteBatch
from nacos_actors.metrics import NodeMetrics
from nacos_actors.model import Service, ServiceKey
from nacos_actors.peers import PeerLink
from nacos_actors.render import lists as render
from nacos_actors.settings import Settings, join_host_port

log = logging.getLogger(__name__)
SNAPSHOT_FILE = "registry.msgpack"
ACTOR_STOP_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 3.0
LEAVE_TIMEOUT_S = 2.0
PEER_TIMEOUT_S = 2.0
STARTUP_PING_TIMEOUT_S = 5.0
SECRET_REQUIRED = (
    "a cluster member needs a shared secret, or any local process could act as a member: set the same "
    "one (8+ printable characters) on every member with --cluster-secret, NACOS_ACTORS_CLUSTER_SECRET "
    "or cluster_secret in the TOML file (--config)"
)


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


# glibc's malloc serves allocations of at least its mmap threshold (128 KiB at first) with mmap,
# and returns them to the system when freed; but the first such free raises the threshold to
# that size, after which large values (1 MiB of metadata, a big list answer) come from the heap
# and, once freed, stay in the process's RSS (300 deregistered instances with 1 MiB metadata
# left +212 MB; with the threshold fixed, +1 MB: tests/e2e/test_resources.py). Setting the
# threshold explicitly turns that adjustment off.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024


def tune_memory_allocator() -> bool:
    """Fix glibc's mmap threshold, so large values freed go back to the system. Answers whether
    it was set (False where the C library is not glibc). Main thread, before any actor starts."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


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
        build_app(front),
        handle_signals=False,
        access_log=logging.getLogger("nacos_actors.access") if settings.access_log else None,
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


async def async_leave(front: Front, joining: asyncio.Task[None] | None) -> None:
    """A clean stop of a cluster member: send the changes peers have not got yet, then tell them
    this member is DOWN, so they take over its services at once (no failure detection wait)."""
    if joining is not None and not joining.done():
        joining.cancel()
    try:
        left = await front.bridge.async_ask(DISTRO, Drain, DRAIN_TIMEOUT_S)
        if left:
            log.warning("stopping with %d service changes not yet sent to peers", left)
    except ActorUnavailable as error:
        log.warning("distro drain did not finish: %s", error)
    try:
        await front.bridge.async_ask(MEMBERS, Leave, LEAVE_TIMEOUT_S)
    except ActorUnavailable as error:
        log.warning("leaving the cluster did not finish: %s", error)


def subscriber_lifetime_ms(push_cache_ms: int) -> int:
    """How long a subscriber stays without a poll: half again the `cacheMillis` it is told.

    Clients poll `cacheMillis` after the previous answer arrived, so a lifetime of exactly
    `cacheMillis` would drop every subscriber for a moment before each poll, and a change in
    that moment would go unpushed (Nacos 1.x has the same edge, blurred by its 20 s sweep).
    """
    return push_cache_ms * 3 // 2


def push_core(settings: Settings) -> PushCore:
    """A PushCore whose packets carry what each subscriber's own list query would answer, with
    a rendered-instance cache of the push driver's own (never shared with the loop)."""
    cache_millis = settings.push_cache_ms
    rendered = render.RenderedInstances(settings.rendered_instances_bytes)

    def render_list(
        service: Service | None,
        key: ServiceKey,
        clusters_text: str,
        clusters: tuple[str, ...],
        java_client: bool,
        now_ms: int,
    ) -> bytes:
        return render.list_body(
            service, key, clusters_text, clusters, False, java_client, cache_millis, now_ms, rendered
        )

    config = PushConfig(
        window_ms=settings.push_window_ms,
        subscriber_ttl_ms=subscriber_lifetime_ms(settings.push_cache_ms),
        ack_timeout_ms=settings.push_ack_timeout_ms,
        max_sends=settings.push_max_sends,
        max_subscribers_per_address=settings.push_max_subscribers_per_address,
        max_subscribers_per_service=settings.push_max_subscribers_per_service,
        max_subscribers=settings.push_max_subscribers,
        max_pending=settings.push_max_pending,
        give_up_log_interval_ms=settings.push_give_up_log_interval_ms,
    )
    return PushCore(config, render_list, first_sequence=time.monotonic_ns())


def cluster_secret(settings: Settings) -> str:
    """The secret a cluster member signs and checks peer calls with; SystemExit without one."""
    if settings.cluster_secret is None:
        raise SystemExit(f"{SECRET_REQUIRED} (members: {', '.join(settings.members)})")
    return settings.cluster_secret


async def async_start_node(
    settings: Settings,
    core: RegistryCore,
    metrics: NodeMetrics,
    beats: BeatLog,
    push_board: PushBoard,
    on_fatal: Callable[[BaseException], None],
    started: list[pykka.ActorRef[Any]],
) -> Front:
    """Start the node's actors on the running loop, each around its driver (appended to
    `started` as they start, for the caller to stop), with the push socket, the ticker and the
    peer client on this loop; wait until each answers a Ping; answer the Front the HTTP
    handlers see. Loop thread."""
    loop = asyncio.get_running_loop()
    actors = ActorDirectory()
    ticker = Ticker(loop, actors)
    link = None
    if not settings.standalone:
        metrics.cluster.start_peers(tuple(a for a in settings.members if a != settings.self_address))
        link = PeerLink(loop, settings.self_address, settings.context_path, cluster_secret(settings), PEER_TIMEOUT_S)
    endpoint = None
    if settings.push_enabled:
        endpoint = await async_open_push_endpoint(settings.host, actors, metrics, settings.push_receive_queue)
        log.info("push socket on udp %s", join_host_port(*endpoint.address))
    outbox = ActorOutbox(loop, actors, ticker, link, endpoint)
    drivers = build_drivers(
        settings,
        core,
        beats,
        outbox,
        metrics,
        wall_clock_ms(),
        push_core(settings) if settings.push_enabled else None,
        push_board,
    )
    metrics.cluster.states.board = drivers.member_board
    for driver in drivers.in_start_order():
        ref = DriverActor.start(driver, metrics, on_fatal)
        started.append(ref)
        actors.add(driver.NAME, ref)
    for name, message in drivers.first_messages():
        actors.tell(name, message)
    bridge = LoopBridge(actors, WriteBatcher(actors, REGISTRY, WriteBatch, settings.request_timeout))
    for driver in drivers.in_start_order():
        await bridge.async_ask(driver.NAME, Ping, STARTUP_PING_TIMEOUT_S)
    cluster = None
    if link is not None:
        peers = tuple(a for a in settings.members if a != settings.self_address)
        cluster = ClusterFront(
            settings.self_address,
            drivers.member_board,
            link,
            bridge,
            cluster_secret(settings),
            PeerRejections(metrics.cluster.peer_rejected),
            settings.cluster_signature_window_ms,
            peers=peers,
        )
    return Front(
        settings=settings,
        bridge=bridge,
        view=RegistryView(core),
        metrics=metrics,
        beats=beats,
        push_enabled=endpoint is not None,
        push_board=push_board,
        cluster=cluster,
        closing=(ticker.async_stop, *((endpoint.async_close,) if endpoint is not None else ())),
    )


async def async_run(settings: Settings, front_started: Callable[[], Awaitable[Front]], shutdown: Shutdown) -> None:
    """Start the node, serve until told to stop, then close what lives on the loop."""
    front = await front_started()
    try:
        await serve(settings, front, shutdown)
    finally:
        await front.async_close()


def run_node(settings: Settings) -> int:
    """Run one node until it is told to stop; returns the process exit code. Main thread.

    The node's metrics live on one CollectorRegistry created here and passed, wrapped in a
    NodeMetrics, to every driver and to the front (which serves it). The actors are stopped in
    reverse order once the loop has finished, then the registry is saved (with --data-dir).
    """
    if not settings.standalone and settings.self_address not in settings.members:
        raise SystemExit(
            f"this node ({settings.self_address}) is not in the member list {', '.join(settings.members)}: "
            "set --host and --port to its own entry"
        )
    if not settings.standalone:
        cluster_secret(settings)
    shutdown = Shutdown()
    core = RegistryCore(registry_limits(settings))
    if settings.data_dir is not None:
        load_snapshot(core, settings.data_dir)
    tune_garbage_collector()
    tune_memory_allocator()
    # No `_created` series: Nacos exports none, and in the text format each is one more series.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    board = PushBoard()
    metrics = NodeMetrics(CollectorRegistry(), RegistryView(core), board)
    beats = BeatLog()
    started: list[pykka.ActorRef[Any]] = []

    def start() -> Awaitable[Front]:
        return async_start_node(settings, core, metrics, beats, board, shutdown.on_fatal, started)

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(async_run(settings, start, shutdown))
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
