"""A stop signal ends a node under push load within its bound, and the restart has everything.

Before (issue 14, finding 2): with 5,000 push subscribers and a steady trickle of changes the
push actor fell behind; on SIGTERM its stop queued behind the backlog, pykka.Timeout was raised
in the shutdown `finally`, the snapshot was never written and the process never exited (still
running 60 s later; after kill -9 it restarted empty). SIGHUP killed the node without saving.

Here: a few UDP sockets on 127.0.0.1 subscribe one service under 1,000 cluster lists each
(5,000 subscribers that never ack), each push renders the service for every list, and a
background client registers instances into it until the push actor is hundreds of messages
behind. Then the signal: the node must exit 0 within shutdown_timeout_ms (default 5 s) plus
slack, and a node started on the same --data-dir must list every service and every instance
whose registration was answered.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import sys
import threading
import time
import urllib.parse
from contextlib import ExitStack

import pytest

from tests.e2e.conftest import HOST, free_port
from tests.e2e.test_cluster import services_by_owner
from tests.e2e.push_support import JAVA_AGENT

pytestmark = pytest.mark.e2e

NS = "/nacos/v1/ns"
HOT = "hot"
SOCKETS = 5
CLUSTER_LISTS = 1_000  # per socket: 5,000 subscribers of one service
PREFILL = 200  # instances in the hot service, so each push renders a real list
OTHER_SERVICES = 20
BACKLOG = 300  # push messages behind before the signal
LOAD_LIMIT_S = 45.0  # stop loading after this even if the push actor keeps up
DEFAULT_SHUTDOWN_S = 5.0  # shutdown_timeout_ms's default: the test passes no flag for it
SLACK_S = 4.0  # for a shared, loaded machine


class Client:
    """One keep-alive HTTP connection to the node, as a Java client would poll and write."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection(HOST, port, timeout=10)

    def call(self, method: str, path: str, agent: str | None = None, **params: object) -> tuple[int, bytes]:
        query = urllib.parse.urlencode(params)
        self.connection.request(method, f"{path}?{query}", headers={"User-Agent": agent} if agent else {})
        response = self.connection.getresponse()
        return response.status, response.read()

    def register(self, service: str, port: int) -> None:
        assert self.call("POST", f"{NS}/instance", serviceName=service, ip="127.0.0.1", port=port) == (200, b"ok")

    def close(self) -> None:
        self.connection.close()


def push_backlog(client: Client) -> float:
    """Messages waiting in the push actor's mailbox, from the node's metrics."""
    status, body = client.call("GET", "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith('nacos_actors_actor_mailbox_depth{actor="push"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class Trickle(threading.Thread):
    """Registers a new instance into the hot service after every answer, until stopped or the
    node goes away; remembers the ports whose registration was answered `ok`."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.client = Client(port)
        self.acked: list[int] = []
        self.halt = threading.Event()

    def run(self) -> None:
        port = 20_000
        while not self.halt.is_set():
            port += 1
            try:
                status, body = self.client.call(
                    "POST", f"{NS}/instance", serviceName=HOT, ip="127.0.0.1", port=port
                )
            except (OSError, http.client.HTTPException):
                return
            if (status, body) == (200, b"ok"):
                self.acked.append(port)
            time.sleep(0.01)


def load_until_behind(node, stack: ExitStack) -> tuple[Trickle, float]:
    """Subscribe 5,000 push subscribers, fill the hot service, register into it until the push
    actor is BACKLOG messages behind (or LOAD_LIMIT_S pass); the trickle keeps going."""
    client = Client(node.port)
    stack.callback(client.close)
    for index in range(OTHER_SERVICES):
        client.register(f"kept-{index}", 8000 + index)
    for _ in range(SOCKETS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stack.callback(sock.close)
        sock.bind((HOST, 0))
        for index in range(CLUSTER_LISTS):
            status, _ = client.call(
                "GET", f"{NS}/instance/list", agent=JAVA_AGENT,
                serviceName=HOT, udpPort=sock.getsockname()[1], clusters=f"DEFAULT,c{index}",
            )
            assert status == 200
    for index in range(PREFILL):
        client.register(HOT, 1000 + index)
    trickle = Trickle(node.port)
    stack.callback(trickle.client.close)
    stack.callback(trickle.halt.set)
    trickle.start()
    deadline = time.monotonic() + LOAD_LIMIT_S
    backlog = push_backlog(client)
    while backlog < BACKLOG and time.monotonic() < deadline:
        time.sleep(0.5)
        backlog = push_backlog(client)
    return trickle, backlog


def listed_services(node) -> set[str]:
    client = Client(node.port)
    try:
        status, body = client.call("GET", f"{NS}/service/list", pageNo=1, pageSize=1000)
        assert status == 200
        return set(json.loads(body)["doms"])
    finally:
        client.close()


def instance_ports(node, service: str) -> set[int]:
    client = Client(node.port)
    try:
        status, body = client.call("GET", f"{NS}/instance/list", serviceName=service)
        assert status == 200
        return {host["port"] for host in json.loads(body)["hosts"]}
    finally:
        client.close()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_under_push_load_ends_the_node_in_time_and_keeps_every_service(
    start_node, tmp_path, signum, capsys
):
    data = tmp_path / "data"
    # The node must see SIGHUP's default disposition even if the tests run under nohup.
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        node = start_node("--data-dir", str(data), "--push-cache-ms", "120000", "--health-check-enabled", "false")
    finally:
        signal.signal(signal.SIGHUP, previous)
    with ExitStack() as stack:
        trickle, backlog = load_until_behind(node, stack)
        sent = time.monotonic()
        node.process.send_signal(signum)
        try:
            code = node.process.wait(DEFAULT_SHUTDOWN_S + SLACK_S)
        except Exception:
            node.kill()
            pytest.fail(
                f"still running {DEFAULT_SHUTDOWN_S + SLACK_S} s after {signum.name} "
                f"(push backlog {backlog:.0f}); killed:\n{node.stderr()[-3000:]}"
            )
        took = time.monotonic() - sent
        trickle.halt.set()
        trickle.join(10)
    with capsys.disabled():
        print(f"\n{signum.name} with a push backlog of {backlog:.0f} messages: exit {code} after {took:.2f} s")
    assert code == 0, node.stderr()[-3000:]
    assert "Traceback" not in node.stderr()
    assert "saved " in node.stderr()

    restarted = start_node("--data-dir", str(data), "--health-check-enabled", "false")
    expected = {f"kept-{index}" for index in range(OTHER_SERVICES)} | {HOT}
    assert expected <= listed_services(restarted)
    ports = instance_ports(restarted, HOT)
    assert set(range(1000, 1000 + PREFILL)) <= ports
    assert set(trickle.acked) <= ports, "an answered registration was lost"


NOHUP = (
    "import signal; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
    "from nacos_actors.cli import entry_point; entry_point()"
)


def test_under_nohup_a_hangup_does_not_stop_the_node(start_node):
    port = free_port()
    node = start_node(command=[sys.executable, "-c", NOHUP, "serve", "--port", str(port)], port=port)
    node.process.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert node.process.poll() is None
    assert node.get("/nacos/v1/console/health/liveness")[0] == 200
    assert node.stop(signal.SIGTERM) == 0


@pytest.mark.timeout(120)
def test_a_cluster_member_whose_peer_hangs_still_stops_within_its_bound(start_cluster, capsys):
    """The peer is frozen (SIGSTOP: its connections hang, nothing is refused), and the leaving
    member has changes Distro cannot send: the drain and the goodbye each end at their share
    of shutdown_timeout_ms, and the member exits 0 in time."""
    cluster = start_cluster(2, "--shutdown-timeout-ms", "2000")
    leaving, frozen = cluster.nodes
    owned = services_by_owner(cluster.nodes, "frozen", 3)[leaving.address]
    frozen.process.send_signal(signal.SIGSTOP)
    try:
        client = Client(leaving.port)
        try:
            for index, service in enumerate(owned):
                client.register(service, 9000 + index)
        finally:
            client.close()
        sent = time.monotonic()
        leaving.process.send_signal(signal.SIGTERM)
        code = leaving.wait_exit(2.0 + SLACK_S)
        took = time.monotonic() - sent
    finally:
        frozen.process.send_signal(signal.SIGCONT)
    with capsys.disabled():
        print(f"\nSIGTERM of a member whose peer is frozen: exit {code} after {took:.2f} s")
    assert code == 0, leaving.stderr()[-3000:]
    assert "Traceback" not in leaving.stderr()
