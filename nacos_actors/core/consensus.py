"""What the Raft driver publishes about its group, and how a failed proposal is answered.

Pure values. The Raft driver assigns a whole `RaftStatus` to the `RaftBoard` after each tick;
the event loop (HTTP, metrics) reads it. A proposal that cannot complete is answered 503 with
a message that says why and, when known, where the leader is, so the client retries.
"""

from __future__ import annotations

from dataclasses import dataclass

from nacos_actors.messages import Refused

LEADER = "leader"
FOLLOWER = "follower"
CANDIDATE = "candidate"
ROLES = (LEADER, FOLLOWER, CANDIDATE)

# How a proposal ended, as the proposals metric labels it.
PROPOSAL_APPLIED = "applied"
PROPOSAL_REFUSED = "refused"
PROPOSAL_NO_LEADER = "no_leader"
PROPOSAL_LEADER_CHANGED = "leader_changed"
PROPOSAL_TIMED_OUT = "timed_out"
PROPOSAL_OVERLOADED = "overloaded"
PROPOSAL_FAILED = "failed"  # anything else: the group closing, an entry too large, an apply that raised
PROPOSAL_OUTCOMES = (
    PROPOSAL_APPLIED,
    PROPOSAL_REFUSED,
    PROPOSAL_NO_LEADER,
    PROPOSAL_LEADER_CHANGED,
    PROPOSAL_TIMED_OUT,
    PROPOSAL_OVERLOADED,
    PROPOSAL_FAILED,
)

# The library's failure reasons (nacos_actors.raft.group) by the outcome they count as; any
# other reason counts as PROPOSAL_FAILED.
FAILURE_OUTCOMES = {
    "no_leader": PROPOSAL_NO_LEADER,
    "queue_full": PROPOSAL_OVERLOADED,
    "discarded": PROPOSAL_LEADER_CHANGED,
    "not_leader": PROPOSAL_LEADER_CHANGED,
    "leader_changed": PROPOSAL_LEADER_CHANGED,
    "denied": PROPOSAL_LEADER_CHANGED,
    "unknown_outcome": PROPOSAL_LEADER_CHANGED,
}


@dataclass(frozen=True, slots=True)
class RaftStatus:
    """One member's view of its Raft group. `leader` is the leader's HTTP address (the member
    address clients know) when one is known; `ready` once this member has applied everything
    the leader had committed when it joined (or, alone, its own journal)."""

    role: str = FOLLOWER
    term: int = 0
    leader: str | None = None
    commit_index: int = 0
    applied_index: int = 0
    log_entries: int = 0
    journal_bytes: int = 0
    ready: bool = False
    durable: bool = False
    snapshot_bytes: int = 0
    snapshot_seconds: float = 0.0


class RaftBoard:
    """Where the Raft driver publishes its latest RaftStatus. Only that driver assigns `status`,
    always a whole frozen value; any thread reads it."""

    __slots__ = ("status",)

    def __init__(self) -> None:
        self.status = RaftStatus()


def unavailable(reason: str, leader: str | None) -> Refused:
    """The 503 a proposal that failed for `reason` answers (an outcome of FAILURE_OUTCOMES, or
    PROPOSAL_TIMED_OUT)."""
    where = f" (leader: {leader})" if leader else ""
    if reason == PROPOSAL_NO_LEADER:
        text = "no Raft leader: an election is in progress or a majority of members is unreachable"
    elif reason == PROPOSAL_OVERLOADED:
        text = "too many persistent writes are waiting for Raft"
    elif reason == PROPOSAL_TIMED_OUT:
        text = "Raft did not commit the write in time; its outcome is unknown"
    elif reason == PROPOSAL_FAILED:
        text = "Raft could not take the write"
    else:
        text = "the Raft leader changed before the write was committed; its outcome is unknown"
    return Refused(503, f"{text}{where}; retry the request")
