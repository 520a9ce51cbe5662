"""The command line: flags, their checks and defaults (Settings), and main."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .catalog import BENCHMARKS, Pending
from .pin_study import pin_study
from .run import run_benchmarks
from .probes import serve_probe_target
from .servers import ROOT, serve_ceiling


@dataclass
class Settings:
    duration: int
    connections: int
    threads: int
    latency_duration: int
    population: int
    etcd_population: int
    register_services: int
    scale_instances: int
    scale_per_service: int
    pin: str
    only: set[str]
    skip: set[str]
    out: Path
    quick: bool
    keep_logs: bool
    etcd_data_base: str
    fill_cap: int
    ceiling_probe: int
    push_seconds: int
    push_rate: int
    push_load: int
    soak_seconds: int
    soak_instances: int
    soak_interval: int
    peer_lag_probes: int
    peer_lag_rate: int
    peer_lag_load: int
    peer_lag_same_node: bool
    raft_instances: int
    raft_kills: int
    raft_trickle_rate: int
    instructions: bool


def bench_name(name: str) -> str:
    """A benchmark name as BENCHMARKS spells it: `peer_lag` and `peer-lag` are one name."""
    return name.strip().replace("_", "-")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Benchmarks of a standalone node (and the peer lag of a 3-node loopback cluster); "
                    "throughputs as ratios to a bare aiohttp handler.",
    )
    flag = parser.add_argument
    flag("--quick", action="store_true",
         help="a ~4 minute smoke run (2 s loads, 100k scale fill, 2k etcd leases, 10 s of push probes, "
              "a 30 s soak of 20k instances, 100 peer-lag probes, 3 leader kills, a 10k persistent fill)")
    flag("--duration", type=int, help="seconds of each measured load (default 6, quick 2)")
    flag("--connections", type=int, default=64, help="wrk connections of every load (default 64)")
    flag("--threads", type=int, default=1, help="wrk threads of every load (default 1)")
    flag("--latency-duration", type=int, help="seconds of each 1-connection latency probe (default 5, quick 2)")
    flag("--population", type=int, default=10_000,
         help="pre-registered instances the beat/mixed loads use, and etcd leases kept alive (default 10000; "
              "quick: 2000 etcd leases)")
    flag("--register-services", type=int, default=100, help="services the register load spreads over (default 100)")
    flag("--scale-instances", type=int, help="instances of the scale fill (default 1000000, quick 100000)")
    flag("--scale-per-service", type=int, default=100, help="instances per service in the scale fill (default 100)")
    flag(
        "--pin",
        choices=("on", "off"),
        default="on",
        help="on: servers on CPU 1 and wrk (and this harness) on CPU 0 via taskset; off: let the OS schedule (default on)",
    )
    flag("--only", default="", help="comma-separated benchmark names to run (see --list)")
    flag("--skip", default="", help="comma-separated benchmark names to skip, e.g. etcd,scale")
    flag("--list", action="store_true", help="list the benchmarks and exit")
    flag("--out", help="JSON results file (default bench-results/bench-<timestamp>.json)")
    flag("--keep-logs", action="store_true", help="keep the servers' logs (printed path) instead of deleting them")
    flag("--etcd-data-base", default="/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir(),
         help="where etcd's temporary data dir goes (default /dev/shm: tmpfs, so fsync costs ~nothing, "
              "like the node's in-memory registry)")
    flag("--fill-cap", type=int, default=900, help="longest a fill may take, seconds (default 900)")
    flag("--ceiling-probe", type=int,
         help="seconds of the short ceiling load run right before each measured load (default 2, quick 1; 0: none)")
    flag("--push-seconds", type=int, help="seconds of push probes (default 30, quick 10)")
    flag("--push-rate", type=int, default=20, help="push probes (registrations into the probe service) per second (default 20)")
    flag("--push-load", type=int, default=2000,
         help="background registrations per second into other services during the push probes (default 2000)")
    flag("--soak-seconds", type=int, help="seconds of the beat soak (default 120, quick 30)")
    flag("--soak-instances", type=int, help="instances beating in the soak (default 50000, quick 20000)")
    flag("--soak-interval", type=int, default=5, help="seconds between two beats of one soak instance (default 5)")
    flag("--peer-lag-probes", type=int,
         help="peer-lag probes: each registers on one node of the 3-node cluster and is polled for on another "
              "(default 200, quick 100)")
    flag("--peer-lag-rate", type=int, default=20, help="peer-lag probes per second (default 20)")
    flag("--peer-lag-load", type=int, default=1000,
         help="background registrations per second, spread over the three nodes, during the peer-lag probes "
              "(default 1000; 0: none)")
    flag("--raft-instances", type=int,
         help="persistent instances the raft-restart row fills a node with before restarting it "
              "(default 100000, quick 10000)")
    flag("--raft-kills", type=int, help="times the raft-failover row kills the leader (default 5, quick 3)")
    flag("--raft-trickle", type=int, default=50,
         help="persistent writes per second during the raft-failover row (default 50)")
    # a sanity check of the measurement only: poll the node a probe registered on, not another one
    flag("--peer-lag-same-node", action="store_true", help=argparse.SUPPRESS)
    flag("--pin-study", action="store_true",
         help="instead of the benchmarks: measure ceiling/list/beat pinned and unpinned, 3 rounds each, and compare")
    flag("--instructions", action="store_true",
         help="instead of the loads: CPU instructions per request (register, persistent register, light beat, "
              "list of 100, push), "
              "counted in-process under valgrind's cachegrind as (Ir of N2 requests - Ir of N1) / (N2 - N1); "
              "steady where req/s are noisy (scripts/bench installs valgrind)")
    flag("--serve-ceiling", type=int, metavar="PORT", help=argparse.SUPPRESS)
    flag("--serve-ceiling-uvloop", type=int, metavar="PORT", help=argparse.SUPPRESS)
    flag("--serve-probe-target", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    settings = Settings(
        duration=args.duration or (2 if quick else 6),
        connections=args.connections,
        threads=args.threads,
        latency_duration=args.latency_duration or (2 if quick else 5),
        population=args.population,
        etcd_population=min(args.population, 2000) if quick else args.population,
        register_services=args.register_services,
        scale_instances=args.scale_instances if args.scale_instances is not None else (100_000 if quick else 1_000_000),
        scale_per_service=args.scale_per_service,
        pin=args.pin if (os.cpu_count() or 1) >= 2 else "off",
        only={bench_name(n) for n in args.only.split(",") if n.strip()},
        skip={bench_name(n) for n in args.skip.split(",") if n.strip()},
        out=Path(args.out) if args.out else ROOT / "bench-results" / f"bench-{stamp}.json",
        quick=quick,
        keep_logs=args.keep_logs,
        etcd_data_base=args.etcd_data_base,
        fill_cap=args.fill_cap,
        ceiling_probe=args.ceiling_probe if args.ceiling_probe is not None else (1 if quick else 2),
        push_seconds=args.push_seconds or (10 if quick else 30),
        push_rate=args.push_rate,
        push_load=args.push_load,
        soak_seconds=args.soak_seconds or (30 if quick else 120),
        soak_instances=args.soak_instances or (20_000 if quick else 50_000),
        soak_interval=args.soak_interval,
        peer_lag_probes=args.peer_lag_probes or (100 if quick else 200),
        peer_lag_rate=args.peer_lag_rate,
        peer_lag_load=args.peer_lag_load,
        peer_lag_same_node=args.peer_lag_same_node,
        raft_instances=args.raft_instances or (10_000 if quick else 100_000),
        raft_kills=args.raft_kills or (3 if quick else 5),
        raft_trickle_rate=args.raft_trickle,
        instructions=args.instructions,
    )
    unknown = (settings.only | settings.skip) - {b.name for b in BENCHMARKS}
    if unknown:
        parser.error(f"no benchmark named {', '.join(sorted(unknown))} (see --list)")
    if settings.instructions and (settings.only or settings.skip or args.pin_study):
        parser.error("--instructions runs alone: not with --only, --skip or --pin-study")
    if settings.threads < 1 or settings.connections < settings.threads:
        parser.error("need --threads >= 1 and --connections >= --threads")
    if settings.duration < 1 or settings.latency_duration < 1:
        parser.error("durations are whole seconds >= 1")
    if settings.population < 100 or settings.scale_instances < settings.scale_per_service:
        parser.error("need --population >= 100 and --scale-instances >= --scale-per-service")
    if not (1 <= settings.push_rate <= 100 and settings.push_load >= 1 and settings.push_seconds >= 1):
        parser.error("need --push-rate in 1..100 (probes must be apart more than the 5 ms push window), "
                     "--push-load >= 1 and --push-seconds >= 1")
    if not (settings.soak_seconds >= 1 and 1 <= settings.soak_interval <= 10 and settings.soak_instances >= 100):
        parser.error("need --soak-seconds >= 1, --soak-interval in 1..10 (beats must come well within the 15 s "
                     "timeout) and --soak-instances >= 100")
    if not (settings.peer_lag_probes >= 1 and 1 <= settings.peer_lag_rate <= 200 and settings.peer_lag_load >= 0):
        parser.error("need --peer-lag-probes >= 1, --peer-lag-rate in 1..200 and --peer-lag-load >= 0")
    if not (settings.raft_instances >= 100 and settings.raft_kills >= 1 and 1 <= settings.raft_trickle_rate <= 500):
        parser.error("need --raft-instances >= 100, --raft-kills >= 1 and --raft-trickle in 1..500")
    return args, settings


def main(argv: list[str]) -> int:
    args, settings = parse_args(argv)
    if args.serve_ceiling:
        serve_ceiling(args.serve_ceiling)
        return 0
    if args.serve_probe_target:
        serve_probe_target(args.serve_probe_target)
        return 0
    if args.serve_ceiling_uvloop:
        serve_ceiling(args.serve_ceiling_uvloop, on_uvloop=True)
        return 0
    if args.list:
        for b in BENCHMARKS:
            what = f"n/a until {b.needs}" if isinstance(b, Pending) else (b.run.__doc__ or "").strip().split("\n")[0]
            print(f"{b.name:14} {what}")
        return 0
    if args.instructions:
        if shutil.which("valgrind") is None:
            print("bench: valgrind is not installed (scripts/bench --instructions installs it)", file=sys.stderr)
            return 2
    elif shutil.which("wrk") is None:
        print("bench: wrk is not installed (scripts/bench installs it)", file=sys.stderr)
        return 2
    # SIGTERM behaves as Ctrl-C: the finally blocks stop every server.
    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    if args.pin_study:
        return pin_study(settings)
    return run_benchmarks(settings, argv)
