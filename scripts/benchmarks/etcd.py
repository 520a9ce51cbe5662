"""The etcd rows: the same register / keep-alive / list jobs against etcd's HTTP/JSON gateway."""

from __future__ import annotations

import base64
import concurrent.futures
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .results import Row, Skip
from .servers import HOST, free_port, http_get, wait_until

if TYPE_CHECKING:
    from .run import Run


ETCD_FIGURES = (
    ("etcd_register", "etcd: register (put with lease)"),
    ("etcd_keepalive", "etcd: beat (lease keep-alive)"),
    ("etcd_list_100", "etcd: list (range of a 100-key prefix)"),
)


def ensure_etcd() -> str:
    found = shutil.which("etcd")
    if found:
        return found
    if os.geteuid() != 0:
        raise Skip("etcd is not installed and this is not root (apt-get install etcd-server)")
    print("bench: etcd is missing; installing Debian's etcd-server: apt-get update && apt-get install -y etcd-server "
          "(with a temporary /usr/sbin/policy-rc.d so the package does not start a system etcd)", flush=True)
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    try:
        if made_policy:
            policy.write_text("#!/bin/sh\n# written by nacos-actors scripts/bench during an install; removed after\nexit 101\n")
            policy.chmod(0o755)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        update = subprocess.run(["apt-get", "update"], env=env, stdout=sys.stdout, stderr=sys.stderr, timeout=300)
        if update.returncode != 0:
            raise Skip(f"apt-get update failed ({update.returncode})")
        install = subprocess.run(["apt-get", "install", "-y", "etcd-server"], env=env, stdout=sys.stdout,
                                 stderr=sys.stderr, timeout=600)
        if install.returncode != 0:
            raise Skip(f"apt-get install etcd-server failed ({install.returncode})")
    except subprocess.TimeoutExpired as error:
        raise Skip(f"{error.cmd} timed out") from None
    finally:
        if made_policy and policy.exists():
            policy.unlink()
    found = shutil.which("etcd")
    if not found:
        raise Skip("etcd-server installed but no etcd on PATH")
    return found


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class EtcdClient:
    """Keep-alive JSON calls to etcd's gateway from a few threads (only for the set-up)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()

    def call(self, path: str, doc: dict[str, Any]) -> dict[str, Any]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
        conn.request("POST", path, json.dumps(doc), {"Content-Type": "application/json"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"etcd {path} answered {response.status}: {body[:200]!r}")
        return json.loads(body)


def bench_etcd(run: Run) -> list[Row]:
    """the same register / keep-alive / list jobs against etcd's HTTP/JSON gateway."""
    try:
        etcd = ensure_etcd()
    except Skip as reason:
        print(f"bench: etcd comparison skipped: {reason}", flush=True)
        return [Row(k, f, f"skipped: {reason}") for k, f in ETCD_FIGURES]
    version = subprocess.run([etcd, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    data_dir = tempfile.mkdtemp(prefix="nacos-bench-etcd-", dir=run.s.etcd_data_base)
    client_port, peer_port = free_port(), free_port()
    client_url, peer_url = f"http://{HOST}:{client_port}", f"http://{HOST}:{peer_port}"
    argv = run.server_prefix + [
        etcd, "--name", "bench", "--data-dir", data_dir,
        "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
        "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", f"bench={peer_url}", "--initial-cluster-state", "new",
        "--logger", "zap", "--log-level", "warn",
    ]
    proc = run.procs.start("etcd", argv)
    try:
        try:
            wait_until(lambda: b'"true"' in http_get(client_url + "/health", 1.0)[1], proc, "etcd", timeout=30)
        except RuntimeError as error:
            reason = f"etcd did not start: {error} (log {run.procs.log_dir}/etcd.log)"
            print(f"bench: etcd comparison skipped: {reason}", flush=True)
            return [Row(k, f, f"skipped: {reason}") for k, f in ETCD_FIGURES]
        client = EtcdClient(client_port)
        population = run.s.etcd_population
        ttl = 3600
        deadline = time.monotonic() + 120

        def grant_and_put(i: int) -> str:
            if time.monotonic() > deadline:
                raise RuntimeError("etcd set-up took over 120 s")
            lease = client.call("/v3/lease/grant", {"TTL": ttl})["ID"]
            ip = f"127.0.{(i // 65535 + 1) // 256 % 256}.{(i // 65535 + 1) % 256}"
            key = f"/bench/pop/svc-{i % 100:05d}/{ip}:{i % 65535 + 1}"
            client.call("/v3/kv/put", {"key": b64(key), "value": b64('{"healthy":true}'), "lease": lease})
            return lease

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            leases = list(pool.map(grant_and_put, range(population)))
            list(pool.map(lambda i: client.call("/v3/kv/put", {
                "key": b64(f"/bench/list100/127.0.0.1:{i + 1}"), "value": b64('{"healthy":true}')}), range(100)))
        setup_s = time.monotonic() - started
        lease_file = run.procs.log_dir / "etcd-leases.txt"
        lease_file.write_text("\n".join(str(x) for x in leases) + "\n")
        range_body = json.dumps({"key": b64("/bench/list100/"), "range_end": b64("/bench/list1000")})
        got = client.call("/v3/kv/range", json.loads(range_body))
        if int(got.get("count", 0)) != 100:
            raise RuntimeError(f"etcd range gave {got.get('count')} keys, not 100")

        rows = []
        put = run.wrk(client_url, "etcd_put",
                      {"prefix": "/bench/reg/", "services": run.s.register_services, "base": 0, "leases": lease_file},
                      name="wrk-etcd-put", measured=True)
        rows.append(run.throughput_row("etcd_register", ETCD_FIGURES[0][1], put,
                                       f"keys cycle over {population:,} leases"))
        keep = run.wrk(client_url, "etcd_keepalive", {"leases": lease_file}, name="wrk-etcd-keepalive", measured=True)
        rows.append(run.throughput_row("etcd_keepalive", f"{ETCD_FIGURES[1][1][:-1]}, {population:,} leases)", keep))
        rng = run.wrk(client_url + "/v3/kv/range", "fixed", {"body": range_body}, name="wrk-etcd-range", measured=True)
        rows.append(run.throughput_row("etcd_list_100", ETCD_FIGURES[2][1], rng))
        for r in rows:
            r.data["etcd"] = {"version": version, "data_dir_base": run.s.etcd_data_base, "setup_s": round(setup_s, 2)}
        rows[0].note += f"; {version}, data on {run.s.etcd_data_base}"
        return rows
    finally:
        run.procs.stop(proc, signal.SIGTERM, 20)
        shutil.rmtree(data_dir, ignore_errors=True)
