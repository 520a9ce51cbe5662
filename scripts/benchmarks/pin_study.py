"""--pin-study: ceiling, list and beat pinned and unpinned, alternately, to compare the two."""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .http_load import pop_prefix
from .run import Run
from .servers import CONTEXT, Processes

if TYPE_CHECKING:
    from .cli import Settings


def pin_study(settings: Settings, rounds: int = 3) -> int:
    """Ceiling, list (100) and beat, pinned and unpinned alternately; prints ratio mean and spread."""
    log_dir = Path(tempfile.mkdtemp(prefix="nacos-bench-pin-"))
    procs = Processes(log_dir)
    run = Run(settings, procs)
    results: dict[str, dict[str, list[float]]] = {"on": {}, "off": {}}
    try:
        for i in range(rounds):
            for pin in ("off", "on"):
                run.set_pin(pin)
                ceiling = run.start_ceiling()
                node = run.start_node(f"node-{pin}-{i}", health_checks=False)
                try:
                    run.fill(node, pop_prefix(), 100, settings.population, name="pin-fill")
                    run.fill(node, "bench-list-100-", 1, 100, name="pin-fill-list")
                    c = run.wrk(ceiling.url + "/", "fixed", name="pin-ceiling")["rps"]
                    lst = run.wrk(f"{node.url}{CONTEXT}/v1/ns/instance/list?serviceName=bench-list-100-00000",
                                  "fixed", name="pin-list")["rps"]
                    bt = run.wrk(node.url, "beat", {"path": f"{CONTEXT}/v1/ns/instance/beat", "prefix": pop_prefix(),
                                                    "services": 100, "population": settings.population},
                                 name="pin-beat")["rps"]
                finally:
                    run.stop_server(node)
                    procs.stop(ceiling.proc)
                r = results[pin]
                for k, v in (("ceiling", c), ("list_100", lst), ("beat", bt),
                             ("list_100 ratio", lst / c), ("beat ratio", bt / c)):
                    r.setdefault(k, []).append(v)
                print(f"round {i + 1} pin={pin}: ceiling {c:,.0f}  list {lst:,.0f} ({lst / c:.3f})  "
                      f"beat {bt:,.0f} ({bt / c:.3f})", flush=True)
    finally:
        procs.stop_all()
        shutil.rmtree(log_dir, ignore_errors=True)
    print(f"\n{'pin':4} {'figure':16} {'mean':>10} {'spread (max-min)/mean':>24}")
    for pin, figures in results.items():
        for k, values in figures.items():
            mean = statistics.fmean(values)
            spread = (max(values) - min(values)) / mean if mean else 0
            print(f"{pin:4} {k:16} {mean:10.3f} {spread:23.1%}" if "ratio" in k else
                  f"{pin:4} {k:16} {mean:10,.0f} {spread:23.1%}")
    return 0
