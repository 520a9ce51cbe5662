"""Raft's state for operators: Nacos 1.x's `/v1/ns/raft/state` and `/v1/ns/raft/leader`.

Nacos 1.4 still routes these (its old Raft's RaftController) but answers 500 once every member
runs 1.4 (its persistent data then moved to JRaft on port - 1000); here they report this
member's group, in the old endpoints' shapes: a RaftPeer is `ip` (the member address),
`voteFor`, `term`, `leaderDueMs`, `heartbeatDueMs` and `state` (LEADER, FOLLOWER, CANDIDATE).
Runs on the event loop thread, reading the Raft driver's published status.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from nacos_actors.core.consensus import LEADER, RaftStatus
from nacos_actors.http.front import Front, front_of, json_response
from nacos_actors.http.routing import AddRoute
from nacos_actors.render import views


def raft_peer(address: str, role: str, status: RaftStatus) -> dict[str, Any]:
    """One member as Nacos 1.x's RaftPeer JSON, as this member sees it."""
    return {
        "ip": address,
        "voteFor": status.leader or "",
        "term": status.term,
        "leaderDueMs": 0,
        "heartbeatDueMs": 0,
        "state": role.upper(),
    }


def raft_peers(front: Front) -> list[dict[str, Any]]:
    """Every member: this one in its own role, the leader as LEADER, the others FOLLOWER."""
    status = front.raft_board.status
    me = front.settings.self_address
    peers = []
    for address in front.settings.group_members:
        role = status.role if address == me else (LEADER if address == status.leader else "follower")
        peers.append(raft_peer(address, role, status))
    return peers


async def raft_state(request: web.Request) -> web.Response:
    """GET /v1/ns/raft/state: the service count and every member as a RaftPeer, plus this
    member's own figures under `raft` (an extra field; Nacos clients ignore it)."""
    front = front_of(request)
    status = front.raft_board.status
    document = {
        "services": front.view.service_count,
        "peers": raft_peers(front),
        "raft": {
            "role": status.role,
            "term": status.term,
            "leader": status.leader,
            "commitIndex": status.commit_index,
            "appliedIndex": status.applied_index,
            "logEntries": status.log_entries,
            "journalBytes": status.journal_bytes,
            "ready": status.ready,
            "durable": status.durable,
        },
    }
    return json_response(views.dumps(document))


async def raft_leader(request: web.Request) -> web.Response:
    """GET /v1/ns/raft/leader: `{"leader": "<the leader's RaftPeer as a JSON string>"}`, as
    Nacos 1.x; `{"leader": null}` while no leader is known."""
    front = front_of(request)
    status = front.raft_board.status
    leader = None
    if status.leader is not None:
        leader = views.dumps(raft_peer(status.leader, LEADER, status)).decode()
    return json_response(views.dumps({"leader": leader}))


def raft_metadata(front: Front) -> dict[str, Any]:
    """This member's Raft group as Nacos 2.x shows it in a member's `extendInfo.raftMetaData`."""
    status = front.raft_board.status
    settings = front.settings
    leader = settings.raft_address_of(status.leader) if status.leader is not None else None
    return {
        "metaDataMap": {
            "naming_persistent_service": {
                "leader": leader,
                "raftGroupMember": [settings.raft_address_of(m) for m in settings.group_members],
                "term": status.term,
            }
        }
    }


def add_routes(add: AddRoute, prefix: str) -> None:
    """Mount the Raft views under `<context path>/v1/ns/raft`."""
    add("GET", f"{prefix}/v1/ns/raft/state", raft_state)
    add("GET", f"{prefix}/v1/ns/raft/leader", raft_leader)
