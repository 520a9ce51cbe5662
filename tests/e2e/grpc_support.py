"""The real gRPC clients (nacos-sdk-python 3.2.0, nacos-sdk-rust-binding-py 0.8.0) as subprocesses
for the end-to-end tests, and nodes whose gRPC port the Rust client can find.

The clients live in .venv-grpc-clients/ (made by `scripts/venv grpc-clients`, which scripts/test
runs): they cannot share this process's interpreter (3.2.0's `v2` package clashes with the 2.0.11
in .venv, and its protobuf module with ours). Each client runs one driver script
(grpc_clients/python_client.py, rust_client.py) that speaks JSON lines (grpc_clients/lines.py);
GrpcClient is its Python face here. Without that venv the tests skip, loudly; under CI they fail.

The Rust crate always dials the HTTP port + 1000 (it has no gRPC port setting), so the nodes these
tests start get an HTTP port P with P + 1000 free too, and `--grpc-port P+1000`.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import HOST, REPO, Cluster, NodeLauncher, NodeProcess

CLIENTS_VENV = REPO / ".venv-grpc-clients"
CLIENTS_PYTHON = CLIENTS_VENV / "bin" / "python"
DRIVERS = Path(__file__).resolve().parent / "grpc_clients"
KINDS = ("python", "rust")
START_TIMEOUT_S = 20.0  # Rust retries its first health check for ~4.5 s; Py waits 3 s per attempt
CALL_TIMEOUT_S = 15.0
NOTIFY_TIMEOUT_S = 10.0
GRPC_OFFSET = 1000


def clients_python() -> str:
    """The clients' interpreter; skips (fails under CI) when scripts/venv could not make it."""
    if CLIENTS_PYTHON.exists():
        return str(CLIENTS_PYTHON)
    reason = (
        f"{CLIENTS_VENV} is missing: the gRPC client tests need it (scripts/test makes it with "
        "`scripts/venv grpc-clients`; that needs PyPI)"
    )
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip("SKIPPED LOUDLY: " + reason)


def port_pair() -> int:
    """A free HTTP port P whose P + 1000 is free too (the Rust client's gRPC port)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port = probe.getsockname()[1]
        if port + GRPC_OFFSET > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port + GRPC_OFFSET))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port P with P + 1000 free")


def port_pairs(count: int) -> list[int]:
    """`count` different HTTP ports, each with its + 1000 free, none another's + 1000."""
    ports: list[int] = []
    while len(ports) < count:
        port = port_pair()
        taken = {p for q in ports for p in (q, q + GRPC_OFFSET)}
        if port not in taken and port + GRPC_OFFSET not in taken:
            ports.append(port)
    return ports


def grpc_port_of(node: NodeProcess) -> int:
    """The node's gRPC port: what the launcher recorded, else Nacos's HTTP port + 1000."""
    given = getattr(node, "grpc_port", None)
    return int(given) if given else node.port + GRPC_OFFSET


class ClientFailed(AssertionError):
    """A command the client answered with an error (the message is the client's)."""


class GrpcClient:
    """One driver process: `call(op, **arguments)` waits for its answer; callback events queue
    up for `wait_notify`; `kill()` is SIGKILL, `stop()` ends it by closing stdin."""

    def __init__(self, kind: str, node: NodeProcess, work: Path, **settings: Any) -> None:
        self.kind = kind
        self.node = node
        work.mkdir(parents=True, exist_ok=True)
        self.stderr_path = work / "stderr"
        self._stderr = open(self.stderr_path, "wb")
        config = {"server": node.address, "grpcPort": grpc_port_of(node), "dir": str(work), **settings}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NACOS_", "ALIBABA_CLOUD_", "PYTHON"))}
        env["HOME"] = str(work)  # whatever the client writes under ~ (logs, caches) stays in the test
        self.process = subprocess.Popen(
            [clients_python(), str(DRIVERS / f"{kind}_client.py"), json.dumps(config)],
            cwd=DRIVERS,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.notifications: queue.Queue[dict[str, Any]] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        ready = self._next_answer(START_TIMEOUT_S, "ready")
        if ready.get("event") != "ready" or ready.get("healthy") is False:
            pytest.fail(f"{kind} client did not connect: {ready}\n{self.stderr()}")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                message = {"event": "garbage", "line": line.decode(errors="replace")}
            self.events.append(message)
            if message.get("event") == "notify":
                self.notifications.put(message)
            else:
                self._answers.put(message)
        self._answers.put(None)

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")[-6000:]

    def _next_answer(self, timeout: float, what: str) -> dict[str, Any]:
        try:
            message = self._answers.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"{self.kind} client: no {what} within {timeout} s\n{self.stderr()}")
        if message is None:
            self._answers.put(None)
            pytest.fail(f"{self.kind} client exited ({self.process.wait()}) before {what}\n{self.stderr()}")
        if message.get("event") == "fatal":
            pytest.fail(f"{self.kind} client failed: {message['error']}\n{self.stderr()}")
        return message

    def call(self, op: str, timeout: float = CALL_TIMEOUT_S, may_fail: bool = False, **arguments: Any) -> Any:
        """Run one command; its result, or ClientFailed with the client's error (unless may_fail:
        then the answer itself)."""
        self._next_id += 1
        command = {"id": self._next_id, "op": op, **arguments}
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        self.process.stdin.flush()
        while True:
            message = self._next_answer(timeout, f"answer to {op}")
            if message.get("id") == command["id"]:
                break
        if may_fail:
            return message
        if not message["ok"]:
            raise ClientFailed(f"{self.kind} {op} {arguments}: {message['error']}\n{self.stderr()}")
        return message["result"]

    def wait_notify(
        self, predicate: Callable[[list[dict[str, Any]]], bool], what: str, timeout: float = NOTIFY_TIMEOUT_S
    ) -> list[dict[str, Any]]:
        """The instances of the next callback whose instance list satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            try:
                event = self.notifications.get(timeout=max(left, 0.0))
            except queue.Empty:
                pytest.fail(f"{self.kind} subscriber: no callback with {what} within {timeout} s; saw {seen}")
            seen.append(event["instances"])
            if predicate(event["instances"]):
                return event["instances"]

    def kill(self) -> None:
        """SIGKILL: no goodbye on the wire, the kernel just closes the socket."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(5)

    def pause(self) -> None:
        """SIGSTOP: the connection stays open but nothing answers on it."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> None:
        """End of commands: the driver exits by itself (killed if it does not)."""
        if self.process.poll() is None and self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._stderr.close()


def endpoints(instances: list[dict[str, Any]]) -> set[tuple[str, int]]:
    return {(i["ip"], int(i["port"])) for i in instances}


def start_grpc_node(launcher_start: Callable[..., NodeProcess], *args: str) -> NodeProcess:
    """A node on a port pair (HTTP P, gRPC P + 1000), ready."""
    port = port_pair()
    node = launcher_start("--grpc-port", str(port + GRPC_OFFSET), *args, port=port)
    node.grpc_port = port + GRPC_OFFSET  # type: ignore[attr-defined]
    wait_grpc(node)
    return node


def wait_grpc(node: NodeProcess, timeout: float = 10.0) -> None:
    """Until the node's gRPC port accepts TCP connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, grpc_port_of(node)), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listens on the gRPC port {grpc_port_of(node)} of {node.address}:\n{node.stderr()}")


class GrpcCluster(Cluster):
    """A Cluster whose member i serves gRPC on its HTTP port + 1000, restarts included."""

    def start_member(self, index: int, wait: bool = True) -> NodeProcess:
        shared = self.args
        self.args = (*shared, "--grpc-port", str(self.ports[index] + GRPC_OFFSET))
        try:
            node = super().start_member(index, wait)
        finally:
            self.args = shared
        node.grpc_port = self.ports[index] + GRPC_OFFSET  # type: ignore[attr-defined]
        return node


def launch_grpc_cluster(launcher: NodeLauncher, size: int, *args: str) -> Cluster:
    """Like conftest.launch_cluster, on port pairs: member i serves gRPC on its HTTP port + 1000."""
    ports = port_pairs(size)
    cluster = GrpcCluster(launcher, ports, args)
    for index in range(size):
        cluster.start_member(index, wait=False)
    for node in cluster.nodes:
        node.wait_ready()
    cluster.wait_settled()
    for node in cluster.nodes:
        wait_grpc(node)
    return cluster


def clients_in(tmp_path: Path) -> Iterator[Callable[..., GrpcClient]]:
    """The body of a `grpc_client` fixture: yields `make(kind, node, **settings)` -> a started
    GrpcClient, and stops every one made when resumed."""
    made: list[GrpcClient] = []

    def make(kind: str, node: NodeProcess, **settings: Any) -> GrpcClient:
        client = GrpcClient(kind, node, tmp_path / f"{kind}-client-{len(made)}", **settings)
        made.append(client)
        return client

    yield make
    for client in made:
        client.stop(timeout=5)
