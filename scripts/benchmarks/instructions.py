"""The instructions rows (--instructions): CPU instructions per request, counted by valgrind's
cachegrind, steady on a noisy machine where req/s are not.

Each operation runs in-process (instructions_driver.py: a node from instructions_node.start_node,
requests handed to its aiohttp application without sockets) twice, as two processes under
`valgrind --tool=cachegrind --cache-sim=no`: once with N1 requests and once with N2. Each
process's total Ir (instructions executed, every thread of it: the event loop, the registry,
health and push actors, their alarms and the push receiver) comes from the `summary:` line of
its cachegrind output; start-up, imports, set-up and shut-down are the same in both, so
(Ir(N2) - Ir(N1)) / (N2 - N1) is the cost of one request. PYTHONHASHSEED=0 fixes the hash
seed, so both runs build the same dicts and sets; the node's own GC thresholds (run_node's) stay.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from typing import TYPE_CHECKING, Any

from .results import Row, Skip
from .servers import PYTHON

if TYPE_CHECKING:
    from .run import Run


INSTRUCTIONS_N1 = 200
INSTRUCTIONS_N2 = 1200
INSTRUCTIONS_TIMEOUT_S = 600  # one process under valgrind; each takes 10-30 s here
DRIVER = f"{__package__}.instructions_driver"
# (operation, key, figure, unit): the driver's operations, in the order they run
INSTRUCTIONS_OPS = (
    ("floor", "instructions_floor", "instructions: bare aiohttp `ok`, same driving (floor)", "instr/req"),
    ("register", "instructions_register", "instructions: register (POST instance, new)", "instr/req"),
    ("persistent_register", "instructions_persistent_register",
     "instructions: persistent register (POST instance, ephemeral=false, Raft of one, fsync off)", "instr/req"),
    ("beat", "instructions_beat", "instructions: light beat (PUT instance/beat)", "instr/req"),
    ("list", "instructions_list_100", "instructions: list, 100 instances, plain (memoized)", "instr/req"),
    ("push", "instructions_push", "instructions: push (change -> UDP datagram -> ack)", "instr/push"),
)
INSTRUCTIONS_FIGURES = tuple((key, figure) for _, key, figure, _ in INSTRUCTIONS_OPS)
OP_NOTES = {
    "floor": "a bare aiohttp app (no node) answering `ok`, driven like the rows below: what driving a request "
             "in-process costs at least",
    "register": "a new instance per request (instance k into service k mod 100), applied by the registry actor, "
                "fanned out to the health and push actors (no subscribers)",
    "persistent_register": "as register with ephemeral=false: proposed to the node's Raft group of one (journal "
                           "in a temporary data directory, fsync off: cachegrind counts CPU, and a synced "
                           "journal costs disk time, not instructions), committed, applied by the Raft actor, "
                           "merged by the registry, then answered",
    "beat": "light beats cycling over 100 registered healthy instances (10 services x 10); health checks off",
    "list": "GET instance/list of one unchanged 100-instance service without Accept-Encoding (plain JSON): "
            "the memoized query and body",
    "push": "per change of a subscribed service, the write included: a re-register of its one instance with "
            "the weight toggled (a register of an existing instance) -> the push actor's UDP datagram to a "
            "subscriber socket on 127.0.0.1 -> its ack (then a 5 ms pause, so the ack is in before the next "
            "change); the subscriber polls the list with udpPort and User-Agent Nacos-Java-Client:v1.4.8 every "
            "50 changes",
}
SUMMARY = re.compile(rb"^summary:\s+(\d+)", re.MULTILINE)


def valgrind_version(valgrind: str) -> str:
    return subprocess.run([valgrind, "--version"], capture_output=True, text=True).stdout.strip()


def count(run: Run, valgrind: str, op: str, n: int) -> dict[str, Any]:
    """One process under cachegrind running `op` n times: its total Ir, wall time and report."""
    name = f"instructions-{op}-{n}"
    out = run.procs.log_dir / f"{name}.cachegrind"
    argv = [
        valgrind, "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}",
        f"--log-file={run.procs.log_dir / name}.valgrind.log",
        PYTHON, "-m", DRIVER, op, str(n),
    ]
    env = dict(os.environ, PYTHONHASHSEED="0")
    started = time.monotonic()
    proc = run.procs.start(name, argv, capture=True, env=env)
    try:
        stdout, _ = proc.communicate(timeout=INSTRUCTIONS_TIMEOUT_S)
    finally:
        run.procs.stop(proc)
    seconds = time.monotonic() - started
    report = None
    for line in stdout.decode(errors="replace").splitlines():
        if line.startswith("INSTRUCTIONS_JSON "):
            report = json.loads(line[len("INSTRUCTIONS_JSON "):])
    if proc.returncode != 0 or report is None or not out.exists():
        raise RuntimeError(f"{op} x{n} under valgrind exited {proc.returncode} without a count; see "
                           f"{run.procs.log_dir}/{name}.log (--keep-logs keeps it)")
    found = SUMMARY.search(out.read_bytes())
    if found is None:
        raise RuntimeError(f"no summary line in {out}")
    return {"ir": int(found.group(1)), "seconds": round(seconds, 1), "report": report}


def warm_up(run: Run, op: str) -> None:
    """The operation once, natively: compiles what it imports to .pyc before either count, so
    neither of the two pays for that alone; and a quick check that it works."""
    proc = run.procs.start(f"instructions-{op}-warm-up", [PYTHON, "-m", DRIVER, op, "1"], capture=True)
    try:
        proc.communicate(timeout=120)
    finally:
        run.procs.stop(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"{op} failed natively (exit {proc.returncode}); see {run.procs.log_dir}/"
                           f"instructions-{op}-warm-up.log (--keep-logs keeps it)")


def check(op: str, n: int, report: dict[str, Any]) -> list[str]:
    """What went wrong in one count, by the driver's report (empty when all is as meant)."""
    problems = []
    if report.get("n") != n:
        problems.append(f"ran {report.get('n')} not {n}")
    if op == "beat" and report.get("bad"):
        problems.append(f"{report['bad']} beats not answered 10200")
    if op == "list" and report.get("hosts") != [100, 100]:
        problems.append(f"hosts listed {report.get('hosts')}")
    if op == "push":
        acked = report.get('nacos_actors_pushes_total{outcome="acked"}')
        superseded = report.get('nacos_actors_pushes_total{outcome="superseded"}')
        resends = report.get('nacos_actors_push_sends_total{kind="retry"}')
        if report.get("datagrams") != n or report.get("wrong_weight"):
            problems.append(f"{report.get('datagrams')} datagrams for {n} changes, "
                            f"{report.get('wrong_weight')} with the wrong weight")
        if (acked is not None and acked < n - 1) or superseded or resends:
            problems.append(f"node: {acked} acked, {superseded} superseded, {resends} resends")
    return problems


def bench_instructions(run: Run) -> list[Row]:
    """CPU instructions per request (cachegrind, in-process): register, light beat, list of 100, push."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise Skip("valgrind is not installed (scripts/bench --instructions installs it: apt-get install valgrind)")
    version = valgrind_version(valgrind)
    n1, n2 = INSTRUCTIONS_N1, INSTRUCTIONS_N2
    rows = []
    for op, key, figure, unit in INSTRUCTIONS_OPS:
        try:
            warm_up(run, op)
            first, second = count(run, valgrind, op, n1), count(run, valgrind, op, n2)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            print(f"bench:   {op} failed: {error}", flush=True)
            rows.append(Row(key, figure, f"failed: {error}"))
            continue
        per = (second["ir"] - first["ir"]) / (n2 - n1)
        note = (f"{OP_NOTES[op]}; Ir {first['ir']:,} (N1) / {second['ir']:,} (N2), "
                f"{first['seconds']:.0f} s / {second['seconds']:.0f} s under valgrind")
        problems = check(op, n1, first["report"]) + check(op, n2, second["report"])
        if problems:
            note += "; WARNING: " + "; ".join(problems)
        data = {"n1": n1, "n2": n2, "ir": [first["ir"], second["ir"]], "seconds": [first["seconds"], second["seconds"]],
                "driver": [first["report"], second["report"]], "valgrind": version}
        rows.append(Row(key, figure, per, unit, note=note, data=data))
    if rows:
        rows[0].note += (f"; method: (Ir(N2) - Ir(N1)) / (N2 - N1) with N1 {n1}, N2 {n2}, each N its own process "
                         f"under `valgrind --tool=cachegrind --cache-sim=no` ({version}), every thread counted, "
                         f"PYTHONHASHSEED=0; requests built by the app's server (request_factory) and awaited "
                         f"through its request_handler, no socket: parsing requests and writing responses not counted")
    return rows
