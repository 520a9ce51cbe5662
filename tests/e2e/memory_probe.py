"""Measure a node's memory under the read loads of issue 14 (findings 4 and 5), on loopback.

    python -m tests.e2e.memory_probe [--source DIR] [SCENARIO ...]

starts `python -m nacos_actors serve` from DIR (default: this checkout; give an export of
another branch to compare), runs each scenario on a fresh node and prints its figures. RSS is
the node's VmRSS. Scenarios:

- spellings: 3,000 services, then 48,000 instance/list GETs, 16 `clusters` spellings each
- list-all: 20,000 services, each listed once
- prometheus: 100,000 services, one GET /nacos/prometheus
- deregistered: 300 instances with 1 MiB metadata each, listed, then deregistered
- big-lists: 300 instances with 1 MiB metadata each; one list's size and time, then four at
  once while readiness is polled

`--metadata-chars N` sets the metadata value's length of the last two (e.g. 16000, just under
the default limit); `--node-arg=--flag --node-arg=value` passes settings to the node.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.e2e.load import HOST, list_requests, pipeline, register_services, request, rss_mb

REPO = Path(__file__).resolve().parents[2]
BIG_METADATA_CHARS = 1_000_000  # ~1 MiB in a form body under the default 1 MiB body limit
METADATA_CHARS = [BIG_METADATA_CHARS]  # --metadata-chars
GZIP = {"Accept-Encoding": "gzip,deflate,sdch"}
SPELLINGS = [
    "DEFAULT", "DEFAULT,DEFAULT", " DEFAULT", "DEFAULT ", ",DEFAULT", "DEFAULT,", "DEFAULT,,",
    ",,DEFAULT", "DEFAULT, DEFAULT", " DEFAULT ,DEFAULT", "DEFAULT,DEFAULT,DEFAULT", "  DEFAULT",
    "DEFAULT  ", ", DEFAULT", "DEFAULT ,", "DEFAULT,DEFAULT,",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def raft_port_args(source: Path, http_port: int) -> list[str]:
    """`--raft-port N` (a free port other than `http_port`) for a node of a tree that runs Raft:
    its default, the HTTP port - 1000, may be anything's on this host. Nothing for an older tree
    (to compare with), which would refuse the flag."""
    try:
        if "raft_port" not in (source / "nacos_actors" / "settings.py").read_text():
            return []
    except OSError:
        return []
    raft_port = free_port()
    while raft_port == http_port:
        raft_port = free_port()
    args = ["--raft-port", str(raft_port)]
    if "grpc_port" in (source / "nacos_actors" / "settings.py").read_text():
        args += ["--grpc-port", "0"]  # the probe measures the HTTP node; its default port may be taken
    return args


class Node:
    """A node process started from `source` on a free port (health checks off: the probe's
    instances never beat)."""

    def __init__(self, source: Path, *args: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("NACOS_ACTORS_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nacos_actors", "serve", "--port", str(self.port),
             *raft_port_args(source, self.port), "--health-check-enabled", "false", "--log-level", "WARNING", *args],
            cwd=source, env=env, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.ready_seconds() is not None:
                return
            time.sleep(0.05)
        raise RuntimeError("node not ready")

    def ready_seconds(self) -> float | None:
        started = time.monotonic()
        try:
            connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
            connection.request("GET", "/nacos/v1/console/health/readiness")
            status = connection.getresponse().status
            connection.close()
        except OSError:
            return None
        return time.monotonic() - started if status == 200 else None

    @property
    def rss(self) -> float:
        return rss_mb(self.process.pid)

    def settle(self) -> float:
        """RSS once the node has been idle for a moment."""
        time.sleep(1.0)
        return self.rss

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(20)


def spellings(node: Node) -> dict[str, object]:
    names = [f"sp-{i}" for i in range(3000)]
    register_services(node.port, len(names), "sp")
    before = node.settle()
    requests = [r for s in SPELLINGS for r in list_requests(names, {"clusters": s}, GZIP)]
    started = time.monotonic()
    answers = pipeline(node.port, requests, timeout=300)
    took = time.monotonic() - started
    return {"gets": len(answers), "statuses": sorted({a.status for a in answers}), "seconds": round(took, 1),
            "rss_before_mb": round(before), "rss_after_mb": round(node.settle())}


def list_all(node: Node) -> dict[str, object]:
    register_services(node.port, 20_000, "la")
    before = node.settle()
    answers = pipeline(node.port, list_requests(f"la-{i}" for i in range(20_000)), timeout=300)
    return {"lists": len(answers), "statuses": sorted({a.status for a in answers}),
            "rss_before_mb": round(before), "rss_after_mb": round(node.settle())}


def prometheus(node: Node) -> dict[str, object]:
    took = register_services(node.port, 100_000, "pm")
    before = node.settle()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], node.rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    (answer,) = pipeline(node.port, [request("GET", "/nacos/prometheus")], connections=1, timeout=300)
    took_get = time.monotonic() - started
    done.set()
    sampler.join()
    return {"register_seconds": round(took, 1), "status": answer.status, "answer_mb": round(answer.size / 2**20, 1),
            "get_seconds": round(took_get, 2), "rss_before_mb": round(before), "rss_peak_mb": round(peak[0]),
            "rss_after_mb": round(node.settle())}


def big_instances(node: Node, count: int = 300) -> list[int]:
    statuses = []
    value = "x" * METADATA_CHARS[0]
    for i in range(count):
        form = {"serviceName": "big", "ip": HOST, "port": str(10_000 + i), "metadata": f'{{"blob":"{value}"}}'}
        (answer,) = pipeline(node.port, [request("POST", "/nacos/v1/ns/instance", form=form)], connections=1)
        statuses.append(answer.status)
    return sorted(set(statuses))


def deregistered(node: Node) -> dict[str, object]:
    base = node.settle()
    statuses = big_instances(node)
    (listed,) = pipeline(node.port, list_requests(["big"]), connections=1, timeout=120)
    registered = node.settle()
    removals = [request("DELETE", "/nacos/v1/ns/instance", {"serviceName": "big", "ip": HOST, "port": str(10_000 + i)})
                for i in range(300)]
    pipeline(node.port, removals, connections=1)
    return {"register_statuses": statuses, "list_mb": round(listed.size / 2**20), "rss_base_mb": round(base),
            "rss_registered_mb": round(registered), "rss_after_deregister_mb": round(node.settle())}


def big_lists(node: Node) -> dict[str, object]:
    statuses = big_instances(node)
    base = node.settle()
    started = time.monotonic()
    (one,) = pipeline(node.port, list_requests(["big"]), connections=1, timeout=120)
    one_seconds = time.monotonic() - started
    peak = [base]
    readiness: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], node.rss)
            seconds = node.ready_seconds()
            if seconds is not None:
                readiness.append(seconds)

    sampler = threading.Thread(target=sample)
    sampler.start()
    four = pipeline(node.port, list_requests(["big"] * 4), connections=4, depth=1, timeout=120)
    done.set()
    sampler.join()
    return {"register_statuses": statuses, "list_status": one.status, "list_mb": round(one.size / 2**20, 1),
            "list_seconds": round(one_seconds, 2), "four_statuses": sorted({a.status for a in four}),
            "rss_base_mb": round(base), "rss_peak_four_lists_mb": round(peak[0]),
            "readiness_max_seconds": round(max(readiness, default=0), 2)}


SCENARIOS = {"spellings": spellings, "list-all": list_all, "prometheus": prometheus, "deregistered": deregistered,
             "big-lists": big_lists}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=REPO, help="the checkout whose nacos_actors to run")
    parser.add_argument("--metadata-chars", type=int, default=BIG_METADATA_CHARS,
                        help="metadata value length of deregistered and big-lists (default ~1 MiB)")
    parser.add_argument("--node-arg", action="append", default=[], help="an extra `serve` argument (repeatable)")
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS), help=", ".join(SCENARIOS))
    args = parser.parse_args()
    METADATA_CHARS[0] = args.metadata_chars
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    for name in args.scenarios:
        node = Node(args.source, *args.node_arg)
        try:
            print(name, SCENARIOS[name](node), flush=True)
        finally:
            node.stop()


if __name__ == "__main__":
    main()
