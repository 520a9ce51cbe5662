"""Cluster membership: each member's state by failure accrual, and the healthy view. Pure.

Nacos 1.4's rules (ServerMemberManager, MemberUtil), with shorter delays: a node reports its own
state to every peer each `report_interval_ms`; a report that is answered moves the peer to the
state it answered with (UP, or STARTING while it still loads its snapshot); a failed report
makes the peer SUSPICIOUS, and DOWN once more than `fail_threshold` reports in a row failed or
at once when the connection was refused. A report received from a peer is as good as one
answered. Members listed in the configuration start DOWN until heard from; this node is
STARTING until `mark_ready`.

The healthy view is the sorted addresses of members UP or SUSPICIOUS (this node included once
ready): Distro hashes services over it, so every node with the same view picks the same owner.

No threads or clock: time comes in as `now_ms`; the actor carries out the reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

STARTING = "STARTING"
UP = "UP"
SUSPICIOUS = "SUSPICIOUS"
DOWN = "DOWN"
STATES = (STARTING, UP, SUSPICIOUS, DOWN)
HEALTHY_STATES = frozenset((UP, SUSPICIOUS))
# What a peer may say about itself in a report or an answer.
REPORTED_STATES = frozenset((STARTING, UP, DOWN))


@dataclass(frozen=True, slots=True)
class MemberConfig:
    """`report_interval_ms` between reports to each peer; a peer is DOWN after more than
    `fail_threshold` failed reports in a row (Nacos's nacos.core.member.fail-access-cnt, 3)."""

    report_interval_ms: int = 500
    fail_threshold: int = 3


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """One member as this node sees it. `last_refresh_ms` is when it was last heard from (0: never)."""

    address: str
    state: str
    fail_count: int = 0
    last_refresh_ms: int = 0


@dataclass(frozen=True, slots=True)
class MemberView:
    """An immutable picture of the cluster: every member's status, and the healthy addresses
    (UP or SUSPICIOUS), sorted. Safe to read on any thread."""

    self_address: str
    members: Mapping[str, MemberStatus]
    healthy: tuple[str, ...]

    @property
    def self_state(self) -> str:
        return self.members[self.self_address].state

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(a for a in self.members if a != self.self_address)


def standalone_view(self_address: str) -> MemberView:
    """The view of a node alone: itself, UP."""
    return MemberView(self_address, MappingProxyType({self_address: MemberStatus(self_address, UP)}), (self_address,))


class MemberCore:
    """The state of every member and when to report to each peer. Member actor's thread only.

    Every method that may change a state answers whether a member's state changed (the healthy
    view is derived from the states, so it can change only then).
    """

    def __init__(self, self_address: str, members: Iterable[str], config: MemberConfig, now_ms: int) -> None:
        self.self_address = self_address
        self.config = config
        self._status: dict[str, MemberStatus] = {self_address: MemberStatus(self_address, STARTING, 0, now_ms)}
        for address in members:
            if address != self_address:
                self._status[address] = MemberStatus(address, DOWN)
        self._next_report = {address: now_ms for address in self._status if address != self_address}
        self._in_flight: set[str] = set()
        self._farewells: set[str] = set()
        self._view = self._build_view()

    @property
    def view(self) -> MemberView:
        return self._view

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(self._next_report)

    def mark_ready(self, now_ms: int) -> bool:
        """This node loaded its data and serves: it is UP from now on."""
        return self._set(self.self_address, UP, 0, now_ms)

    def mark_leaving(self, now_ms: int) -> bool:
        """This node is stopping: it reports DOWN from now on."""
        return self._set(self.self_address, DOWN, 0, now_ms)

    def leave(self, now_ms: int) -> tuple[str, ...]:
        """This node is stopping: it is DOWN from now on; answers the peers to tell so (each
        farewell ends with `farewell_done`)."""
        self.mark_leaving(now_ms)
        self._farewells = set(self.peers)
        return self.peers

    def farewell_done(self, peer: str) -> bool:
        """A farewell to `peer` was answered or failed; answers whether none is left."""
        self._farewells.discard(peer)
        return not self._farewells

    def state_changes(self, before: MemberView) -> tuple[tuple[str, str, str], ...]:
        """(address, previous state, state) of every member whose state differs from `before`."""
        view = self._view
        if view is before:
            return ()
        return tuple(
            (address, before.members[address].state, status.state)
            for address, status in view.members.items()
            if before.members[address].state != status.state
        )

    def due(self, now_ms: int) -> tuple[str, ...]:
        """The peers to report to now (each at most once until its result comes back)."""
        chosen = tuple(
            address for address, at in self._next_report.items() if at <= now_ms and address not in self._in_flight
        )
        for address in chosen:
            self._in_flight.add(address)
            self._next_report[address] = now_ms + self.config.report_interval_ms
        return chosen

    def next_deadline(self) -> int | None:
        """When `due` next has a peer to report to (None: every report is in flight)."""
        waiting = [at for address, at in self._next_report.items() if address not in self._in_flight]
        return min(waiting) if waiting else None

    def report_answered(self, peer: str, peer_state: str, now_ms: int) -> bool:
        """A report to `peer` was answered with the state it is in."""
        self._in_flight.discard(peer)
        return self._heard(peer, peer_state, now_ms)

    def report_failed(self, peer: str, refused: bool, now_ms: int) -> bool:
        """A report to `peer` failed (`refused`: the connection was refused)."""
        self._in_flight.discard(peer)
        return self.peer_failed(peer, refused, now_ms)

    def peer_failed(self, peer: str, refused: bool, now_ms: int) -> bool:
        """Anything sent to `peer` failed: accrue one failure (DOWN at once when refused)."""
        current = self._status.get(peer)
        if current is None or peer == self.self_address:
            return False
        count = current.fail_count + 1
        down = refused or count > self.config.fail_threshold or current.state in (DOWN, STARTING)
        return self._set(peer, DOWN if down else SUSPICIOUS, count, current.last_refresh_ms)

    def report_received(self, peer: str, peer_state: str, now_ms: int) -> bool:
        """`peer` told us its state. A stranger (not in the member list) changes nothing."""
        return self._heard(peer, peer_state, now_ms)

    def knows(self, address: str) -> bool:
        return address in self._status

    # -- internals -------------------------------------------------------------------------

    def _heard(self, peer: str, peer_state: str, now_ms: int) -> bool:
        if peer not in self._status or peer == self.self_address or peer_state not in REPORTED_STATES:
            return False
        return self._set(peer, peer_state, 0, now_ms)

    def _set(self, address: str, state: str, fail_count: int, refreshed_ms: int) -> bool:
        previous = self._status[address]
        self._status[address] = MemberStatus(address, state, fail_count, refreshed_ms)
        self._view = self._build_view()
        return previous.state != state

    def _build_view(self) -> MemberView:
        healthy = tuple(sorted(a for a, s in self._status.items() if s.state in HEALTHY_STATES))
        return MemberView(self.self_address, MappingProxyType(dict(self._status)), healthy)


class MemberBoard:
    """The latest MemberView, published by the member actor for the front and the metrics.

    Only whole views are assigned, so any thread may read `view` without a lock.
    """

    def __init__(self, view: MemberView) -> None:
        self.view = view
