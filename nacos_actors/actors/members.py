"""MemberActor: reports this node's state to its peers and keeps every member's state."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, assert_never

import pykka

from nacos_actors.actors.base import NodeActor
from nacos_actors.clock import wall_clock_ms
from nacos_actors.core.codec import CodecError, decode_report, encode_report
from nacos_actors.core.members import REPORTED_STATES, MemberBoard, MemberCore, MemberView
from nacos_actors.logs import event
from nacos_actors.messages import (
    Leave,
    MarkReady,
    MemberMessage,
    MembersChanged,
    PeerFailed,
    Ping,
    ReportAnswered,
    ReportReceived,
    Tick,
)
from nacos_actors.metrics import NodeMetrics
from nacos_actors.peers import REPORT_PATH, PeerError, PeerLink

log = logging.getLogger(__name__)
LEAVE_TIMEOUT_S = 1.0


class MemberActor(NodeActor):
    """Wraps the MemberCore on its own pykka thread.

    Reports this node's state to each peer on the core's schedule (an Alarm), through the
    PeerLink on the event loop, which tells the answers back. Whenever a member's state changes
    it publishes the new view on `board` (read by the front and the metrics), logs the change,
    and tells every listener (Distro, the health checker) MembersChanged.
    """

    NAME = "members"

    def __init__(
        self,
        core: MemberCore,
        board: MemberBoard,
        link: PeerLink,
        listeners: list[pykka.ActorRef[Any]],
        metrics: NodeMetrics,
        on_fatal: Callable[[BaseException], None],
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        super().__init__(metrics, on_fatal, clock)
        self.core = core
        self._board = board
        self._link = link
        self._listeners = list(listeners)
        self._cluster = metrics.cluster

    def on_start(self) -> None:
        super().on_start()
        self._alarm.set(self.core.next_deadline())

    def on_receive(self, message: Any) -> Any:
        received: MemberMessage = message
        now = self._clock()
        before = self.core.view
        match received:
            case Tick():
                due = self.core.due(now)
                if due:
                    body = encode_report(self._link.self_address, self.core.view.self_state)
                    for peer in due:
                        self._report(peer, body)
            case ReportAnswered(peer, state):
                self.core.report_answered(peer, state, now)
            case ReportReceived(peer, state):
                self.core.report_received(peer, state, now)
            case PeerFailed(peer, refused, report):
                if report:
                    self.core.report_failed(peer, refused, now)
                else:
                    self.core.peer_failed(peer, refused, now)
            case MarkReady():
                self.core.mark_ready(now)
            case Leave(reply):
                self.core.mark_leaving(now)
                self._leave(reply)
            case Ping():
                return "pong"
            case _:
                assert_never(received)
        self._publish(before)
        self._alarm.set(self.core.next_deadline())
        return None

    def _publish(self, before: MemberView) -> None:
        view = self.core.view
        if view is before:
            return
        self._board.view = view
        changed = [a for a, s in view.members.items() if before.members[a].state != s.state]
        if not changed:
            return
        for address in changed:
            old, new = before.members[address].state, view.members[address].state
            self._cluster.member_changed(address, new)
            log.info(
                "member %s is %s (was %s)",
                address,
                new,
                old,
                extra=event("member_state", member=address, state=new, previous=old),
            )
        told = MembersChanged(view)
        for listener in list(self._listeners):
            try:
                listener.tell(told)
            except pykka.ActorDeadError:
                self._listeners.remove(listener)

    def _report(self, peer: str, body: bytes) -> None:
        link, tell = self._link, self._tell_me

        async def report() -> None:
            try:
                status, answer = await link.async_call("POST", peer, REPORT_PATH, body)
                if status != 200:
                    raise PeerError(f"report to {peer}: status {status}")
                told: Any = ReportAnswered(peer, decode_report(answer, REPORTED_STATES).state)
            except (PeerError, CodecError) as error:
                log.debug("report to %s failed: %s", peer, error)
                told = PeerFailed(peer, isinstance(error, PeerError) and error.refused, report=True)
            tell(told)

        if not link.submit(report):
            self.core.report_failed(peer, False, self._clock())

    def _leave(self, reply: Any) -> None:
        """Tell every peer this node is DOWN (best effort, at most LEAVE_TIMEOUT_S), then reply."""
        link, peers = self._link, self.core.peers
        body = encode_report(link.self_address, self.core.view.self_state)

        async def leave() -> None:
            async def one(peer: str) -> None:
                try:
                    await link.async_call("POST", peer, REPORT_PATH, body, timeout_s=LEAVE_TIMEOUT_S)
                except PeerError:
                    pass

            await asyncio.gather(*(one(p) for p in peers))
            reply.resolve((len(peers),))

        if not link.submit(leave):
            reply.resolve((0,))
