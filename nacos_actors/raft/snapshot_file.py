"""The snapshot file of a Raft group: one msgpack document, never a pickle.

    {"format": 1, "state": <bytes from save_state>, "last": [command, index, term],
     "previous": [command, index, term], "cluster": ["ip:port", ...]}

`last` is the last applied log entry and `previous` the one before it, as pysyncobj keeps them
to resume its log after the snapshot (it compares them with its journal's first two entries,
as `(bytes, int, int)` tuples). Runs on the thread that ticks the group.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import msgpack

from nacos_actors.raft.journal import fsync_path

SNAPSHOT_FORMAT = 1
LogEntry = tuple[bytes, int, int]


class SnapshotError(ValueError):
    """A snapshot file that is not a snapshot of this format."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A decoded snapshot file."""

    state: bytes
    last: LogEntry
    previous: LogEntry
    cluster: tuple[str, ...]


def write_snapshot(
    path: str, state: bytes, last: LogEntry, previous: LogEntry, cluster: Iterable[str], sync: bool
) -> int:
    """Write a snapshot to `path` (the library's temporary file, which it renames into place
    after); flushed and fsynced when `sync`. Answers the bytes written."""
    document = {
        "format": SNAPSHOT_FORMAT,
        "state": bytes(state),
        "last": [bytes(last[0]), int(last[1]), int(last[2])],
        "previous": [bytes(previous[0]), int(previous[1]), int(previous[2])],
        "cluster": sorted(cluster),
    }
    data = msgpack.packb(document, use_bin_type=True)
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        if sync:
            os.fsync(file.fileno())
    return len(data)


def read_snapshot(path: str, sync: bool) -> Snapshot:
    """Decode the snapshot at `path`; raises SnapshotError (or OSError) for anything else.
    When `sync`, fsyncs the file and its directory first: a snapshot a follower received from
    its leader was written and renamed by the library without a sync."""
    if sync:
        fsync_path(path)
        fsync_path(os.path.dirname(os.path.abspath(path)))
    with open(path, "rb") as file:
        data = file.read()
    try:
        document = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as error:
        raise SnapshotError(f"{path} is not msgpack: {error}") from None
    if not isinstance(document, dict) or document.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(f"{path} is not a snapshot of format {SNAPSHOT_FORMAT}")
    state = document.get("state")
    cluster = document.get("cluster")
    if not isinstance(state, bytes):
        raise SnapshotError(f"{path}: state is not bytes")
    if not isinstance(cluster, list) or not all(isinstance(address, str) for address in cluster):
        raise SnapshotError(f"{path}: cluster is not a list of addresses")
    return Snapshot(state, _entry(document.get("last"), path), _entry(document.get("previous"), path), tuple(cluster))


def _entry(value: object, path: str) -> LogEntry:
    if (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], bytes)
        and all(type(number) is int and number >= 0 for number in value[1:])
    ):
        return (value[0], value[1], value[2])
    raise SnapshotError(f"{path}: a log entry is not [bytes, index, term]")
