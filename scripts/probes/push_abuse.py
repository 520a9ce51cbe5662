"""Probe for issue 14, finding 6: push can be starved and flooded.

Starts one standalone node on a free loopback port (extra `serve` arguments after `--`), then:

- `subscribers`: subscribes N fake push clients from 127.0.0.1 (one udpPort each, nobody
  listening) and one real, acking subscriber from 127.0.0.2 to one service; measures the
  datagrams one register causes (nacos_actors_push_sends_total), push/state while nothing
  was acked, then makes RATE changes a second for SECONDS and reports the real subscriber's
  push delays (or misses), the push actor's largest mailbox depth, the node's RSS and the
  number of "given up" log lines.
- `flood`: sends 60 KB valid-JSON datagrams at the push socket as fast as it can for SECONDS,
  while RATE changes a second are made (with FAKE subscribers keeping the push actor busy, if
  given); reports the push mailbox depth, RSS and the real
  subscriber's push delays.

    .venv/bin/python scripts/probes/push_abuse.py subscribers [--fake 5000] [--rate 5] [--seconds 30] [-- serve args]
    .venv/bin/python scripts/probes/push_abuse.py flood [--fake 0] [--rate 1] [--seconds 20] [-- serve args]

Loopback only; the node is stopped before it exits.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

from common import free_port, metric_sum, side_port_args, stop_node

REPO = Path(__file__).resolve().parents[2]
NS = "/nacos/v1/ns"
JAVA = "Nacos-Java-Client:v1.4.1"
SERVICE = "probe-pushed"



class Http:
    """One keep-alive connection from a chosen loopback source address."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))

    def call(self, method: str, path: str, agent: str | None = None, **params: object) -> tuple[int, bytes]:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        headers = {"User-Agent": agent} if agent else {}
        self.connection.request(method, f"{path}?{query}", headers=headers)
        answer = self.connection.getresponse()
        return answer.status, answer.read()


def metric(port: int, name: str, label: str = "") -> float:
    _, body = Http(port).call("GET", "/metrics")
    return metric_sum(body, name, label)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Subscriber:
    """A real subscriber on 127.0.0.2 that acks every packet and notes when each state arrived."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.2", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.seen: dict[int, float] = {}  # instance count -> first arrival (monotonic)
        self.packet_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                raw, source = self.sock.recvfrom(65536)
            except (TimeoutError, socket.timeout):
                continue
            self.packet_bytes = len(raw)
            envelope = json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
            ack = {"type": "push-ack", "lastRefTime": str(envelope["lastRefTime"]), "data": ""}
            self.sock.sendto(json.dumps(ack).encode(), source)
            hosts = len(json.loads(envelope["data"])["hosts"])
            self.seen.setdefault(hosts, time.monotonic())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def start_node(args: list[str]) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="push-abuse-")) / "node.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NACOS_ACTORS_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "nacos_actors", "serve", "--port", str(port), *side_port_args(REPO, port), *args],
        cwd=REPO, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if Http(port).call("GET", "/nacos/v1/console/health/readiness")[0] == 200:
                return process, port, log
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the node did not start")


def register(http: Http, n: int) -> None:
    status, body = http.call("POST", f"{NS}/instance", serviceName=SERVICE, ip="127.0.0.1", port=10000 + n)
    assert status == 200, body


def changes(port: int, real: Subscriber, rate: float, seconds: float, pid: int, start_n: int) -> dict[str, object]:
    """`rate` registers a second for `seconds`; the real subscriber's delay for each."""
    http = Http(port)
    poller = Http(port, "127.0.0.2")
    made: list[tuple[int, float]] = []
    mailbox, rss = [], []
    started = time.monotonic()
    n = start_n
    next_poll = started
    while time.monotonic() - started < seconds:
        n += 1
        register(http, n)
        made.append((n + 1, time.monotonic()))  # instance count after this register
        if time.monotonic() >= next_poll:  # the real subscriber polls as a client does
            poller.call("GET", f"{NS}/instance/list", agent=JAVA, serviceName=SERVICE, udpPort=real.port)
            next_poll += 5
        mailbox.append(metric(port, "nacos_actors_actor_mailbox_depth", 'actor="push"'))
        rss.append(rss_mb(pid))
        time.sleep(max(0.0, started + len(made) / rate - time.monotonic()))
    time.sleep(3)
    delays = [(real.seen[count] - t) * 1000 for count, t in made if count in real.seen]
    missed = sum(1 for count, _ in made if count not in real.seen)
    return {
        "changes": len(made),
        "real subscriber: pushes heard": len(delays),
        "real subscriber: changes never pushed (3 s grace)": missed,
        "real subscriber: delay ms p50/max": [round(statistics.median(delays)), round(max(delays))] if delays else None,
        "push mailbox depth max": max(mailbox),
        "rss MB max": round(max(rss)),
    }


def subscribers(args: argparse.Namespace, process: subprocess.Popen[bytes], port: int, log: Path) -> dict[str, object]:
    http = Http(port)
    register(http, 0)
    started = time.monotonic()
    for n in range(args.fake):
        status, body = http.call(
            "GET", f"{NS}/instance/list", agent=JAVA, serviceName=SERVICE, udpPort=20000 + n, clusters=None
        )
        assert status == 200, body
    subscribe_s = time.monotonic() - started
    real = Subscriber()
    Http(port, "127.0.0.2").call("GET", f"{NS}/instance/list", agent=JAVA, serviceName=SERVICE, udpPort=real.port)
    state = json.loads(http.call("GET", f"{NS}/service/subscribers", serviceName=SERVICE, pageSize=1)[1])
    sends_before = metric(port, "nacos_actors_push_sends_total")
    register(http, 1)  # one register: how many datagrams does it cause?
    time.sleep(0.5)
    during = json.loads(http.call("GET", f"{NS}/operator/push/state")[1])
    time.sleep(8)  # every resend and give-up of that one change
    one_register = metric(port, "nacos_actors_push_sends_total") - sends_before
    result: dict[str, object] = {
        "fake subscriptions requested": args.fake,
        "subscribe seconds": round(subscribe_s, 1),
        "subscribers held": state.get("count"),
        "datagrams caused by one register": one_register,
        "bytes of one packet": real.packet_bytes,
        "push/state 0.5 s after it (nothing acked but the real one)": {
            k: during.get(k) for k in ("succeed", "total", "ratio", "acked", "failed")
        },
    }
    result.update(changes(port, real, args.rate, args.seconds, process.pid, 1))
    time.sleep(8)
    lines = log.read_text(errors="replace")
    state = json.loads(http.call("GET", f"{NS}/operator/push/state")[1])
    result["pushes given up (whole run)"] = state["failed"]
    result["push/state at the end"] = {k: state.get(k) for k in ("succeed", "total", "ratio", "acked", "failed")}
    result["'given up' log lines (whole run)"] = lines.count("given up")
    result["log lines (whole run)"] = len(lines.splitlines())
    real.close()
    return result


def flood(args: argparse.Namespace, process: subprocess.Popen[bytes], port: int, log: Path) -> dict[str, object]:
    match = re.search(r"push socket on udp [\d.]+:(\d+)", log.read_text())
    assert match, "no push socket line in the log"
    push_port = int(match.group(1))
    http = Http(port)
    register(http, 0)
    for n in range(args.fake):  # subscribers that keep the push actor busy meanwhile
        http.call("GET", f"{NS}/instance/list", agent=JAVA, serviceName=SERVICE, udpPort=20000 + n)
    real = Subscriber()
    Http(port, "127.0.0.2").call("GET", f"{NS}/instance/list", agent=JAVA, serviceName=SERVICE, udpPort=real.port)
    payload = json.dumps({"type": "push-ack", "lastRefTime": 1, "data": "x" * 60_000}).encode()
    stop = threading.Event()
    sent = [0]

    def blast() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        while not stop.is_set():
            try:
                sock.sendto(payload, ("127.0.0.1", push_port))
                sent[0] += 1
            except OSError:
                time.sleep(0.001)
        sock.close()

    blaster = threading.Thread(target=blast, daemon=True)
    blaster.start()
    try:
        result: dict[str, object] = {"flood": "60 KB datagrams", "fake subscribers": args.fake}
        result.update(changes(port, real, args.rate, args.seconds, process.pid, 0))
    finally:
        stop.set()
        blaster.join(2)
    result["datagrams sent at the push socket"] = sent[0]
    result["received counts"] = {
        outcome: metric(port, "nacos_actors_push_datagrams_received_total", f'outcome="{outcome}"')
        for outcome in ("ack", "unmatched", "malformed", "oversized", "overflow")
    }
    real.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["subscribers", "flood"])
    parser.add_argument("--fake", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args, serve_args = parser.parse_known_args()  # what follows `--` goes to `serve`
    process, port, log = start_node([a for a in serve_args if a != "--"])
    try:
        run = subscribers if args.scenario == "subscribers" else flood
        print(json.dumps(run(args, process, port, log), indent=2))
    finally:
        stop_node(process, 20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
