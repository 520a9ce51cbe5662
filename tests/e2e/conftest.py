"""Real node processes on loopback for end-to-end tests.

`start_node(...)` starts `python -m nacos_actors serve --port <free port>` (or any command),
waits for readiness and returns a NodeProcess; at the end of the test every node still running
gets SIGTERM and must exit with code 0 within a few seconds (else it is killed and the test
fails). Each node's stderr goes to a file that is shown in the report when the test fails.

`start_cluster(size=3, *args, data_dirs=None)` starts `size` members on free ports listing each
other with `--members` (and sharing `--cluster-secret`) and returns a Cluster once every member
serves and sees all the others UP; a member may be killed and started again on its port (and
its own `--data-dir`, when `data_dirs` names one per member). `launch_cluster` does the same
with any NodeLauncher (e.g. one a module-scoped fixture owns).

Each node has a Raft port of its own (`NodeProcess.raft_port`): a standalone node is given a
free one with `--raft-port` unless its arguments name one; a member's is its `?raft_port=` in
the member list. Each node also gets a free gRPC port (`NodeProcess.grpc_port`, `--grpc-port`)
unless its arguments name one; a restarted member keeps its own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pytest

from tests.e2e.node_driver import EVENT_TIMEOUT_S, Driver, find_node_bin
from tests.e2e.push_support import UdpSubscriber

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
READY_PATH = "/nacos/v1/console/health/readiness"
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
NODES_KEY = pytest.StashKey[list["NodeProcess"]]()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """`count` different free ports."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


LOOPBACK_ONLY = {"NACOS_ACTORS_HEALTH_PROBE_NETWORKS": "127.0.0.0/8,::1/128"}


def clean_environment() -> dict[str, str]:
    """This process's environment without NACOS_ACTORS_* settings (tests pass flags), but for
    one: nodes probe loopback instances only, whatever address a test registers."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("NACOS_ACTORS_")}
    return {**kept, **LOOPBACK_ONLY}


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """(status, body) of a GET; HTTP errors are answers, not exceptions."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@dataclass
class NodeProcess:
    """One node process: its port, its stderr file, and how to stop it."""

    process: subprocess.Popen[bytes]
    port: int
    stderr_path: Path
    stderr_file: object = field(default=None, repr=False)
    raft_port: int | None = None
    grpc_port: int | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.address}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def get(self, path: str) -> tuple[int, bytes]:
        return http_get(self.url(path))

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Poll readiness until 200; fail if the process exits or the time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                pytest.fail(f"node on {self.address} exited with {code} before it was ready:\n{self.stderr()}")
            try:
                if self.get(READY_PATH)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        pytest.fail(f"node on {self.address} not ready after {timeout} s:\n{self.stderr()}")

    def wait_exit(self, timeout: float = READY_TIMEOUT_S) -> int:
        """The exit code of a process expected to end by itself."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"node on {self.address} still running after {timeout} s:\n{self.stderr()}")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
        """Send `signum` and return the exit code; kill it and fail after `timeout`."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(
                f"node on {self.address} still running {timeout} s after {signal.Signals(signum).name}; "
                f"killed:\n{self.stderr()}"
            )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)


class NodeLauncher:
    """Starts node processes (logs in `logs`) and remembers them, so `stop_all` can stop every
    one still running with SIGTERM and report those that did not exit with 0."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.nodes: list[NodeProcess] = []

    def start(
        self,
        *args: str,
        port: int | None = None,
        wait: bool = True,
        command: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> NodeProcess:
        port = free_port() if port is None else port
        argv = [sys.executable, "-m", "nacos_actors", "serve", "--port", str(port)]
        raft_port = None
        if "--raft-port" in args:
            raft_port = int(args[list(args).index("--raft-port") + 1])
        elif "--members" not in args:
            # A Raft port of its own (port - 1000, the default, may be anything's on a test host).
            raft_port = next(p for p in free_ports(2) if p != port)
            argv += ["--raft-port", str(raft_port)]
        if "--grpc-port" in args:
            grpc_port: int | None = int(args[list(args).index("--grpc-port") + 1]) or None
        else:
            # A gRPC port of its own too (port + 1000, the default, may be taken on a test host).
            grpc_port = next(p for p in free_ports(3) if p not in (port, raft_port))
            argv += ["--grpc-port", str(grpc_port)]
        argv = list(command) if command is not None else argv
        stderr_path = self.logs / f"node-{len(self.nodes)}-{port}.stderr"
        stderr_file = open(stderr_path, "wb")
        process = subprocess.Popen(
            [*argv, *args],
            cwd=REPO,
            env={**clean_environment(), **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=stderr_file,
            stderr=stderr_file,
        )
        node = NodeProcess(
            process, port, stderr_path, stderr_file=stderr_file, raft_port=raft_port, grpc_port=grpc_port
        )
        self.nodes.append(node)
        if wait:
            node.wait_ready()
        return node

    def stop_all(self) -> list[str]:
        """SIGTERM every node still running; the problems (a non-zero exit, a hang) as text."""
        problems = []
        for node in self.nodes:
            try:
                running = node.process.poll() is None
                code = node.stop(signal.SIGTERM)
                if running and code != 0:
                    problems.append(f"node on {node.address} exited with {code} after SIGTERM:\n{node.stderr()}")
            except BaseException as error:  # pytest.fail inside stop: collect it, stop the others
                node.kill()
                problems.append(str(error))
            finally:
                node.stderr_file.close()  # type: ignore[attr-defined]
        return problems


@pytest.fixture
def start_node(request, tmp_path_factory) -> Iterator:
    """A factory: `start_node("--data-dir", d, port=..., wait=True, command=None)` -> NodeProcess.

    `command` replaces `python -m nacos_actors serve --port N` (the port is still chosen and
    reported). Every node still running at teardown must stop cleanly on SIGTERM (a node that
    already exited, e.g. killed by the test, is not checked).
    """
    launcher = NodeLauncher(tmp_path_factory.mktemp("node-logs"))
    request.node.stash[NODES_KEY] = launcher.nodes
    try:
        yield launcher.start
    finally:
        problems = launcher.stop_all()
        if problems:
            pytest.fail("\n\n".join(problems))


@pytest.fixture
def node(start_node) -> NodeProcess:
    """One standalone node on a free loopback port, ready; stopped with SIGTERM (exit 0) after."""
    return start_node()


# -- clusters: N member processes on loopback listing each other with --members ---------------

MEMBERS_PATH = "/nacos/v1/core/cluster/nodes"
CLUSTER_SECRET = "e2e-test-cluster-secret"  # members refuse to start without one
NAMING_METRICS_PATH = "/nacos/v1/ns/operator/metrics"
CLUSTER_UP_TIMEOUT_S = 20.0


def member_states(node: NodeProcess) -> dict[str, str]:
    """address -> state of every member, as `node` sees them ({} when it does not answer)."""
    try:
        status, body = node.get(MEMBERS_PATH)
    except OSError:
        return {}
    return {m["address"]: m["state"] for m in json.loads(body)["data"]} if status == 200 else {}


def naming_status(node: NodeProcess) -> str | None:
    """The `status` of /v1/ns/operator/metrics (UP once the member serves), None without an answer."""
    try:
        status, body = node.get(NAMING_METRICS_PATH)
    except OSError:
        return None
    return json.loads(body)["status"] if status == 200 else None


@dataclass
class Cluster:
    """Member processes on fixed loopback ports that list each other (`--members`); member
    `index` may be stopped and started again on its port with the same arguments (and its own
    `--data-dir`, `data_dirs[index]`, when `data_dirs` is given)."""

    launcher: NodeLauncher
    ports: list[int]
    args: tuple[str, ...]
    nodes: list[NodeProcess] = field(default_factory=list)
    raft_ports: list[int] = field(default_factory=list)
    data_dirs: Sequence[Path] | None = None

    def __post_init__(self) -> None:
        if not self.raft_ports:
            taken = set(self.ports)
            self.raft_ports = [p for p in free_ports(2 * len(self.ports)) if p not in taken][: len(self.ports)]

    @property
    def addresses(self) -> list[str]:
        return [f"{HOST}:{port}" for port in self.ports]

    @property
    def members(self) -> str:
        """The member list, each entry with its Raft port (Nacos's `?raft_port=` form)."""
        return ",".join(f"{a}?raft_port={r}" for a, r in zip(self.addresses, self.raft_ports, strict=True))

    @property
    def running(self) -> list[NodeProcess]:
        return [n for n in self.nodes if n.process.poll() is None]

    def node_at(self, address: str) -> NodeProcess:
        return self.nodes[self.addresses.index(address)]

    def start_member(self, index: int, wait: bool = True) -> NodeProcess:
        """Start member `index` on its port (again, if it ran before); it replaces the old process."""
        own = ("--data-dir", str(self.data_dirs[index])) if self.data_dirs is not None else ()
        if index < len(self.nodes) and self.nodes[index].grpc_port is not None and "--grpc-port" not in self.args:
            own = (*own, "--grpc-port", str(self.nodes[index].grpc_port))  # a restart keeps its gRPC port
        node = self.launcher.start(
            "--members",
            self.members,
            "--cluster-secret",
            CLUSTER_SECRET,
            *self.args,
            *own,
            port=self.ports[index],
            wait=wait,
        )
        node.raft_port = self.raft_ports[index]
        if index < len(self.nodes):
            self.nodes[index] = node
        else:
            self.nodes.append(node)
        return node

    def settled(self) -> bool:
        """Every running member serves (status UP) and sees every running member UP and every
        stopped one DOWN."""
        expected = {n.address: "UP" if n.process.poll() is None else "DOWN" for n in self.nodes}
        return all(naming_status(n) == "UP" and member_states(n) == expected for n in self.running)

    def wait_settled(self, timeout: float = CLUSTER_UP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not self.settled():
            for node in self.nodes:
                if node.process.poll() not in (None, 0, -signal.SIGKILL):
                    pytest.fail(f"member {node.address} exited with {node.process.poll()}:\n{node.stderr()}")
            if time.monotonic() > deadline:
                views = {n.address: (naming_status(n), member_states(n)) for n in self.running}
                pytest.fail(f"cluster not settled after {timeout} s: {views}")
            time.sleep(0.05)


def launch_cluster(launcher: NodeLauncher, size: int, *args: str, data_dirs: Sequence[Path] | None = None) -> Cluster:
    """`size` members on free ports, started together (member i on `data_dirs[i]` when given);
    returns once every one is ready, UP, and sees all the others UP."""
    if data_dirs is not None and len(data_dirs) != size:
        raise ValueError(f"{size} members need {size} data directories, not {len(data_dirs)}")
    cluster = Cluster(launcher, free_ports(size), args, data_dirs=data_dirs)
    for index in range(size):
        cluster.start_member(index, wait=False)
    for node in cluster.nodes:
        node.wait_ready()
    cluster.wait_settled()
    return cluster


@pytest.fixture
def start_cluster(request, tmp_path_factory) -> Iterator[Callable[..., Cluster]]:
    """A factory: `start_cluster(size=3, *args, data_dirs=None)` -> a settled Cluster of `size`
    members (extra `serve` arguments `args` for each; member i keeps its data in `data_dirs[i]`
    when given). Teardown as `start_node`: every member still running must stop cleanly on
    SIGTERM; members the test killed are not checked."""
    launcher = NodeLauncher(tmp_path_factory.mktemp("cluster-logs"))
    request.node.stash[NODES_KEY] = launcher.nodes

    def start(size: int = 3, *args: str, data_dirs: Sequence[Path] | None = None) -> Cluster:
        return launch_cluster(launcher, size, *args, data_dirs=data_dirs)

    try:
        yield start
    finally:
        problems = launcher.stop_all()
        if problems:
            pytest.fail("\n\n".join(problems))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach each node's stderr to the report of a failed e2e test."""
    report = yield
    nodes = item.stash.get(NODES_KEY, [])
    if report.failed and nodes:
        for index, started in enumerate(nodes):
            report.sections.append((f"node {index} ({started.address}) stderr", started.stderr()))
    return report


@pytest.fixture(scope="session")
def nacos_log_dir(tmp_path_factory) -> str:
    """Where NacosClient may write its log file (it creates ~/logs/nacos otherwise)."""
    return str(tmp_path_factory.mktemp("nacos-client-logs"))


# -- the npm client driver and raw UDP subscribers (tests/e2e/node_driver.py, push_support.py) --


@pytest.fixture(scope="session")
def node_bin() -> str:
    """The `node` executable, once the pinned client is installed; skips without Node.js."""
    return find_node_bin()


@pytest.fixture
def start_driver(node_bin, node, tmp_path) -> Iterator[Callable[..., Driver]]:
    """`start_driver(**scenario)` -> an interactive Driver talking to the node; killed at the end if running."""
    drivers: list[Driver] = []

    def start(**scenario: Any) -> Driver:
        scenario = {"server": node.address, "interactive": True, "timeoutMs": 90_000, **scenario}
        driver = Driver(node_bin, scenario, tmp_path / f"driver-{len(drivers)}.stderr")
        drivers.append(driver)
        driver.wait_for(lambda e: e["event"] == "ready", EVENT_TIMEOUT_S, "ready")
        return driver

    try:
        yield start
    finally:
        for driver in drivers:
            driver.kill()
            driver.close_files()


@pytest.fixture
def udp():
    """`udp(ip="127.0.0.1", port=0, ack=True)` -> a UdpSubscriber, closed at the end."""
    made: list[UdpSubscriber] = []

    def make(ip: str = "127.0.0.1", port: int = 0, ack: bool = True) -> UdpSubscriber:
        made.append(UdpSubscriber(ip, port, ack))
        return made[-1]

    yield make
    for subscriber in made:
        subscriber.close()
