#!/usr/bin/env python3
"""Probe: what a node does with idle, slow and oversized-body connections (issue 14, finding 7).

Starts a node (`python -m nacos_actors serve` from `--repo`, on a free 127.0.0.1 port; with
`--nofile N` under an open-file limit of N), then with raw sockets on 127.0.0.1:

1. sends headers announcing a 100 MB body with `Expect: 100-continue` and prints the first answer;
2. opens `--idle` connections that send nothing and `--slow` that send a request's headers a byte
   every 0.5 s, and asks a normal request meanwhile;
3. after `--watch` seconds, counts how many of each the node still holds, asks a normal request
   again, and prints the log lines about connections.

Everything stays on loopback; the node is stopped at the end.

    scripts/probes/connections.py                                   # this tree, defaults
    scripts/probes/connections.py --nofile 1024 --idle 1100 --slow 0
    scripts/probes/connections.py --repo /tmp/main-tree             # another tree
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import free_port, side_port_args, stop_node

HOST = "127.0.0.1"
LIVENESS = "/nacos/v1/console/health/liveness"



def normal_request(port: int) -> str:
    """The status line a plain GET gets on a fresh connection (or the error)."""
    try:
        with socket.create_connection((HOST, port), timeout=5) as sock:
            sock.sendall(f"GET {LIVENESS} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            return answer.split(b"\r\n", 1)[0].decode() or "closed without an answer"
    except OSError as error:
        return f"failed: {error!r}"


def still_open(sock: socket.socket) -> bool:
    """Whether the node still holds `sock` (what it sent is read and dropped)."""
    sock.setblocking(False)
    try:
        while True:
            if sock.recv(65536) == b"":
                return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--watch", type=float, default=35.0)
    parser.add_argument("--nofile", type=int, default=0, help="the node's open-file limit (0: this process's)")
    parser.add_argument("--args", default="", help="extra `serve` arguments")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.idle + args.slow + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard)
        )

    def limit_files() -> None:
        if args.nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))

    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="probe-connections-")) / "node.log"
    with open(log, "wb") as out:
        node = subprocess.Popen(
            [sys.executable, "-m", "nacos_actors", "serve", "--port", str(port), *side_port_args(args.repo, port),
             *args.args.split()],
            cwd=args.repo,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            preexec_fn=limit_files,
            env={k: v for k, v in os.environ.items() if not k.startswith("NACOS_ACTORS_")},
        )
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30
        while not normal_request(port).startswith("HTTP/1.1 200") and time.monotonic() < deadline:
            time.sleep(0.05)
        with socket.create_connection((HOST, port), timeout=5) as sock:
            sock.sendall(
                b"POST /nacos/v1/ns/instance HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 100000000\r\nExpect: 100-continue\r\n\r\n"
            )
            first = sock.recv(4096).split(b"\r\n", 1)[0].decode()
        print(f"Expect: 100-continue with Content-Length 100000000 -> {first}")

        started = time.monotonic()
        idle = []
        for _ in range(args.idle):
            idle.append(socket.create_connection((HOST, port), timeout=5))
        held += idle
        slow = []
        for _ in range(args.slow):
            sock = socket.create_connection((HOST, port), timeout=5)
            slow.append(sock)
        held += slow
        print(f"opened {len(idle)} idle and {len(slow)} slow connections in {time.monotonic() - started:.1f} s")
        print(f"a normal request meanwhile: {normal_request(port)}")
        request = b"GET " + LIVENESS.encode() + b" HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100_000
        started, offset = time.monotonic(), 0
        while time.monotonic() - started < args.watch:
            for sock in slow:
                try:
                    sock.send(request[offset : offset + 1])
                except OSError:
                    pass
            offset += 1
            time.sleep(0.5)
        print(
            f"after {args.watch:.0f} s: the node holds {sum(map(still_open, idle))} of {len(idle)} idle "
            f"and {sum(map(still_open, slow))} of {len(slow)} slow connections"
        )
        print(f"a normal request now: {normal_request(port)}")
        print(f"node running: {node.poll() is None}")
    finally:
        for sock in held:
            sock.close()
        stop_node(node)
    lines = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if "connection" in line.lower() or "open-file" in line
    ]
    print(f"log lines about connections ({len(lines)}):")
    for line in lines[:4]:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
