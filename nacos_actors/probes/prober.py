"""The prober: runs the probes the probe driver starts, as asyncio tasks on the event loop, and
reports their results in batches. Event loop thread only."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from nacos_actors.core.probing import (
    PROBE_ERROR,
    PROBE_TIMEOUT,
    ProbeResult,
    ProbeTarget,
)
from nacos_actors.model import HTTP_CHECKER, MYSQL_CHECKER, TCP_CHECKER
from nacos_actors.probes.finding import Finding
from nacos_actors.probes.http import HttpChecker
from nacos_actors.probes.mysql import probe_mysql
from nacos_actors.probes.tcp import Cancel, start_tcp_probe

log = logging.getLogger(__name__)

BUSY_DETAIL = "prober busy"
START_SLICE = 8  # probes started per loop iteration


class Prober:
    """Implements bridge.ProbeSink. Each probe runs as one task (a TCP probe as a bare connect
    with a timer), bounded by its `timeout_ms` from start to result, and probes start a slice
    per loop iteration; at most `max_in_flight` run or wait at once (one past that ends at once
    as ERROR "prober busy"). Every probe started before `async_close` gets exactly one result, and
    results that finish in the same loop turn reach `report` as one tuple, called on the loop.
    Probes still running at close are cancelled and not reported. Event loop thread only."""

    def __init__(self, report: Callable[[tuple[ProbeResult, ...]], None], max_in_flight: int) -> None:
        self._report = report
        self._max_in_flight = max(1, max_in_flight)
        self._http = HttpChecker(self._max_in_flight)
        self._checkers: dict[str, Callable[[ProbeTarget], Awaitable[Finding]]] = {
            HTTP_CHECKER: self._http.probe,
            MYSQL_CHECKER: probe_mysql,
        }
        self._tasks: set[asyncio.Task[None]] = set()
        self._connecting: dict[int, Cancel] = {}
        self._waiting: deque[ProbeTarget] = deque()
        self._start_scheduled = False
        self._finished: list[ProbeResult] = []
        self._flush_scheduled = False
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Probes running or waiting for their turn to start."""
        return len(self._tasks) + len(self._connecting) + len(self._waiting)

    def async_start(self, probes: Sequence[ProbeTarget]) -> None:
        """Queue each probe; they start START_SLICE per loop iteration, so requests waiting on
        the loop get their turn between slices (starting a connect costs tens of microseconds,
        and probes come in batches). A probe past `max_in_flight` ends at once as busy. After
        close, probes are dropped unreported (the node is stopping). Never blocks. Event loop
        thread."""
        if self._closed:
            return
        for probe in probes:
            if self.in_flight >= self._max_in_flight:
                self._finish(ProbeResult(probe.probe_id, probe.kind, PROBE_ERROR, False, BUSY_DETAIL, 0.0))
            else:
                self._waiting.append(probe)
        if self._waiting and not self._start_scheduled:
            self._start_scheduled = True
            asyncio.get_running_loop().call_soon(self._start_slice)

    def _start_slice(self) -> None:
        """Start the next START_SLICE waiting probes: a TCP probe as a bare non-blocking connect
        (tcp.start_tcp_probe), the others as tasks."""
        self._start_scheduled = False
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        waiting = self._waiting
        for _ in range(min(START_SLICE, len(waiting))):
            probe = waiting.popleft()
            if probe.kind == TCP_CHECKER:
                self._start_tcp(loop, probe)
            else:
                task = loop.create_task(self._run(probe))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        if waiting:
            self._start_scheduled = True
            loop.call_soon(self._start_slice)

    def _start_tcp(self, loop: asyncio.AbstractEventLoop, probe: ProbeTarget) -> None:
        started = time.perf_counter()
        probe_id = probe.probe_id

        def done(finding: Finding) -> None:
            self._connecting.pop(probe_id, None)
            elapsed_ms = (time.perf_counter() - started) * 1000
            self._finish(
                ProbeResult(probe_id, probe.kind, finding.outcome, finding.immediate, finding.detail, elapsed_ms)
            )

        cancel = start_tcp_probe(loop, probe, probe.timeout_ms / 1000, done)
        if cancel is not None:
            self._connecting[probe_id] = cancel

    async def _run(self, probe: ProbeTarget) -> None:
        started = time.perf_counter()
        try:
            checker = self._checkers.get(probe.kind)
            if checker is None:
                finding = Finding(PROBE_ERROR, False, f"unknown checker {probe.kind!r}")
            else:
                async with asyncio.timeout(probe.timeout_ms / 1000):
                    finding = await checker(probe)
        except TimeoutError:
            finding = Finding(PROBE_TIMEOUT, False, f"{probe.kind.lower()}:timeout")
        except asyncio.CancelledError:
            raise  # closing: not reported
        except Exception as error:
            log.warning("probe %s of %s:%s failed unexpectedly", probe.kind, probe.ip, probe.port, exc_info=True)
            finding = Finding(PROBE_ERROR, False, f"{probe.kind.lower()}:{type(error).__name__}")
        elapsed_ms = (time.perf_counter() - started) * 1000
        self._finish(
            ProbeResult(probe.probe_id, probe.kind, finding.outcome, finding.immediate, finding.detail, elapsed_ms)
        )

    def _finish(self, result: ProbeResult) -> None:
        self._finished.append(result)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        results, self._finished = tuple(self._finished), []
        if results and not self._closed:
            self._report(results)

    async def async_close(self) -> None:
        """Report what already finished, cancel the running probes (unreported) and close the
        HTTP session. Later probes are dropped. Event loop thread."""
        if self._closed:
            return
        self._flush()
        self._closed = True
        self._waiting.clear()
        connecting, self._connecting = tuple(self._connecting.values()), {}
        for cancel in connecting:
            cancel()
        tasks = tuple(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._http.async_close()
