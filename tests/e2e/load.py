"""Fast HTTP load on loopback for the resource tests and the memory probe: raw HTTP/1.1
requests pipelined over a few keep-alive connections (aiohttp's server answers pipelined
requests in order), and a node process's RSS from /proc.

Pipelining lets one client thread drive a node at tens of thousands of small requests a second,
so filling a node with 100k services takes seconds, not minutes. Loopback only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from urllib.parse import urlencode

HOST = "127.0.0.1"


def rss_mb(pid: int) -> float:
    """The process's resident set (VmRSS), in MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def request(method: str, path: str, params: dict[str, str] | None = None, headers: dict[str, str] | None = None,
            form: dict[str, str] | None = None) -> bytes:
    """One raw HTTP/1.1 request (keep-alive), parameters in the query or in a form body."""
    target = path + ("?" + urlencode(params) if params else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST}"]
    body = b""
    if form is not None:
        body = urlencode(form).encode()
        lines.append("Content-Type: application/x-www-form-urlencoded")
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Answer:
    """A response's status and (unless dropped) body."""

    __slots__ = ("body", "size", "status")

    def __init__(self, status: int, size: int, body: bytes | None) -> None:
        self.status, self.size, self.body = status, size, body


async def _read_answer(reader: asyncio.StreamReader, keep_body: bool) -> Answer:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        lowered = name.strip().lower()
        if lowered == "content-length":
            length = int(value)
        elif lowered == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    parts: list[bytes] = []
    size = 0
    if chunked:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            chunk_size = int(size_line.split(b";")[0], 16)
            chunk = await reader.readexactly(chunk_size + 2)
            size += chunk_size
            if keep_body:
                parts.append(chunk[:-2])
            if chunk_size == 0:
                break
    elif length:
        remaining = length
        while remaining:
            chunk = await reader.read(min(remaining, 1 << 20))
            if not chunk:
                raise ConnectionError("connection closed mid-body")
            remaining -= len(chunk)
            size += len(chunk)
            if keep_body:
                parts.append(chunk)
    return Answer(status, size, b"".join(parts) if keep_body else None)


async def _pipeline(port: int, requests: Sequence[bytes], connections: int, depth: int, keep_bodies: bool,
                    timeout: float) -> list[Answer]:
    answers: list[Answer | None] = [None] * len(requests)
    cursor = 0

    async def worker() -> None:
        nonlocal cursor
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 24)
        try:
            while cursor < len(requests):
                start, cursor = cursor, min(cursor + depth, len(requests))
                end = cursor
                writer.write(b"".join(requests[start:end]))
                await writer.drain()
                for index in range(start, end):
                    answers[index] = await _read_answer(reader, keep_bodies)
        finally:
            writer.close()

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(connections))), timeout)
    return [a for a in answers if a is not None]


def pipeline(port: int, requests: Sequence[bytes], connections: int = 8, depth: int = 64,
             keep_bodies: bool = False, timeout: float = 120.0) -> list[Answer]:
    """Send `requests` to 127.0.0.1:`port` over `connections` keep-alive connections, `depth`
    requests in flight on each; the answers in request order. Bounded by `timeout` seconds."""
    return asyncio.run(_pipeline(port, requests, connections, depth, keep_bodies, timeout))


def register_services(port: int, count: int, prefix: str = "svc", namespace: str | None = None,
                      first_port: int = 1) -> float:
    """Register `count` services (`prefix-<i>`), one instance each (127.0.0.1, ports from
    `first_port`); fails unless every answer is 200; answers the seconds it took."""
    params = [{"serviceName": f"{prefix}-{i}", "ip": HOST, "port": str(first_port + i % 60000)} for i in range(count)]
    if namespace is not None:
        for p in params:
            p["namespaceId"] = namespace
    requests = [request("POST", "/nacos/v1/ns/instance", p) for p in params]
    started = time.monotonic()
    answers = pipeline(port, requests)
    statuses = {a.status for a in answers}
    if statuses != {200} or len(answers) != count:
        raise AssertionError(f"registering {count} services answered {statuses} ({len(answers)} answers)")
    return time.monotonic() - started


def list_requests(names: Iterable[str], extra: dict[str, str] | None = None,
                  headers: dict[str, str] | None = None) -> list[bytes]:
    return [request("GET", "/nacos/v1/ns/instance/list", {"serviceName": n, **(extra or {})}, headers) for n in names]
