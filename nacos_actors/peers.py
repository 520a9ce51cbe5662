"""The node's HTTP client to its peers: member reports, Distro batches and digests, snapshot
loads and forwarded client writes, all over one aiohttp session on the event loop.

Drivers never wait on it: the bridge (nacos_actors.bridge.ActorOutbox) runs their PeerCalls on
it and tells them each outcome as a message. Every request carries this node's address, the
time and an HMAC signature with the cluster secret (nacos_actors.core.peer_auth), so the peer
can tell a member from a stranger; the secret itself never travels.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from nacos_actors.clock import wall_clock_ms
from nacos_actors.core.peer_auth import signed_headers

log = logging.getLogger(__name__)

FORWARDED_HEADER = "Nacos-Actors-Forwarded"
# Headers of ours a client may not pass on: a forwarded request carries this member's own.
OUR_HEADER_PREFIX = "nacos-actors-"
MSGPACK = "application/msgpack"
# Not copied when a client request is forwarded: aiohttp sets these itself.
HOP_HEADERS = frozenset(
    h.lower()
    for h in (
        "Host",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Keep-Alive",
        "Content-Encoding",
        "Accept-Encoding",
    )
)


class PeerError(Exception):
    """A peer request that got no usable answer; `refused` when the connection was refused."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


def is_refused(error: BaseException) -> bool:
    """Whether a client error means nothing listens there (a dead peer, not a slow one)."""
    if isinstance(error, aiohttp.ClientConnectorError):
        return error.os_error.errno in (errno.ECONNREFUSED, errno.ECONNRESET) or "refused" in str(error).lower()
    return isinstance(error, ConnectionRefusedError)


class PeerLink:
    """One aiohttp session to every peer; every request signed with `secret` at the time
    `clock` tells (wall-clock ms, as the receiver's). Loop thread only."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        self_address: str,
        context_path: str,
        secret: str,
        timeout_s: float,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.loop = loop
        self.self_address = self_address
        self._context_path = context_path
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 1.0))
        self._secret = secret
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def async_spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run `coroutine` as a task the link keeps (and cancels when it closes). Loop thread."""
        if self._closed:
            coroutine.close()
            return
        task = self.loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def async_session(self) -> aiohttp.ClientSession:
        """The shared session (made on first use, on the loop)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit_per_host=8, force_close=False)
            )
        return self._session

    def url(self, peer: str, target: str) -> URL:
        """`http://peer` + `target` (a path with its query, already percent-encoded), sent as it
        is: the request target the receiver sees is the one signed."""
        return URL(f"http://{peer}{target}", encoded=True)

    def signed(self, method: str, url: URL, body: bytes) -> dict[str, str]:
        """The member, time and signature headers of a call to `url`."""
        return signed_headers(self._secret, method, url.raw_path_qs, self.self_address, self._clock(), body)

    async def async_call(
        self, method: str, peer: str, path: str, body: bytes = b"", timeout_s: float | None = None
    ) -> tuple[int, bytes]:
        """One signed msgpack request to a peer (`path` under the context path): (status, body);
        PeerError when there is no answer."""
        url = self.url(peer, f"{self._context_path}{path}")
        headers = {**self.signed(method, url, body), "Content-Type": MSGPACK}
        timeout = aiohttp.ClientTimeout(total=timeout_s, connect=1.0) if timeout_s is not None else None
        try:
            async with self.async_session().request(
                method, url, data=body, headers=headers, timeout=timeout or self._timeout
            ) as response:
                return response.status, await response.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise PeerError(f"{method} {path} to {peer}: {error!r}", refused=is_refused(error)) from None

    async def async_forward(
        self, peer: str, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, bytes, str]:
        """Send a client's request on to the member responsible for it, as it came (`target`:
        its path and query as received), marked forwarded and signed by this member: (status,
        body, content type) of the answer; PeerError when the member did not answer."""
        url = self.url(peer, target)
        sent = CIMultiDict(
            (k, v)
            for k, v in headers.items()
            if k.lower() not in HOP_HEADERS and not k.lower().startswith(OUR_HEADER_PREFIX)
        )
        sent[FORWARDED_HEADER] = self.self_address
        sent.update(self.signed(method, url, body))
        try:
            async with self.async_session().request(method, url, data=body, headers=sent) as response:
                return response.status, await response.read(), response.headers.get("Content-Type", "text/plain")
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise PeerError(f"forward {method} to {peer}: {error!r}", refused=is_refused(error)) from None

    async def async_close(self) -> None:
        """Cancel what is still running and close the session. Loop thread, at shutdown."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
