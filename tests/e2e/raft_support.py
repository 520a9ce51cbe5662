"""Helpers of the Raft end-to-end tests (tests/e2e/test_raft.py): persistent writes as values
that know how to send themselves and how to find themselves on a node, writer threads that
record every write a node acknowledged, and the Raft views of a node and of a cluster.

Every request is a plain HTTP/1.1 call with its parameters in the query string, as the
clients send them; a refused connection or a timeout is an OSError, answered as such.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest

NS = "/nacos/v1/ns"
GROUP = "DEFAULT_GROUP"
RETRY_PAUSE_S = 0.05


class Addressed(Protocol):
    """Anything with a loopback HTTP port (a NodeProcess)."""

    @property
    def port(self) -> int: ...


def send(node: Addressed, method: str, path: str, timeout: float = 5.0, **params: Any) -> tuple[int, bytes]:
    """One request with every parameter in the query string; (status, body). OSError when the
    node does not answer (refused, reset, timed out)."""
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=timeout)
    try:
        connection.request(method, f"{path}?{query}")
        response = connection.getresponse()
        return response.status, response.read()
    except (http.client.HTTPException, ConnectionError) as error:
        raise OSError(f"{method} {path} on {node.port}: {error!r}") from error
    finally:
        connection.close()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.02) -> Any:
    """The first truthy value of `predicate`, polled every `every` s; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(every)


# -- persistent writes ---------------------------------------------------------------------


@dataclass(frozen=True)
class PersistentInstance:
    """POST /v1/ns/instance with ephemeral=false: an idempotent write (the same instance again
    changes nothing), so a client may retry it whatever became of the first attempt."""

    service: str
    ip: str
    port: int
    cluster: str = "DEFAULT"
    weight: float = 1.0

    def send(self, node: Addressed, timeout: float = 5.0) -> tuple[int, bytes]:
        return send(
            node,
            "POST",
            f"{NS}/instance",
            timeout,
            serviceName=self.service,
            ip=self.ip,
            port=self.port,
            clusterName=self.cluster,
            weight=self.weight,
            ephemeral="false",
            metadata=json.dumps({"written": f"{self.ip}:{self.port}"}),
        )


@dataclass(frozen=True)
class ServiceSettings:
    """POST /v1/ns/service: a new service with a protect threshold and metadata (a second
    attempt answers 400 "already exists")."""

    service: str
    threshold: float
    metadata: tuple[tuple[str, str], ...]

    def send(self, node: Addressed, timeout: float = 5.0) -> tuple[int, bytes]:
        return send(
            node,
            "POST",
            f"{NS}/service",
            timeout,
            serviceName=self.service,
            protectThreshold=self.threshold,
            metadata=",".join(f"{k}={v}" for k, v in self.metadata),
        )


@dataclass(frozen=True)
class ClusterSettings:
    """PUT /v1/ns/cluster: a cluster's checker, check port and metadata (idempotent)."""

    service: str
    cluster: str
    check_port: int
    checker: str = "NONE"
    metadata: tuple[tuple[str, str], ...] = ()

    def send(self, node: Addressed, timeout: float = 5.0) -> tuple[int, bytes]:
        return send(
            node,
            "PUT",
            f"{NS}/cluster",
            timeout,
            serviceName=self.service,
            clusterName=self.cluster,
            checkPort=self.check_port,
            useInstancePort4Check="false",
            healthChecker=json.dumps({"type": self.checker}),
            metadata=",".join(f"{k}={v}" for k, v in self.metadata) or None,
        )


Write = PersistentInstance | ServiceSettings | ClusterSettings


def instances_on(node: Addressed, service: str) -> dict[tuple[str, int], dict[str, Any]]:
    """The instances of `service` a node lists, healthy or not, by (ip, port); {} when it has none."""
    status, body = send(node, "GET", f"{NS}/instance/list", serviceName=service)
    assert status == 200, (service, status, body)
    return {(h["ip"], h["port"]): h for h in json.loads(body)["hosts"]}


def service_on(node: Addressed, service: str) -> dict[str, Any] | None:
    """GET /v1/ns/service of `service` (None: the node does not know it)."""
    status, body = send(node, "GET", f"{NS}/service", serviceName=service)
    if status != 200:
        return None
    return json.loads(body)


def missing_on(node: Addressed, writes: Iterable[Write]) -> list[Write]:
    """The acknowledged `writes` a node does not hold (one list or detail call per service)."""
    by_service: dict[str, list[Write]] = defaultdict(list)
    for write in writes:
        by_service[write.service].append(write)
    missing: list[Write] = []
    for service, written in by_service.items():
        instances = instances_on(node, service) if any(isinstance(w, PersistentInstance) for w in written) else {}
        detail = service_on(node, service) if any(not isinstance(w, PersistentInstance) for w in written) else None
        for write in written:
            if not holds(write, instances, detail):
                missing.append(write)
    return missing


def holds(write: Write, instances: dict[tuple[str, int], dict[str, Any]], detail: dict[str, Any] | None) -> bool:
    """Whether a node's list (`instances`) or service detail (`detail`) shows `write`."""
    if isinstance(write, PersistentInstance):
        found = instances.get((write.ip, write.port))
        return found is not None and found["ephemeral"] is False and found["clusterName"] == write.cluster
    if detail is None:
        return False
    if isinstance(write, ServiceSettings):
        return detail["protectThreshold"] == write.threshold and detail["metadata"] == dict(write.metadata)
    clusters = {c["name"]: c for c in detail["clusters"]}
    found = clusters.get(write.cluster)
    return (
        found is not None
        and found["healthChecker"]["type"] == write.checker
        and found["defaultCheckPort"] == write.check_port
        and found["metadata"] == dict(write.metadata)
    )


def assert_all_on(node: Addressed, writes: Sequence[Write], where: str) -> None:
    """Fail, naming a few, when `node` lacks any acknowledged write."""
    missing = missing_on(node, writes)
    assert not missing, f"{len(missing)} of {len(writes)} acknowledged writes missing on {where}: {missing[:5]}"


# -- writers ---------------------------------------------------------------------------------


@dataclass
class Acked:
    """A write a node answered 200 `ok` to, when (monotonic) and by which node."""

    write: Write
    at: float
    port: int


@dataclass
class WriteLog:
    """What writer threads saw, shared (append-only lists; the GIL keeps each append whole)."""

    acked: list[Acked] = field(default_factory=list)
    refused: list[tuple[Write, int, bytes]] = field(default_factory=list)  # 4xx/5xx other than 503
    unavailable: int = 0  # 503 answers and failed connections, each retried
    # New services whose retry found them made: an earlier attempt applied, unacknowledged.
    made_unacknowledged: list[Write] = field(default_factory=list)

    def writes(self) -> list[Write]:
        return [a.write for a in self.acked]


class Writer(threading.Thread):
    """Sends each write of `writes` until a node answers it: to `targets[start]` first; on a
    503 or a failed connection the same write again to the next target (as a client that
    knows every server would). Records each 200 `ok` in `log`. With `stop_on_failure` it ends
    at the first failed connection instead (a standalone node died). `stop` ends it before
    the next attempt; the write then in flight stays unknown."""

    def __init__(
        self,
        name: str,
        targets: Sequence[Addressed],
        writes: Iterator[Write],
        log: WriteLog,
        stop: threading.Event,
        start: int = 0,
        timeout: float = 5.0,
        stop_on_failure: bool = False,
        after_ack: Callable[[Write], Write | None] | None = None,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.targets = list(targets)
        self.writes = writes
        self.log = log
        self.stop_event = stop
        self.position = start
        self.timeout = timeout
        self.stop_on_failure = stop_on_failure
        self.after_ack = after_ack
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for first in self.writes:
                write: Write | None = first
                retry = False
                while write is not None and not self.stop_event.is_set():
                    following = self._attempt(write, retry)
                    retry, write = following is write, following
                if self.stop_event.is_set():
                    return
        except BaseException as error:  # shown by the test, not lost in a thread
            self.error = error

    def _attempt(self, write: Write, retry: bool) -> Write | None:
        """One attempt (`retry`: an earlier one failed); answers the write to send next: the
        same one to retry, a follow-up, or None."""
        target = self.targets[self.position % len(self.targets)]
        try:
            status, body = write.send(target, self.timeout)
        except OSError:
            self.log.unavailable += 1
            if self.stop_on_failure:
                self.stop_event.set()
                return None
            self.position += 1
            time.sleep(RETRY_PAUSE_S)
            return write
        if status == 200 and body == b"ok":
            self.log.acked.append(Acked(write, time.monotonic(), target.port))
            return self.after_ack(write) if self.after_ack is not None else None
        if status == 503:
            self.log.unavailable += 1
            self.position += 1
            time.sleep(RETRY_PAUSE_S)
            return write
        if retry and isinstance(write, ServiceSettings) and status == 400 and b"already exists" in body:
            self.log.made_unacknowledged.append(write)  # a 503 (outcome unknown) was applied after all
            return None
        self.log.refused.append((write, status, body))
        return None


def run_writers(writers: Sequence[Writer]) -> None:
    """Start every writer."""
    for writer in writers:
        writer.start()


def join_writers(writers: Sequence[Writer], timeout: float = 15.0) -> None:
    """Wait for every writer; fail when one raised or did not end."""
    for writer in writers:
        writer.join(timeout)
        assert not writer.is_alive(), f"writer {writer.name} did not stop within {timeout} s"
        if writer.error is not None:
            raise AssertionError(f"writer {writer.name} failed") from writer.error


# -- Raft views --------------------------------------------------------------------------------


def raft_state(node: Addressed) -> dict[str, Any] | None:
    """The `raft` part of GET /v1/ns/raft/state (role, term, leader, indexes, ready), None
    without an answer."""
    try:
        status, body = send(node, "GET", f"{NS}/raft/state", timeout=2.0)
    except OSError:
        return None
    return json.loads(body)["raft"] if status == 200 else None


class Member(Addressed, Protocol):
    """A node with its member address (a NodeProcess)."""

    @property
    def address(self) -> str: ...


def agreed_leader(nodes: Sequence[Member]) -> Member | None:
    """The member every one of `nodes` names as its ready Raft leader (a member of `nodes`
    that says it leads), else None."""
    states = [raft_state(n) for n in nodes]
    if any(s is None or not s["ready"] for s in states):
        return None
    leaders = {s["leader"] for s in states if s is not None}
    if len(leaders) != 1:
        return None
    (address,) = leaders
    for node, state in zip(nodes, states, strict=True):
        if node.address == address and state is not None and state["role"] == "leader":
            return node
    return None


def wait_for_leader(nodes: Sequence[Member], timeout: float = 10.0) -> Member:
    """The leader `nodes` agree on, once they do."""
    return wait_until(lambda: agreed_leader(nodes), timeout, f"a Raft leader all of {[n.address for n in nodes]} name")


def metric_value(node: Addressed, name: str, labels: str = "") -> float | None:
    """One sample of the node's Prometheus text (`name{labels}`), None when it is not there."""
    status, body = send(node, "GET", "/metrics")
    assert status == 200, body
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in body.decode().splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return None
