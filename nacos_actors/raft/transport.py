"""pysyncobj's TCP transport, guarded: bounded frames, plain data only, known peers only, and
nothing sent before the journal is synced.

- `BoundedTcpConnection` replaces the library's `TcpConnection` (installed in the modules that
  build connections). The library reads a 4-byte length and buffers until that many bytes
  arrive, so an unauthenticated peer could make it buffer 2 GiB; this one drops the connection
  as soon as a frame announces more than `max_frame_bytes`, stops reading while a whole frame
  is buffered, inflates at most `max_frame_bytes` (no zlib bomb) and unpickles with the
  restricted unpickler. The library's own checks are asserts (gone under `python -O`); here
  they are explicit. A refused frame closes the connection, logged (at most every few
  seconds).
- `GuardedTransport` is passed to SyncObj as `transportClass`: it syncs the group's journal
  before every message it sends, sends nothing on a connection whose key exchange is not over
  (the peer would drop it), gives each connection the group's frame bound, accepts an
  incoming connection only from a configured partner (no read-only nodes, no utility commands
  such as `add`, `set_version` or `transfer`), and drops a peer whose message is not a Raft
  message (a dict of a known type; a forwarded command must be a regular one).

Everything here runs on the thread that ticks the group.
"""

from __future__ import annotations

import logging
import struct
import time
import zlib
from typing import Any

from pysyncobj.tcp_connection import TcpConnection
from pysyncobj.transport import TCPTransport

from nacos_actors.raft.journal import SyncedFileJournal
from nacos_actors.raft.unpickle import restricted_loads

log = logging.getLogger(__name__)
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
RAFT_MESSAGE_TYPES = frozenset(
    {
        "request_vote",
        "response_vote",
        "append_entries",
        "next_node_idx",
        "apply_command",
        "apply_command_response",
        "timeout_now",
    }
)
REGULAR_COMMAND = b"\x00"  # pysyncobj's _COMMAND_TYPE.REGULAR, the only kind we propose
_WARNING_INTERVAL_S = 5.0
_last_warning = [0.0]


class FrameError(ValueError):
    """A frame that is too large, does not decrypt, inflate or unpickle to plain data."""


def _warn_refused(what: str, reason: object) -> None:
    now = time.monotonic()
    if now - _last_warning[0] >= _WARNING_INTERVAL_S:
        _last_warning[0] = now
        log.warning("Raft transport: dropped a connection: %s (%s)", what, reason)


def inflate_bounded(data: bytes, limit: int) -> bytes:
    """zlib-inflate `data`, refusing (FrameError) a stream that inflates beyond `limit` bytes
    or is incomplete."""
    inflater = zlib.decompressobj()
    try:
        plain = inflater.decompress(data, limit)
    except zlib.error as error:
        raise FrameError(f"not a zlib stream: {error}") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise FrameError(f"inflates beyond {limit} bytes or is truncated")
    return plain


class BoundedTcpConnection(TcpConnection):  # type: ignore[misc]
    """The library's connection with a bound on one frame, checked decoding and the
    restricted unpickler (see the module's docstring). `max_frame_bytes` is set per
    connection by GuardedTransport."""

    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    # The library's state this class reads and sets (see safety.library_internals_present).
    _TcpConnection__readBuffer: bytes
    recvLastTimestamp: int

    def _frame_length(self, buffer: bytes) -> int | None:
        """The length the frame at the head of `buffer` announces (None: not known yet);
        disconnects and answers -1 when it is out of bounds."""
        if len(buffer) < 4:
            return None
        (length,) = struct.unpack("i", buffer[:4])
        if length < 0 or length > self.max_frame_bytes:
            _warn_refused(f"a frame of {length} bytes", f"the bound is {self.max_frame_bytes}")
            self.disconnect()
            return -1
        return int(length)

    def _TcpConnection__processRead(self) -> bool:
        if not super()._TcpConnection__processRead():
            return False
        buffer = self._TcpConnection__readBuffer
        if self._frame_length(buffer) == -1:
            return False
        # Read on only while less than one whole frame is buffered; the rest waits in the socket.
        return len(buffer) < 4 + self.max_frame_bytes

    def _TcpConnection__processParseMessage(self) -> Any:
        buffer = self._TcpConnection__readBuffer
        length = self._frame_length(buffer)
        if length is None or length == -1 or len(buffer) - 4 < length:
            return None
        try:
            message = self._decode(buffer[4 : 4 + length])
        except Exception as error:  # a peer's bytes: anything that does not decode is refused
            _warn_refused("a frame that does not decode", f"{type(error).__name__}: {error}")
            self.disconnect()
            return None
        self._TcpConnection__readBuffer = buffer[4 + length :]
        return message

    def _decode(self, data: bytes) -> Any:
        if self.encryptor:
            timestamp = self.encryptor.extract_timestamp(data)
            if timestamp < self.recvLastTimestamp:
                raise FrameError("a frame older than the previous one")
            self.recvLastTimestamp = timestamp
            data = self.encryptor.decrypt(data)
        message = restricted_loads(inflate_bounded(data, self.max_frame_bytes))
        if self.recvRandKey:
            if not (isinstance(message, tuple) and len(message) == 2 and message[0] == self.recvRandKey):
                raise FrameError("a frame without this connection's key")
            message = message[1]
        return message


class GuardedTransport(TCPTransport):  # type: ignore[misc]
    """pysyncobj's TCP transport for one group: journal synced before each send, bounded
    frames, partners only, Raft messages only (see the module's docstring). Built by SyncObj
    from `transportClass`; the group's SyncObj carries the frame bound as `max_frame_bytes`."""

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:
        self._max_frame_bytes = int(getattr(syncObj, "max_frame_bytes", DEFAULT_MAX_FRAME_BYTES))
        super().__init__(syncObj, selfNode, otherNodes)

    def send(self, node: Any, message: Any) -> bool:
        connection = self._connections.get(node)
        if self._syncObj.encryptor and connection is not None and not connection.sendRandKey:
            # The library counts an outgoing connection as connected before its key exchange is
            # over; a message sent then lacks the peer's key, and the peer drops the connection.
            return False
        journal = self._syncObj._SyncObj__raftLog
        if isinstance(journal, SyncedFileJournal):
            journal.sync_if_dirty()
        return bool(super().send(node, message))

    def addNode(self, node: Any) -> None:
        super().addNode(node)
        connection = self._connections.get(node)
        if connection is not None:
            connection.max_frame_bytes = self._max_frame_bytes

    def _onNewIncomingConnection(self, conn: Any) -> None:
        conn.max_frame_bytes = self._max_frame_bytes
        super()._onNewIncomingConnection(conn)

    def _refuse(self, conn: Any, what: str) -> None:
        _warn_refused(what, "not a partner of this group")
        self._unknownConnections.discard(conn)
        conn.disconnect()

    def _onIncomingMessageReceived(self, conn: Any, message: Any) -> None:
        if self._syncObj.encryptor and not conn.sendRandKey:
            # The first message of an encrypted connection is the peer's random key.
            if not (isinstance(message, bytes) and len(message) == 32):
                self._refuse(conn, "a connection without a key exchange")
                return
            super()._onIncomingMessageReceived(conn, message)
            return
        if not (isinstance(message, str) and message in self._nodeAddrToNode):
            self._refuse(conn, f"a connection introduced as {str(message)[:80]!r}")
            return
        super()._onIncomingMessageReceived(conn, message)

    def _onMessageReceived(self, node: Any, message: Any) -> None:
        if not (isinstance(message, dict) and message.get("type") in RAFT_MESSAGE_TYPES) or (
            message["type"] == "apply_command"
            and not (isinstance(message.get("command"), bytes) and message["command"][:1] == REGULAR_COMMAND)
        ):
            _warn_refused(f"a message from {node} that is not a Raft message", str(message)[:80])
            connection = self._connections.get(node)
            if connection is not None:
                connection.disconnect()
            return
        super()._onMessageReceived(node, message)
