"""The Raft log on disk, synced before anything is acknowledged.

pysyncobj keeps its log in an mmap'ed file it never syncs, and writes the term and vote with a
plain write and rename. `SyncedFileJournal` is its `FileJournal` with the syncs Raft needs:

- every change (`add`, `clear`, `deleteEntriesFrom`, compaction) marks the journal dirty, and
  `sync_if_dirty()` msyncs the mapping (the library's `flush()`). The group syncs before
  `setRaftCommitIndex` returns (a leader applies and acknowledges right after it, in the same
  tick; a one-member group sends no message, so this is its only sync point) and before every
  message leaves (`transport.GuardedTransport.send`): a follower's reply is its
  acknowledgement of the entries it appended;
- the meta file (term, vote, commit index) is written to a temporary file, fsynced, renamed
  and its directory fsynced;
- the directory is fsynced once after the journal file is created;
- compaction (`deleteEntriesTo`, which runs right after the library renamed the new snapshot
  into place) first fsyncs the directory, so the snapshot survives, then rewrites the journal
  into a new file that is synced and renamed over the old one. The library rewrites the file
  in place, so a crash during that rewrite lost the entries after the snapshot; here a crash
  leaves the old journal or the new one, whole (the group completes an interrupted
  compaction when it loads the snapshot).

Syncing can be switched off per journal file, for tests only (`register_journal_file`):
`createJournal` takes nothing but the file name, so the switch lives in a small registry keyed
by path that each group fills before it builds its SyncObj and empties when it closes. All of
it runs on the thread that ticks the group, except the registry (any thread, locked).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from pysyncobj.journal import FileJournal, MemoryJournal, MetaStorer, ResizableFile
from pysyncobj.pickle import dumps

log = logging.getLogger(__name__)
COMPACTION_SUFFIX = ".compact.tmp"

_registry_lock = threading.Lock()
_sync_by_path: dict[str, bool] = {}


def register_journal_file(path: str, sync: bool) -> None:
    """Declare the journal file a group is about to open and whether it is synced. A path
    already registered (another open group) raises ValueError. Any thread."""
    key = os.path.abspath(path)
    with _registry_lock:
        if key in _sync_by_path:
            raise ValueError(f"the Raft journal {key} is already open in this process")
        _sync_by_path[key] = sync


def unregister_journal_file(path: str) -> None:
    """Forget a journal file once its group has closed it. Any thread."""
    with _registry_lock:
        _sync_by_path.pop(os.path.abspath(path), None)


def create_journal(journal_file: str | None = None) -> Any:
    """The journal pysyncobj uses (installed as `pysyncobj.syncobj.createJournal`): in memory
    without a file, otherwise a SyncedFileJournal, synced unless its path was registered
    with sync off."""
    if journal_file is None:
        return MemoryJournal()
    with _registry_lock:
        sync = _sync_by_path.get(os.path.abspath(journal_file), True)
    return SyncedFileJournal(journal_file, sync=sync)


def fsync_path(path: str) -> None:
    """fsync a file or directory by path (a directory makes its renames and creations durable)."""
    flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_DIRECTORY if os.path.isdir(path) else 0)
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _close_without_flush(resizable_file: Any) -> None:
    """Close a replaced journal file's mapping and descriptor; its library `_destroy()` would
    msync a file that is already unlinked."""
    resizable_file._ResizableFile__mm.close()
    resizable_file._ResizableFile__f.close()


class SyncedMetaStorer(MetaStorer):  # type: ignore[misc]
    """The journal's meta file (term, vote, commit index), replaced all or nothing: temporary
    file, fsync, rename, fsync of the directory (the fsyncs only when `sync`)."""

    def __init__(self, path: str, sync: bool) -> None:
        super().__init__(path)
        self._path = path
        self._sync = sync

    def storeMeta(self, meta: dict[str, Any]) -> None:
        temporary = self._path + ".tmp"
        with open(temporary, "wb") as file:
            file.write(dumps(meta))
            file.flush()
            if self._sync:
                os.fsync(file.fileno())
        os.replace(temporary, self._path)
        if self._sync:
            fsync_path(os.path.dirname(os.path.abspath(self._path)))


class SyncedFileJournal(FileJournal):  # type: ignore[misc]
    """pysyncobj's file journal, synced before anything it holds is acknowledged (see the
    module's docstring). With `sync=False` (tests only) it never flushes or fsyncs."""

    # The library's private state this class reads and swaps (see safety.library_internals_present).
    _FileJournal__journal: list[tuple[bytes, int, int]]
    _FileJournal__currentOffset: int
    _FileJournal__journalFile: Any

    def __init__(self, journal_file: str, sync: bool = True) -> None:
        self._path = os.path.abspath(journal_file)
        self._directory = os.path.dirname(self._path)
        self._sync = sync
        self._dirty = False
        created = not os.path.exists(self._path)
        super().__init__(journal_file)
        self._FileJournal__metaStorer = SyncedMetaStorer(journal_file + ".meta", sync)
        if created and sync:
            # The header must be on disk too: an empty journal file cannot be mapped at start.
            self.flush()
            fsync_path(self._directory)

    @property
    def path(self) -> str:
        """The journal file's absolute path."""
        return self._path

    @property
    def dirty(self) -> bool:
        """True when the journal changed since it was last synced."""
        return self._dirty

    @property
    def sync(self) -> bool:
        """False when syncing is switched off (tests only)."""
        return self._sync

    def add(self, command: bytes, idx: int, term: int) -> None:
        super().add(command, idx, term)
        self._dirty = True

    def clear(self) -> None:
        super().clear()
        self._dirty = True

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        super().deleteEntriesFrom(entryFrom)
        self._dirty = True

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Log compaction, called by the library once the snapshot is in place: keep the log
        from position `entryTo` on. A failure is logged and leaves the whole log (the next
        compaction or the next start completes it); it never leaves a torn file."""
        try:
            self.compact(entryTo)
        except OSError:
            log.exception("cannot compact the Raft journal %s; it keeps its old entries", self._path)

    def compact(self, entry_to: int) -> None:
        """Keep the log from position `entry_to` on, written to a new file that replaces the
        old one whole (after an fsync of the directory, which makes the just-renamed snapshot
        durable first). Raises OSError and leaves the old journal when it cannot."""
        if self._sync:
            fsync_path(self._directory)
        kept = self._FileJournal__journal[entry_to:]
        old_entries = self._FileJournal__journal
        old_offset = self._FileJournal__currentOffset
        old_file = self._FileJournal__journalFile
        temporary = self._path + COMPACTION_SUFFIX
        if os.path.exists(temporary):
            os.unlink(temporary)
        new_file = ResizableFile(temporary, defaultContent=self._FileJournal__getDefaultHeader())
        self._FileJournal__journalFile = new_file
        try:
            FileJournal.clear(self)
            for entry in kept:
                FileJournal.add(self, *entry)
            if self._sync:
                new_file.flush()
            os.replace(temporary, self._path)
        except BaseException:
            self._FileJournal__journalFile = old_file
            self._FileJournal__journal = old_entries
            self._FileJournal__currentOffset = old_offset
            new_file._destroy()
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        # The library reopens a file by this name when the mapping cannot grow in place.
        new_file._ResizableFile__fileName = self._path
        _close_without_flush(old_file)
        if self._sync:
            fsync_path(self._directory)
        self._dirty = False

    def sync_if_dirty(self) -> None:
        """msync the journal's mapping if it changed since the last sync (nothing when syncing
        is off)."""
        if not self._dirty:
            return
        if self._sync:
            self.flush()
        self._dirty = False

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        super().setRaftCommitIndex(raftCommitIndex)
        self.sync_if_dirty()

    def _destroy(self) -> None:
        self.sync_if_dirty()
        self.onOneSecondTimer()  # stores the meta (the commit index) when it changed
        super()._destroy()
