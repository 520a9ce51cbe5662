"""HTTP connection limits on a real node (uvloop), with raw sockets on 127.0.0.1.

Before (issue 14, finding 7): 2,000 idle connections and 200 slowloris connections were all
held; under the common 1,024 open-file limit about 1,000 idle connections took the node down
(a normal client's connection was reset) with nothing logged; the node answered
`100 Continue` to a Content-Length it would refuse.
"""

from __future__ import annotations

import http.client
import resource
import socket
import sys
import time

import pytest

from tests.e2e.conftest import HOST, free_port

pytestmark = pytest.mark.e2e

LIVENESS = "/nacos/v1/console/health/liveness"


def settings(**values: int) -> dict[str, str]:
    """Settings as NACOS_ACTORS_* variables: a node that does not know one ignores it (where a
    flag would stop it), so against an older node these tests fail on the behaviour itself."""
    return {f"NACOS_ACTORS_{name.upper()}": str(value) for name, value in values.items()}


def connect(node, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection((HOST, node.port), timeout=timeout)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the node closed `sock` (whatever it wrote first is read and dropped)."""
    sock.setblocking(False)
    try:
        while True:
            if sock.recv(65536) == b"":
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def wait_closed(sock: socket.socket, timeout: float) -> float | None:
    """Seconds until the node closed `sock`, or None if it stayed open for `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if closed_by_server(sock):
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def liveness(node) -> int:
    """A normal client's request on a fresh connection: its status."""
    connection = http.client.HTTPConnection(HOST, node.port, timeout=5)
    try:
        connection.request("GET", LIVENESS)
        return connection.getresponse().status
    finally:
        connection.close()


def metric(node, line_start: str) -> float:
    status, body = node.get("/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {line_start} in the metrics")


def test_connections_beyond_the_cap_never_lock_a_normal_client_out(start_node):
    node = start_node(env=settings(max_connections=20, idle_timeout_ms=60_000))
    idle = [connect(node) for _ in range(30)]
    try:
        time.sleep(0.5)
        # The node holds at most 20 at once: the 10 that waited longest were closed for newer ones.
        assert sum(closed_by_server(sock) for sock in idle) >= 10
        assert all(not closed_by_server(sock) for sock in idle[-10:])
        assert liveness(node) == 200
        assert metric(node, "nacos_actors_connections_open") <= 20
        assert metric(node, 'nacos_actors_connections_rejected_total{reason="evicted"}') >= 10
        assert "for a new one: 20 are open (max_connections)" in node.stderr()
    finally:
        for sock in idle:
            sock.close()


def test_a_slowloris_is_answered_408_and_closed_within_the_header_timeout(start_node):
    node = start_node(env=settings(header_timeout_ms=1000, idle_timeout_ms=60_000))
    slow = connect(node)
    try:
        request = b"GET " + LIVENESS.encode() + b" HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        started = time.monotonic()
        answer = b""
        slow.settimeout(0.1)
        for byte in request:  # a byte every 0.1 s: the headers would take 100 s
            if time.monotonic() - started > 10:
                break
            try:
                slow.sendall(bytes([byte]))
                chunk = slow.recv(4096)
            except TimeoutError:
                continue
            except OSError:  # closed: what it answered may still be waiting to be read
                try:
                    answer += slow.recv(4096)
                except OSError:
                    pass
                break
            answer += chunk
            if not chunk:
                break
        took = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert took < 4.0
        assert liveness(node) == 200
        assert metric(node, 'nacos_actors_connections_rejected_total{reason="header_timeout"}') == 1
    finally:
        slow.close()


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(start_node):
    node = start_node(env=settings(idle_timeout_ms=1000))
    busy = http.client.HTTPConnection(HOST, node.port, timeout=5)
    kept = http.client.HTTPConnection(HOST, node.port, timeout=5)
    try:
        for connection in (busy, kept):
            connection.request("GET", LIVENESS)
            assert connection.getresponse().read() == b"OK"
        started = time.monotonic()
        # `busy` asks every 0.3 s: never idle for a second, so it stays open throughout.
        while time.monotonic() - started < 2.5:
            time.sleep(0.3)
            busy.request("GET", LIVENESS)
            assert busy.getresponse().read() == b"OK"
        assert kept.sock is not None and closed_by_server(kept.sock)
        assert metric(node, "nacos_actors_connections_idle_closed_total") >= 1
        # a fresh connection that never sends anything is idle too
        silent = connect(node)
        try:
            closed_after = wait_closed(silent, 5.0)
            assert closed_after is not None and closed_after < 4.0
        finally:
            silent.close()
    finally:
        busy.close()
        kept.close()


def expect_continue(node, length: int) -> bytes:
    """Headers announcing a `length`-byte form body with Expect: 100-continue; what the node
    answers before any body is sent."""
    with connect(node) as sock:
        sock.sendall(
            b"POST /nacos/v1/ns/instance HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            + f"Content-Length: {length}\r\n".encode()
            + b"Expect: 100-continue\r\n\r\n"
        )
        answer = sock.recv(4096)
        if answer.startswith(b"HTTP/1.1 100 "):
            body = b"serviceName=expected&ip=127.0.0.1&port=1"
            sock.sendall(body + b"&x=" + b"y" * (length - len(body) - 3))
            while b"\r\n\r\n" not in answer.partition(b"\r\n\r\n")[2]:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        return answer


def test_100_continue_only_for_a_body_within_the_limit(start_node):
    node = start_node("--max-body-bytes", "1000")
    refused = expect_continue(node, 100_000_000)
    assert refused.startswith(b"HTTP/1.1 413 "), refused[:200]
    assert b"100 Continue" not in refused
    assert b"the limit (max_body_bytes) is 1000" in refused
    accepted = expect_continue(node, 1000)
    assert accepted.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 "), accepted[:200]
    assert b"\r\n\r\nok" in accepted


NOFILE = 1024
LAUNCH_UNDER_NOFILE = (
    "import resource, sys; "
    f"resource.setrlimit(resource.RLIMIT_NOFILE, ({NOFILE}, {NOFILE})); "
    "from nacos_actors.cli import entry_point; entry_point()"
)


def test_under_a_1024_file_limit_1100_idle_connections_do_not_take_the_node_down(start_node):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1400:
        pytest.skip(f"this test process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1400), hard))
    try:
        port = free_port()
        node = start_node(
            command=[sys.executable, "-c", LAUNCH_UNDER_NOFILE, "serve", "--port", str(port)], port=port
        )
        held = []
        try:
            for _ in range(1100):
                held.append(connect(node))
            assert liveness(node) == 200
            assert "max_connections lowered from 4096 to 768: the open-file limit is 1024" in node.stderr()
            assert metric(node, "nacos_actors_connections_open") <= 768
        finally:
            for sock in held:
                sock.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
