"""The results: rows, their table on stdout, the ratios to the ceiling, the JSON document."""

from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cli import Settings
    from .run import Run


@dataclass
class Row:
    key: str
    figure: str
    value: float | str | None
    unit: str = ""
    ratio: float | None = None  # throughput / the ceiling measured around it, filled in at the end
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    throughput: bool = False  # gets a ratio to the ceiling


def fmt_value(row: Row) -> str:
    v = row.value
    if isinstance(v, str) or v is None:
        return v or ""
    if row.unit in ("req/s", "inst/s", "bytes", "B/inst", "instances", "beats/s", "marks", "probes",
                    "instr/req", "instr/push", "connections"):
        return f"{v:,.0f}"
    if row.unit in ("MiB", "%"):
        return f"{v:,.1f}"
    if row.unit == "ms":
        return f"{v:,.2f}"
    if row.unit == "s":
        return f"{v:,.2f}" if v < 10 else f"{v:,.1f}"
    return f"{v:,.3g}"


def print_table(rows: list[Row], out=sys.stdout) -> None:
    """Aligned columns; a text value (n/a, skipped, failed) runs across value, unit and ratio."""
    header = ("figure", "value", "unit", "ratio", "note")
    body = [
        (r.figure, fmt_value(r), r.unit, f"{r.ratio:.3f}" if r.ratio is not None else "", r.note)
        if not isinstance(r.value, str) else (r.figure, r.value)
        for r in rows
    ]
    widths = [len(h) for h in header]
    for b in body:
        for i, cell in enumerate(b[: 4 if len(b) == 5 else 1]):
            widths[i] = max(widths[i], len(cell))
    widths[4] = len(header[4])  # notes run free

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in (1, 3) and len(cells) == 5 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    print(line(header), file=out)
    print(line(tuple("-" * w for w in widths)), file=out)
    for b in body:
        print(line(b), file=out)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


class Skip(Exception):
    """A benchmark that cannot run here: its rows say `skipped: <reason>`."""


def local_ceiling(run: Run, index: int) -> float | None:
    """The mean of the nearest ceiling measurements before and after timeline[index]."""
    found = []
    for step in (-1, 1):
        i = index + step
        while 0 <= i < len(run.timeline):
            kind, rps = run.timeline[i]
            if kind == "ceiling":
                found.append(rps)
                break
            i += step
    return statistics.fmean(found) if found else None


def apply_ratios(run: Run, rows: list[Row]) -> float | None:
    """Each throughput's ratio to the ceiling measured around it; returns the run's mean ceiling."""
    ceilings = [rps for kind, rps in run.timeline if kind == "ceiling"]
    if not ceilings:
        return None
    mean = statistics.fmean(run.ceiling_rps or ceilings)
    for row in rows:
        if row.throughput and isinstance(row.value, (int, float)):
            index = row.data.get("timeline_index")
            local = local_ceiling(run, index) if index is not None else None
            row.ratio = row.value / (local or mean)
            row.data["ceiling_local_rps"] = local
            row.data["ratio_to_run_ceiling"] = row.value / mean
    for row in rows:
        if row.key == "ceiling_start":
            row.note += (f"; all {len(ceilings)} ceiling measurements {min(ceilings):,.0f}..{max(ceilings):,.0f} req/s "
                         f"(spread {(max(ceilings) - min(ceilings)) / mean:.0%})")
    return mean


def write_results(
    settings: Settings, argv: list[str], run: Run, rows: list[Row], info: dict[str, Any],
    started_wall: dt.datetime, total: float, interrupted: bool, ceiling: float | None,
) -> None:
    """The run's JSON document (settings, machine, ceilings, every row) into settings.out."""
    document = {
        "started": started_wall.isoformat(timespec="seconds"),
        "total_s": round(total, 1),
        "interrupted": interrupted,
        "command": ["scripts/bench", *argv],
        "settings": {k: (sorted(v) if isinstance(v, set) else str(v) if isinstance(v, Path) else v)
                     for k, v in asdict(settings).items()},
        "machine": info,
        "ceiling_rps": {"start_end": run.ceiling_rps, "mean": ceiling,
                        "all_in_order": [rps for kind, rps in run.timeline if kind == "ceiling"]},
        "rows": [
            {k: v for k, v in asdict(r).items() if k != "throughput"} for r in rows
        ],
    }
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    settings.out.write_text(json.dumps(document, indent=2, default=str) + "\n")
