"""The TCP checker: a non-blocking connect to the instance, closed at once (Nacos 1.4's
TcpSuperSenseProcessor). Runs on the event loop thread."""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from collections.abc import Callable
from typing import Final

from nacos_actors.core.probing import PROBE_ERROR, PROBE_OK, PROBE_REFUSED, PROBE_TIMEOUT, ProbeTarget
from nacos_actors.probes.finding import Finding, not_probed, probe_family

# Close with a reset instead of a FIN: the prober closes first, and every graceful close would
# leave a TIME_WAIT socket on this host for a minute (10k instances every ~2.5 s: ~240k).
_ABORT_ON_CLOSE: Final = struct.pack("ii", 1, 0)


Cancel = Callable[[], None]


def start_tcp_probe(
    loop: asyncio.AbstractEventLoop, target: ProbeTarget, timeout_s: float | None, done: Callable[[Finding], None]
) -> Cancel | None:
    """Connect to `target.ip`:`target.port` and close without sending anything; `done` gets the
    Finding exactly once, on the loop. Connected: OK. Refused or reset: REFUSED, immediate
    (Nacos fails the instance at once). No answer within `timeout_s` (None: the kernel's own
    connect timeout): TIMEOUT. Another socket error: ERROR. No task and no coroutine: a
    non-blocking connect, then a writer callback and a timer (10k instances every ~2.5 s make
    a probe's own cost count). A connect that ends at once (a refusal; on loopback, any) calls
    `done` before this returns None; otherwise answers a function that abandons the probe
    (closes its socket; `done` is then never called). Event loop thread; never raises."""
    family = probe_family(target)
    if family is None:
        done(not_probed("tcp"))
        return None
    try:
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    except OSError as error:
        done(Finding(PROBE_ERROR, False, f"tcp:{_error_name(error)}"))
        return None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT_ON_CLOSE)
        code = sock.connect_ex((target.ip, target.port))
    except OSError as error:
        sock.close()
        done(Finding(PROBE_ERROR, False, f"tcp:{_error_name(error)}"))
        return None
    if code != errno.EINPROGRESS:
        sock.close()
        done(_finding(code))
        return None
    return _Connecting(loop, sock, timeout_s, done).cancel


class _Connecting:
    """A connect in progress: its socket, its writer callback and its timer."""

    __slots__ = ("_done", "_fd", "_loop", "_sock", "_timer")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        timeout_s: float | None,
        done: Callable[[Finding], None],
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._done = done
        loop.add_writer(self._fd, self._writable)
        self._timer = loop.call_later(timeout_s, self._timed_out) if timeout_s is not None else None

    def _writable(self) -> None:
        code = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self._end(_finding(code))

    def _timed_out(self) -> None:
        self._timer = None
        self._end(Finding(PROBE_TIMEOUT, False, "tcp:timeout"))

    def _end(self, finding: Finding) -> None:
        self.cancel()
        self._done(finding)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._fd >= 0:
            self._loop.remove_writer(self._fd)
            self._fd = -1
            self._sock.close()


def _finding(code: int) -> Finding:
    if code == 0:
        return Finding(PROBE_OK, False, "tcp:connected")
    if code in (errno.ECONNREFUSED, errno.ECONNRESET):
        return Finding(PROBE_REFUSED, True, "tcp:refused")
    if code == errno.ETIMEDOUT:
        return Finding(PROBE_TIMEOUT, False, "tcp:timeout")
    return Finding(PROBE_ERROR, False, f"tcp:{errno.errorcode.get(code, str(code))}")


async def probe_tcp(target: ProbeTarget) -> Finding:
    """start_tcp_probe as a coroutine, bounded by its caller (a cancelled connect closes its
    socket)."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[Finding] = loop.create_future()
    cancel = start_tcp_probe(loop, target, None, answer.set_result)
    try:
        return await answer
    except asyncio.CancelledError:
        if cancel is not None:
            cancel()
        raise


def _error_name(error: OSError) -> str:
    return errno.errorcode.get(error.errno or 0, type(error).__name__)
