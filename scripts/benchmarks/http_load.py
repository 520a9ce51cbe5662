"""The HTTP load rows on one shared node: the ceiling (start and end), register, beat, list,
mixed, and the node's stop."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .results import Row
from .servers import CONTEXT, Server, http_call, http_get
from .wrk import latency_row

if TYPE_CHECKING:
    from .run import Run


# The shared node runs without health checks: its rows register and then leave instances silent
# for longer than the 15 s beat timeout (the list services never beat, the register row's
# instances never do, the population beats only during the beat and mixed loads), so with checks
# on they would turn unhealthy, then be removed, in the middle of later rows. The beat-soak row
# measures beats with health checks on.
SESSION_NOTE = "health checks off"


@dataclass
class NodeSession:
    """The node the register/beat/list/mixed loads share (started by the first that needs it)."""

    node: Server | None = None
    populated: bool = False


def pop_prefix() -> str:
    return "bench-pop-"


def ensure_node(run: Run, session: NodeSession) -> Server:
    if session.node is None or session.node.proc.poll() is not None:
        session.node = run.start_node("node", health_checks=False)
        session.populated = False
    return session.node


def ensure_population(run: Run, session: NodeSession) -> Server:
    """The beat population (population instances over 100 services) and the list services."""
    node = ensure_node(run, session)
    if not session.populated:
        pop = run.s.population
        run.fill(node, pop_prefix(), 100, pop, name="fill-population")
        run.fill(node, "bench-list-100-", 1, 100, name="fill-list-100")
        run.fill(node, "bench-list-1000-", 1, 1000, name="fill-list-1000")
        # a beat must find its instance: check one before the load
        status, body = http_call("PUT", f"{node.url}{CONTEXT}/v1/ns/instance/beat?serviceName=bench-pop-00007&ip=127.0.0.1&port=8")
        if status != 200 or b'"code":10200' not in body:
            raise RuntimeError(f"a beat on the population answered {status} {body[:200]!r}")
        session.populated = True
    return node


SESSION = NodeSession()


def bench_ceiling_start(run: Run) -> list[Row]:
    """bare aiohttp handler answering `ok`: the ceiling every ratio divides by (start and end)."""
    rows = [run.measure_ceiling("ceiling_start", "ceiling: bare aiohttp `ok` (start)")]
    assert run.ceiling_server is not None
    probe = run.wrk(run.ceiling_server.url + "/", "fixed", duration=run.s.latency_duration, connections=1,
                    name="wrk-ceiling-latency")
    rows.append(latency_row("ceiling_p99_1conn", "ceiling: p99 on 1 connection (latency reference)", probe))
    # For reference only: the ceiling runs aiohttp's defaults, a node runs on uvloop, so part of
    # every node ratio is uvloop's. This row says how much.
    uv = run.start_ceiling(on_uvloop=True)
    try:
        result = run.wrk(uv.url + "/", "fixed", name="wrk-ceiling-uvloop", measured=True)
    finally:
        run.stop_server(uv)
    rows.append(run.throughput_row(
        "ceiling_uvloop", "ceiling on uvloop (reference: a node's loop)", result,
        "the same bare handler on uvloop; not a target, it shows how much of a node's ratio is uvloop's",
    ))
    return rows


def bench_register(run: Run) -> list[Row]:
    """POST /v1/ns/instance, a distinct instance per request over --register-services services."""
    node = ensure_node(run, SESSION)
    services = run.s.register_services
    _, before = run.node_counts(node)
    result = run.wrk(
        node.url, "register",
        {"path": f"{CONTEXT}/v1/ns/instance", "prefix": "bench-reg-", "services": services, "base": 0},
        name="wrk-register", measured=True,
    )
    _, after = run.node_counts(node)
    added = after - before
    note = f"{added:,} new instances over {services} services (~{added // services:,}/service at the end); {SESSION_NOTE}"
    if added < result["requests"] - result["error_count"]:
        note += f"; WARNING: only {added} of {result['requests']} registered"
    return [run.throughput_row("register", "register: POST instance (distinct)", result, note)]


def bench_beat(run: Run) -> list[Row]:
    """PUT /v1/ns/instance/beat, light beats over --population pre-registered instances."""
    node = ensure_population(run, SESSION)
    result = run.wrk(
        node.url, "beat",
        {"path": f"{CONTEXT}/v1/ns/instance/beat", "prefix": pop_prefix(), "services": 100, "population": run.s.population},
        name="wrk-beat", measured=True,
    )
    return [run.throughput_row("beat", f"beat: PUT light beat ({run.s.population:,} instances)", result, SESSION_NOTE)]


# What the Java (NamingProxy) and Node (nacos-naming proxy.js) clients send with every request.
CLIENT_ACCEPT_ENCODING = "gzip,deflate,sdch"


def bench_list(run: Run) -> list[Row]:
    """GET /v1/ns/instance/list of a 100-instance and of a 1000-instance service."""
    node = ensure_population(run, SESSION)
    rows = []
    for size, encoding in ((100, CLIENT_ACCEPT_ENCODING), (100, None), (1000, CLIENT_ACCEPT_ENCODING)):
        url = f"{node.url}{CONTEXT}/v1/ns/instance/list?serviceName=bench-list-{size}-00000"
        status, body = http_get(url)
        hosts = len(json.loads(body)["hosts"]) if status == 200 else -1
        if hosts != size:
            raise RuntimeError(f"list of bench-list-{size}-00000 gave {status} with {hosts} hosts")
        args = {"accept_encoding": encoding} if encoding else None
        plain = "" if encoding else "_plain"
        result = run.wrk(url, "fixed", args, name=f"wrk-list-{size}{plain}", measured=True)
        answer = result["bytes"] / result["requests"] if result["requests"] else 0
        mib = result["bytes"] / result["seconds"] / 2**20 if result["seconds"] else 0
        how = (
            f"Accept-Encoding: {encoding} as the Java and Node clients send (gzip answer)"
            if encoding
            else "no Accept-Encoding, as nacos-sdk-python (plain JSON)"
        )
        rows.append(run.throughput_row(
            f"list_{size}{plain}", f"list: GET instance/list, {size} instances{', plain' if plain else ''}", result,
            f"{how}; {len(body):,} B of JSON, ~{answer:,.0f} B/answer with headers, {mib:,.0f} MiB/s; {SESSION_NOTE}",
        ))
    return rows


def bench_mixed(run: Run) -> list[Row]:
    """80% list / 15% beat / 5% register over the population's services."""
    node = ensure_population(run, SESSION)
    result = run.wrk(
        node.url, "mixed",
        {"context": CONTEXT, "prefix": pop_prefix(), "services": 100, "population": run.s.population,
         "base": run.s.population, "accept_encoding": CLIENT_ACCEPT_ENCODING},
        name="wrk-mixed", measured=True,
    )
    note = f"Accept-Encoding: {CLIENT_ACCEPT_ENCODING} as the Java and Node clients; {SESSION_NOTE}"
    return [run.throughput_row("mixed", "mixed: 80% list / 15% beat / 5% register", result, note)]


def bench_node_stop(run: Run) -> list[Row]:
    """Not a figure: stops the shared node (and notes an unclean stop)."""
    if SESSION.node is not None:
        stopped = run.stop_server(SESSION.node)
        SESSION.node = None
        if stopped["exit_code"] != 0:
            return [Row("node_stop", "node stop after the loads", f"unclean: exit {stopped['exit_code']}", data=stopped)]
    return []


def bench_ceiling_end(run: Run) -> list[Row]:
    """the ceiling again at the end (ratios use the mean)."""
    return [run.measure_ceiling("ceiling_end", "ceiling: bare aiohttp `ok` (end)")]
