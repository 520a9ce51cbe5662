"""Probe for issue 14, finding 3: one service over 1 MiB must not stall replication.

Starts three members on free loopback ports (`python -m nacos_actors serve --members ...`, extra
arguments after `--` go to every member), registers three instances with 500 KB of metadata each
in one service, then one small service per second owned by the same member, and reports for
each small service how long until every other member lists it (or `missing`), then, LINGER
seconds later, the failed sync batches (nacos_actors_distro_batches_total{outcome="failed"}),
the services in quarantine and the owner's warning lines.

    .venv/bin/python scripts/probes/distro_poison.py [--small 5] [--wait 10] [--linger 5] [-- serve args...]

Loopback only; every process it starts is stopped before it exits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from common import free_ports, grpc_off_args, member_list, metric_sum

REPO = Path(__file__).resolve().parents[2]
NS = "/nacos/v1/ns"



def request(port: int, method: str, path: str, query: dict[str, str] | None = None, form: dict[str, str] | None = None) -> tuple[int, bytes]:
    url = f"http://127.0.0.1:{port}{path}" + ("?" + urllib.parse.urlencode(query) if query else "")
    data = urllib.parse.urlencode(form).encode() if form else None
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if form else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def owner(port: int, service: str) -> str:
    return json.loads(request(port, "GET", f"{NS}/operator/distro/server", {"serviceName": service})[1])["responsibleServer"]


def listed(port: int, service: str) -> int:
    status, body = request(port, "GET", f"{NS}/instance/list", {"serviceName": service})
    return len(json.loads(body)["hosts"]) if status == 200 else -1


def metric(port: int, name: str, label: str = "") -> float:
    _, body = request(port, "GET", "/metrics")
    return metric_sum(body, name + "{", label)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=5, help="small services registered after the large one")
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for each small service")
    parser.add_argument("--metadata-kb", type=int, default=500)
    parser.add_argument("--linger", type=float, default=5.0, help="seconds to go on before counting failures")
    parser.add_argument("serve_args", nargs="*")
    args = parser.parse_args()
    ports = free_ports(3)
    members = member_list(REPO, ports)
    logs = Path(tempfile.mkdtemp(prefix="distro-poison-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NACOS_ACTORS_")}
    processes = []
    for port in ports:
        log = open(logs / f"{port}.log", "wb")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "nacos_actors", "serve", "--port", str(port), "--members", members, *grpc_off_args(REPO), *args.serve_args],
            cwd=REPO, env=env, stdout=log, stderr=log,
        ))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if all(request(p, "GET", "/nacos/v1/console/health/readiness")[0] == 200 for p in ports):
                    break
            except OSError:
                pass
            time.sleep(0.1)
        time.sleep(1.5)  # every member sees the others UP
        large = "large-service"
        owner_address = owner(ports[0], large)
        owner_port = int(owner_address.rpartition(":")[2])
        peers = [p for p in ports if p != owner_port]
        blob = "x" * (args.metadata_kb * 1000)
        for n in range(3):
            status, body = request(owner_port, "POST", f"{NS}/instance", form={
                "serviceName": large, "ip": "127.0.0.1", "port": str(9000 + n), "metadata": json.dumps({"blob": blob}),
            })
            assert status == 200, (status, body[:200])
        small = []
        k = 0
        while len(small) < args.small:
            name = f"small-{k}"
            k += 1
            if owner(ports[0], name) == owner_address:
                small.append(name)
        results = {}
        for name in small:
            request(owner_port, "POST", f"{NS}/instance", {"serviceName": name, "ip": "127.0.0.1", "port": "8000"})
            started = time.monotonic()
            while time.monotonic() - started < args.wait:
                if all(listed(p, name) == 1 for p in peers):
                    results[name] = f"{(time.monotonic() - started) * 1000:.0f} ms"
                    break
                time.sleep(0.01)
            else:
                results[name] = f"missing after {args.wait} s"
        time.sleep(args.linger)
        large_seen = {p: listed(p, large) for p in peers}
        failed = metric(owner_port, "nacos_actors_distro_batches_total", 'outcome="failed"')
        quarantined = metric(owner_port, "nacos_actors_distro_quarantined_services")
        warnings = sum(1 for line in (logs / f"{owner_port}.log").read_text(errors="replace").splitlines() if "WARNING" in line)
        print(json.dumps({
            "small services on every peer": results,
            "large service instances on peers": large_seen,
            "failed batches (owner)": failed,
            "owner WARNING lines": warnings,
            "services quarantined (owner, all peers)": quarantined,
            "logs": str(logs),
        }, indent=2))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
