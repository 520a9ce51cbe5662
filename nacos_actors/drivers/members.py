"""MemberDriver: reports this node's state to its peers and keeps every member's state."""

from __future__ import annotations

import logging
from typing import ClassVar, assert_never

from nacos_actors.core.codec import REPORT_PATH, CodecError, decode_report, encode_report
from nacos_actors.core.members import REPORTED_STATES, MemberBoard, MemberCore, MemberView
from nacos_actors.drivers.outbox import Outbox
from nacos_actors.logs import event
from nacos_actors.messages import (
    DISTRO,
    HEALTH,
    MEMBERS,
    PROBE,
    ActorName,
    Leave,
    MarkReady,
    MemberMessage,
    MembersChanged,
    PeerAnswered,
    PeerCall,
    PeerFailed,
    PeerPurpose,
    Reply,
    ReportReceived,
    Tick,
)
from nacos_actors.metrics import ClusterMetrics

log = logging.getLogger(__name__)
REPORT_TIMEOUT_MS = 2000
LEAVE_TIMEOUT_MS = 1000
LISTENERS: tuple[ActorName, ...] = (DISTRO, HEALTH, PROBE)


class MemberDriver:
    """Feeds the MemberCore reports received and answered, failures the front saw, readiness and
    Ticks; sends the reports the core asks for as PeerCalls. Whenever a member's state changes
    it publishes the new view on `board` (read by the front and the metrics), logs the change,
    and tells Distro, the health checker and the prober MembersChanged. `Leave` reports DOWN to every peer
    and answers once each farewell ended. Runs on the member actor's thread."""

    NAME: ClassVar[ActorName] = MEMBERS

    def __init__(self, core: MemberCore, board: MemberBoard, outbox: Outbox, metrics: ClusterMetrics) -> None:
        self.core = core
        self._board = board
        self._outbox = outbox
        self._cluster = metrics
        self._leaving: Reply[int] | None = None

    def start(self, now_ms: int) -> None:
        self._outbox.wake_at(self.NAME, self.core.next_deadline())

    def stop(self) -> None:
        if self._leaving is not None:
            self._leaving.resolve(len(self.core.peers))
            self._leaving = None

    def handle(self, message: object, now_ms: int) -> object:
        received: MemberMessage = message  # type: ignore[assignment]  # what may arrive; the match covers it
        core = self.core
        before = core.view
        match received:
            case Tick():
                due = core.due(now_ms)
                if due:
                    body = encode_report(core.self_address, core.view.self_state)
                    for peer in due:
                        self._call(peer, body, REPORT_TIMEOUT_MS, "report")
            case PeerAnswered(call) if call.purpose == "report":
                try:
                    if received.status != 200:
                        raise CodecError(f"status {received.status}")
                    state = decode_report(received.body, REPORTED_STATES).state
                except CodecError as error:
                    log.debug("report to %s failed: %s", call.peer, error)
                    core.report_failed(call.peer, received.refused, now_ms)
                else:
                    core.report_answered(call.peer, state, now_ms)
            case PeerAnswered(call):
                if core.farewell_done(call.peer) and self._leaving is not None:
                    self._leaving.resolve(len(core.peers))
                    self._leaving = None
            case ReportReceived(peer, state):
                core.report_received(peer, state, now_ms)
            case PeerFailed(peer, refused):
                core.peer_failed(peer, refused, now_ms)
            case MarkReady():
                core.mark_ready(now_ms)
            case Leave(reply):
                peers = core.leave(now_ms)
                if not peers:
                    reply.resolve(0)
                else:
                    self._leaving = reply
                    body = encode_report(core.self_address, core.view.self_state)
                    for peer in peers:
                        self._call(peer, body, LEAVE_TIMEOUT_MS, "farewell")
            case _:
                assert_never(received)
        self._publish(before)
        self._outbox.wake_at(self.NAME, core.next_deadline())
        return None

    def _call(self, peer: str, body: bytes, timeout_ms: int, purpose: PeerPurpose) -> None:
        self._outbox.call_peer(PeerCall(peer, "POST", REPORT_PATH, body, timeout_ms, self.NAME, purpose))

    def _publish(self, before: MemberView) -> None:
        changes = self.core.state_changes(before)
        view = self.core.view
        if view is not before:
            self._board.view = view
        if not changes:
            return
        for address, old, new in changes:
            self._cluster.member_changed(address, new)
            log.info(
                "member %s is %s (was %s)",
                address,
                new,
                old,
                extra=event("member_state", member=address, state=new, previous=old),
            )
        told = MembersChanged(view)
        for listener in LISTENERS:
            self._outbox.tell(listener, told)
