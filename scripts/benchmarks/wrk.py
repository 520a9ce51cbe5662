"""wrk: bounded loads from the Lua scripts in scripts/bench_lua/ (common.lua, pace.lua for a
paced load), their JSON summaries, the ceiling probes around measured loads, fills."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .results import Row
from .servers import CONTEXT, ROOT, Server, Servers

LUA_DIR = ROOT / "scripts" / "bench_lua"


class Wrk(Servers):
    """Run's loads: wrk, fills, the ceiling and its probes (on the servers it starts)."""

    load_prefix: list[str]
    ceiling_server: Server | None
    ceiling_rps: list[float]
    timeline: list[tuple[str, float | None]]
    _lua_cache: dict[str, Path]
    _lua_lock: threading.Lock

    def lua(self, name: str, paced: bool = False) -> Path:
        """common.lua (+ pace.lua when paced) + <name>.lua in one temporary file (wrk takes a single script)."""
        parts = ["common", "pace", name] if paced else ["common", name]
        key = "+".join(parts)
        with self._lua_lock:
            if key not in self._lua_cache:
                path = self.procs.log_dir / f"{key}.lua"
                path.write_text("\n".join((LUA_DIR / f"{part}.lua").read_text() for part in parts))
                self._lua_cache[key] = path
            return self._lua_cache[key]

    def wrk(
        self,
        url: str,
        script: str,
        args: dict[str, Any] | None = None,
        duration: int | None = None,
        connections: int | None = None,
        stop_when: Callable[[], bool] | None = None,
        name: str = "wrk",
        measured: bool = False,
        rate: float | None = None,
    ) -> dict[str, Any]:
        """Run one bounded wrk load; returns its summary (requests, rps, errors, latency_us...).

        With a rate (requests/s over all connections) the load is paced (pace.lua): not the most
        wrk can send but a steady schedule; `lag_max_us` and `late`, `late_100ms`, `late_1s` (requests
        sent more than 10 ms, 100 ms, 1 s behind their slot) then say how far behind it fell.
        With stop_when, wrk is stopped (SIGINT: it still reports) as soon as stop_when() is
        true, polled every 0.1 s; `reached_s` is then the time from the start to that moment.
        A `measured` load (a throughput with a ratio) is preceded by a short ceiling probe and
        gets a `timeline_index`.
        """
        if measured:
            self.probe_ceiling()
        duration = duration or self.s.duration
        connections = connections or self.s.connections
        threads = min(self.s.threads, connections)
        script_args = [f"{k}={v}" for k, v in (args or {}).items()] + [f"threads={threads}"]
        if rate is not None:
            script_args.append(f"rate={rate}")
        argv = self.load_prefix + [
            "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "--latency",
            "-s", str(self.lua(script, paced=rate is not None)), url, "--", *script_args,
        ]
        started = time.monotonic()
        proc = self.procs.start(name, argv, capture=True)
        reached = None
        try:
            if stop_when is not None:
                while proc.poll() is None:
                    if stop_when():
                        reached = time.monotonic() - started
                        proc.send_signal(signal.SIGINT)
                        break
                    time.sleep(0.1)
            out, _ = proc.communicate(timeout=duration + 30)
        finally:
            self.procs.stop(proc, signal.SIGINT, 10)
        summary = None
        for line in out.decode(errors="replace").splitlines():
            if line.startswith("BENCH_JSON "):
                summary = json.loads(line[len("BENCH_JSON "):])
        if summary is None:
            raise RuntimeError(f"wrk gave no summary (exit {proc.returncode}); see {self.procs.log_dir}/{name}.log")
        seconds = summary["duration_us"] / 1e6
        summary["seconds"] = round(seconds, 3)
        summary["rps"] = summary["requests"] / seconds if seconds > 0 else 0.0
        summary["error_count"] = sum(summary["errors"].values())
        summary["reached_s"] = reached
        summary["argv"] = " ".join(argv)
        if measured:
            self.timeline.append(("load", None))
            summary["timeline_index"] = len(self.timeline) - 1
        return summary

    def ensure_ceiling(self) -> Server:
        if self.ceiling_server is None or self.ceiling_server.proc.poll() is not None:
            self.ceiling_server = self.start_ceiling()
        return self.ceiling_server

    def probe_ceiling(self) -> None:
        """A short ceiling load right before a measured one: the machine's noise drifts slowly."""
        if self.s.ceiling_probe <= 0:
            return
        result = self.wrk(self.ensure_ceiling().url + "/", "fixed", duration=self.s.ceiling_probe, name="wrk-ceiling-probe")
        if result["error_count"] == 0:
            self.timeline.append(("ceiling", result["rps"]))

    def fill(
        self, node: Server, prefix: str, services: int, count: int, base: int = 0, name: str = "fill",
        measured: bool = False, persistent: bool = False, connections: int | None = None,
    ) -> dict[str, Any]:
        """Register `count` new distinct instances (numbers base..base+count-1) as fast as wrk can
        (persistent: ephemeral=false, through Raft)."""
        _, before = self.node_counts(node)
        target = before + count
        last = [before, time.monotonic()]

        def reached() -> bool:
            _, now = self.node_counts(node)
            if now != last[0]:
                last[:] = [now, time.monotonic()]
            elif time.monotonic() - last[1] > 30:
                raise RuntimeError(f"fill of {prefix}* stalled at {now - before} of {count} instances")
            return now >= target

        result = self.wrk(
            node.url, "register",
            {"path": f"{CONTEXT}/v1/ns/instance", "prefix": prefix, "services": services, "base": base, "limit": count,
             "ephemeral": "false" if persistent else "true"},
            duration=self.s.fill_cap, connections=connections, stop_when=reached, name=name, measured=measured,
        )
        _, after = self.node_counts(node)
        if after < target:
            raise RuntimeError(f"fill of {prefix}* reached {after - before} of {count} instances in {self.s.fill_cap}s")
        return result

    def throughput_row(self, key: str, figure: str, result: dict[str, Any], extra_note: str = "") -> Row:
        lat = result["latency_us"]
        notes = [f"p50 {lat['p50'] / 1000:.1f} ms, p99 {lat['p99'] / 1000:.1f} ms"]
        if result["error_count"] or result.get("bad"):
            notes.append(f"ERRORS {result['errors']} bad {result.get('bad', 0)}")
        if extra_note:
            notes.append(extra_note)
        return Row(key, figure, result["rps"], "req/s", note="; ".join(notes), data=result, throughput=True)

    def measure_ceiling(self, key: str, figure: str) -> Row:
        result = self.wrk(self.ensure_ceiling().url + "/", "fixed", name="wrk-ceiling")
        if result["error_count"]:
            raise RuntimeError(f"ceiling load had errors: {result['errors']}")
        self.ceiling_rps.append(result["rps"])
        self.timeline.append(("ceiling", result["rps"]))
        row = self.throughput_row(key, figure, result)
        row.throughput = False
        return row


def latency_row(key: str, figure: str, r: dict[str, Any]) -> Row:
    lat = r["latency_us"]
    note = f"p50 {lat['p50'] / 1000:.2f} ms, max {lat['max'] / 1000:.1f} ms, {r['rps']:,.0f} req/s on 1 connection"
    if r["error_count"]:
        note += f"; ERRORS {r['errors']}"
    return Row(key, figure, lat["p99"] / 1000, "ms", note=note, data=r)
