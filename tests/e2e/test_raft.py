"""Persistent data through Raft, end to end: real node processes on loopback, killed with -9.

Persistent instances (`ephemeral=false`), service settings and cluster configs live in each
member's Raft journal (`--data-dir`/raft); a write answers ok only once it is committed and
applied on the answering member. Here:

1. a standalone node killed with -9 in the middle of a write load loses no acknowledged write;
2. the leader of three killed with -9 under load: a new leader serves persistent writes within
   2 s, and every acknowledged write is on both survivors and, restarted, on the old leader;
3. all three killed with -9 and restarted: everything acknowledged is back on every member;
4. a member that missed more than a snapshot's worth of entries catches up from a snapshot;
5. pickles sent to the Raft port (plain, and encrypted with the cluster secret) run no code;
6. a follower answers a persistent write once it holds it (read-your-writes); without a
   majority persistent writes answer 503 naming Raft while ephemeral ones still work;
7. a data file an earlier version wrote (persistent data inside) moves into the journal once;
8. health set by hand on a persistent instance reaches every member and survives a new leader.

Figures (time to a new leader, restart times) are printed (`-s`) and written to raft.json in
the pytest base temp dir.
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import signal
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nacos
import pytest
from pysyncobj.encryptor import getEncryptor

from nacos_actors.core.codec import decode_services, encode_services
from nacos_actors.model import (
    DEFAULT_GROUP,
    DEFAULT_NAMESPACE,
    ClusterConfig,
    Instance,
    Service,
    ServiceKey,
    freeze,
    instance_map,
)
from nacos_actors.snapshot import SNAPSHOT_FILE, write_file_atomically
from tests.e2e.conftest import CLUSTER_SECRET, Cluster, NodeProcess
from tests.e2e.raft_support import (
    NS,
    ClusterSettings,
    PersistentInstance,
    ServiceSettings,
    Write,
    WriteLog,
    Writer,
    assert_all_on,
    instances_on,
    join_writers,
    metric_value,
    missing_on,
    raft_state,
    run_writers,
    send,
    service_on,
    wait_for_leader,
    wait_until,
)

pytestmark = pytest.mark.e2e

FIGURES: dict[str, Any] = {}
NEW_LEADER_BOUND_S = 2.0  # the bound: a new leader serves within 2 s
VISIBLE_S = 1.0  # a committed write reaches every member within this


def record_figure(tmp_path_factory, capsys, name: str, value: Any) -> None:
    """Print a measured figure and keep it in raft.json (in the pytest base temp dir)."""
    FIGURES[name] = value
    path = tmp_path_factory.getbasetemp() / "raft.json"
    path.write_text(json.dumps(FIGURES, indent=2))
    with capsys.disabled():
        print(f"\n{name}: {value}  ({path})")


def ip_of(thread: int, i: int) -> str:
    """A distinct address for write `i` of writer `thread`."""
    return f"127.{thread}.{i // 250}.{i % 250 + 1}"


def instance_writes(prefix: str, thread: int, services: int = 3) -> Iterator[Write]:
    """Persistent registrations, each a new instance, spread over a few services."""
    for i in itertools.count():
        yield PersistentInstance(f"{prefix}-{i % services}", ip_of(thread, i), 8000 + thread)


def mixed_writes(prefix: str, thread: int) -> Iterator[Write]:
    """Mostly persistent registrations; every tenth a new service with settings (whose cluster
    config follows once it is acknowledged: see `cluster_after`)."""
    for i in itertools.count():
        if i % 10 == 5:
            yield ServiceSettings(f"{prefix}-made-{thread}-{i}", round((i % 9) / 10, 1), (("made", str(i)),))
        else:
            yield PersistentInstance(f"{prefix}-{thread}", ip_of(thread, i), 8000 + i % 7)


def cluster_after(write: Write) -> Write | None:
    """After a new service is acknowledged, its cluster config."""
    if isinstance(write, ServiceSettings):
        made = int(write.metadata[0][1])
        return ClusterSettings(write.service, "c1", 1000 + made, metadata=(("made", str(made)),))
    return None


def restart_standalone(start_node, node: NodeProcess, *args: str) -> tuple[NodeProcess, float]:
    """Start a node again on the ports of `node` (which has exited) with `args`; answers the new
    node and the seconds from launch to ready."""
    started = time.monotonic()
    again = start_node(*args, "--raft-port", str(node.raft_port), port=node.port)
    return again, round(time.monotonic() - started, 2)


def others(cluster: Cluster, node: NodeProcess) -> list[NodeProcess]:
    """The members of `cluster` but `node`."""
    return [n for n in cluster.nodes if n is not node]


def member_dirs(tmp_path: Path, size: int = 3) -> list[Path]:
    """One data directory per member."""
    return [tmp_path / f"member-{i}" for i in range(size)]


def assert_no_errors_logged(*nodes: NodeProcess) -> None:
    """No node logged an ERROR or a traceback (a kill -9 leaves its log merely cut short)."""
    for node in nodes:
        errors = [line for line in node.stderr().splitlines() if " ERROR " in line or "Traceback" in line]
        assert not errors, f"{node.address}: {errors}"


# -- 1 ---------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_standalone_node_killed_right_after_ok_loses_nothing(
    start_node, tmp_path, tmp_path_factory, capsys, nacos_log_dir
):
    data_dir = tmp_path / "data"
    node = start_node("--data-dir", str(data_dir))
    log, stop = WriteLog(), threading.Event()
    writers = [
        Writer(f"writer-{t}", [node], mixed_writes("kill", t), log, stop, stop_on_failure=True, after_ack=cluster_after)
        for t in range(4)
    ]
    run_writers(writers)
    wait_until(lambda: len(log.acked) >= 400 or stop.is_set(), 30, "400 acknowledged writes")
    node.process.kill()  # SIGKILL in the middle of the stream
    node.process.wait(5)
    stop.set()
    join_writers(writers)
    assert not log.refused, log.refused[:5]
    acked = log.writes()
    kinds = dict(Counter(type(write).__name__ for write in acked))
    assert len(acked) >= 400 and kinds.keys() == {"PersistentInstance", "ServiceSettings", "ClusterSettings"}, kinds

    again, restart_s = restart_standalone(start_node, node, "--data-dir", str(data_dir))
    record_figure(tmp_path_factory, capsys, "standalone restart after kill -9 (s, launch to ready)", restart_s)

    # The first write after the restart answers ok, through a real client.
    client = nacos.NacosClient(again.address, logDir=nacos_log_dir)
    assert client.add_naming_instance("after-restart", "127.9.9.9", 9000, cluster_name="c9", ephemeral=False)
    hosts = client.list_naming_instance("after-restart")["hosts"]
    assert [(h["ip"], h["port"], h["ephemeral"]) for h in hosts] == [("127.9.9.9", 9000, False)]

    assert_all_on(again, acked, "the restarted node")
    record_figure(tmp_path_factory, capsys, "standalone writes acknowledged before kill -9", kinds)
    assert_no_errors_logged(node, again)


# -- 2 ---------------------------------------------------------------------------------------


def first_persistent_write_after(survivors: list[NodeProcess], since: float, prefix: str) -> tuple[float, Write]:
    """Send new persistent writes to `survivors` in turn until one answers ok; answers the
    seconds from `since` to that answer, and the write."""
    for n in itertools.count():
        write = PersistentInstance(prefix, f"127.99.{n // 250}.{n % 250 + 1}", 9999)
        try:
            answer = write.send(survivors[n % len(survivors)], timeout=5.0)
        except OSError:
            answer = (0, b"")
        if answer == (200, b"ok"):
            return time.monotonic() - since, write
        assert time.monotonic() - since < 20, f"no persistent write answered ok within 20 s; last {answer}"
        time.sleep(0.01)
    raise AssertionError("unreachable")


@pytest.mark.timeout(120)
def test_the_leader_killed_under_write_load(start_cluster, tmp_path, tmp_path_factory, capsys):
    cluster = start_cluster(3, data_dirs=member_dirs(tmp_path))
    leader = wait_for_leader(cluster.nodes)
    log, stop = WriteLog(), threading.Event()
    writers = [Writer(f"writer-{t}", cluster.nodes, instance_writes("load", t), log, stop, start=t) for t in range(4)]
    run_writers(writers)
    wait_until(lambda: len(log.acked) >= 150, 30, "150 acknowledged writes before the kill")

    killed = time.monotonic()
    leader.process.kill()  # `leader` keeps the killed process (the cluster's entry is replaced at restart)
    survivors = others(cluster, leader)
    new_leader_s, probe = first_persistent_write_after(survivors, killed, "after-kill")
    record_figure(tmp_path_factory, capsys, "leader kill -9 -> first persistent write ok (s)", round(new_leader_s, 3))
    wait_for_leader(survivors)
    assert new_leader_s < NEW_LEADER_BOUND_S, f"a new leader served after {new_leader_s:.2f} s"

    acked_at_kill = len(log.acked)
    wait_until(lambda: len(log.acked) >= acked_at_kill + 100, 30, "100 more acknowledged writes after the kill")
    stop.set()
    join_writers(writers)
    assert not log.refused, log.refused[:5]
    acked = [*log.writes(), probe]
    for survivor in survivors:
        wait_until(lambda s=survivor: not missing_on(s, acked), 5, f"every acknowledged write on {survivor.address}")

    started = time.monotonic()
    again = cluster.start_member(cluster.nodes.index(leader))
    record_figure(
        tmp_path_factory, capsys, "killed leader restarted, launch to ready (s)", round(time.monotonic() - started, 2)
    )
    wait_until(lambda: not missing_on(again, acked), 5, "every acknowledged write on the restarted member")
    cluster.wait_settled()
    record_figure(
        tmp_path_factory,
        capsys,
        "leader kill -9 under load: writes acknowledged (retried 503s/refused connections)",
        f"{len(acked)} ({log.unavailable})",
    )
    assert_no_errors_logged(leader, *cluster.nodes)


# -- 3 ---------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_all_three_killed_and_restarted_restore_everything(start_cluster, tmp_path, tmp_path_factory, capsys):
    cluster = start_cluster(3, data_dirs=member_dirs(tmp_path))
    wait_for_leader(cluster.nodes)
    log, stop = WriteLog(), threading.Event()
    writers = [
        Writer(
            f"writer-{t}",
            [cluster.nodes[t % 3]],
            mixed_writes("all", t),
            log,
            stop,
            stop_on_failure=True,
            after_ack=cluster_after,
        )
        for t in range(3)
    ]
    run_writers(writers)
    wait_until(lambda: len(log.acked) >= 200, 30, "200 acknowledged writes")
    killed = list(cluster.nodes)
    for node in killed:
        node.process.kill()
    for node in killed:
        node.process.wait(5)
    stop.set()
    join_writers(writers)
    assert not log.refused, log.refused[:5]
    acked = log.writes()

    started = time.monotonic()
    for index in range(3):
        cluster.start_member(index, wait=False)
    for node in cluster.nodes:
        node.wait_ready()
    wait_for_leader(cluster.nodes)
    record_figure(
        tmp_path_factory,
        capsys,
        "all three restarted after kill -9, launch to a leader (s)",
        round(time.monotonic() - started, 2),
    )
    for node in cluster.nodes:
        assert_all_on(node, acked, f"member {node.address} after the restart")
    # Each member takes persistent writes again.
    for index, node in enumerate(cluster.nodes):
        write = PersistentInstance("after-restart", f"127.3.9.{index + 1}", 9000)
        assert write.send(node) == (200, b"ok")
        wait_until(lambda w=write: all(not missing_on(n, [w]) for n in cluster.nodes), VISIBLE_S, f"{write} everywhere")
    cluster.wait_settled()
    assert_no_errors_logged(*killed, *cluster.nodes)


# -- 4 ---------------------------------------------------------------------------------------

SNAPSHOT_ENTRIES = 50
LOADED_SNAPSHOT = "loaded a Raft snapshot"


def snapshot_file(data_dir: Path) -> Path:
    return data_dir / "raft" / "raft.snapshot"


@pytest.mark.timeout(120)
def test_a_lagging_member_catches_up_from_a_snapshot(start_cluster, tmp_path, tmp_path_factory, capsys):
    dirs = member_dirs(tmp_path)
    cluster = start_cluster(3, "--raft-snapshot-entries", str(SNAPSHOT_ENTRIES), data_dirs=dirs)
    leader = wait_for_leader(cluster.nodes)
    lagging = others(cluster, leader)[0]
    index = cluster.nodes.index(lagging)
    early = PersistentInstance("lag-early", "127.4.0.1", 4000)
    assert early.send(lagging) == (200, b"ok")
    assert lagging.stop(signal.SIGTERM) == 0
    # It never compacted its own log: a snapshot it loads later can only be the leader's.
    assert not snapshot_file(dirs[index]).exists()

    log, stop = WriteLog(), threading.Event()
    live = others(cluster, lagging)
    writers = [Writer(f"writer-{t}", live, instance_writes("lag", t, services=5), log, stop, start=t) for t in range(3)]
    run_writers(writers)
    wait_until(lambda: len(log.acked) >= 6 * SNAPSHOT_ENTRIES, 60, f"{6 * SNAPSHOT_ENTRIES} acknowledged writes")
    stop.set()
    join_writers(writers)
    assert not log.refused, log.refused[:5]
    assert snapshot_file(dirs[cluster.nodes.index(leader)]).exists(), "the leader never compacted its log"
    leader_state = raft_state(leader)
    assert leader_state is not None and leader_state["logEntries"] <= 2 * SNAPSHOT_ENTRIES, leader_state

    started = time.monotonic()
    again = cluster.start_member(index)
    acked = [early, *log.writes()]
    wait_until(lambda: not missing_on(again, acked), 10, "every acknowledged write on the member that lagged")
    record_figure(
        tmp_path_factory,
        capsys,
        f"member {len(acked)} entries behind: launch to holding them all (s)",
        round(time.monotonic() - started, 2),
    )
    assert LOADED_SNAPSHOT in again.stderr(), again.stderr()
    assert snapshot_file(dirs[index]).exists()
    # Its metrics agree: it applied every entry, yet its journal holds only those past the snapshot.
    applied = metric_value(again, "nacos_actors_raft_applied_index")
    journal_entries = metric_value(again, "nacos_actors_raft_log_entries")
    assert applied is not None and applied >= len(acked), applied
    assert journal_entries is not None and journal_entries <= 2 * SNAPSHOT_ENTRIES, journal_entries
    leader_snapshots = metric_value(leader, "nacos_actors_raft_snapshots_total")
    assert leader_snapshots is not None and leader_snapshots >= 1, leader_snapshots
    cluster.wait_settled()
    # And it takes part: a write it answers is everywhere.
    write = PersistentInstance("lag-after", "127.4.9.9", 4000)
    assert write.send(again) == (200, b"ok")
    for node in cluster.nodes:
        wait_until(lambda n=node: not missing_on(n, [write]), VISIBLE_S, f"{write} on {node.address}")
    assert_no_errors_logged(lagging, *cluster.nodes)


# -- 5 ---------------------------------------------------------------------------------------


class OpensFile:
    """Unpickled by a stock unpickler, creates the file at `path` (io.open(path, "w"))."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


class RunsShell:
    """Unpickled by a stock unpickler, runs `touch path` (os.system)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


def frame(message: Any, encryptor: Any = None) -> bytes:
    """pysyncobj's wire frame (tcp_connection.TcpConnection.send): the pickled message (protocol
    2), zlib-compressed, Fernet-encrypted when the group has a password, after its length."""
    data = zlib.compress(pickle.dumps(message, 2), 3)
    if encryptor is not None:
        data = encryptor.encrypt_at_time(data, int(time.monotonic()))
    return struct.pack("i", len(data)) + data


def read_frame(sock: socket.socket, encryptor: Any) -> Any:
    """One frame from the node (its half of the key exchange): plain data only, so a stock
    unpickler is safe here."""
    sock.settimeout(5)
    buffer = b""
    while len(buffer) < 4 or len(buffer) < 4 + struct.unpack("i", buffer[:4])[0]:
        chunk = sock.recv(65536)
        assert chunk, "the node closed the connection before it answered the key exchange"
        buffer += chunk
    (length,) = struct.unpack("i", buffer[:4])
    return pickle.loads(zlib.decompress(encryptor.decrypt(buffer[4 : 4 + length])))


def closed_by_node(sock: socket.socket, timeout: float = 5.0) -> bool:
    """Whether the node closes the connection (reading until EOF or a reset) within `timeout`."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def probe(raft_port: int, frames: list[Any], handshake: Any = None) -> bool:
    """Connect to a Raft port and send `frames`; answers whether the node then closed the
    connection. With `handshake` (an encryptor), first complete pysyncobj's key exchange, and
    send each of `frames` as a message wrapped in the node's key, as a partner would."""
    with socket.create_connection(("127.0.0.1", raft_port), timeout=5) as sock:
        if handshake is not None:
            our_key = os.urandom(32)
            sock.sendall(frame(our_key, handshake))
            # The node answers its own key, wrapped in ours; later frames carry its key.
            echoed, their_key = read_frame(sock, handshake)
            assert echoed == our_key and isinstance(their_key, bytes) and len(their_key) == 32
            frames = [frame((their_key, message), handshake) for message in frames]
        for data in frames:
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                return True
        return closed_by_node(sock)


def gadgets(markers: Path) -> list[Any]:
    return [OpensFile(markers / "opened"), RunsShell(markers / "shelled")]


DROPPED = "Raft transport: dropped a connection"


@pytest.mark.timeout(60)
def test_a_pickle_sent_to_a_standalone_nodes_raft_port_runs_nothing(start_node, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    # The probe is live: a stock unpickler, as pysyncobj's own, would create the marker.
    control = tmp_path / "control"
    pickle.loads(zlib.decompress(frame(OpensFile(control))[4:]))
    assert control.exists()

    node = start_node("--data-dir", str(tmp_path / "data"))
    assert node.raft_port is not None
    for gadget in gadgets(markers):
        assert probe(node.raft_port, [frame(gadget)]), "the node kept a connection that sent a pickled call"
        assert probe(node.raft_port, [frame("127.0.0.1:1"), frame(gadget)])

    write = PersistentInstance("after-probe", "127.5.0.1", 5000)
    assert write.send(node) == (200, b"ok")
    assert not missing_on(node, [write])
    assert list(markers.iterdir()) == []
    assert f"{DROPPED}: a frame that does not decode (UnpicklingError: global" in node.stderr()
    assert_no_errors_logged(node)


@pytest.mark.timeout(90)
def test_a_pickle_sent_to_a_cluster_members_raft_port_runs_nothing_even_with_the_secret(start_cluster, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    cluster = start_cluster(3)
    leader = wait_for_leader(cluster.nodes)
    with_secret = getEncryptor(CLUSTER_SECRET)
    follower = others(cluster, leader)[0]

    def without_secret(port: int, gadget: Any) -> bool:  # the frame does not decrypt
        return probe(port, [frame(gadget)])

    def secret_first_frame(port: int, gadget: Any) -> bool:  # decrypts; the unpickler refuses it
        return probe(port, [frame(gadget, with_secret)])

    def secret_and_key_exchange(port: int, gadget: Any) -> bool:  # as a partner would send it
        return probe(port, [gadget], handshake=with_secret)

    # The members formed their group without dropping a connection (no Raft message overtakes a
    # key exchange), and a node logs one refused connection per 5 s: each member's first probe
    # is the one logged.
    for node in cluster.nodes:
        assert DROPPED not in node.stderr(), node.stderr()
    plans = [
        (leader, (without_secret, secret_first_frame, secret_and_key_exchange)),
        (follower, (secret_and_key_exchange, secret_first_frame, without_secret)),
    ]
    for target, attempts in plans:
        assert target.raft_port is not None
        for attempt in attempts:
            for gadget in gadgets(markers):
                assert attempt(target.raft_port, gadget), f"{attempt.__name__}: the connection was kept"

    # The group still works: a write on a follower reaches every member.
    write = PersistentInstance("after-probe", "127.5.0.2", 5000)
    assert write.send(others(cluster, leader)[1]) == (200, b"ok")
    for node in cluster.nodes:
        wait_until(lambda n=node: not missing_on(n, [write]), VISIBLE_S, f"{write} on {node.address}")
    assert wait_for_leader(cluster.nodes) is leader
    assert list(markers.iterdir()) == []
    assert_no_errors_logged(*cluster.nodes)
    assert f"{DROPPED}: a frame that does not decode (InvalidToken" in leader.stderr()
    assert f"{DROPPED}: a frame that does not decode (UnpicklingError: global" in follower.stderr()


# -- 6 ---------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_follower_answers_once_it_holds_the_write_and_without_a_majority_answers_503(start_cluster):
    cluster = start_cluster(3)
    leader = wait_for_leader(cluster.nodes)
    followers = others(cluster, leader)
    late: list[tuple[str, Write]] = []
    for round_no, follower in enumerate(followers):
        for k in range(12):  # several services: Distro gives them different owners
            service = f"ryw-{k}"
            write = PersistentInstance(service, f"127.6.{round_no}.{k + 1}", 7000)
            assert write.send(follower) == (200, b"ok")
            # Read-your-writes: the answering member holds what it acknowledged.
            if (write.ip, write.port) not in instances_on(follower, service):
                late.append((follower.address, write))
            for other in others(cluster, follower):
                wait_until(
                    lambda o=other, w=write: (w.ip, w.port) in instances_on(o, w.service),
                    VISIBLE_S,
                    f"{write} on {other.address}",
                )
        settings = ServiceSettings(f"ryw-made-{round_no}", 0.4, (("by", follower.address),))
        assert settings.send(follower) == (200, b"ok")
        if service_on(follower, settings.service) is None:
            late.append((follower.address, settings))
        config = ClusterSettings(settings.service, "c1", 4321, metadata=(("k", "v"),))
        assert config.send(follower) == (200, b"ok")
        if missing_on(follower, [config]):
            late.append((follower.address, config))
        for other in others(cluster, follower):
            wait_until(
                lambda o=other, made=(settings, config): not missing_on(o, made),
                VISIBLE_S,
                f"{settings.service} on {other.address}",
            )
    assert not late, f"acknowledged but not yet readable on the member that answered: {late}"

    # No majority: the leader alone. Persistent writes are refused (503, naming Raft), ephemeral ones work.
    for follower in followers:
        assert follower.stop(signal.SIGTERM) == 0
    alone = PersistentInstance("no-majority", "127.6.9.1", 7000)
    status, body = alone.send(leader)
    assert status == 503 and b"Raft" in body, (status, body)
    assert "127.6.9.1" not in str(instances_on(leader, "no-majority"))
    status, body = send(leader, "POST", f"{NS}/instance", serviceName="still-ephemeral", ip="127.6.9.2", port=7000)
    assert (status, body) == (200, b"ok")
    assert ("127.6.9.2", 7000) in instances_on(leader, "still-ephemeral")
    # Once a majority is back, the write a client retries goes through.
    cluster.start_member(cluster.nodes.index(followers[0]))
    wait_until(lambda: alone.send(leader) == (200, b"ok"), 15, "a persistent write once two members are up")
    assert_no_errors_logged(*followers, *cluster.nodes)


# -- 7 ---------------------------------------------------------------------------------------

LONG_BEATS = {"preserved.heart.beat.timeout": "600000", "preserved.ip.delete.timeout": "600000"}
MOVED = "persistent data from the data file into the Raft journal"


def legacy_services() -> list[Service]:
    """What an earlier version's data file held: services with both halves in one snapshot."""

    def key(name: str) -> ServiceKey:
        return ServiceKey(DEFAULT_NAMESPACE, f"{DEFAULT_GROUP}@@{name}")

    def instance(name: str, ip: str, ephemeral: bool, cluster: str = "DEFAULT") -> Instance:
        return Instance(
            ip=ip,
            port=6000,
            cluster=cluster,
            ephemeral=ephemeral,
            metadata=freeze(LONG_BEATS if ephemeral else {"kind": "persistent"}),
            instance_id=f"{ip}#6000#{cluster}#{DEFAULT_GROUP}@@{name}",
        )

    config = ClusterConfig(
        health_checker=freeze({"type": "NONE"}), check_port=6001, use_instance_port=False, metadata=freeze({"c": "1"})
    )
    both = [
        instance("legacy-both", "127.7.0.1", False, "c1"),
        instance("legacy-both", "127.7.0.2", False, "c1"),
        instance("legacy-both", "127.7.0.3", True),
    ]
    return [
        Service(
            key=key("legacy-both"),
            instances=instance_map(both),
            protect_threshold=0.7,
            metadata=freeze({"from": "the old file"}),
            explicit=True,
            revision=7,
            modified_ms=1_700_000_000_000,
            clusters=freeze({"c1": config}),
        ),
        Service(
            key=key("legacy-settings"),
            protect_threshold=0.2,
            metadata=freeze({"only": "settings"}),
            explicit=True,
            revision=1,
            modified_ms=1_700_000_000_000,
        ),
        Service(
            key=key("legacy-ephemeral"),
            instances=instance_map([instance("legacy-ephemeral", "127.7.1.1", True)]),
            revision=3,
            modified_ms=1_700_000_000_000,
        ),
    ]


def assert_legacy_data_served(node: NodeProcess) -> None:
    both = service_on(node, "legacy-both")
    assert both is not None and both["protectThreshold"] == 0.7 and both["metadata"] == {"from": "the old file"}
    cluster = {c["name"]: c for c in both["clusters"]}["c1"]
    assert (cluster["healthChecker"]["type"], cluster["defaultCheckPort"]) == ("NONE", 6001)
    assert cluster["metadata"] == {"c": "1"}
    hosts = instances_on(node, "legacy-both")
    assert {(ip, h["ephemeral"], h["clusterName"]) for (ip, _), h in hosts.items()} == {
        ("127.7.0.1", False, "c1"),
        ("127.7.0.2", False, "c1"),
        ("127.7.0.3", True, "DEFAULT"),
    }
    settings = service_on(node, "legacy-settings")
    assert settings is not None and (settings["protectThreshold"], settings["metadata"]) == (0.2, {"only": "settings"})
    assert set(instances_on(node, "legacy-ephemeral")) == {("127.7.1.1", 6000)}


@pytest.mark.timeout(60)
def test_an_earlier_versions_data_file_moves_into_raft_once(start_node, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_file = data_dir / SNAPSHOT_FILE
    write_file_atomically(data_file, encode_services(legacy_services()))

    node = start_node("--data-dir", str(data_dir))
    assert_legacy_data_served(node)
    assert f"moved 2 services' {MOVED}" in node.stderr()
    # The data file now holds the ephemeral halves only; the journal holds the rest.
    left = {service.key.name: service for service in decode_services(data_file.read_bytes())}
    assert set(left) == {f"{DEFAULT_GROUP}@@legacy-both", f"{DEFAULT_GROUP}@@legacy-ephemeral"}
    for service in left.values():
        assert service.definition is None and all(key.ephemeral for key in service.instances)
        assert (service.protect_threshold, dict(service.metadata), service.explicit, dict(service.clusters)) == (
            0.0,
            {},
            False,
            {},
        )
    assert {key.ip for key in left[f"{DEFAULT_GROUP}@@legacy-both"].instances} == {"127.7.0.3"}
    assert (data_dir / "raft" / "raft.journal").stat().st_size > 0

    node.process.kill()  # the data file is not written again at a kill
    node.process.wait(5)
    again, _ = restart_standalone(start_node, node, "--data-dir", str(data_dir))
    assert_legacy_data_served(again)
    assert MOVED not in again.stderr() and "holds the persistent data" not in again.stderr()
    # Raft's copy is the one served and changed: a change made now survives the next restart.
    assert ServiceSettings("legacy-settings", 0.3, (("only", "settings"),)).send(again)[0] == 400  # exists
    update = send(again, "PUT", f"{NS}/service", serviceName="legacy-settings", protectThreshold=0.9)
    assert update == (200, b"ok")
    assert again.stop(signal.SIGTERM) == 0
    third, _ = restart_standalone(start_node, again, "--data-dir", str(data_dir))
    legacy_settings = service_on(third, "legacy-settings")
    assert legacy_settings is not None and legacy_settings["protectThreshold"] == 0.9
    assert MOVED not in third.stderr()
    assert_no_errors_logged(node, again, third)


# -- 8 ---------------------------------------------------------------------------------------


def health_of(node: NodeProcess, service: str, ip: str) -> bool | None:
    """The `healthy` of a persistent instance in cluster c1 as a node's detail shows it (None: not found)."""
    status, body = send(
        node, "GET", f"{NS}/instance", serviceName=service, ip=ip, port=8000, clusterName="c1", ephemeral="false"
    )
    return json.loads(body)["healthy"] if status == 200 else None


def set_health(node: NodeProcess, service: str, ip: str, healthy: bool) -> tuple[int, bytes]:
    return send(
        node,
        "PUT",
        f"{NS}/health/instance",
        serviceName=service,
        ip=ip,
        port=8000,
        clusterName="c1",
        healthy=str(healthy).lower(),
    )


def reaches_every_member(nodes: list[NodeProcess], service: str, ip: str, healthy: bool) -> float:
    """Seconds until every node shows the health (fails after VISIBLE_S)."""
    started = time.monotonic()
    for node in nodes:
        wait_until(
            lambda n=node: health_of(n, service, ip) is healthy, VISIBLE_S, f"{ip} healthy={healthy} on {node.address}"
        )
    return time.monotonic() - started


@pytest.mark.timeout(120)
def test_health_set_by_hand_reaches_every_member_and_survives_a_new_leader(
    start_cluster, tmp_path, tmp_path_factory, capsys
):
    cluster = start_cluster(3, data_dirs=member_dirs(tmp_path))
    leader = wait_for_leader(cluster.nodes)
    follower, other = others(cluster, leader)
    for ip in ("127.8.0.1", "127.8.0.2"):  # two: one unhealthy does not trip the protect threshold
        assert PersistentInstance("by-hand", ip, 8000, cluster="c1").send(follower) == (200, b"ok")

    # Under the default TCP checker, health is not the client's to set.
    status, body = set_health(other, "by-hand", "127.8.0.1", False)
    assert (status, b"health check is still working" in body) == (400, True), body
    assert ClusterSettings("by-hand", "c1", 8001).send(other) == (200, b"ok")  # checker NONE

    assert set_health(other, "by-hand", "127.8.0.1", False) == (200, b"ok")
    assert health_of(other, "by-hand", "127.8.0.1") is False  # at once, where it was answered
    spread_s = reaches_every_member(cluster.nodes, "by-hand", "127.8.0.1", False)
    listed = instances_on(follower, "by-hand")
    assert (listed[("127.8.0.1", 8000)]["healthy"], listed[("127.8.0.2", 8000)]["healthy"]) == (False, True)

    leader.process.kill()
    survivors = [follower, other]
    wait_for_leader(survivors)
    for node in survivors:
        assert health_of(node, "by-hand", "127.8.0.1") is False
    # Set again through the new group: retried as a client would while the election settles.
    wait_until(lambda: set_health(follower, "by-hand", "127.8.0.1", True) == (200, b"ok"), 10, "health set again")
    spread_after_s = reaches_every_member(survivors, "by-hand", "127.8.0.1", True)
    again = cluster.start_member(cluster.nodes.index(leader))
    wait_until(lambda: health_of(again, "by-hand", "127.8.0.1") is True, 5, "the restarted member has the health")
    record_figure(
        tmp_path_factory,
        capsys,
        "health by hand reaches every member (s): before / after the leader change",
        f"{spread_s:.3f} / {spread_after_s:.3f}",
    )
    cluster.wait_settled()
    assert_no_errors_logged(leader, *cluster.nodes)
