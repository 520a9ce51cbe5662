"""What the probes share: free loopback ports, and sums of a node's metric samples.

The probes are run by path (`.venv/bin/python scripts/probes/NAME.py`), so this directory is on
their import path. Everything here talks to 127.0.0.1 only."""

from __future__ import annotations

import signal
import socket
import subprocess

HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback TCP port nothing listens on (free a moment ago)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


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
