"""What the probes share: free loopback ports, each node's Raft port, and sums of a node's
metric samples.

The probes are run by path (`.venv/bin/python scripts/probes/NAME.py`), so this directory is on
their import path. Everything here talks to 127.0.0.1 only."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback TCP port nothing listens on (free a moment ago)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` different loopback TCP ports nothing listens on (each held until all are picked)."""
    probes = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probes.append(probe)
            probe.bind((HOST, 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def runs_raft(repo: Path) -> bool:
    """Whether the tree at `repo` runs Raft (it has the --raft-port setting); an older tree, run
    to compare, would refuse the Raft flags."""
    try:
        return "raft_port" in (repo / "nacos_actors" / "settings.py").read_text()
    except OSError:
        return False


def runs_grpc(repo: Path) -> bool:
    """Whether the tree at `repo` serves gRPC (it has the --grpc-port setting)."""
    try:
        return "grpc_port" in (repo / "nacos_actors" / "settings.py").read_text()
    except OSError:
        return False


def grpc_off_args(repo: Path) -> list[str]:
    """`--grpc-port 0` for a tree that serves gRPC: the probes speak HTTP, and the default gRPC
    port (HTTP + 1000) may be anything's on this host."""
    return ["--grpc-port", "0"] if runs_grpc(repo) else []


def side_port_args(repo: Path, http_port: int) -> list[str]:
    """The flags for a standalone node's ports beside HTTP: `--raft-port N` (a free port other
    than `http_port`; its default, the HTTP port - 1000, may be anything's on this host) and
    `--grpc-port 0` (the probes speak HTTP; the default HTTP port + 1000 may be taken too).
    Nothing a tree does not have (an older tree, run to compare, would refuse the flag)."""
    args = grpc_off_args(repo)
    if runs_raft(repo):
        args += ["--raft-port", str(next(port for port in free_ports(2) if port != http_port))]
    return args


def member_list(repo: Path, ports: list[int]) -> str:
    """The --members value for nodes on `ports`: each `127.0.0.1:port`, with a free Raft port of
    its own (`?raft_port=N`) when `repo` runs Raft."""
    if not runs_raft(repo):
        return ",".join(f"{HOST}:{port}" for port in ports)
    taken = set(ports)
    raft_ports = [port for port in free_ports(2 * len(ports)) if port not in taken][: len(ports)]
    return ",".join(f"{HOST}:{port}?raft_port={raft}" for port, raft in zip(ports, raft_ports, strict=True))


def metric_sum(exposition: bytes, name: str, label: str = "") -> float:
    """The sum of the samples of metric `name` whose line holds `label`, in a Prometheus text
    exposition."""
    total = 0.0
    for line in exposition.decode().splitlines():
        if line.startswith(name) and not line.startswith("#") and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def stop_node(process: subprocess.Popen[bytes], wait_s: float = 30.0) -> None:
    """SIGTERM a node the probe started, and kill it if it has not exited within `wait_s`."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
