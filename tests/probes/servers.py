"""Real servers on 127.0.0.1 (and ::1 where the host has it) for the probe tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from nacos_actors.core.probing import ProbeTarget

HOST = "127.0.0.1"
HOST6 = "::1"


def has_ipv6_loopback() -> bool:
    """Whether ::1 can be bound here (some containers have no IPv6)."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind((HOST6, 0))
        return True
    except OSError:
        return False


def closed_port(host: str = HOST) -> int:
    """A port nothing listens on (bound for a moment, then released): connects are refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def target(
    kind: str, port: int, ip: str = HOST, timeout_ms: int = 2_000, probe_id: int = 1, **fields: object
) -> ProbeTarget:
    """A probe of `kind` to ip:port (test defaults: a generous timeout)."""
    return ProbeTarget(probe_id=probe_id, kind=kind, ip=ip, port=port, timeout_ms=timeout_ms, **fields)  # type: ignore[arg-type]


@dataclass
class Listener:
    """A TCP server that accepts and keeps each connection until the peer closes it, never
    sending a byte (an HTTP or MySQL server that never answers). Counts what it saw."""

    port: int = 0
    accepted: int = 0
    closed_by_peer: int = 0
    received: bytearray = field(default_factory=bytearray)
    open_connections: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open_connections += 1
        try:
            while data := await reader.read(4096):
                self.received += data
            self.closed_by_peer += 1
        except ConnectionError:
            self.closed_by_peer += 1
        finally:
            self.open_connections -= 1
            writer.close()


@contextlib.asynccontextmanager
async def silent_listener(host: str = HOST) -> AsyncIterator[Listener]:
    """A Listener on host, port chosen by the system."""
    listener = Listener()
    server = await asyncio.start_server(listener.handle, host, 0, backlog=1024)
    listener.port = server.sockets[0].getsockname()[1]
    try:
        yield listener
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A port whose listen queue is full: the kernel drops further SYNs, so a connect hangs
    (until the probe's timeout)."""
    with socket.socket() as listening, socket.socket() as queued:
        listening.bind((HOST, 0))
        listening.listen(0)
        port = int(listening.getsockname()[1])
        queued.connect((HOST, port))  # fills the queue (backlog 0 holds one)
        yield port
