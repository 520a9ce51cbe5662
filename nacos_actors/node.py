"""The node's lifecycle: start the actors in dependency order, serve, stop within a bound.

`run_node` runs on the main thread. The event loop (aiohttp on uvloop, the push socket, the
peer client and the ticker) runs on that thread too; each driver has its own pykka thread, and
nothing else does. SIGTERM, SIGINT and SIGHUP stop the node within about
`shutdown_timeout_ms` whatever the actors' mailboxes hold: a cluster member drains Distro and
tells its peers it leaves, the HTTP server stops, the actors drop what is still queued, the
registry's published state is saved when a data directory is set, and the actors stop. A step
that overruns its share of the time is logged and left behind; a watchdog ends the process
should the whole stop overrun.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
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
    start_watchdog_thread,
)
from nacos_actors.clock import wall_clock_ms
from nacos_actors.core.consensus import RaftBoard
from nacos_actors.core.grpc_push import GrpcPushConfig, GrpcPushCore
from nacos_actors.core.probing import ProbeResult
from nacos_actors.core.push import PushBoard, PushConfig, PushCore
from nacos_actors.core.registry import RegistryCore, RegistryView, Rejected
from nacos_actors.drivers.assembly import build_drivers, raft_driver_config, registry_limits
from nacos_actors.drivers.push import PushCores
from nacos_actors.drivers.raft import RaftDriver
from nacos_actors.grpc.server import GrpcBindError, GrpcServer
from nacos_actors.http.app import build_app
from nacos_actors.http.cluster import async_join
from nacos_actors.http.connections import ConnectionGuard, ConnectionLimits
from nacos_actors.http.front import ClusterFront, Front, PeerRejections
from nacos_actors.messages import (
    DISTRO,
    MEMBERS,
    PROBE,
    REGISTRY,
    ActorName,
    Drain,
    ImportDefinition,
    Leave,
    Ping,
    ProbesFinished,
    WriteBatch,
)
from nacos_actors.metrics import NodeMetrics
from nacos_actors.model import Definition, Service, ServiceKey
from nacos_actors.peers import PeerLink
from nacos_actors.probes.prober import Prober
from nacos_actors.raft.group import RaftBindError, RaftGroup, RaftGroupConfig
from nacos_actors.render import lists as render
from nacos_actors.render.grpc import service_info
from nacos_actors.settings import Settings, join_host_port
from nacos_actors.snapshot import SnapshotOnce, load_snapshot, save_snapshot

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Caps on a cluster member's goodbye; within shutdown_timeout_ms each also gets at most its share.
DRAIN_TIMEOUT_S = 3.0
LEAVE_TIMEOUT_S = 2.0
# Shares of shutdown_timeout_ms: Distro's drain, the goodbye, requests in flight (aiohttp waits
# up to this for them, then cancels them: twice at most), and at least this for the actors.
DRAIN_SHARE = 0.4
LEAVE_SHARE = 0.3  # over the 1 s each farewell call may take, at the default timeout
HTTP_SHARE = 0.1
ACTORS_SHARE = 0.1
# The watchdog ends the process this long after the deadline (a step that ignored its bound).
WATCHDOG_GRACE_S = 2.0
PEER_TIMEOUT_S = 2.0
RAFT_DIRECTORY = "raft"
RAFT_READY_POLL_S = 0.02
STARTUP_PING_TIMEOUT_S = 5.0
SECRET_REQUIRED = (
    "a cluster member needs a shared secret, or any local process could act as a member: set the same "
    "one (8+ printable characters) on every member with --cluster-secret, NACOS_ACTORS_CLUSTER_SECRET "
    "or cluster_secret in the TOML file (--config)"
)
# Open files the node keeps for itself beyond its HTTP connections: the loop, listening and
# push sockets, peer connections (aiohttp's client pools at most 100), the data file, /proc.
FD_RESERVE = 256


class Shutdown:
    """A stop request that any thread may make; the event loop waits for it. The first request
    starts the clock: the stop must be over `timeout_s` later (`deadline`, monotonic), and each
    step asks `seconds` for its share of that and names itself in `step` (for the watchdog's
    report). `on_request` runs once, on the first request."""

    def __init__(
        self,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_request: Callable[[], None] | None = None,
    ) -> None:
        self.exit_code = 0
        self.timeout_s = timeout_s
        self.deadline: float | None = None
        self.step = "starting"
        self._clock = clock
        self.on_request = on_request
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    @property
    def requested(self) -> bool:
        return self.deadline is not None

    def attach(self, loop: asyncio.AbstractEventLoop) -> asyncio.Event:
        """Bind to the running loop (called on it); returns the event to wait on."""
        with self._lock:
            self._loop, self._event = loop, asyncio.Event()
            if self.requested:
                self._event.set()
            return self._event

    def request(self, exit_code: int = 0) -> None:
        """Ask the node to stop; a non-zero code wins over a clean one. Any thread."""
        with self._lock:
            self.exit_code = self.exit_code or exit_code
            first = self.deadline is None
            if first:
                self.deadline = self._clock() + self.timeout_s
            if self._loop is not None and self._event is not None and not self._loop.is_closed():
                try:
                    self._loop.call_soon_threadsafe(self._event.set)
                except RuntimeError:  # the loop closed meanwhile: nothing waits on the event
                    pass
        if first and self.on_request is not None:
            self.on_request()

    def on_signal(self, signum: int) -> None:
        """A stop signal arrived: the first stops the node, later ones are only logged."""
        name = signal.Signals(signum).name
        if self.requested:
            log.info("%s: already stopping (%.1f s left)", name, self.remaining())
            return
        log.info("%s: stopping within %.1f s", name, self.timeout_s)
        self.request()

    def on_fatal(self, error: BaseException) -> None:
        """An actor hit a bug: stop the node with exit code 1 so a supervisor restarts it."""
        log.error("fatal error in an actor: %r; stopping", error)
        self.request(1)

    def past_deadline(self) -> float:
        """Seconds since the deadline (negative before it; 0 before any request)."""
        return 0.0 if self.deadline is None else self._clock() - self.deadline

    def remaining(self) -> float:
        """Seconds left until the deadline (the whole timeout before any request)."""
        if self.deadline is None:
            return self.timeout_s
        return max(0.0, self.deadline - self._clock())

    def seconds(self, share: float, cap: float | None = None) -> float:
        """The time a step may take: its `share` of the timeout, no more than `cap` nor than
        what is left before the deadline, but never under a tenth of its share."""
        allowed = share * self.timeout_s
        if cap is not None:
            allowed = min(allowed, cap)
        return max(min(allowed, self.remaining()), allowed / 10)


class Watchdog:
    """The last resort of a stop: a daemon thread, started by the first stop request, that
    waits for the stop to finish until `grace_s` past its deadline, plus however long writing
    the data file took (that is never cut short). If it has not finished by then (a step
    ignored its bound), it saves the registry unless that was done (`snapshot` saves once,
    whoever asks first), logs which step overran, and ends the process with exit code 1
    (`end_process`: os._exit after flushing the logs): no thread can keep a stopping node alive."""

    def __init__(
        self,
        shutdown: Shutdown,
        snapshot: SnapshotOnce,
        grace_s: float = WATCHDOG_GRACE_S,
        end_process: Callable[[int], None] | None = None,
    ) -> None:
        self._shutdown = shutdown
        self._snapshot = snapshot
        self._grace_s = grace_s
        self._end_process = end_process if end_process is not None else exit_now
        self._finished = threading.Event()

    def start(self) -> None:
        start_watchdog_thread(self._watch)

    def finished(self) -> None:
        self._finished.set()

    def _time_left(self) -> float:
        return self._grace_s + self._snapshot.seconds_spent() - self._shutdown.past_deadline()

    def _watch(self) -> None:
        while not self._finished.wait(max(0.0, self._time_left())):
            if self._time_left() <= 0:
                break  # else the data file is being written: the stop gets that much longer
        else:
            return
        log.error(
            "the stop overran shutdown_timeout_ms (%d ms) by %.1f s while %s; exiting now",
            round(self._shutdown.timeout_s * 1000),
            self._grace_s,
            self._shutdown.step,
        )
        self._snapshot.save()
        self._end_process(1)


def exit_now(code: int) -> None:
    """End the process at once, after flushing the logs: interpreter teardown would wait for
    every non-daemon thread (and free the registry object by object)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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


def subscriber_lifetime_ms(push_cache_ms: int) -> int:
    """How long a subscriber stays without a poll: half again the `cacheMillis` it is told.

    Clients poll `cacheMillis` after the previous answer arrived, so a lifetime of exactly
    `cacheMillis` would drop every subscriber for a moment before each poll, and a change in
    that moment would go unpushed (Nacos 1.x has the same edge, blurred by its 20 s sweep).
    """
    return push_cache_ms * 3 // 2


def push_cores(settings: Settings) -> PushCores:
    """The push actor's cores: UDP packets carry what each subscriber's own list query would
    answer, gRPC pushes the serviceInfo a subscription answers; both render with one
    rendered-instance cache of the push actor's own (never shared with the loop)."""
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

    def render_service_info(
        service: Service | None, key: ServiceKey, clusters_text: str, clusters: tuple[str, ...], now_ms: int
    ) -> bytes:
        return orjson.dumps(service_info(service, key, clusters_text, clusters, False, now_ms, rendered))

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
    grpc_config = GrpcPushConfig(
        window_ms=settings.push_window_ms,
        ack_timeout_ms=settings.push_grpc_ack_timeout_ms,
        max_sends=settings.push_max_sends,
        max_subscribers_per_connection=settings.push_max_subscribers_per_connection,
        max_subscribers_per_service=settings.push_max_subscribers_per_service,
        max_subscribers=settings.push_max_subscribers,
        max_pending=settings.push_max_pending,
        give_up_log_interval_ms=settings.push_give_up_log_interval_ms,
    )
    return PushCores(
        PushCore(config, render_list, first_sequence=time.monotonic_ns()),
        GrpcPushCore(grpc_config, render_service_info),
    )


def cluster_secret(settings: Settings) -> str:
    """The secret a cluster member signs and checks peer calls with; SystemExit without one."""
    if settings.cluster_secret is None:
        raise SystemExit(f"{SECRET_REQUIRED} (members: {', '.join(settings.members)})")
    return settings.cluster_secret


def raft_node_ids(settings: Settings) -> dict[str, str]:
    """Each member's Raft node id (`ip:port` of its Raft port, host names resolved once, here,
    so every member names every other the same way), by member address. A standalone node is
    a group of one. SystemExit when a name does not resolve or a Raft port is out of range."""
    ids = {}
    for member in settings.group_members:
        host, _, port_text = settings.raft_address_of(member).rpartition(":")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise SystemExit(
                f"the Raft port of {member} would be {port}: set --raft-port (or ?raft_port= in its entry)"
            )
        host = host.strip("[]")
        try:
            ip = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0]
        except OSError as error:
            raise SystemExit(f"cannot resolve the Raft address of {member} ({host}): {error}") from None
        ids[member] = f"{ip}:{port}"
    return ids


def open_raft_group(settings: Settings, node_ids: dict[str, str], driver: RaftDriver) -> RaftGroup:
    """This member's Raft group, its journal under `data_dir/raft` (in memory without a data
    directory), bound to its Raft port on --host; SystemExit when the port is taken. Loop thread,
    before the actors start."""
    me = node_ids[settings.self_address]
    partners = tuple(node_id for member, node_id in node_ids.items() if member != settings.self_address)
    bind_port = me.rpartition(":")[2]
    # The group makes the directory itself, and syncs it into its parent.
    journal = settings.data_dir / RAFT_DIRECTORY if settings.data_dir is not None else None
    timeout_s = settings.raft_election_timeout_ms / 1000
    config = RaftGroupConfig(
        self_address=me,
        partner_addresses=partners,
        bind_address=f"{settings.host}:{bind_port}",
        journal_dir=str(journal) if journal is not None else None,
        password=settings.cluster_secret if partners else None,
        sync=settings.raft_fsync,
        election_timeout_min_s=timeout_s,
        election_timeout_max_s=2 * timeout_s,
        queue_size=settings.raft_max_pending,
        compaction_min_entries=settings.raft_snapshot_entries,
    )
    try:
        group = RaftGroup(config, driver.apply_entry, driver.save_state, driver.load_state)
    except RaftBindError as error:
        raise SystemExit(f"cannot listen on the Raft port: {error}") from None
    where = f"journal in {journal}" if journal is not None else "in memory only (no --data-dir): lost on stop"
    log.info("Raft on %s with %d partner(s); persistent data %s", me, len(partners), where)
    return group


async def async_start_node(
    settings: Settings,
    core: RegistryCore,
    metrics: NodeMetrics,
    beats: BeatLog,
    push_board: PushBoard,
    on_fatal: Callable[[BaseException], None],
    started: list[tuple[ActorName, pykka.ActorRef[Any]]],
    halted: threading.Event | None = None,
    imports: Sequence[Definition] = (),
) -> Front:
    """Start the node's actors on the running loop, each around its driver (appended to
    `started` as they start, for the caller to stop; once `halted` is set they drop what is
    queued), with the push socket, the ticker, the peer client and the Raft group; wait until
    each answers a Ping and Raft has caught up (at most raft_ready_timeout_ms); put `imports`
    (the persistent halves an earlier version's data file held) through Raft; start the gRPC
    server (SystemExit when its port is taken); answer the Front the HTTP handlers see. Loop
    thread."""
    loop = asyncio.get_running_loop()
    node_ids = raft_node_ids(settings)
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
    grpc_port = settings.grpc_listen_port
    grpc_server = GrpcServer(settings, metrics.grpc, loop) if grpc_port is not None else None

    def report_probes(results: tuple[ProbeResult, ...]) -> None:
        actors.tell(PROBE, ProbesFinished(results))

    prober = Prober(report_probes, settings.health_probe_max_in_flight)
    outbox = ActorOutbox(loop, actors, ticker, link, endpoint, grpc_server, prober)
    raft_board = RaftBoard()
    drivers = build_drivers(
        settings,
        core,
        beats,
        outbox,
        metrics,
        wall_clock_ms(),
        push_cores(settings) if settings.push_enabled else None,
        push_board,
        raft_board,
        raft_driver_config(settings, {node_id: member for member, node_id in node_ids.items()}),
    )
    metrics.cluster.states.board = drivers.member_board
    metrics.raft.state.board = raft_board
    group = open_raft_group(settings, node_ids, drivers.raft)
    drivers.raft.attach(group)
    for driver in drivers.in_start_order():
        ref = DriverActor.start(driver, metrics, on_fatal, halted=halted)
        started.append((driver.NAME, ref))
        actors.add(driver.NAME, ref, wake=group.wake if driver is drivers.raft else None)
    for name, message in drivers.first_messages():
        actors.tell(name, message)
    bridge = LoopBridge(actors, WriteBatcher(actors, REGISTRY, WriteBatch, settings.request_timeout))
    for driver in drivers.in_start_order():
        await bridge.async_ask(driver.NAME, Ping, STARTUP_PING_TIMEOUT_S)
    await async_wait_for_raft(raft_board, settings.raft_ready_timeout_ms / 1000)
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
    front = Front(
        settings=settings,
        bridge=bridge,
        view=RegistryView(core),
        metrics=metrics,
        beats=beats,
        push_enabled=endpoint is not None,
        push_board=push_board,
        raft_board=raft_board,
        cluster=cluster,
        closing=(ticker.async_stop, *((endpoint.async_close,) if endpoint is not None else ())),
    )
    if imports:
        await async_import_definitions(front, imports)
    front.stopping = (_closer(prober),)
    if grpc_server is not None and grpc_port is not None:
        grpc_server.attach(front)
        try:
            await grpc_server.async_start(settings.host, grpc_port)
        except GrpcBindError as error:
            raise SystemExit(f"{error} (set another with --grpc-port, or 0 to turn gRPC off)") from None
        front.stopping = (*front.stopping, grpc_server.async_stop)
    return front


def _closer(prober: Prober) -> Callable[[float], Awaitable[None]]:
    """The prober's close as one of the Front's `stopping` steps (it needs no grace: a probe
    still running at the stop is cancelled)."""

    async def close(grace_s: float) -> None:
        await prober.async_close()

    return close


async def async_wait_for_raft(board: RaftBoard, timeout_s: float) -> None:
    """Wait until this member's Raft group has caught up (it applied what the leader had
    committed), at most `timeout_s`; a member that cannot reach a majority serves anyway, and
    its persistent writes answer 503 until it can. Loop thread."""
    deadline = time.monotonic() + timeout_s
    while not board.status.ready and time.monotonic() < deadline:
        await asyncio.sleep(RAFT_READY_POLL_S)
    status = board.status
    if status.ready:
        log.info("Raft ready: %s in term %d, applied index %d", status.role, status.term, status.applied_index)
    else:
        log.warning("Raft is not ready after %.1f s (no leader reachable yet): serving anyway", timeout_s)


async def async_import_definitions(front: Front, definitions: Sequence[Definition]) -> None:
    """Put the persistent halves an earlier version's data file held through Raft (a service
    Raft holds already is left as Raft has it), then write the data file without them: they
    now live in the journal. When Raft cannot take them now, the file is left as it is and the
    next start tries again. Loop thread."""
    settings = front.settings
    try:
        for definition in definitions:
            await front.propose(ImportDefinition(definition))
    except (Rejected, ActorUnavailable) as error:
        log.warning("could not move the data file's persistent data into Raft yet (%s): will try at next start", error)
        return
    if settings.data_dir is not None:
        save_snapshot(front.view.all_services(), settings.data_dir)
    log.info("moved %d services' persistent data from the data file into the Raft journal", len(definitions))


async def serve(settings: Settings, front: Front, shutdown: Shutdown, limits: ConnectionLimits) -> None:
    """Serve HTTP, every connection under `limits`, until a stop is requested (a signal or a
    fatal actor error); then a cluster member leaves its cluster, and the server stops: no new
    connection, idle ones closed, requests in flight given their share of the stop's time and
    then cancelled."""
    loop = asyncio.get_running_loop()
    stop = shutdown.attach(loop)
    runner = web.AppRunner(
        build_app(front),
        handle_signals=False,
        access_log=logging.getLogger("nacos_actors.access") if settings.access_log else None,
        shutdown_timeout=shutdown.seconds(HTTP_SHARE),
    )
    await runner.setup()
    assert runner.server is not None
    guard = ConnectionGuard(loop, runner.server, limits, front.metrics.connections)
    listener: asyncio.AbstractServer | None = None
    joining: asyncio.Task[None] | None = None
    try:
        listener = await loop.create_server(guard.protocol, settings.host, settings.port)
        guard.start()
        front.ready = True
        if front.cluster is not None:
            log.info("nacos-actors on http://%s%s joins its cluster", settings.self_address, settings.context_path)
            joining = loop.create_task(async_join(front))
        else:
            log.info("nacos-actors serving on http://%s%s", settings.self_address, settings.context_path)
        shutdown.step = "serving"
        await stop.wait()
        if front.cluster is not None:
            await async_leave(front, joining, shutdown)
    finally:
        shutdown.step = "closing the HTTP server"
        front.ready = False
        if listener is not None:
            listener.close()
        guard.stop()
        grace_s = shutdown.seconds(HTTP_SHARE)
        await asyncio.gather(runner.cleanup(), *(stop(grace_s) for stop in front.stopping))


async def async_leave(front: Front, joining: asyncio.Task[None] | None, shutdown: Shutdown) -> None:
    """A clean stop of a cluster member: send the changes peers have not got yet, then tell them
    this member is DOWN, so they take over its services at once (no failure detection wait).
    Each step gets its share of the stop's time."""
    if joining is not None and not joining.done():
        joining.cancel()
    shutdown.step = "draining Distro"
    try:
        left = await front.bridge.async_ask(DISTRO, Drain, shutdown.seconds(DRAIN_SHARE, DRAIN_TIMEOUT_S))
        if left:
            log.warning("stopping with %d service changes not yet sent to peers", left)
    except ActorUnavailable as error:
        log.warning("distro drain did not finish: %s", error)
    shutdown.step = "leaving the cluster"
    try:
        await front.bridge.async_ask(MEMBERS, Leave, shutdown.seconds(LEAVE_SHARE, LEAVE_TIMEOUT_S))
    except ActorUnavailable as error:
        log.warning("leaving the cluster did not finish: %s", error)


def release_default_executor(loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor) -> None:
    """Let the loop close without waiting for work still running on `executor` (a large peer
    body being decoded, say): asyncio.Runner waits for the loop's default executor to finish
    everything, without a bound, so the default becomes a fresh one that has nothing to wait
    for. What still runs is dropped with the process. Loop thread."""
    executor.shutdown(wait=False, cancel_futures=True)
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1))


async def async_run(
    settings: Settings,
    front_started: Callable[[], Awaitable[Front]],
    shutdown: Shutdown,
    limits: ConnectionLimits,
) -> None:
    """Take the stop signals, start the node, serve until told to stop, then close what lives
    on the loop. A signal that arrives while the node starts stops it once it serves."""
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
            continue  # started under nohup: a hangup is not a stop
        loop.add_signal_handler(signum, shutdown.on_signal, signum)
    executor = ThreadPoolExecutor(thread_name_prefix="nacos-actors-executor")
    loop.set_default_executor(executor)
    try:
        front = await front_started()
        try:
            await serve(settings, front, shutdown, limits)
        finally:
            shutdown.step = "closing the loop"
            await front.async_close()
    finally:
        release_default_executor(loop, executor)


def connection_limits(settings: Settings) -> ConnectionLimits:
    """The HTTP connection limits of `settings`, with max_connections lowered when the process
    may not open that many files: the soft open-file limit is raised as far as the connections
    and FD_RESERVE need (up to the hard limit), and a lower cap than asked is logged. Past the
    limit the node could not accept anyone (about 1,000 idle connections under the common 1,024
    limit took it down). Main thread, before serving."""
    wanted = settings.max_connections + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError) as error:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, raised, error)
    cap = settings.max_connections
    if soft != resource.RLIM_INFINITY and soft < wanted:
        cap = max(1, soft - FD_RESERVE)
        log.warning(
            "max_connections lowered from %d to %d: the open-file limit is %d (ulimit -n)",
            settings.max_connections,
            cap,
            soft,
        )
    return ConnectionLimits(cap, settings.header_timeout_ms / 1000, settings.idle_timeout_ms / 1000)


def stop_actors(
    started: Sequence[tuple[ActorName, pykka.ActorRef[Any]]], halted: threading.Event, shutdown: Shutdown
) -> None:
    """Stop every actor (the last started first) by the stop's deadline, or ACTORS_SHARE of the
    timeout from now if that is later. `halted` is set first, so each drops its queue unread
    and stops after the message in hand; one that does not stop in time is logged by name and
    left behind (its thread is a daemon). Main thread."""
    halted.set()
    until = time.monotonic() + max(shutdown.remaining(), ACTORS_SHARE * shutdown.timeout_s)
    stopping = [(name, actor.stop(block=False)) for name, actor in reversed(started)]
    for name, stopped in stopping:
        try:
            stopped.get(timeout=max(0.0, until - time.monotonic()))
        except pykka.Timeout:
            log.warning(
                "the %s actor did not stop within shutdown_timeout_ms (busy with one message); exiting without it",
                name,
            )


def ignore_stop_signals(shutdown: Shutdown) -> None:
    """Once the loop is gone, a repeated stop signal is only logged: it must not cut the
    snapshot write short (a stop signal's default is to end the process at once). Main thread."""
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, lambda number, frame: shutdown.on_signal(number))


def run_node(settings: Settings) -> int:
    """Run one node until it is told to stop; returns the process exit code. Main thread.

    The node's metrics live on one CollectorRegistry created here and passed, wrapped in a
    NodeMetrics, to every driver and to the front (which serves it). Once the loop has
    finished (a cluster member has left, the HTTP server is closed), the actors halt, the
    registry's published state is saved (with --data-dir), and the actors stop by the deadline.
    The caller should end the process at once after (cli.entry_point does): an actor that
    overran is a daemon thread still busy.
    """
    if not settings.standalone and settings.self_address not in settings.members:
        raise SystemExit(
            f"this node ({settings.self_address}) is not in the member list {', '.join(settings.members)}: "
            "set --host and --port to its own entry"
        )
    if not settings.standalone:
        cluster_secret(settings)
    core = RegistryCore(registry_limits(settings))
    view = RegistryView(core)
    snapshot = SnapshotOnce(view.all_services, settings.data_dir)
    shutdown = Shutdown(settings.shutdown_timeout_ms / 1000)
    watchdog = Watchdog(shutdown, snapshot)
    shutdown.on_request = watchdog.start
    imports: list[Definition] = []
    if settings.data_dir is not None:
        imports = load_snapshot(core, settings.data_dir)
    tune_garbage_collector()
    tune_memory_allocator()
    # No `_created` series: Nacos exports none, and in the text format each is one more series.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    limits = connection_limits(settings)
    board = PushBoard()
    metrics = NodeMetrics(CollectorRegistry(), view, board)
    beats = BeatLog()
    started: list[tuple[ActorName, pykka.ActorRef[Any]]] = []
    halted = threading.Event()

    def start() -> Awaitable[Front]:
        return async_start_node(settings, core, metrics, beats, board, shutdown.on_fatal, started, halted, imports)

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(async_run(settings, start, shutdown, limits))
    except OSError as error:
        log.error("cannot serve on %s: %s", settings.self_address, error)
        shutdown.request(1)
    finally:
        if not shutdown.requested:  # the loop ended on an error: stop by the same rules
            shutdown.request(1)
        ignore_stop_signals(shutdown)
        halted.set()
        shutdown.step = "saving the registry"
        if not snapshot.save():
            shutdown.exit_code = shutdown.exit_code or 1
        shutdown.step = "stopping the actors"
        stop_actors(started, halted, shutdown)
        watchdog.finished()
    return shutdown.exit_code
