"""Process-wide hardening of pysyncobj, installed once by `install_library_guards()`, and the
check that the library internals those guards reach into are still where they were.

What `install_library_guards()` replaces (each shim is in its own module):
- `pysyncobj.pickle.loads`, `pysyncobj.pickle.load` and `pysyncobj.journal.loads` (imported
  by name there) with the restricted unpickler (`unpickle`): no pickle read from the network,
  the log or the meta file can run code, and the library's retry with the pure-Python
  unpickler (which would bypass any restriction) is gone;
- `pysyncobj.syncobj.createJournal` (and `pysyncobj.journal.createJournal`) with
  `journal.create_journal`: file journals are `SyncedFileJournal`s;
- `pysyncobj.transport.TcpConnection` and `pysyncobj.tcp_server.TcpConnection` (the names the
  library builds connections from) with `transport.BoundedTcpConnection`: bounded frames.
The per-group guards (sync before send, partners only) are `transport.GuardedTransport`,
which the group passes to its SyncObj.

`library_internals_present()` names every internal these shims patch, override or read that
is missing (a test asserts it names none), so an upgrade of the pinned library that moved one
fails loudly instead of silently turning a guard off.
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import pysyncobj.journal
import pysyncobj.node
import pysyncobj.pickle
import pysyncobj.syncobj
import pysyncobj.tcp_server
import pysyncobj.transport
import pysyncobj.version

from nacos_actors.raft.journal import create_journal
from nacos_actors.raft.transport import BoundedTcpConnection
from nacos_actors.raft.unpickle import restricted_load, restricted_loads

PINNED_VERSION = "0.3.17"

# The SyncObjConf options a group sets. SyncObjConf ignores a name it does not know, so a
# renamed option would silently fall back to its default: the check below catches that.
CONF_OPTIONS = (
    "password",
    "autoTick",
    "commandsQueueSize",
    "raftMinTimeout",
    "raftMaxTimeout",
    "appendEntriesPeriod",
    "connectionTimeout",
    "connectionRetryTime",
    "leaderFallbackTimeout",
    "appendEntriesUseBatch",
    "bindAddress",
    "logCompactionMinEntries",
    "logCompactionMinTime",
    "commandsWaitLeader",
    "fullDumpFile",
    "journalFile",
    "maxBindRetries",
    "dynamicMembershipChange",
    "useFork",
    "serializer",
    "deserializer",
)
FAIL_REASON_NAMES = (
    "SUCCESS",
    "QUEUE_FULL",
    "MISSING_LEADER",
    "DISCARDED",
    "NOT_LEADER",
    "LEADER_CHANGED",
    "REQUEST_DENIED",
    "UNKNOWN_OUTCOME",
)

_install_lock = threading.Lock()
_installed = False


def install_library_guards() -> None:
    """Patch pysyncobj process-wide (see the module's docstring); idempotent and thread-safe.
    Must run before the first SyncObj is built (RaftGroup calls it). Raises RuntimeError on
    another version of the library than the pinned one."""
    global _installed
    with _install_lock:
        if _installed:
            return
        if pysyncobj.version.VERSION != PINNED_VERSION:
            raise RuntimeError(f"pysyncobj {pysyncobj.version.VERSION} is not the pinned {PINNED_VERSION}")
        pysyncobj.pickle.loads = restricted_loads
        pysyncobj.pickle.load = restricted_load
        pysyncobj.journal.loads = restricted_loads
        pysyncobj.syncobj.createJournal = create_journal
        pysyncobj.journal.createJournal = create_journal
        pysyncobj.transport.TcpConnection = BoundedTcpConnection
        pysyncobj.tcp_server.TcpConnection = BoundedTcpConnection
        _installed = True


def _has(obj: Any, *names: str) -> Callable[[], bool]:
    return lambda: all(hasattr(obj, name) for name in names)


def _constant(value: bool) -> Callable[[], bool]:
    return lambda: value


def _source_has(function: Any, text: str) -> Callable[[], bool]:
    return lambda: text in inspect.getsource(function)


def _class_checks() -> list[tuple[str, Callable[[], bool]]]:
    from pysyncobj.config import FAIL_REASON, SyncObjConf
    from pysyncobj.journal import FileJournal, MetaStorer, ResizableFile
    from pysyncobj.pipe_notifier import PipeNotifier
    from pysyncobj.serializer import Serializer
    from pysyncobj.syncobj import SyncObj
    from pysyncobj.tcp_connection import TcpConnection
    from pysyncobj.transport import TCPTransport

    conf = SyncObjConf()
    checks: list[tuple[str, Callable[[], bool]]] = [
        ("pysyncobj.version.VERSION == '0.3.17'", lambda: pysyncobj.version.VERSION == PINNED_VERSION),
        ("pysyncobj.pickle.loads", _has(pysyncobj.pickle, "loads")),
        ("pysyncobj.pickle.load", _has(pysyncobj.pickle, "load")),
        ("pysyncobj.pickle.dumps", _has(pysyncobj.pickle, "dumps")),
        ("pysyncobj.journal.loads", _has(pysyncobj.journal, "loads")),
        ("pysyncobj.syncobj.createJournal", _has(pysyncobj.syncobj, "createJournal")),
        ("pysyncobj.journal.createJournal", _has(pysyncobj.journal, "createJournal")),
        ("pysyncobj.transport.TcpConnection", _has(pysyncobj.transport, "TcpConnection")),
        ("pysyncobj.tcp_server.TcpConnection", _has(pysyncobj.tcp_server, "TcpConnection")),
        ("pysyncobj.syncobj.SyncObjException", _has(pysyncobj.syncobj, "SyncObjException")),
        ("pysyncobj.syncobj.replicated", _has(pysyncobj.syncobj, "replicated")),
        ("pysyncobj.node.TCPNode", lambda: hasattr(pysyncobj.node, "TCPNode")),
        ("pysyncobj.journal.MemoryJournal", _has(pysyncobj.journal, "MemoryJournal")),
        ("pysyncobj.journal.MetaStorer.storeMeta", _has(MetaStorer, "storeMeta", "getMeta")),
        ("pysyncobj.journal.ResizableFile.flush", _has(ResizableFile, "flush", "_destroy")),
        (
            "pysyncobj.journal.FileJournal methods",
            _has(
                FileJournal,
                "add",
                "clear",
                "deleteEntriesFrom",
                "deleteEntriesTo",
                "setRaftCommitIndex",
                "flush",
                "onOneSecondTimer",
                "_destroy",
                "_FileJournal__getDefaultHeader",
            ),
        ),
        (
            "pysyncobj.tcp_connection.TcpConnection private read path",
            _has(TcpConnection, "_TcpConnection__processRead", "_TcpConnection__processParseMessage", "disconnect"),
        ),
        (
            "pysyncobj.transport.TCPTransport hooks",
            _has(
                TCPTransport,
                "send",
                "addNode",
                "_onNewIncomingConnection",
                "_onIncomingMessageReceived",
                "_onMessageReceived",
            ),
        ),
        ("pysyncobj.pipe_notifier.PipeNotifier.notify", _has(PipeNotifier, "notify")),
        (
            "pysyncobj.syncobj.SyncObj API",
            _has(
                SyncObj,
                "doTick",
                "destroy",
                "getStatus",
                "isNodeConnected",
                "otherNodes",
                "raftLastApplied",
                "raftCommitIndex",
                "raftCurrentTerm",
                "hasQuorum",
                "_getRaftLogSize",
                "_applyCommand",
            ),
        ),
    ]
    checks += [
        # Behaviours the group relies on that no attribute shows: read from the source.
        (
            "pysyncobj.serializer.Serializer.serialize calls serializer(tmpFile, data[1:])",
            _source_has(Serializer.serialize, "self.__serializer(tmpFile, data[1:])"),
        ),
        (
            "pysyncobj.serializer.Serializer.deserialize returns (None,) + deserializer(fileName)",
            _source_has(Serializer.deserialize, "(None,) + self.__deserializer(self.__fileName)"),
        ),
        (
            "pysyncobj.syncobj.SyncObj.__init__ raises SyncObjException('BindError')",
            _source_has(SyncObj.__init__, "raise SyncObjException('BindError')"),
        ),
        (
            "pysyncobj.syncobj.SyncObj applies an entry before raftLastApplied += 1",
            _source_has(SyncObj._SyncObj__applyLogEntries, "self.__raftLastApplied += 1"),
        ),
    ]
    checks += [(f"pysyncobj.config.SyncObjConf.{name}", _has(conf, name)) for name in CONF_OPTIONS]
    checks += [(f"pysyncobj.config.FAIL_REASON.{name}", _has(FAIL_REASON, name)) for name in FAIL_REASON_NAMES]
    return checks


def _instance_checks(directory: str) -> list[tuple[str, Callable[[], bool]]]:
    """Checks of attributes that exist only once an object is built: a file journal, a
    connection without a socket, a pipe notifier and a read-only SyncObj (it binds no port)."""
    from pysyncobj.config import SyncObjConf
    from pysyncobj.journal import FileJournal
    from pysyncobj.pipe_notifier import PipeNotifier
    from pysyncobj.poller import createPoller
    from pysyncobj.syncobj import SyncObj
    from pysyncobj.tcp_connection import TcpConnection

    checks: list[tuple[str, Callable[[], bool]]] = []
    journal = FileJournal(os.path.join(directory, "journal"))
    try:
        checks += [
            (
                f"pysyncobj.journal.FileJournal._FileJournal__{name}",
                _has(journal, f"_FileJournal__{name}"),
            )
            for name in ("metaStorer", "journalFile", "journal", "currentOffset", "meta")
        ]
        checks += [
            (
                f"pysyncobj.journal.ResizableFile._ResizableFile__{name}",
                _has(journal._FileJournal__journalFile, f"_ResizableFile__{name}"),
            )
            for name in ("fileName", "mm", "f")
        ]
        results = [(name, check()) for name, check in checks]
    finally:
        journal._destroy()
    poller = createPoller("auto")
    connection = TcpConnection(poller)
    notifier = PipeNotifier(poller)
    for name in ("pipeR", "pipeW"):
        results.append(
            (f"pysyncobj.pipe_notifier.PipeNotifier._PipeNotifier__{name}", _has(notifier, f"_PipeNotifier__{name}")())
        )
        descriptor = getattr(notifier, f"_PipeNotifier__{name}", None)
        if isinstance(descriptor, int):
            os.close(descriptor)
    results += [
        (f"pysyncobj.tcp_connection.TcpConnection.{name}", _has(connection, name)())
        for name in ("_TcpConnection__readBuffer", "encryptor", "recvRandKey", "recvLastTimestamp")
    ]
    readonly = SyncObj(None, [], SyncObjConf(autoTick=False))
    try:
        results += [
            (f"pysyncobj.syncobj.SyncObj._SyncObj__{name}", _has(readonly, f"_SyncObj__{name}")())
            for name in ("raftLog", "transport")
        ]
        results.append(("pysyncobj.syncobj.SyncObj._poller", _has(readonly, "_poller")()))
        transport = getattr(readonly, "_SyncObj__transport", None)
        results += [
            (f"pysyncobj.transport.TCPTransport.{name}", _has(transport, name)())
            for name in ("_syncObj", "_connections", "_nodeAddrToNode", "_unknownConnections")
        ]
    finally:
        readonly.destroy()
    return [(name, _constant(ok)) for name, ok in results]


def library_internals_present() -> list[str]:
    """The names of the pysyncobj internals the guards and the group patch, override or read
    that are missing or changed (empty when all are where they were). Builds a few library
    objects in a temporary directory, binding no port. Any thread."""
    missing = []
    directory = tempfile.mkdtemp(prefix="raft-internals-")
    try:
        checks = _class_checks()
        try:
            checks += _instance_checks(directory)
        except Exception as error:
            missing.append(f"building library objects failed: {type(error).__name__}: {error}")
        for name, check in checks:
            try:
                ok = check()
            except Exception:
                ok = False
            if not ok:
                missing.append(name)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return missing
