"""The guards around pysyncobj: no pickle runs code (from the network, the log, the meta file
or a snapshot), frames are bounded, only partners are heard, and the internals the guards
reach into are still where they were."""

from __future__ import annotations

import codecs
import io
import os
import pickle
import socket
import struct
import zlib
from pathlib import Path
from typing import Any

import pysyncobj.journal
import pysyncobj.pickle
import pysyncobj.syncobj
import pysyncobj.tcp_server
import pysyncobj.transport
import pytest

from nacos_actors.raft.group import MIN_FRAME_BYTES
from nacos_actors.raft.journal import SyncedFileJournal, create_journal
from nacos_actors.raft.safety import install_library_guards, library_internals_present
from nacos_actors.raft.transport import BoundedTcpConnection, FrameError, inflate_bounded
from nacos_actors.raft.unpickle import restricted_load, restricted_loads

from .helpers import HOST, Member, single_config, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def guards() -> None:
    install_library_guards()


class Evil:
    """A pickle that, when loaded by a stock unpickler, creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


class HugeBytes:
    def __reduce__(self) -> tuple[Any, ...]:
        return (bytes, (10**10,))


class OtherCodec:
    def __reduce__(self) -> tuple[Any, ...]:
        return (codecs.encode, ("payload", "rot13"))


def frame(message: Any, protocol: int = 2) -> bytes:
    """A frame in pysyncobj's wire format (no password)."""
    data = zlib.compress(pickle.dumps(message, protocol))
    return struct.pack("i", len(data)) + data


def test_the_library_internals_the_guards_use_are_all_present() -> None:
    assert library_internals_present() == []


def test_the_guards_are_installed_once_in_the_names_the_library_calls() -> None:
    install_library_guards()
    assert pysyncobj.pickle.loads is restricted_loads is pysyncobj.journal.loads
    assert pysyncobj.pickle.load is restricted_load
    assert pysyncobj.syncobj.createJournal is create_journal
    assert pysyncobj.transport.TcpConnection is BoundedTcpConnection is pysyncobj.tcp_server.TcpConnection


def test_the_evil_pickle_runs_code_in_a_stock_unpickler(tmp_path: Path) -> None:
    """The control: the probe used below is live."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(Evil(marker), 2))
    assert marker.exists()


def test_the_library_unpicklers_refuse_a_pickle_that_runs_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = pickle.dumps(Evil(marker), 2)
    with pytest.raises(pickle.UnpicklingError):
        pysyncobj.pickle.loads(evil)
    with pytest.raises(pickle.UnpicklingError):
        pysyncobj.pickle.load(io.BytesIO(evil))
    with pytest.raises(pickle.UnpicklingError):
        pysyncobj.journal.loads(evil)
    with pytest.raises(pickle.UnpicklingError):
        pysyncobj.pickle.loads(pickle.dumps(Evil(marker), pickle.HIGHEST_PROTOCOL))
    assert not marker.exists()


@pytest.mark.parametrize("gadget", [HugeBytes(), OtherCodec()], ids=["bytes(10**10)", "_codecs.encode rot13"])
def test_the_allowed_globals_do_nothing_but_rebuild_bytes(gadget: Any) -> None:
    with pytest.raises(pickle.UnpicklingError):
        restricted_loads(pickle.dumps(gadget, 2))


def test_every_message_shape_the_library_sends_still_loads() -> None:
    entries = [(b"\x00" + pickle.dumps((0, (b"op",)), 2), 7, 3), (b"\x01", 8, 3), (b"", 9, 3)]
    messages: list[Any] = [
        {"type": "append_entries", "term": 3, "commit_index": 6, "entries": entries, "prevLogIdx": 6, "prevLogTerm": 2},
        {"type": "append_entries", "term": 3, "commit_index": 6, "serialized": (b"chunk", True, False)},
        {"type": "append_entries", "transmission": "start", "data": b"x" * 70000, "term": 3, "commit_index": 1},
        {"type": "next_node_idx", "next_node_idx": 9, "reset": False, "success": True},
        {"type": "request_vote", "term": 4, "last_log_index": 9, "last_log_term": 3},
        {"type": "response_vote", "term": 4},
        {"type": "apply_command", "command": b"\x00abc", "request_id": 5},
        {"type": "apply_command_response", "request_id": 5, "log_idx": 10, "log_term": 4},
        {"type": "apply_command_response", "request_id": 6, "error": 2},
        (os.urandom(32), {"type": "response_vote", "term": 4}),
        os.urandom(32),
        "127.0.0.1:7000",
        {"raftCommitIndex": 9, "currentTerm": 4, "votedForNodeId": "127.0.0.1:7000"},
        {"currentTerm": 0, "votedForNodeId": None},
        1.5,
    ]
    for message in messages:
        assert pysyncobj.pickle.loads(pysyncobj.pickle.dumps(message)) == message
    assert pysyncobj.pickle.loads(pysyncobj.pickle.dumps(entries[0])) == entries[0]


def test_a_meta_file_that_would_run_code_is_read_as_empty(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "raft.journal"
    (tmp_path / "raft.journal.meta").write_bytes(pickle.dumps(Evil(marker), 2))
    journal = SyncedFileJournal(str(path), sync=False)
    try:
        assert journal.getCurrentTerm() == 0
        assert not marker.exists()
    finally:
        journal._destroy()


def test_inflating_is_bounded() -> None:
    assert inflate_bounded(zlib.compress(b"a" * 1000), 1000) == b"a" * 1000
    with pytest.raises(FrameError):
        inflate_bounded(zlib.compress(b"a" * 1001), 1000)
    with pytest.raises(FrameError):
        inflate_bounded(zlib.compress(b"a" * 1000)[:-3], 1000)
    with pytest.raises(FrameError):
        inflate_bounded(b"not zlib", 1000)


@pytest.fixture
def one_member() -> Any:
    member = Member(single_config(max_frame_bytes=MIN_FRAME_BYTES), "probe")
    try:
        wait_until(lambda: member.status().role == "leader", 5, "the one member leads")
        yield member
    finally:
        member.stop()


def assert_dropped(payload: bytes, port: int) -> None:
    """Send `payload` on a fresh connection; the member must close it within 3 s."""
    with socket.create_connection((HOST, port), timeout=3) as connection:
        try:
            connection.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            return
        try:
            while True:
                data = connection.recv(65536)
                if not data:
                    return
                assert False, f"the member answered {data!r} instead of dropping the connection"  # noqa: B011
        except ConnectionResetError:
            return
        except TimeoutError:
            raise AssertionError("the member kept the connection open") from None


def probes(marker: Path) -> dict[str, bytes]:
    evil = Evil(marker)
    append = {"type": "append_entries", "term": 99, "commit_index": 3, "prevLogIdx": 1, "prevLogTerm": 0}
    command = b"\x00" + pickle.dumps((0, (evil,)), 2)
    return {
        "evil first frame": frame(evil),
        "evil object as a log entry": frame({**append, "entries": [(evil, 2, 99)]}),
        "evil log entry from a read-only node": frame("readonly") + frame({**append, "entries": [(command, 2, 99)]}),
        "evil log entry from an unknown address": frame("127.0.0.1:1")
        + frame({**append, "entries": [(command, 2, 99)]}),
        "evil first frame, protocol 5": frame(evil, pickle.HIGHEST_PROTOCOL),
        "utility command": frame(["set_version", 5]),
        "unhashable introduction": frame({"type": "request_vote"}),
        "frame of 2 GiB announced": struct.pack("i", 2**31 - 1) + b"\0" * 1024,
        "negative frame length": struct.pack("i", -5) + b"\0" * 16,
        "zlib bomb": (lambda data: struct.pack("i", len(data)) + data)(zlib.compress(b"\0" * (2 * MIN_FRAME_BYTES))),
        "not zlib": struct.pack("i", 8) + b"not zlib",
    }


@pytest.mark.parametrize("probe", list(probes(Path("/nonexistent"))))
def test_a_hostile_peer_is_dropped_and_the_group_keeps_working(one_member: Member, tmp_path: Path, probe: str) -> None:
    marker = tmp_path / "pwned"
    port = int(one_member.config.bind_address.rsplit(":", 1)[1])
    before = one_member.status()

    assert_dropped(probes(marker)[probe], port)

    assert not marker.exists()
    after = one_member.status()
    assert (after.role, after.term, after.tick_errors) == ("leader", before.term, 0)
    assert one_member.propose(b"still works").result(5) == (after.commit_index + 1, None)
    assert one_member.applied[-1][1] == b"still works"
    assert not marker.exists()
