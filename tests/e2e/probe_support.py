"""What the probe tests point persistent instances at: a TCP listener and an HTTP server on
loopback that can be closed and opened again on the same port, and how to read an instance's
health as a member holds it (not through the protect threshold of /instance/list)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.e2e.raft_support import Addressed, send

NS = "/nacos/v1/ns"
HOST = "127.0.0.1"


class Listener:
    """A TCP port on 127.0.0.1 that accepts connections (and closes them at once) while open."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.accepted = 0

    def open(self) -> Listener:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self.port))
        sock.listen(256)
        sock.settimeout(0.2)
        self.port = sock.getsockname()[1]
        self._socket = sock
        self._thread = threading.Thread(target=self._accept, args=(sock,), daemon=True)
        self._thread.start()
        return self

    def _accept(self, sock: socket.socket) -> None:
        while self._socket is sock:
            try:
                connection, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            connection.close()

    def close(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()
        if self._thread is not None:
            self._thread.join(2)


class HealthServer:
    """An HTTP server on 127.0.0.1 answering every GET with `status`; remembers each request's
    path and headers."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[str, dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append((self.path, dict(self.headers.items())))
                self.send_response(owner.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def register_persistent(node: Addressed, service: str, port: int, cluster: str = "DEFAULT", ip: str = HOST) -> None:
    status, body = send(
        node,
        "POST",
        f"{NS}/instance",
        serviceName=service,
        ip=ip,
        port=port,
        clusterName=cluster,
        ephemeral="false",
    )
    assert (status, body) == (200, b"ok"), (status, body)


def set_checker(node: Addressed, service: str, checker: dict[str, Any], cluster: str = "DEFAULT", **extra: Any) -> None:
    status, body = send(
        node,
        "PUT",
        f"{NS}/cluster",
        serviceName=service,
        clusterName=cluster,
        healthChecker=json.dumps(checker),
        **{"checkPort": 80, "useInstancePort4Check": "true", **extra},
    )
    assert (status, body) == (200, b"ok"), (status, body)


def health_of(node: Addressed, service: str, port: int, cluster: str = "DEFAULT", ip: str = HOST) -> bool | None:
    """The instance's health as GET /v1/ns/catalog/instances shows it (None: not listed)."""
    try:
        status, body = send(
            node, "GET", f"{NS}/catalog/instances", serviceName=service, clusterName=cluster, pageNo=1, pageSize=100
        )
    except OSError:
        return None
    if status != 200:
        return None
    for host in json.loads(body)["list"]:
        if host["ip"] == ip and host["port"] == port:
            return bool(host["healthy"])
    return None


def wait_for_health(
    nodes: list[Any], service: str, port: int, healthy: bool, timeout: float, cluster: str = "DEFAULT"
) -> float:
    """Seconds until every node in `nodes` shows the instance with `healthy`; AssertionError
    naming what each node shows after `timeout`."""
    started = time.monotonic()
    while True:
        seen = [health_of(node, service, port, cluster) for node in nodes]
        if all(value is healthy for value in seen):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not {'healthy' if healthy else 'unhealthy'} within {timeout} s: {seen}")
        time.sleep(0.05)


def monitor(node: Addressed, name: str) -> float:
    """nacos_monitor{module="naming",name=...} from the node's /metrics."""
    status, body = send(node, "GET", "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith("nacos_monitor{") and f'name="{name}"' in line:
            return float(line.split()[-1])
    raise AssertionError(f"nacos_monitor {name} not exported")
