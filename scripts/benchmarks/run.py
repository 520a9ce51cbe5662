"""One run of the selected benchmarks: the Run (settings, processes, pinning, the ceiling, wrk),
the loop over the benchmarks, then the table and the JSON."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .catalog import Pending, selected
from .instructions import INSTRUCTIONS_N1, INSTRUCTIONS_N2
from .pinning import Pinning
from .results import Row, Skip, apply_ratios, fmt_value, print_table, write_results
from .servers import Processes, Server
from .wrk import Wrk

if TYPE_CHECKING:
    from .cli import Settings


class Run(Pinning, Wrk):
    """One harness run: settings, processes, pinning, the ceiling, and wrk."""

    def __init__(self, settings: Settings, procs: Processes) -> None:
        self.s = settings
        self.procs = procs
        self.ceiling_rps: list[float] = []  # the start and end ceilings
        # ("ceiling", req/s) measurements and ("load", None) marks, in the order they ran; a
        # throughput's ratio divides by the mean of the nearest ceilings before and after it
        self.timeline: list[tuple[str, float | None]] = []
        self.ceiling_server: Server | None = None
        self.wrk_version = (subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()[0:1]
                            if shutil.which("wrk") else [])
        self._lua_cache: dict[str, Path] = {}
        self._lua_lock = threading.Lock()  # wrk loads may start from several threads at once
        self.server_prefix: list[str] = []
        self.load_prefix: list[str] = []
        self.set_pin(settings.pin)


def machine_info(run: Run) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": run.wrk_version[0] if run.wrk_version else "?",
        "pinning": run.pin_text(),
    }


def run_benchmarks(settings: Settings, argv: list[str]) -> int:
    started_wall = dt.datetime.now().astimezone()
    started = time.monotonic()
    log_dir = Path(tempfile.mkdtemp(prefix="nacos-bench-"))
    procs = Processes(log_dir)
    rows: list[Row] = []
    interrupted = False
    run = Run(settings, procs)
    info = machine_info(run)
    print(f"bench: {run.pin_text()}")
    if settings.instructions:
        print(f"bench: instructions per request under valgrind's cachegrind, N1 {INSTRUCTIONS_N1} and N2 "
              f"{INSTRUCTIONS_N2} requests, one process each; load average {info['loadavg_at_start'][0]:.2f}; "
              f"logs in {log_dir}", flush=True)
    else:
        print(f"bench: wrk -t{settings.threads} -c{settings.connections}, {settings.duration}s per load; "
              f"load average {info['loadavg_at_start'][0]:.2f}; logs in {log_dir}", flush=True)
    try:
        for bench in selected(settings):
            if isinstance(bench, Pending):
                rows.extend(Row(k, f, f"n/a: needs {bench.needs}") for k, f in bench.figures)
                continue
            t0 = time.monotonic()
            if bench.figures:
                print(f"bench: {bench.name} ...", flush=True)
            try:
                new = bench.run(run)
            except Skip as reason:
                new = [Row(k, f, f"skipped: {reason}") for k, f in bench.figures]
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as error:  # one failing benchmark does not stop the others
                print(f"bench: {bench.name} failed: {error!r}", file=sys.stderr, flush=True)
                new = [Row(k, f, f"failed: {error}") for k, f in bench.figures]
            for row in new:
                if isinstance(row.value, (int, float)):
                    shown = f"{fmt_value(row)} {row.unit}"
                else:
                    shown = row.value
                print(f"bench:   {row.figure}: {shown}  {row.note}", flush=True)
            if bench.figures:
                print(f"bench: {bench.name} took {time.monotonic() - t0:.1f}s", flush=True)
            rows.extend(new)
    except KeyboardInterrupt:
        interrupted = True
        print("\nbench: interrupted; stopping every process it started", file=sys.stderr)
    finally:
        procs.stop_all()
        if not settings.keep_logs and not interrupted:
            shutil.rmtree(log_dir, ignore_errors=True)
    ceiling = apply_ratios(run, rows)
    total = time.monotonic() - started
    print()
    if ceiling is not None:
        print(f"ratio = throughput / the ceiling (bare aiohttp `ok`, same wrk) measured right before and after "
              f"that load; compare ratios, not req/s. Run ceiling (start/end mean) {ceiling:,.0f} req/s.")
        print(f"{run.pin_text()}; wrk -t{settings.threads} -c{settings.connections}, {settings.duration}s per load.")
    print_table(rows)
    print(f"\ntotal {total:.0f}s" + (" (interrupted)" if interrupted else ""))
    write_results(settings, argv, run, rows, info, started_wall, total, interrupted, ceiling)
    print(f"results: {settings.out}")
    return 130 if interrupted else 0
