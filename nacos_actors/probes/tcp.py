"""The TCP checker: a non-blocking connect to the instance, closed at once (Nacos 1.4's
TcpSuperSenseProcessor). Runs on the event loop thread."""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from typing import Final

from nacos_actors.core.probing import PROBE_ERROR, PROBE_OK, PROBE_REFUSED, PROBE_TIMEOUT, ProbeTarget
from nacos_actors.probes.finding import Finding, not_probed, probe_address

# Close with a reset instead of a FIN: the prober closes first, and every graceful close would
# leave a TIME_WAIT socket on this host for a minute (10k instances every ~2.5 s: ~240k).
_ABORT_ON_CLOSE: Final = struct.pack("ii", 1, 0)


async def probe_tcp(target: ProbeTarget) -> Finding:
    """Connect to `target.ip`:`target.port` and close without sending anything. Connected: OK.
    Refused or reset: REFUSED, immediate (Nacos fails the instance at once). The kernel's own
    connect timeout: TIMEOUT. Another socket error: ERROR. Never raises an OSError; the caller
    bounds the time (a cancelled connect closes its socket)."""
    address = probe_address(target)
    if address is None:
        return not_probed("tcp")
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sockaddr = (str(address), target.port)
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as error:
        return Finding(PROBE_ERROR, False, f"tcp:{_error_name(error)}")
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT_ON_CLOSE)
        await asyncio.get_running_loop().sock_connect(sock, sockaddr)
    except (ConnectionRefusedError, ConnectionResetError):
        return Finding(PROBE_REFUSED, True, "tcp:refused")
    except TimeoutError:
        return Finding(PROBE_TIMEOUT, False, "tcp:timeout")
    except OSError as error:
        return Finding(PROBE_ERROR, False, f"tcp:{_error_name(error)}")
    finally:
        sock.close()
    return Finding(PROBE_OK, False, "tcp:connected")


def _error_name(error: OSError) -> str:
    return errno.errorcode.get(error.errno or 0, type(error).__name__)
