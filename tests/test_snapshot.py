"""The data file: written atomically (temporary file, fsync, rename, directory fsync), so a crash
at any point leaves the old file or the new one, whole; saved once whoever asks first. It holds
the ephemeral halves only (the persistent ones live in the Raft journal); a file an earlier
version wrote still holds persistent data, which loading hands back to be put through Raft."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from nacos_actors.core.codec import decode_services, encode_services
from nacos_actors.core.registry import RegistryCore
from nacos_actors.messages import CreateService, RegisterInstance, UpdateCluster, UpdateService
from nacos_actors.model import NO_SELECTOR, ClusterConfig, Instance, Service, ServiceKey, freeze, instance_map
from nacos_actors.snapshot import (
    SNAPSHOT_FILE,
    TEMPORARY_SUFFIX,
    SnapshotOnce,
    load_snapshot,
    save_snapshot,
    write_file_atomically,
)
from tests.core.combined import LocalRegistry

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


# -- the halves: only the ephemeral one is written -----------------------------------------------

RAFT_ONLY = ServiceKey("public", "DEFAULT_GROUP@@raft-only")
MIXED = ServiceKey("public", "DEFAULT_GROUP@@mixed")
EPHEMERAL_ONLY = ServiceKey("dev", "DEFAULT_GROUP@@ephemeral-only")


def both_halves() -> LocalRegistry:
    local = LocalRegistry()
    local.apply(CreateService(RAFT_ONLY, 0.5, freeze({"k": "v"}), NO_SELECTOR), 1)
    local.apply(RegisterInstance(MIXED, Instance("127.0.0.1", 80)), 2)
    local.apply(RegisterInstance(MIXED, Instance("127.0.0.1", 81, ephemeral=False)), 3)
    local.apply(UpdateService(MIXED, 0.3, None, None), 4)
    local.apply(RegisterInstance(EPHEMERAL_ONLY, Instance("127.0.0.1", 80)), 5)
    return local


def test_only_the_ephemeral_halves_are_written(tmp_path):
    local = both_halves()
    assert save_snapshot(local.registry.all_services(), tmp_path) == (2, 2)
    written = {s.key: s for s in decode_services((tmp_path / SNAPSHOT_FILE).read_bytes())}
    assert set(written) == {MIXED, EPHEMERAL_ONLY}
    mixed = written[MIXED]
    assert [k.ephemeral for k in mixed.instances] == [True]
    assert (mixed.protect_threshold, mixed.explicit, mixed.revision) == (0.0, False, local.service(MIXED).revision)


def test_a_file_of_ephemeral_halves_loads_back_with_no_persistent_data(tmp_path):
    local = both_halves()
    save_snapshot(local.registry.all_services(), tmp_path)
    loaded = RegistryCore()
    assert load_snapshot(loaded, tmp_path) == []
    assert {s.key for s in loaded.all_services()} == {MIXED, EPHEMERAL_ONLY}
    assert (loaded.service_count, loaded.instance_count) == (2, 2)
    # Raft's definitions then join them as they were.
    loaded.load_definitions(local.definitions.all())
    for key in (RAFT_ONLY, MIXED, EPHEMERAL_ONLY):
        before, after = local.service(key), loaded.service(key)
        assert dict(after.instances) == dict(before.instances), key
        assert (after.protect_threshold, after.explicit, after.definition) == (
            before.protect_threshold, before.explicit, before.definition,
        )  # fmt: skip


def test_an_earlier_versions_file_hands_back_its_persistent_halves(tmp_path):
    """Written whole, as before the split: settings, clusters and persistent instances."""
    none = ClusterConfig(freeze({"type": "NONE"}))
    old = [
        Service(RAFT_ONLY, protect_threshold=0.5, explicit=True, revision=1, modified_ms=100),
        Service(
            MIXED,
            instance_map([Instance("127.0.0.1", 80), Instance("127.0.0.1", 81, ephemeral=False)]),
            clusters=freeze({"DEFAULT": none}),
            revision=4,
            modified_ms=400,
        ),
        Service(EPHEMERAL_ONLY, instance_map([Instance("127.0.0.1", 80)]), revision=1, modified_ms=100),
        Service(ServiceKey("dev", "g@@emptied"), revision=3, modified_ms=300),
    ]
    (tmp_path / SNAPSHOT_FILE).write_bytes(encode_services(old))
    loaded = RegistryCore()
    definitions = {d.key: d for d in load_snapshot(loaded, tmp_path)}
    assert set(definitions) == {RAFT_ONLY, MIXED}
    assert (definitions[RAFT_ONLY].explicit, definitions[RAFT_ONLY].protect_threshold) == (True, 0.5)
    assert [k.port for k in definitions[MIXED].instances] == [81] and dict(definitions[MIXED].clusters) == {
        "DEFAULT": none
    }
    assert definitions[MIXED].modified_ms == 400
    # The registry holds the ephemeral halves, and services that never had a persistent one.
    held = {s.key: s for s in loaded.all_services()}
    assert set(held) == {MIXED, EPHEMERAL_ONLY, ServiceKey("dev", "g@@emptied")}
    assert [k.port for k in held[MIXED].instances] == [80] and held[MIXED].definition is None
    assert (held[MIXED].revision, held[MIXED].modified_ms) == (4, 400)
    assert not held[MIXED].clusters and loaded.instance_count == 2


def test_a_cluster_config_alone_is_persistent_data(tmp_path):
    local = LocalRegistry()
    local.apply(RegisterInstance(MIXED, Instance("127.0.0.1", 80)), 1)
    local.apply(UpdateCluster(MIXED, "DEFAULT", ClusterConfig(freeze({"type": "NONE"}))), 2)
    save_snapshot(local.registry.all_services(), tmp_path)
    (written,) = decode_services((tmp_path / SNAPSHOT_FILE).read_bytes())
    assert dict(written.clusters) == {} and len(written.instances) == 1
