#!/usr/bin/env python3
"""Probe: how a node under push load stops on a signal (issue 14, finding 2).

Starts a node (`python -m nacos_actors serve` from `--repo`, on a free 127.0.0.1 port, with a
fresh --data-dir), registers `--services` services with `--prefill` instances each, subscribes
`--sockets` UDP sockets on 127.0.0.1 to every service under `--lists` cluster lists each (none
of them acks), re-polls so no subscriber lapses, registers `--rate` instances a second for
`--load-seconds`, then sends the signal and reports how long the node took to exit, its exit
code, whether the data file was written, and how many services a node restarted on the same
--data-dir lists. Everything stays on loopback; every process it starts is stopped at the end.

    scripts/probes/shutdown.py                         # this tree
    scripts/probes/shutdown.py --repo /tmp/main-tree   # another tree (e.g. `git archive main`)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

from common import free_port, side_port_args, stop_node

HOST = "127.0.0.1"
NS = "/nacos/v1/ns"
JAVA_AGENT = "Nacos-Java-Client:v1.4.8"



class Client:
    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection(HOST, port, timeout=10)

    def call(self, method: str, path: str, agent: str | None = None, **params: object) -> tuple[int, bytes]:
        self.connection.request(
            method, f"{path}?{urllib.parse.urlencode(params)}", headers={"User-Agent": agent} if agent else {}
        )
        response = self.connection.getresponse()
        return response.status, response.read()


def start(repo: Path, port: int, raft: list[str], data: Path, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "nacos_actors", "serve", "--port", str(port), *raft, "--data-dir", str(data)]
    with open(log, "ab") as out:
        node = subprocess.Popen(
            [*argv, "--health-check-enabled", "false", "--push-cache-ms", "60000"],
            cwd=repo,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if not k.startswith("NACOS_ACTORS_")},
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if Client(port).call("GET", "/nacos/v1/console/health/readiness")[0] == 200:
                return node
        except OSError:
            time.sleep(0.05)
    node.kill()
    raise SystemExit("the node did not get ready in 30 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--signal", default="TERM", help="TERM, HUP or INT")
    parser.add_argument("--services", type=int, default=5)
    parser.add_argument("--prefill", type=int, default=100, help="instances per service before the load")
    parser.add_argument("--sockets", type=int, default=5)
    parser.add_argument("--lists", type=int, default=200, help="cluster lists each socket subscribes per service")
    parser.add_argument("--rate", type=float, default=50.0, help="registrations a second during the load")
    parser.add_argument("--load-seconds", type=float, default=30.0)
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the exit before kill -9")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="probe-shutdown-"))
    data, log, port = work / "data", work / "node.log", free_port()
    raft = side_port_args(args.repo, port)  # the restart keeps the same Raft port, as a node keeps its address
    services = [f"svc-{i}" for i in range(args.services)]
    node = start(args.repo, port, raft, data, log)
    sockets = []
    stop = threading.Event()
    try:
        client = Client(port)
        for service in services:
            for index in range(args.prefill):
                client.call("POST", f"{NS}/instance", serviceName=service, ip=HOST, port=1000 + index)
        for _ in range(args.sockets):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((HOST, 0))
            sockets.append(sock)

        def subscribe_all(client: Client) -> int:
            count = 0
            for service in services:
                for sock in sockets:
                    for index in range(args.lists):
                        client.call(
                            "GET",
                            f"{NS}/instance/list",
                            agent=JAVA_AGENT,
                            serviceName=service,
                            udpPort=sock.getsockname()[1],
                            clusters=f"DEFAULT,c{index}",
                        )
                        count += 1
            return count

        print(f"{subscribe_all(client)} push subscribers", flush=True)

        def repoll() -> None:
            poller = Client(port)
            while not stop.wait(10):
                try:
                    subscribe_all(poller)
                except (OSError, http.client.HTTPException):
                    return

        def trickle() -> None:
            writer, number = Client(port), 0
            while not stop.is_set():
                number += 1
                try:
                    writer.call(
                        "POST",
                        f"{NS}/instance",
                        serviceName=services[number % len(services)],
                        ip=HOST,
                        port=20000 + number,
                    )
                except (OSError, http.client.HTTPException):
                    return
                time.sleep(1 / args.rate)

        for target in (repoll, trickle):
            threading.Thread(target=target, daemon=True).start()
        time.sleep(args.load_seconds)
        _, metrics = client.call("GET", "/metrics")
        backlog = next(
            (
                line.rsplit(" ", 1)[1]
                for line in metrics.decode().splitlines()
                if line.startswith('nacos_actors_actor_mailbox_depth{actor="push"}')
            ),
            "?",
        )
        signum = getattr(signal, "SIG" + args.signal)
        sent = time.monotonic()
        node.send_signal(signum)
        try:
            code: int | str = node.wait(args.wait)
            took = f"{time.monotonic() - sent:.2f} s"
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
            code, took = "none (killed with -9)", f"still running after {args.wait:.0f} s"
        stop.set()
        saved = (data / "registry.msgpack").exists()
        print(
            f"SIG{args.signal} with a push backlog of {backlog} messages: exit {code}, {took}; data file written: {saved}"
        )
        node = start(args.repo, port, raft, data, log)
        status, body = Client(port).call("GET", f"{NS}/service/list", pageNo=1, pageSize=1000)
        kept = set(json.loads(body)["doms"]) & set(services) if status == 200 else set()
        print(f"restarted on the same --data-dir: {len(kept)} of {len(services)} services")
        errors = [line for line in log.read_text(errors="replace").splitlines() if "Timeout" in line or "ERROR" in line]
        print("log lines with Timeout or ERROR:", errors[:3], f"(log: {log})")
    finally:
        stop.set()
        for sock in sockets:
            sock.close()
        stop_node(node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
