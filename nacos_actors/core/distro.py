"""Distro: who owns each service, what to send each peer and when, and how to repair drift. Pure.

Nacos 1.4's AP protocol (DistroMapper, DistroProtocol), with shorter delays and whole-service
states as the unit:

- **Responsibility.** A service belongs to one healthy member: Java's `String.hashCode` of its
  grouped name, over the sorted healthy addresses (`responsible_member`), exactly as Nacos.
  Writes reach the owner (the front forwards them); health deadlines run only there.
- **Sync.** A service changed locally is marked dirty for every peer. Each peer gets at most one
  batch in flight, and at most one batch per `sync_window_ms`: an idle peer is sent a change at
  once, a busy one gets the latest state of everything that changed meanwhile in the next
  batch. A failed batch is retried after `retry_delay_ms`; a DOWN peer keeps its dirty set
  until it is back. Local writes never wait for any of this.
- **Verify.** Every `verify_interval_ms` a node sends each peer the stamps (revision, modified
  time) of the services it owns, with its healthy view. A peer with the same view answers the
  services it holds differently (`verdict`); those are sent again, forced over what it has. It
  drops services the sender owns but no longer has.

The wire values themselves (msgpack) are built by nacos_actors.core.codec; this module only
chooses. No threads or clock: `now_ms` comes in, effects go out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from nacos_actors.core.members import HEALTHY_STATES, MemberView
from nacos_actors.model import Service, ServiceKey, Stamp, stamp_of

INT32_MAX = 2**31 - 1


@lru_cache(maxsize=1 << 16)
def java_string_hash(text: str) -> int:
    """Java's `String.hashCode()`: signed 32-bit, over UTF-16 code units."""
    value = 0
    data = text.encode("utf-16-be")
    for index in range(0, len(data), 2):
        value = (31 * value + (data[index] << 8 | data[index + 1])) & 0xFFFFFFFF
    return value - 2**32 if value >= 2**31 else value


def responsible_member(grouped_name: str, healthy: Sequence[str]) -> str | None:
    """The member that owns a service: Nacos's `DistroMapper.mapSrv` over the sorted healthy
    addresses (None when there are none)."""
    if not healthy:
        return None
    code = java_string_hash(grouped_name)
    # Java: abs(hashCode % Integer.MAX_VALUE), where % truncates toward zero.
    remainder = abs(code) % INT32_MAX
    return healthy[remainder % len(healthy)]


def judges_health(healthy: Sequence[str], member_count: int) -> bool:
    """Whether a member that sees `healthy` may judge beats: only with at least half the members
    in sight. A member cut off from the rest hears none of the beats sent to them, and would
    otherwise mark every instance it owns in its own view unhealthy and expire it (Nacos does);
    on healing, those removals would replicate to the members that did hear the beats."""
    return 2 * len(healthy) >= member_count


def health_judged_here(healthy: Sequence[str], member_count: int, me: str) -> Callable[[ServiceKey], bool]:
    """Which services member `me` judges the health of, seeing `healthy` of `member_count`
    members: those it is responsible for, and none while judges_health says no."""
    judging = judges_health(healthy, member_count)

    def owns(key: ServiceKey) -> bool:
        return judging and responsible_member(key.name, healthy) == me

    return owns


@dataclass(frozen=True, slots=True)
class DistroConfig:
    """Delays of the sync and verify loops, in ms; `max_batch` services per sync request."""

    sync_window_ms: int = 20
    retry_delay_ms: int = 500
    verify_interval_ms: int = 3000
    max_batch: int = 1000


@dataclass(frozen=True, slots=True)
class SendBatch:
    """Send `peer` the current state of `keys` (a deleted service as a tombstone); with `force`
    the peer replaces what it has whatever its version (a verify repair)."""

    peer: str
    keys: tuple[ServiceKey, ...]
    force: bool
    first_dirty_ms: int


@dataclass(frozen=True, slots=True)
class SendDigests:
    """Send `peer` the stamps of every service this node owns, with this node's healthy view."""

    peer: str


Effect = SendBatch | SendDigests


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a node makes of a peer's digests: services to fetch again (it holds them differently,
    or not at all) and services to drop (the sender owns them and no longer has them)."""

    wanted: tuple[ServiceKey, ...] = ()
    dropped: tuple[ServiceKey, ...] = ()


def verdict(
    sender: str,
    sender_healthy: Sequence[str],
    digests: Mapping[ServiceKey, Stamp],
    my_healthy: Sequence[str],
    local: Iterable[Service],
) -> Verdict:
    """Compare a peer's digests with the `local` services. Nothing is judged unless both nodes
    have the same healthy view: during a membership change they may disagree on who owns what,
    and dropping on a stale view would delete live data."""
    if tuple(sender_healthy) != tuple(my_healthy) or sender not in my_healthy:
        return Verdict()
    held: dict[ServiceKey, Stamp] = {}
    dropped = []
    for service in local:
        if responsible_member(service.key.name, my_healthy) != sender:
            continue
        if service.key in digests:
            held[service.key] = stamp_of(service)
        else:
            dropped.append(service.key)
    wanted = tuple(key for key, stamp in digests.items() if held.get(key) != stamp)
    return Verdict(wanted, tuple(dropped))


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """How a batch ended, for the driver to record: the batch, whether it was acknowledged, and
    `note` when the peer's sync just started failing or works again (logged once each)."""

    batch: SendBatch
    ok: bool
    note: Literal["failing", "recovered"] | None


@dataclass(slots=True)
class _Peer:
    dirty: dict[ServiceKey, None] = field(default_factory=dict)
    forced: dict[ServiceKey, None] = field(default_factory=dict)
    first_dirty_ms: int | None = None
    in_flight: SendBatch | None = None
    not_before_ms: int = 0
    reachable: bool = False
    failing: bool = False


class DistroCore:
    """Dirty sets, windows and retries per peer, and the verify timer. Distro actor's thread only."""

    def __init__(self, self_address: str, peers: Iterable[str], config: DistroConfig, now_ms: int) -> None:
        self.self_address = self_address
        self.config = config
        self._peers = {address: _Peer() for address in peers if address != self_address}
        self.healthy: tuple[str, ...] = ()
        self._next_verify_ms = now_ms + config.verify_interval_ms

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(self._peers)

    def owns(self, key: ServiceKey) -> bool:
        """Whether this node is responsible for the service in the current healthy view (never
        while it is not in the view itself)."""
        return responsible_member(key.name, self.healthy) == self.self_address

    def set_view(self, healthy: Sequence[str], reachable: Iterable[str]) -> None:
        """The membership changed: `healthy` is the sorted healthy view, `reachable` the peers
        worth sending to (UP or SUSPICIOUS; a STARTING peer would drop what it gets before its
        snapshot load, so its changes wait here until it serves)."""
        self.healthy = tuple(healthy)
        reachable = set(reachable)
        for address, peer in self._peers.items():
            was = peer.reachable
            peer.reachable = address in reachable
            if peer.reachable and not was:
                peer.not_before_ms = 0  # back: send what piled up without waiting for a retry

    def members_changed(self, view: MemberView) -> None:
        """A member's state changed: hash over `view`'s healthy members, and send to the peers
        that are UP or SUSPICIOUS (not a STARTING one: the snapshot it loads would replace what
        it is sent now)."""
        reachable = [a for a, s in view.members.items() if a != view.self_address and s.state in HEALTHY_STATES]
        self.set_view(view.healthy, reachable)

    def changed(self, keys: Iterable[ServiceKey], now_ms: int) -> None:
        """Services changed locally: mark them dirty for every peer."""
        keys = tuple(keys)
        if not keys:
            return
        for peer in self._peers.values():
            for key in keys:
                peer.dirty[key] = None
            if peer.first_dirty_ms is None:
                peer.first_dirty_ms = now_ms

    def repair(self, peer_address: str, keys: Iterable[ServiceKey], now_ms: int) -> None:
        """A peer answered our digests: send it these services again, forced."""
        peer = self._peers.get(peer_address)
        if peer is None:
            return
        for key in keys:
            peer.forced[key] = None
        if peer.first_dirty_ms is None:
            peer.first_dirty_ms = now_ms

    def due(self, now_ms: int) -> list[Effect]:
        """What to send now: at most one batch per idle peer, and the digests when verify is due."""
        effects: list[Effect] = []
        for address, peer in self._peers.items():
            if not peer.reachable or peer.in_flight is not None or now_ms < peer.not_before_ms:
                continue
            pending = peer.forced or peer.dirty
            if not pending:
                continue
            force = bool(peer.forced)
            keys = tuple(list(pending)[: self.config.max_batch])
            for key in keys:
                del pending[key]
                if force:
                    peer.dirty.pop(key, None)  # the forced state is at least as new
            first = peer.first_dirty_ms if peer.first_dirty_ms is not None else now_ms
            peer.first_dirty_ms = now_ms if (peer.forced or peer.dirty) else None
            batch = peer.in_flight = SendBatch(address, keys, force, first)
            peer.not_before_ms = now_ms + self.config.sync_window_ms
            effects.append(batch)
        if now_ms >= self._next_verify_ms:
            self._next_verify_ms = now_ms + self.config.verify_interval_ms
            if self.self_address in self.healthy:
                effects.extend(SendDigests(a) for a, p in self._peers.items() if p.reachable and a in self.healthy)
        return effects

    def batch_done(self, peer_address: str, ok: bool, now_ms: int) -> BatchOutcome | None:
        """The batch in flight to a peer was acknowledged (`ok`) or failed; a failed one's
        services are sent again (with their latest state) after the retry delay. None when no
        batch was in flight there."""
        peer = self._peers.get(peer_address)
        if peer is None or peer.in_flight is None:
            return None
        batch, peer.in_flight = peer.in_flight, None
        note: Literal["failing", "recovered"] | None = None
        if ok != (not peer.failing):
            peer.failing = not ok
            note = "recovered" if ok else "failing"
        if ok:
            return BatchOutcome(batch, ok, note)
        target = peer.forced if batch.force else peer.dirty
        for key in batch.keys:
            target[key] = None
        if peer.first_dirty_ms is None or batch.first_dirty_ms < peer.first_dirty_ms:
            peer.first_dirty_ms = batch.first_dirty_ms
        peer.not_before_ms = now_ms + self.config.retry_delay_ms
        return BatchOutcome(batch, ok, note)

    def next_deadline(self) -> int:
        """When `due` may next have something to do."""
        deadline = self._next_verify_ms
        for peer in self._peers.values():
            if peer.reachable and peer.in_flight is None and (peer.dirty or peer.forced):
                deadline = min(deadline, peer.not_before_ms)
        return deadline

    def pending(self) -> int:
        """Services waiting to be sent to reachable peers, plus batches in flight (what a drain
        waits for; a DOWN peer gets its changes from verify or a snapshot when it is back)."""
        return sum(
            len(p.dirty) + len(p.forced) + (0 if p.in_flight is None else 1)
            for p in self._peers.values()
            if p.reachable
        )

    def pending_for(self, peer_address: str) -> int:
        peer = self._peers.get(peer_address)
        return 0 if peer is None else len(peer.dirty) + len(peer.forced)

    def flush_now(self) -> None:
        """Drop the windows and retry delays: the next `due` sends everything it can (a drain)."""
        for peer in self._peers.values():
            peer.not_before_ms = 0
