"""The node's HTTP client to its peers: member reports, Distro batches and digests, snapshot
loads and forwarded client writes, all over one aiohttp session on the event loop.

Drivers never wait on it: the bridge (nacos_actors.bridge.ActorOutbox) runs their PeerCalls on
it and tells them each outcome as a message. Every peer request carries this node's address
(and the cluster secret when one is set) so the peer can tell a member from a stranger.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Coroutine, Mapping
from typing import Any

import aiohttp
from multidict import CIMultiDict

log = logging.getLogger(__name__)

MEMBER_HEADER = "Nacos-Actors-Member"
SECRET_HEADER = "Nacos-Actors-Secret"
FORWARDED_HEADER = "Nacos-Actors-Forwarded"
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
    """One aiohttp session to every peer. Loop thread only."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        self_address: str,
        context_path: str,
        secret: str | None,
        timeout_s: float,
    ) -> None:
        self.loop = loop
        self.self_address = self_address
        self._context_path = context_path
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 1.0))
        self._headers = {MEMBER_HEADER: self_address}
        if secret:
            self._headers[SECRET_HEADER] = secret
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

    def url(self, peer: str, path: str) -> str:
        return f"http://{peer}{self._context_path}{path}"

    async def async_call(
        self, method: str, peer: str, path: str, body: bytes = b"", timeout_s: float | None = None
    ) -> tuple[int, bytes]:
        """One msgpack request to a peer: (status, body); PeerError when there is no answer."""
        headers = {**self._headers, "Content-Type": MSGPACK}
        timeout = aiohttp.ClientTimeout(total=timeout_s, connect=1.0) if timeout_s is not None else None
        try:
            async with self.async_session().request(
                method, self.url(peer, path), data=body, headers=headers, timeout=timeout or self._timeout
            ) as response:
                return response.status, await response.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise PeerError(f"{method} {path} to {peer}: {error!r}", refused=is_refused(error)) from None

    async def async_forward(
        self, peer: str, method: str, path_qs: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, bytes, str]:
        """Send a client's request on to the member responsible for it, as it came: (status,
        body, content type) of the answer; PeerError when the member did not answer."""
        sent = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in HOP_HEADERS)
        sent[FORWARDED_HEADER] = self.self_address
        try:
            async with self.async_session().request(
                method, f"http://{peer}{path_qs}", data=body, headers=sent
            ) as response:
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
