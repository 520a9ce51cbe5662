"""Servers: the processes this harness starts, free ports, readiness, the node's probes
(counts, metrics, RSS, CPU), and the ceiling server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cli import Settings


# The bench clusters live on loopback for one run: a throwaway secret signs their peer calls.
BENCH_CLUSTER_SECRET = "bench-only-cluster-secret"
ROOT = Path(__file__).resolve().parent.parent.parent
PYTHON = sys.executable
CONTEXT = "/nacos"
HOST = "127.0.0.1"  # every server binds here and every load goes here, nowhere else


# -- processes -----------------------------------------------------------------------------


class Processes:
    """Every process this harness starts, each in its own process group; stop_all ends them."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.live: list[subprocess.Popen] = []
        self._lock = threading.Lock()

    def start(self, name: str, argv: list[str], capture: bool = False, env: dict | None = None) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else log,
            stderr=log,
            start_new_session=True,
            cwd=ROOT,
            env=env,
        )
        log.close()
        proc.bench_name = name  # type: ignore[attr-defined]
        with self._lock:
            self.live.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Signal the process group, wait, then SIGKILL it. Returns the exit code (None if killed)."""
        code = None
        try:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
                try:
                    code = proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    print(f"bench: {proc.bench_name} did not stop within {timeout:.0f}s of signal {sig}; killing it",  # type: ignore[attr-defined]
                          file=sys.stderr)
            else:
                code = proc.returncode
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # anything left in the group
            except (ProcessLookupError, PermissionError):
                pass
            if proc.poll() is None:
                proc.wait(5)
            with self._lock:
                if proc in self.live:
                    self.live.remove(proc)
        return code

    def stop_all(self) -> None:
        for proc in list(reversed(self.live)):
            self.stop(proc, timeout=10.0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports (each socket stays bound until all are picked)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def http_call(method: str, url: str, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_until(check: Callable[[], bool], proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready within {timeout:.0f}s")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    port: int
    raft_port: int = 0  # a node's Raft port (0: not a node)
    grpc_port: int = 0  # a node's gRPC port (0: not a node)
    argv: list[str] = field(default_factory=list)  # how it was started (restart_node starts it again)
    data_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid


class Servers:
    """Run's servers: nodes, clusters and the ceiling, started on free ports and stopped."""

    s: Settings
    procs: Processes
    server_prefix: list[str]

    def node_argv(
        self, port: int, raft_port: int, health_checks: bool, members: Sequence[tuple[int, int]] = (),
        data_dir: Path | None = None, extra: Sequence[str] = (), grpc_port: int = 0,
    ) -> list[str]:
        """A node's command line: HTTP on `port`, Raft on `raft_port` (its own: the default, port -
        1000, may be anything's on this host), gRPC on `grpc_port` (0: off), cluster `members` as
        (HTTP port, Raft port) pairs, each listed as `host:port?raft_port=N`; `extra` are further
        `serve` flags."""
        argv = self.server_prefix + [
            PYTHON, "-m", "nacos_actors", "serve", "--port", str(port), "--host", HOST, "--log-level", "WARNING",
            "--health-check-enabled", "true" if health_checks else "false", "--raft-port", str(raft_port),
            "--grpc-port", str(grpc_port),
        ]
        if members:
            argv += ["--members", ",".join(f"{HOST}:{http}?raft_port={raft}" for http, raft in members)]
            argv += ["--cluster-secret", BENCH_CLUSTER_SECRET]
        if data_dir is not None:
            argv += ["--data-dir", str(data_dir)]
        return argv + list(extra)

    def start_node(
        self, name: str = "node", health_checks: bool = True, data_dir: Path | None = None, extra: Sequence[str] = (),
    ) -> Server:
        """A node on free ports (HTTP and Raft). Without health_checks (--health-check-enabled
        false) instances that do not beat stay healthy: for loads that register and then leave
        them silent for longer than the 15 s beat timeout. Without a data_dir its Raft journal
        is in memory."""
        port, raft_port, grpc_port = free_ports(3)
        argv = self.node_argv(port, raft_port, health_checks, data_dir=data_dir, extra=extra, grpc_port=grpc_port)
        server = Server(name, self.procs.start(name, argv), port, raft_port, grpc_port, argv, data_dir)
        self.wait_ready(server)
        return server

    def wait_ready(self, server: Server, timeout: float = 30.0) -> None:
        """Until the node answers its readiness probe 200."""
        wait_until(
            lambda: http_get(f"{server.url}{CONTEXT}/v1/console/health/readiness", 1.0)[0] == 200, server.proc,
            server.name, timeout,
        )

    def start_cluster(
        self, name: str, size: int = 3, health_checks: bool = True, data_dirs: Sequence[Path] = (),
        extra: Sequence[str] = (),
    ) -> list[Server]:
        """`size` nodes on free ports (HTTP and Raft), each given all of them as --members;
        started, not waited for (a member may answer 503 until it has loaded a peer's snapshot:
        see wait_cluster). data_dirs: one per node, or none (Raft in memory)."""
        ports = free_ports(3 * size)
        members = list(zip(ports[:size], ports[size : 2 * size], strict=True))
        servers = []
        for i, (port, raft_port) in enumerate(members):
            data_dir = data_dirs[i] if data_dirs else None
            grpc_port = ports[2 * size + i]
            argv = self.node_argv(port, raft_port, health_checks, members, data_dir, extra, grpc_port)
            servers.append(
                Server(f"{name}-{i}", self.procs.start(f"{name}-{i}", argv), port, raft_port, grpc_port, argv, data_dir)
            )
        return servers

    def restart_node(self, server: Server) -> Server:
        """The same node started again (same command line: ports, data dir, members), its log
        appended to; not waited for."""
        return Server(server.name, self.procs.start(server.name, server.argv), server.port, server.raft_port,
                      server.grpc_port, server.argv, server.data_dir)

    def stop_server(self, server: Server, timeout: float = 30.0) -> dict[str, Any]:
        started = time.monotonic()
        code = self.procs.stop(server.proc, signal.SIGTERM, timeout)
        took = time.monotonic() - started
        if code != 0:
            print(f"bench: {server.name} exited with {code} after SIGTERM (expected a clean 0)", file=sys.stderr)
        return {"exit_code": code, "stop_s": round(took, 3)}

    def start_ceiling(self, on_uvloop: bool = False) -> Server:
        port = free_port()
        name, flag = ("ceiling-uvloop", "--serve-ceiling-uvloop") if on_uvloop else ("ceiling", "--serve-ceiling")
        proc = self.procs.start(name, self.server_prefix + [PYTHON, "-m", __package__, flag, str(port)])
        server = Server(name, proc, port)
        wait_until(lambda: http_get(server.url + "/", 1.0) == (200, b"ok"), proc, f"{name} server")
        return server

    def node_counts(self, node: Server) -> tuple[int, int]:
        status, body = http_get(f"{node.url}{CONTEXT}/v1/ns/operator/metrics")
        if status != 200:
            raise RuntimeError(f"metrics answered {status}")
        doc = json.loads(body)
        return doc["serviceCount"], doc["instanceCount"]


# -- node metrics --------------------------------------------------------------------------


def node_metrics(node: Server) -> dict[str, float]:
    """Every sample of the node's Prometheus text (GET /metrics), keyed by series: `name{labels}`."""
    status, body = http_get(f"{node.url}/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    values = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            try:
                values[series] = float(value)
            except ValueError:
                pass
    return values


HEALTH_TRANSITIONS = ("unhealthy", "removed", "revived")


def full_collections(node: Server) -> int:
    """How many full (generation 2) garbage collections the node's Python has run so far."""
    return int(node_metrics(node).get('python_gc_collections_total{generation="2"}', 0))


def health_marks(node: Server) -> dict[str, int]:
    """The node's nacos_actors_health_transitions_total, by transition (unhealthy, removed, revived)."""
    values = node_metrics(node)
    return {t: int(values.get(f'nacos_actors_health_transitions_total{{transition="{t}"}}', 0))
            for t in HEALTH_TRANSITIONS}


# -- the ceiling server (a separate process) -------------------------------------------------


def serve_ceiling(port: int, on_uvloop: bool = False) -> None:
    """The bare aiohttp handler: aiohttp's defaults (asyncio's own loop), or on uvloop like a node."""
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handle)
    loop = None
    if on_uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    web.run_app(app, host=HOST, port=port, access_log=None, print=None, loop=loop)
