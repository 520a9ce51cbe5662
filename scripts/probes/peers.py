#!/usr/bin/env python3
"""Outside probe of issue 14's peer findings (1 and 8), on loopback only: prints one figure per
check, so the same command measures a checkout before and after a change.

    .venv/bin/python scripts/probes/peers.py [--repo DIR]   # DIR: the checkout to run (default: this one)

It starts nodes from DIR (`python -m nacos_actors serve`, free 127.0.0.1 ports, stopped at the
end) and acts as a local process that is not a member:

- cluster: whether a 2-member cluster starts without a secret (if it refuses, the rest runs
  with one); then, with only the member header (no secret, no signature), the four peer
  endpoints and a forged `Nacos-Actors-Forwarded` client write; then a peer batch signed as a
  member would (secret header and HMAC signature, so a buggy or compromised member) carrying
  six invalid values.
- data file: a node started on a data file with invalid values (port -1, NaN weight, namespace
  `../../etc`).
- input rules (standalone node): control characters in metadata, `app` and discovery labels,
  percent-encoded bytes that are not UTF-8 in metadata, and a full beat with `ephemeral:false`
  on a persistent instance made unhealthy by hand.

Needs msgpack (the project's dependency). Standard library otherwise, so it runs against any
checkout; it signs with the scheme docs/design.md and nacos_actors/core/peer_auth.py describe.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import msgpack
from common import free_port, free_ports, grpc_off_args, member_list, side_port_args, stop_node

HOST = "127.0.0.1"
PYTHON = sys.executable
SECRET = "probe-secret-0123456789abcdef"
NS = "/nacos/v1/ns"



class Node:
    def __init__(self, repo: Path, port: int, *args: str) -> None:
        self.port = port
        self.address = f"{HOST}:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix=f"probe-{port}-", suffix=".log", delete=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NACOS_ACTORS_")}
        self.process = subprocess.Popen(
            [PYTHON, "-m", "nacos_actors", "serve", "--port", str(port), *args],
            cwd=repo,
            env=env,
            stdout=self.log,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
        )

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait(self, path: str = "/nacos/v1/console/health/liveness", timeout: float = 20.0) -> bool:
        """True once `path` answers 200; False if the process exits first or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if request(self, "GET", path)[0] == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        stop_node(self.process, 10)


def request(node: Node, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None):
    """(status, body bytes) of one request to `node`."""
    req = urllib.request.Request(f"http://{node.address}{path}", data=body or None, method=method)
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def query(**params: str) -> str:
    return urllib.parse.urlencode(params)


def signed(member: str, method: str, path: str, body: bytes) -> dict[str, str]:
    """Headers a member with SECRET sends: the old shared-secret header and the HMAC signature."""
    timestamp = str(int(time.time() * 1000))
    canonical = "\n".join(("nacos-actors-peer-v1", method, path, member, timestamp, hashlib.sha256(body).hexdigest()))
    signature = hmac.new(SECRET.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    return {
        "Nacos-Actors-Member": member,
        "Nacos-Actors-Secret": SECRET,
        "Nacos-Actors-Timestamp": timestamp,
        "Nacos-Actors-Signature": f"v1={signature}",
    }


def instance_record(ip, port, weight=1.0, cluster="DEFAULT", metadata=None, app="DEFAULT"):
    return [ip, port, cluster, weight, True, True, True, metadata or {}, app, False, f"{ip}#{port}"]


def service_record(namespace, name, instances, revision=1):
    return [namespace, name, 0.0, {}, ["none", ""], False, revision, int(time.time() * 1000), instances, []]


def hosts(node: Node, service: str, namespace: str = "public") -> list[dict]:
    status, body = request(node, "GET", f"{NS}/instance/list?" + query(serviceName=service, namespaceId=namespace))
    return json.loads(body).get("hosts", []) if status == 200 else []


# -- finding 1: the cluster ----------------------------------------------------------------


def probe_cluster(repo: Path) -> None:
    ports = free_ports(2)
    members = member_list(repo, ports)
    nodes = [Node(repo, p, "--members", members, *grpc_off_args(repo)) for p in ports]
    started = [n.wait() for n in nodes]
    if all(started):
        print("cluster without a secret: starts (2/2 members serve)")
        try:
            wait_up(*nodes)
            probe_outsider(*nodes)
        finally:
            for node in nodes:
                node.stop()
    else:
        for node in nodes:
            node.stop()
        reason = next((n.output().strip().splitlines()[-1] for n in nodes if n.output().strip()), "?")
        print(f"cluster without a secret: refused to start ({sum(started)}/2 serve): {reason}")
    nodes = [Node(repo, p, "--members", members, "--cluster-secret", SECRET, *grpc_off_args(repo)) for p in ports]
    try:
        if not all(n.wait() for n in nodes):
            print("cluster with a secret did not start:", [n.output()[-400:] for n in nodes])
            return
        print("cluster with a secret:")
        wait_up(*nodes)
        probe_outsider(*nodes)
        probe_forwarded(*nodes)
        probe_batch_values(*nodes)
    finally:
        for node in nodes:
            node.stop()


def probe_outsider(a: Node, b: Node) -> None:
    """The four peer endpoints of A, called by a local process that names B in the member header."""
    forged = {"Nacos-Actors-Member": b.address}  # what any local process can send
    accepted = 0
    status, body = request(a, "GET", f"{NS}/distro/datums", headers=forged)
    accepted += status == 200
    print(f"  outsider GET distro/datums (every namespace): {status}, {len(body)} bytes")
    batch = msgpack.packb(
        {
            "version": 2,
            "sender": b.address,
            "force": True,
            "services": [service_record("public", "DEFAULT_GROUP@@injected", [instance_record("127.0.0.9", 80)])],
            "tombstones": [],
        }
    )
    status, _ = request(a, "PUT", f"{NS}/distro/datum", batch, forged)
    accepted += status == 200
    print(f"  outsider PUT distro/datum (forced batch): {status}; stored on A: {bool(hosts(a, 'injected'))}")
    report = msgpack.packb({"version": 2, "address": b.address, "state": "DOWN"})
    changes = ("nacos_actors_member_state_changes_total", f'member="{b.address}"', 'state="DOWN"')
    downs = metric(a, *changes)
    status, _ = request(a, "POST", "/nacos/v1/core/cluster/report", report, forged)
    time.sleep(0.2)
    accepted += status == 200
    print(
        f"  outsider POST cluster/report (B is DOWN): {status}; A marked the live B DOWN: {metric(a, *changes) > downs}"
    )
    wait_up(a, b)
    digests = msgpack.packb({"version": 2, "sender": b.address, "healthy": [a.address, b.address], "digests": []})
    status, _ = request(a, "PUT", f"{NS}/distro/checksum", digests, forged)
    accepted += status == 200
    print(f"  outsider PUT distro/checksum: {status}")
    print(f"  outsider peer calls accepted: {accepted}/4")


def metric(node: Node, name: str, *labels: str) -> float:
    """One sample of `node`'s metrics whose line has every one of `labels` (0 when absent)."""
    _, body = request(node, "GET", "/nacos/actuator/prometheus")
    for line in body.decode().splitlines():
        if line.startswith(name + "{") and all(label in line for label in labels):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def forwarded_ok(node: Node) -> float:
    return metric(node, "nacos_actors_distro_forwarded_requests_total", 'outcome="ok"')


def probe_forwarded(a: Node, b: Node) -> None:
    """A client write for a service B owns, sent to A with a forged Nacos-Actors-Forwarded."""
    owned_by_b = next(f"fwd-{i}" for i in range(1000) if owner(a, f"fwd-{i}") == b.address)
    path = f"{NS}/instance?" + query(serviceName=owned_by_b, ip="127.0.0.8", port="80")
    before = forwarded_ok(a)
    status, text = request(a, "POST", path, headers={"Nacos-Actors-Forwarded": b.address})
    honoured = status == 200 and forwarded_ok(a) == before
    print(
        f"  forged Nacos-Actors-Forwarded: {status} {text[:80]!r}; "
        f"written on the non-owner without forwarding (header honoured): {honoured}"
    )


def wait_up(a: Node, b: Node, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if member_state(a, b.address) == "UP" and member_state(b, a.address) == "UP":
            status, body = request(a, "GET", f"{NS}/operator/metrics")
            if status == 200 and json.loads(body)["status"] == "UP":
                return
        time.sleep(0.1)


def member_state(node: Node, address: str) -> str:
    status, body = request(node, "GET", "/nacos/v1/core/cluster/nodes")
    rows = json.loads(body)["data"] if status == 200 else []
    return next((r["state"] for r in rows if r["address"] == address), "?")


def owner(node: Node, service: str) -> str:
    _, body = request(node, "GET", f"{NS}/operator/distro/server?" + query(serviceName=service))
    return json.loads(body)["responsibleServer"]


def probe_batch_values(a: Node, b: Node) -> None:
    """A batch as a (buggy or compromised) member signs it, with six invalid values."""
    bad = [
        ("public", "DEFAULT_GROUP@@bad-ip", instance_record("not an ip!!", 80)),
        ("public", "DEFAULT_GROUP@@port-zero", instance_record("127.0.0.1", 0)),
        ("public", "DEFAULT_GROUP@@port-negative", instance_record("127.0.0.1", -5)),
        ("public", "DEFAULT_GROUP@@nan-weight", instance_record("127.0.0.1", 80, weight=math.nan)),
        ("../../etc", "DEFAULT_GROUP@@passwd", instance_record("127.0.0.1", 80)),
        ("public", "DEFAULT_GROUP@@nul\x00name", instance_record("127.0.0.1", 80)),
    ]
    statuses = []
    for namespace, name, record in bad:
        body = msgpack.packb(
            {
                "version": 2,
                "sender": b.address,
                "force": True,
                "services": [service_record(namespace, name, [record])],
                "tombstones": [],
            }
        )
        path = f"{NS}/distro/datum"
        status, text = request(a, "PUT", path, body, signed(b.address, "PUT", path, body))
        statuses.append(status)
        if status != 200:
            print(f"    refused {status}: {text.decode(errors='replace')[:160]}")
    path = f"{NS}/distro/datums"
    status, body = request(a, "GET", path, headers=signed(b.address, "GET", path, b""))
    held = {(r[0], r[1]): r[8] for r in msgpack.unpackb(body)["services"]} if status == 200 else {}
    stored = [(ns, name) for ns, name, _ in bad if (ns, name) in held]
    for key in stored:
        print(f"    stored: {key[0]}/{key[1]!r}: {held[key]}")
    listed = hosts(a, "nan-weight")
    if listed:
        print(f"    nan-weight served as: weight {json.dumps(listed[0]['weight'])}")
    print(f"  signed peer batch with invalid values: statuses {statuses}; stored {len(stored)}/6")


# -- finding 1: the data file ----------------------------------------------------------------


def probe_data_file(repo: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="probe-data-") as data_dir:
        document = {
            "version": 2,
            "services": [
                service_record("public", "DEFAULT_GROUP@@negative-port", [instance_record("127.0.0.1", -1)]),
                service_record("public", "DEFAULT_GROUP@@nan", [instance_record("127.0.0.1", 80, weight=math.nan)]),
                service_record("../../etc", "DEFAULT_GROUP@@passwd", [instance_record("127.0.0.1", 80)]),
            ],
        }
        (Path(data_dir) / "registry.msgpack").write_bytes(msgpack.packb(document))
        port = free_port()
        node = Node(repo, port, *side_port_args(repo, port), "--data-dir", data_dir)
        try:
            if node.wait():
                served = sum(bool(hosts(node, n)) for n in ("negative-port", "nan"))
                status, body = request(node, "GET", "/nacos/v1/console/namespaces")
                spaces = [n["namespace"] for n in json.loads(body)["data"]] if status == 200 else []
                served += "../../etc" in spaces
                print(f"data file with invalid values: loaded; {served}/3 invalid entries served (namespaces {spaces})")
            else:
                node.process.wait(10)
                last = node.output().strip().splitlines()[-1:] or ["?"]
                print(f"data file with invalid values: refused, exit {node.process.returncode}: {last[0]}")
        finally:
            node.stop()


# -- finding 8: input rules ------------------------------------------------------------------


def probe_inputs(repo: Path) -> None:
    port = free_port()
    node = Node(repo, port, *side_port_args(repo, port))
    try:
        if not node.wait():
            print("standalone node did not start:", node.output()[-400:])
            return
        cases = [
            (
                "NUL in a metadata value",
                query(serviceName="ctl", ip="127.0.0.1", port="1", metadata='{"k":"a\\u0000b"}'),
            ),
            ("newline in a metadata key", query(serviceName="ctl", ip="127.0.0.1", port="2", metadata="k\nx=v")),
            ("ESC in app", query(serviceName="ctl", ip="127.0.0.1", port="3", app="a\x1bb")),
            (
                "non-UTF-8 %FF in metadata",
                query(serviceName="ctl", ip="127.0.0.1", port="4") + "&metadata=k%3Dv%FF",
            ),
        ]
        refused = 0
        for what, qs in cases:
            status, body = request(node, "POST", f"{NS}/instance?{qs}")
            refused += status == 400
            print(f"  {what}: {status} {body.decode(errors='replace')[:100]!r}")
        stored = {h["port"]: h["metadata"] for h in hosts(node, "ctl")}
        print(f"  control characters / bad UTF-8 refused: {refused}/4; stored: {stored}")
        status, body = request(node, "GET", "/nacos/prometheus")
        groups = [t["labels"] for t in json.loads(body)] if status == 200 else []
        dirty = sum(any(ord(c) < 32 for value in group.values() for c in value) for group in groups)
        print(f"  discovery labels carrying control characters: {dirty}")
        probe_persistent_beat(node)
    finally:
        node.stop()


def probe_persistent_beat(node: Node) -> None:
    service = "persistent-beat"
    request(node, "POST", f"{NS}/service?" + query(serviceName=service))
    cluster = query(
        serviceName=service,
        clusterName="DEFAULT",
        checkPort="80",
        useInstancePort4Check="true",
        healthChecker='{"type":"NONE"}',
    )
    request(node, "PUT", f"{NS}/cluster?{cluster}")
    request(node, "POST", f"{NS}/instance?" + query(serviceName=service, ip="127.0.0.7", port="80", ephemeral="false"))
    request(
        node, "PUT", f"{NS}/health/instance?" + query(serviceName=service, ip="127.0.0.7", port="80", healthy="false")
    )
    detail = f"{NS}/instance?" + query(serviceName=service, ip="127.0.0.7", port="80")
    before = json.loads(request(node, "GET", detail)[1])["healthy"]
    beat = json.dumps({"ip": "127.0.0.7", "port": 80, "ephemeral": False, "serviceName": service})
    status, body = request(node, "PUT", f"{NS}/instance/beat?" + query(serviceName=service, beat=beat))
    after = json.loads(request(node, "GET", detail)[1])["healthy"]
    print(
        f"  ephemeral:false beat on a persistent instance set unhealthy by hand: {status} {body[:60]!r}; healthy {before} -> {after}"
    )
    unknown = json.dumps({"ip": "127.0.0.6", "port": 80, "ephemeral": False, "serviceName": "fresh"})
    status, body = request(node, "PUT", f"{NS}/instance/beat?" + query(serviceName="fresh", beat=unknown))
    print(
        f"  ephemeral:false beat for an unknown instance: {status} {body[:60]!r}; registered: {[(h['ip'], h['ephemeral']) for h in hosts(node, 'fresh')]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[2])
    repo = parser.parse_args().repo.resolve()
    print(f"probing {repo}")
    probe_cluster(repo)
    probe_data_file(repo)
    print("input rules (standalone):")
    probe_inputs(repo)


if __name__ == "__main__":
    main()
