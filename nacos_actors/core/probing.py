"""What a probe is: the boundary types shared by the probe core (nacos_actors.core.probes), its
driver and the prober that runs probes on the event loop (nacos_actors.probes). Immutable: safe
to read on any thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from nacos_actors.model import HTTP_CHECKER, MYSQL_CHECKER, TCP_CHECKER

PROBE_KINDS: Final = (TCP_CHECKER, HTTP_CHECKER, MYSQL_CHECKER)
"""The checker types that probe (NONE does not)."""

# How a probe ended (the `outcome` label of nacos_actors_health_probes_total).
PROBE_OK: Final = "ok"  # connected / expected status / the SQL answered and is not read-only
PROBE_TIMEOUT: Final = "timeout"  # no answer within the probe's timeout (a soft failure)
PROBE_REFUSED: Final = "refused"  # the connection was refused or reset (Nacos: fail at once)
PROBE_BAD_ANSWER: Final = "bad_answer"  # an HTTP status or SQL answer that is not healthy
PROBE_ERROR: Final = "error"  # anything else (a soft failure)
PROBE_OUTCOMES: Final = (PROBE_OK, PROBE_TIMEOUT, PROBE_REFUSED, PROBE_BAD_ANSWER, PROBE_ERROR)

MYSQL_READ_ONLY_CHECK: Final = "show global variables where variable_name='read_only'"
"""Nacos's master check: healthy unless the second column of its row is `ON`. The MYSQL
checker runs it when its `cmd` is empty."""


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One probe for the loop to run. `ip` is the instance's registered IP literal (never a
    host name: instances registered by name are not probed) and `port` the instance's port or
    its cluster's check port. HTTP: GET `path` (starts with `/`, may hold a query) with
    `headers`, healthy on `expected_status` (and any 2xx when that is the default 200); no
    redirect is followed. MYSQL: log in as `user`/`password` and run `command`
    (MYSQL_READ_ONLY_CHECK when the checker gave none)."""

    probe_id: int
    kind: str
    ip: str
    port: int
    timeout_ms: int
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    expected_status: int = 200
    user: str = ""
    password: str = ""
    command: str = ""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """How probe `probe_id` ended: one of PROBE_OUTCOMES; `immediate` when Nacos fails the
    instance at once (connection refused, an HTTP status other than 503/302, an SQL error);
    `detail` a short text for the log (`tcp:timeout`, `http:500`, `mysql:read-only`)."""

    probe_id: int
    kind: str
    outcome: str
    immediate: bool
    detail: str
    elapsed_ms: float


def unrun(probe: ProbeTarget) -> ProbeResult:
    """The result of a probe that could not be started (no prober, or the node is stopping)."""
    return ProbeResult(probe.probe_id, probe.kind, PROBE_ERROR, False, "not run: the prober is not running", 0.0)
