"""Every benchmark, in the order a run takes them, and which ones a run selects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .cluster import PEER_LAG_FIGURES, bench_peer_lag
from .etcd import ETCD_FIGURES, bench_etcd
from .http_load import (
    bench_beat,
    bench_ceiling_end,
    bench_ceiling_start,
    bench_list,
    bench_mixed,
    bench_node_stop,
    bench_register,
)
from .grpc import (
    GRPC_IDLE_FIGURES,
    GRPC_PUSH_FIGURES,
    GRPC_QUERY_FIGURES,
    GRPC_REGISTER_FIGURES,
    bench_grpc_idle,
    bench_grpc_push,
    bench_grpc_query,
    bench_grpc_register,
)
from .instructions import INSTRUCTIONS_FIGURES, bench_instructions
from .probes import PROBE_FIGURES, bench_probes
from .push import PUSH_FIGURES, bench_push
from .raft import (
    RAFT_CLUSTER_FIGURES,
    RAFT_FAILOVER_FIGURES,
    RAFT_REGISTER_FIGURES,
    RAFT_RESTART_FIGURES,
    bench_raft_cluster,
    bench_raft_failover,
    bench_raft_register,
    bench_raft_restart,
)
from .results import Row
from .scale import bench_scale
from .soak import SOAK_FIGURES, bench_beat_soak

if TYPE_CHECKING:
    from .cli import Settings
    from .run import Run


@dataclass
class Bench:
    name: str
    run: Callable[[Run], list[Row]]
    figures: tuple[tuple[str, str], ...] = ()  # (key, figure) shown as "failed: ..." if it raises


@dataclass
class Pending:
    """A figure that needs a feature not built yet."""

    name: str
    figures: tuple[tuple[str, str], ...]
    needs: str


BENCHMARKS: list[Bench | Pending] = [
    Bench("ceiling", bench_ceiling_start, (
        ("ceiling_start", "ceiling (start)"), ("ceiling_p99_1conn", "ceiling p99"), ("ceiling_uvloop", "ceiling on uvloop"),
    )),
    Bench("register", bench_register, (("register", "register"),)),
    Bench("beat", bench_beat, (("beat", "beat"),)),
    Bench("list", bench_list, (
        ("list_100", "list, 100 instances"), ("list_100_plain", "list, 100 instances, plain"),
        ("list_1000", "list, 1000 instances"),
    )),
    Bench("mixed", bench_mixed, (("mixed", "mixed"),)),
    Bench("node-stop", bench_node_stop),
    Bench("etcd", bench_etcd, ETCD_FIGURES),
    Bench("scale", bench_scale, (("scale", "scale"),)),
    Bench("push", bench_push, PUSH_FIGURES),
    Bench("beat-soak", bench_beat_soak, SOAK_FIGURES),
    Bench("peer-lag", bench_peer_lag, PEER_LAG_FIGURES),
    Bench("raft-register", bench_raft_register, RAFT_REGISTER_FIGURES),
    Bench("raft-cluster", bench_raft_cluster, RAFT_CLUSTER_FIGURES),
    Bench("raft-failover", bench_raft_failover, RAFT_FAILOVER_FIGURES),
    Bench("raft-restart", bench_raft_restart, RAFT_RESTART_FIGURES),
    Bench("grpc-register", bench_grpc_register, GRPC_REGISTER_FIGURES),
    Bench("grpc-query", bench_grpc_query, GRPC_QUERY_FIGURES),
    Bench("grpc-push", bench_grpc_push, GRPC_PUSH_FIGURES),
    Bench("grpc-idle", bench_grpc_idle, GRPC_IDLE_FIGURES),
    Bench("probes", bench_probes, PROBE_FIGURES),
    Bench("ceiling-end", bench_ceiling_end, (("ceiling_end", "ceiling (end)"),)),
]
ALWAYS = {"ceiling", "ceiling-end", "node-stop"}
# --instructions runs this alone (no wrk, no ceiling); it is not one of BENCHMARKS
INSTRUCTIONS = Bench("instructions", bench_instructions, INSTRUCTIONS_FIGURES)


def selected(settings: Settings) -> list[Bench | Pending]:
    if settings.instructions:
        return [INSTRUCTIONS]
    chosen = []
    for b in BENCHMARKS:
        if b.name in settings.skip:
            continue
        if settings.only and b.name not in settings.only and b.name not in ALWAYS:
            continue
        chosen.append(b)
    return chosen
