"""The registry's data file (`--data-dir`): its ephemeral half, loaded at start, written
atomically at stop. (The persistent half lives in the Raft journal beside it, written before
each persistent write is acknowledged; a file an earlier version wrote still holds one, which
the node moves into Raft once.)

A write never leaves a torn file behind: the bytes go to a temporary file beside it, which is
flushed to the disk (fsync) before it is renamed over the old one, and the directory is synced
after, so the rename itself survives a power cut. A crash at any point leaves either the old
file or the new one, whole. Runs on whichever thread calls it (the main thread at start and
stop; the shutdown watchdog when a stop overran).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from nacos_actors.core.codec import CodecError, decode_services, encode_services
from nacos_actors.core.registry import RegistryCore, definition_of, without_definition
from nacos_actors.model import Definition, Service

log = logging.getLogger(__name__)
SNAPSHOT_FILE = "registry.msgpack"
TEMPORARY_SUFFIX = ".tmp"


def load_snapshot(core: RegistryCore, data_dir: Path) -> list[Definition]:
    """Fill `core` with the ephemeral halves in the data file, if there is one; answers the
    persistent halves it holds (a file an earlier version wrote, before they lived in the Raft
    journal), for the caller to put through Raft. Exits with a message naming the file when it
    cannot be decoded. Main thread, before any actor starts."""
    path = data_dir / SNAPSHOT_FILE
    if not path.exists():
        return []
    try:
        services = decode_services(path.read_bytes())
    except CodecError as error:
        raise SystemExit(f"cannot load {path}: {error}") from None
    halves, definitions = [], []
    for service in services:
        definition = definition_of(service)
        ephemeral = without_definition(service)
        if definition is not None:
            definitions.append(definition)
        if ephemeral.instances or definition is None:
            halves.append(ephemeral)
    core.load(halves)
    log.info("loaded %d services, %d ephemeral instances from %s", core.service_count, core.instance_count, path)
    if definitions:
        log.info("%s holds the persistent data of %d services from an earlier version", path, len(definitions))
    return definitions


def write_file_atomically(
    path: Path,
    data: bytes,
    write: Callable[[int, memoryview], int] = os.write,
    fsync: Callable[[int], None] = os.fsync,
) -> None:
    """Replace `path` with `data`, all or nothing: write a temporary file beside it, fsync it,
    rename it over `path`, fsync the directory. When anything fails before the rename, the
    temporary file is removed, `path` is untouched and the error is raised. (`write` and
    `fsync` are the OS calls; tests pass failing ones.)"""
    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[write(descriptor, view) :]
        fsync(descriptor)
    except BaseException:
        os.close(descriptor)
        temporary.unlink(missing_ok=True)
        raise
    os.close(descriptor)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fsync(directory)
    finally:
        os.close(directory)


def save_snapshot(services: Iterable[Service], data_dir: Path) -> tuple[int, int]:
    """Write the ephemeral halves of `services` as the data file (atomically; the persistent
    halves live in the Raft journal); answers (services, instances) written."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SNAPSHOT_FILE
    snapshots = [without_definition(service) for service in services if service.has_ephemeral_half]
    write_file_atomically(path, encode_services(snapshots))
    instances = sum(len(service.instances) for service in snapshots)
    log.info("saved %d services, %d instances to %s", len(snapshots), instances, path)
    return len(snapshots), instances


class SnapshotOnce:
    """Saves the registry's published snapshots to the data directory once, whichever thread
    asks first (the lifecycle, or the shutdown watchdog when the lifecycle overran); a second
    caller waits for the first to finish. Without a data directory it does nothing. Any thread."""

    def __init__(self, services: Callable[[], Iterable[Service]], data_dir: Path | None) -> None:
        self._services = services
        self._data_dir = data_dir
        self._lock = threading.Lock()
        self._done = False
        self._started_at: float | None = None
        self._spent_s = 0.0
        self.ok = True

    def save(self) -> bool:
        """Write the data file unless it was written already; False when writing it failed (logged)."""
        with self._lock:
            if self._done or self._data_dir is None:
                return self.ok
            self._done = True
            self._started_at = time.monotonic()
            try:
                save_snapshot(self._services(), self._data_dir)
            except OSError as error:
                self.ok = False
                log.error("cannot save the registry to %s: %s", self._data_dir, error)
            finally:
                self._spent_s = time.monotonic() - self._started_at
                self._started_at = None
            return self.ok

    def seconds_spent(self) -> float:
        """How long writing the data file took, or has taken so far."""
        started = self._started_at
        return self._spent_s if started is None else time.monotonic() - started
