"""The guarded transport against a peer that is only half there (nacos_actors.raft.transport)."""

from __future__ import annotations

import pickle
import random
import socket
import struct
import threading
import time
import zlib
from typing import Any

from pysyncobj.encryptor import getEncryptor

from nacos_actors.raft.group import RaftGroupConfig
from tests.raft.helpers import HOST, PASSWORD, Member, free_port, wait_for_one_leader


def low_port_listener() -> socket.socket:
    """A listening socket whose address sorts before any ephemeral port's ("127.0.0.1:1xxxx"):
    pysyncobj connects from the greater address to the smaller, so the members connect to it."""
    for _ in range(100):
        listener = socket.socket()
        try:
            listener.bind((HOST, random.randint(10_000, 19_999)))
        except OSError:
            listener.close()
            continue
        listener.listen()
        return listener
    raise AssertionError("no free port in 10000-19999")


def frames_received(listener: socket.socket, seconds: float, into: list[Any]) -> None:
    """Accept connections and decode each frame (Fernet with the group's password), for `seconds`;
    never answer, so every connection's key exchange stays half done."""
    encryptor = getEncryptor(PASSWORD)
    listener.settimeout(0.05)
    connections: list[socket.socket] = []
    buffers: dict[socket.socket, bytes] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            accepted, _ = listener.accept()
            accepted.settimeout(0.01)
            connections.append(accepted)
            buffers[accepted] = b""
        except TimeoutError:
            pass
        for connection in connections:
            try:
                buffers[connection] += connection.recv(65536)
            except (TimeoutError, BlockingIOError):
                continue
            buffer = buffers[connection]
            while len(buffer) >= 4 and len(buffer) >= 4 + struct.unpack("i", buffer[:4])[0]:
                (length,) = struct.unpack("i", buffer[:4])
                into.append(pickle.loads(zlib.decompress(encryptor.decrypt(buffer[4 : 4 + length]))))
                buffer = buffer[4 + length :]
            buffers[connection] = buffer
    for connection in connections:
        connection.close()


def test_nothing_is_sent_on_a_connection_before_its_key_exchange_is_over() -> None:
    # The leader heartbeats every member; to one whose key exchange is pending, the library would
    # send the heartbeat without the peer's key, and the peer would drop the connection.
    listener = low_port_listener()
    peer = f"{HOST}:{listener.getsockname()[1]}"
    addresses = [f"{HOST}:{free_port()}" for _ in range(2)]
    members = []
    try:
        for index, address in enumerate(addresses):
            partners = (addresses[1 - index], peer)
            config = RaftGroupConfig(address, partners, address, None, PASSWORD, sync=False)
            members.append(Member(config, f"m{index}"))
        wait_for_one_leader(members, 10)
        received: list[Any] = []
        reader = threading.Thread(target=frames_received, args=(listener, 1.0, received))
        reader.start()
        reader.join(5)
    finally:
        for member in members:
            member.stop()
        listener.close()

    keys = [m for m in received if isinstance(m, bytes) and len(m) == 32]
    assert keys, f"no member connected to the half-there peer: {received}"
    assert received == keys, [m for m in received if m not in keys][:3]
