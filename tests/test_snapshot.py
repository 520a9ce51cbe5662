"""The data file: written atomically (temporary file, fsync, rename, directory fsync), so a crash
at any point leaves the old file or the new one, whole; saved once whoever asks first."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from nacos_actors.core.registry import RegistryCore
from nacos_actors.messages import RegisterInstance
from nacos_actors.model import Instance, ServiceKey
from nacos_actors.snapshot import (
    SNAPSHOT_FILE,
    TEMPORARY_SUFFIX,
    SnapshotOnce,
    load_snapshot,
    save_snapshot,
    write_file_atomically,
)

OLD = b"the old snapshot"
NEW = b"the new snapshot, longer than the old one" * 1000


class Crash(Exception):
    """Stands for the process dying in the middle of a call."""


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / SNAPSHOT_FILE
    path.write_bytes(OLD)
    return path


def temporary_of(path: Path) -> Path:
    return path.with_name(path.name + TEMPORARY_SUFFIX)


def test_the_new_bytes_replace_the_old_and_no_temporary_file_is_left(target):
    write_file_atomically(target, NEW)
    assert target.read_bytes() == NEW
    assert sorted(p.name for p in target.parent.iterdir()) == [SNAPSHOT_FILE]


def test_the_file_is_renamed_only_after_its_bytes_are_synced_then_the_directory_is_synced(target):
    calls: list[tuple[str, str]] = []

    def fsync(descriptor: int) -> None:
        synced = os.readlink(f"/proc/self/fd/{descriptor}")
        # At the file's fsync the rename has not happened: the old file is still in place.
        calls.append((Path(synced).name, target.read_bytes()[: len(OLD)].decode()))
        os.fsync(descriptor)

    write_file_atomically(target, NEW, fsync=fsync)
    assert calls == [
        (temporary_of(target).name, OLD.decode()),  # the temporary file, before the rename
        (target.parent.name, NEW[: len(OLD)].decode()),  # the directory, after it
    ]
    assert target.read_bytes() == NEW


def test_a_crash_in_the_middle_of_the_write_leaves_the_old_file_intact(target):
    written: list[int] = []

    def write_half_then_die(descriptor: int, data: memoryview) -> int:
        if written:
            raise Crash("killed mid-write")
        written.append(os.write(descriptor, data[: len(data) // 2]))
        return written[-1]

    with pytest.raises(Crash):
        write_file_atomically(target, NEW, write=write_half_then_die)
    assert written == [len(NEW) // 2]
    assert target.read_bytes() == OLD
    assert not temporary_of(target).exists()


def test_a_crash_during_the_fsync_leaves_the_old_file_intact(target):
    def fsync(descriptor: int) -> None:
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError):
        write_file_atomically(target, NEW, fsync=fsync)
    assert target.read_bytes() == OLD
    assert not temporary_of(target).exists()


def test_a_temporary_file_left_by_an_earlier_crash_is_replaced(target):
    temporary_of(target).write_bytes(b"torn")
    write_file_atomically(target, NEW)
    assert target.read_bytes() == NEW
    assert not temporary_of(target).exists()


def registry(*names: str) -> RegistryCore:
    core = RegistryCore()
    commands = [RegisterInstance(ServiceKey("public", f"DEFAULT_GROUP@@{n}"), Instance("127.0.0.1", 80)) for n in names]
    core.apply_batch(commands, 0)
    return core


def test_a_saved_registry_loads_back(tmp_path):
    data = tmp_path / "data" / "nested"
    assert save_snapshot(registry("a", "b").all_services(), data) == (2, 2)
    loaded = RegistryCore()
    load_snapshot(loaded, data)
    assert sorted(s.key.name for s in loaded.all_services()) == ["DEFAULT_GROUP@@a", "DEFAULT_GROUP@@b"]


def test_snapshot_once_saves_once_whoever_asks(tmp_path):
    reads: list[int] = []
    core = registry("a")

    def services():
        reads.append(1)
        return core.all_services()

    once = SnapshotOnce(services, tmp_path)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(once.save())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert results == [True] * 4
    assert reads == [1]
    assert (tmp_path / SNAPSHOT_FILE).exists()


def test_snapshot_once_without_a_data_directory_does_nothing():
    assert SnapshotOnce(lambda: pytest.fail("read the registry"), None).save()


def test_a_failed_save_is_logged_and_answered_false(tmp_path, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the data directory should be")
    with caplog.at_level(logging.ERROR, logger="nacos_actors.snapshot"):
        assert SnapshotOnce(registry("a").all_services, blocker).save() is False
    assert "cannot save the registry" in caplog.text
