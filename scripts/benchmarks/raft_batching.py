"""Measure pysyncobj's appendEntriesUseBatch (and the heartbeat period) on a three-member
in-process Raft group, to choose RaftGroupConfig's defaults.

    python -m scripts.benchmarks.raft_batching [--proposals 3000] [--in-flight 64]
        [--proposers 6] [--heartbeats 0.05,0.02] [--use-batch true,false]
        [--sync false,true] [--json FILE]

For each setting (use_batch True/False, sync on/off, each heartbeat period) it starts three
RaftGroups on loopback ports, each ticked by its own thread (as the Raft actor ticks one),
waits for a leader, then drives N proposals from several proposer threads spread over the
three members (followers forward to the leader), keeping at most --in-flight outstanding. It
reports proposals/s, p50/p99 commit latency (propose -> done on the proposing member), failed
proposals by reason, the "truncating already-applied log entries" critical records the
library logged (counted by a handler on the `pysyncobj.syncobj` logger), whether the three
members applied the same sequence, and the process's CPU use while the group idles.

Self-contained: it needs only nacos_actors.raft. Everything binds 127.0.0.1; journals go to
a temporary directory removed at the end; every wait is bounded.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import queue
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any

from nacos_actors.raft.group import RaftGroup, RaftGroupConfig

HOST = "127.0.0.1"
PASSWORD = "raft-batching-benchmark"
TRUNCATION = "truncating already-applied log entries"
IDLE_SECONDS = 2.0


@dataclass
class Result:
    use_batch: bool
    sync: bool
    heartbeat_s: float
    proposals: int
    seconds: float
    per_second: float
    p50_ms: float
    p99_ms: float
    failed: dict[str, int]
    truncations: int
    agree: bool
    idle_cpu_percent: float


class TruncationCounter(logging.Handler):
    """Counts the library's critical records about truncating applied entries."""

    def __init__(self) -> None:
        super().__init__(logging.CRITICAL)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if TRUNCATION in record.getMessage():
            self.count += 1


class Ticked:
    """A RaftGroup on its own ticking thread; its state is the list of operations it applied."""

    def __init__(self, config: RaftGroupConfig, name: str) -> None:
        self.applied: list[bytes] = []
        self._inbox: queue.SimpleQueue[Callable[[RaftGroup], None]] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self.group = RaftGroup(config, self._apply, self._save, self._load)
        self.address = config.self_address
        self.thread = threading.Thread(target=self._run, name=f"raft-{name}", daemon=True)
        self.thread.start()

    def _apply(self, operation: bytes, index: int) -> None:
        self.applied.append(operation)

    def _save(self) -> bytes:
        return b"\n".join(self.applied)

    def _load(self, state: bytes) -> None:
        self.applied = state.split(b"\n") if state else []

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                while True:
                    try:
                        self._inbox.get_nowait()(self.group)
                    except queue.Empty:
                        break
                self.group.tick(0.05)
        finally:
            self.group.close()

    def submit(self, function: Callable[[RaftGroup], None]) -> None:
        self._inbox.put(function)
        self.group.wake()

    def ask(self, function: Callable[[RaftGroup], Any], timeout_s: float = 5.0) -> Any:
        future: Future[Any] = Future()

        def run(group: RaftGroup) -> None:
            future.set_result(function(group))

        self.submit(run)
        return future.result(timeout_s)

    def stop(self) -> None:
        self._stopping.set()
        self.group.wake()
        self.thread.join(10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def start_group(directory: str, use_batch: bool, sync: bool, heartbeat_s: float) -> list[Ticked]:
    addresses = [f"{HOST}:{free_port()}" for _ in range(3)]
    members = []
    for index, address in enumerate(addresses):
        config = RaftGroupConfig(
            address,
            tuple(other for other in addresses if other != address),
            address,
            f"{directory}/m{index}",
            PASSWORD,
            sync=sync,
            use_batch=use_batch,
            heartbeat_period_s=heartbeat_s,
        )
        members.append(Ticked(config, f"m{index}"))
    deadline = time.monotonic() + 10
    while True:
        statuses = [member.ask(lambda group: group.status()) for member in members]
        leaders = {status.leader for status in statuses}
        if len(leaders) == 1 and None not in leaders and sum(s.role == "leader" for s in statuses) == 1:
            return members
        if time.monotonic() > deadline:
            raise RuntimeError(f"no single leader within 10 s: {statuses}")
        time.sleep(0.02)


def drive(
    members: list[Ticked], proposals: int, in_flight: int, proposers: int
) -> tuple[float, list[float], Counter[str]]:
    """Propose `proposals` operations; answers the seconds taken, the latencies and the failures."""
    slots = threading.Semaphore(in_flight)
    latencies: list[float] = []
    failed: Counter[str] = Counter()
    lock = threading.Lock()
    finished = threading.Event()
    done_count = [0]

    def proposer(number: int) -> None:
        member = members[number % len(members)]
        for sequence in range(number, proposals, proposers):
            slots.acquire()
            operation = b"op-%d" % sequence
            started = time.perf_counter()

            def done(result: Any, reason: str | None, started: float = started) -> None:
                with lock:
                    if reason is None:
                        latencies.append(time.perf_counter() - started)
                    else:
                        failed[reason] += 1
                    done_count[0] += 1
                    if done_count[0] == proposals:
                        finished.set()
                slots.release()

            member.submit(functools.partial(RaftGroup.propose, operation=operation, done=done))

    started = time.perf_counter()
    threads = [threading.Thread(target=proposer, args=(number,), daemon=True) for number in range(proposers)]
    for thread in threads:
        thread.start()
    if not finished.wait(120):
        raise RuntimeError(f"only {done_count[0]} of {proposals} proposals finished within 120 s")
    seconds = time.perf_counter() - started
    for thread in threads:
        thread.join(10)
    return seconds, latencies, failed


def _applied(member: Ticked, group: RaftGroup) -> list[bytes]:
    return list(member.applied)


def sequences_agree(members: list[Ticked], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sequences = [member.ask(functools.partial(_applied, member)) for member in members]
        if all(sequence == sequences[0] for sequence in sequences):
            return True
        time.sleep(0.05)
    return False


def idle_cpu_percent() -> float:
    cpu, wall = time.process_time(), time.monotonic()
    time.sleep(IDLE_SECONDS)
    return 100.0 * (time.process_time() - cpu) / (time.monotonic() - wall)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(use_batch: bool, sync: bool, heartbeat_s: float, proposals: int, in_flight: int, proposers: int) -> Result:
    counter = TruncationCounter()
    library_log = logging.getLogger("pysyncobj.syncobj")
    library_log.addHandler(counter)
    directory = tempfile.mkdtemp(prefix="raft-batching-")
    members: list[Ticked] = []
    try:
        members = start_group(directory, use_batch, sync, heartbeat_s)
        idle = idle_cpu_percent()
        seconds, latencies, failed = drive(members, proposals, in_flight, proposers)
        agree = sequences_agree(members)
    finally:
        for member in members:
            member.stop()
        library_log.removeHandler(counter)
        shutil.rmtree(directory, ignore_errors=True)
    return Result(
        use_batch=use_batch,
        sync=sync,
        heartbeat_s=heartbeat_s,
        proposals=proposals,
        seconds=round(seconds, 3),
        per_second=round(proposals / seconds, 1),
        p50_ms=round(1000 * statistics.median(latencies), 2) if latencies else float("nan"),
        p99_ms=round(1000 * percentile(latencies, 0.99), 2),
        failed=dict(failed),
        truncations=counter.count,
        agree=agree,
        idle_cpu_percent=round(idle, 1),
    )


def table(results: list[Result]) -> str:
    header = "use_batch  sync  heartbeat  proposals/s  p50 ms  p99 ms  failed  truncations  agree  idle CPU %"
    lines = [header, "-" * len(header)]
    for r in results:
        failed = sum(r.failed.values())
        lines.append(
            f"{r.use_batch!s:>9}  {r.sync!s:>4}  {r.heartbeat_s:>9.3f}  {r.per_second:>11.1f}  {r.p50_ms:>6.1f}"
            f"  {r.p99_ms:>6.1f}  {failed:>6}  {r.truncations:>11}  {r.agree!s:>5}  {r.idle_cpu_percent:>10.1f}"
        )
    return "\n".join(lines)


def _booleans(text: str) -> list[bool]:
    return [value.strip().lower() in ("true", "1", "yes", "on") for value in text.split(",")]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proposals", type=int, default=3000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--proposers", type=int, default=6)
    parser.add_argument("--heartbeats", default="0.05,0.02", help="heartbeat periods in seconds, comma-separated")
    parser.add_argument("--use-batch", default="true,false", help="appendEntriesUseBatch settings to measure")
    parser.add_argument("--sync", default="false,true", help="fsync settings to measure")
    parser.add_argument("--json", help="also write the results to this file")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    # The library's truncation records are what we count; printing thousands helps no one.
    logging.getLogger("pysyncobj.syncobj").propagate = False
    results = []
    for heartbeat_s in (float(value) for value in arguments.heartbeats.split(",")):
        for sync in _booleans(arguments.sync):
            for use_batch in _booleans(arguments.use_batch):
                result = measure(
                    use_batch, sync, heartbeat_s, arguments.proposals, arguments.in_flight, arguments.proposers
                )
                print(
                    f"use_batch={use_batch} sync={sync} heartbeat={heartbeat_s}: {result.per_second}/s "
                    f"p50 {result.p50_ms} ms p99 {result.p99_ms} ms truncations {result.truncations} "
                    f"agree {result.agree} failed {result.failed}",
                    file=sys.stderr,
                    flush=True,
                )
                results.append(result)
    print(table(results))
    if arguments.json:
        with open(arguments.json, "w") as file:
            json.dump([asdict(result) for result in results], file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
