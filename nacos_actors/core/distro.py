"""Distro: who owns each service, what to send each peer and when, and how to repair drift. Pure.

Nacos 1.4's AP protocol (DistroMapper, DistroProtocol), with shorter delays and whole-service
states as the unit:

- **Responsibility.** A service belongs to one healthy member: Java's `String.hashCode` of its
  grouped name, over the sorted healthy addresses (`responsible_member`), exactly as Nacos.
  Writes reach the owner (the front forwards them); health deadlines run only there.
- **Sync.** A service changed locally is marked dirty for every peer. Each peer gets at most one
  batch in flight, and at most one batch per `sync_window_ms`: an idle peer is sent a change at
  once, a busy one gets the latest state of everything that changed meanwhile in the next
  batch. A DOWN peer keeps its dirty set until it is back. Local writes never wait for any of
  this.
- **No service blocks the others.** A failed batch of several services is split in two halves,
  each sent again on its own (before newer changes): at once when the peer refused the body
  (`refused`: it answered that the body is too large or does not decode), after
  `retry_delay_ms` otherwise. A batch of one service that fails is *held*: that service is sent
  only alone, after a backoff that starts at `retry_delay_ms` and doubles up to
  `quarantine_max_ms`, taking turns with the other services. A held service is *quarantined*
  (noted once, for the log and the metrics) when it fails alone again after the peer refused it
  or took some other batch: the failure is the service's, not the peer's. An acknowledged send
  releases it. A peer back from DOWN gets the held services at once and its halves merged again.
- **Verify.** Every `verify_interval_ms` a node sends each peer the stamps (revision, modified
  time) of the services it owns, with its healthy view. A peer with the same view answers the
  services it holds differently (`verdict`); those are sent again, forced over what it has. It
  drops services the sender owns but no longer has.

The wire values themselves (msgpack) are built by nacos_actors.core.codec; this module only
chooses. No threads or clock: `now_ms` comes in, effects go out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from nacos_actors.core.members import HEALTHY_STATES, MemberView
from nacos_actors.model import Service, ServiceKey, Stamp, stamp_of

INT32_MAX = 2**31 - 1
QUARANTINE_STRIKES = 2  # failures alone, with evidence the service is to blame, before quarantine


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
    """Delays of the sync and verify loops, in ms; `max_batch` services per sync request;
    `quarantine_max_ms` caps the backoff of a held service."""

    sync_window_ms: int = 20
    retry_delay_ms: int = 500
    verify_interval_ms: int = 3000
    max_batch: int = 1000
    quarantine_max_ms: int = 60_000


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


# How much older than a peer's digests a state they lack must be for verify to drop it.
VERIFY_DROP_MARGIN_MS = 1000


def verdict(
    sender: str,
    sender_healthy: Sequence[str],
    digests: Mapping[ServiceKey, Stamp],
    my_healthy: Sequence[str],
    local: Iterable[Service],
    made_ms: int = 0,
) -> Verdict:
    """Compare a peer's digests with the `local` services. Nothing is judged unless both nodes
    have the same healthy view: during a membership change they may disagree on who owns what,
    and dropping on a stale view would delete live data. A service the digests lack is dropped
    only when its state is older than the digests (`made_ms`, the sender's clock, which stamped
    the states it sent) by VERIFY_DROP_MARGIN_MS: a batch the sender sent after it took the
    digests may arrive first, and a write in progress as it took them may miss them; the next
    round drops what is still missing."""
    if tuple(sender_healthy) != tuple(my_healthy) or sender not in my_healthy:
        return Verdict()
    held: dict[ServiceKey, Stamp] = {}
    dropped = []
    for service in local:
        if responsible_member(service.key.name, my_healthy) != sender:
            continue
        if service.key in digests:
            held[service.key] = stamp_of(service)
        elif not made_ms or service.modified_ms < made_ms - VERIFY_DROP_MARGIN_MS:
            dropped.append(service.key)
    wanted = tuple(key for key, stamp in digests.items() if held.get(key) != stamp)
    return Verdict(wanted, tuple(dropped))


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """How a batch ended, for the driver to record: the batch, whether it was acknowledged,
    `note` when the peer's sync just started failing or works again (logged once each; a refused
    body or a held service's lone send never counts as the peer failing), whether the batch was
    `split`, the services it put in `quarantined` and those an acknowledged lone send
    `released` from quarantine (each logged once)."""

    batch: SendBatch
    ok: bool
    note: Literal["failing", "recovered"] | None
    split: bool = False
    quarantined: tuple[ServiceKey, ...] = ()
    released: tuple[ServiceKey, ...] = ()


@dataclass(slots=True)
class _Part:
    """Half of a failed batch, waiting to be sent on its own."""

    keys: tuple[ServiceKey, ...]
    force: bool
    first_dirty_ms: int


@dataclass(slots=True)
class _Held:
    """A service sent to one peer only alone, after `due_ms`. `acks_seen` is the peer's count of
    acknowledged batches at its last failure: a lone failure after more of them (or a refusal)
    is the service's fault, and counts as a strike."""

    strikes: int
    due_ms: int
    force: bool
    first_dirty_ms: int
    acks_seen: int
    quarantined: bool = False


@dataclass(slots=True)
class _Peer:
    dirty: dict[ServiceKey, None] = field(default_factory=dict)
    forced: dict[ServiceKey, None] = field(default_factory=dict)
    first_dirty_ms: int | None = None
    in_flight: SendBatch | None = None
    not_before_ms: int = 0
    reachable: bool = False
    failing: bool = False
    parts: deque[_Part] = field(default_factory=deque)
    queued: dict[ServiceKey, _Part] = field(default_factory=dict)
    held: dict[ServiceKey, _Held] = field(default_factory=dict)
    probe: _Held | None = None  # the held service in flight, alone
    last_was_probe: bool = False
    acks: int = 0

    def take_out(self, keys: Iterable[ServiceKey]) -> bool:
        """Remove `keys` from the dirty and forced sets; whether any of them was forced."""
        forced = False
        for key in keys:
            self.dirty.pop(key, None)
            forced = self.forced.pop(key, None) is not None or forced
        return forced


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
        snapshot load, so its changes wait here until it serves). A peer back from being
        unreachable gets what piled up at once: its halves of failed batches merged into
        ordinary batches again, its held services due now (their strikes kept)."""
        self.healthy = tuple(healthy)
        reachable = set(reachable)
        for address, peer in self._peers.items():
            was = peer.reachable
            peer.reachable = address in reachable
            if peer.reachable and not was:
                peer.not_before_ms = 0
                self._merge_parts(peer)
                for held in peer.held.values():
                    held.due_ms = 0

    def members_changed(self, view: MemberView) -> None:
        """A member's state changed: hash over `view`'s healthy members, and send to the peers
        that are UP or SUSPICIOUS (not a STARTING one: the snapshot it loads would replace what
        it is sent now)."""
        reachable = [a for a, s in view.members.items() if a != view.self_address and s.state in HEALTHY_STATES]
        self.set_view(view.healthy, reachable)

    def changed(self, keys: Iterable[ServiceKey], now_ms: int) -> None:
        """Services changed locally: mark them dirty for every peer (a service waiting in a half
        of a failed batch, or held, is sent with its latest state there)."""
        keys = tuple(keys)
        if not keys:
            return
        for peer in self._peers.values():
            marked = False
            for key in keys:
                if key not in peer.queued and key not in peer.held:
                    peer.dirty[key] = None
                    marked = True
            if marked and peer.first_dirty_ms is None:
                peer.first_dirty_ms = now_ms

    def repair(self, peer_address: str, keys: Iterable[ServiceKey], now_ms: int) -> None:
        """A peer answered our digests: send it these services again, forced."""
        peer = self._peers.get(peer_address)
        if peer is None:
            return
        for key in keys:
            held = peer.held.get(key)
            part = peer.queued.get(key)
            if held is not None:
                held.force = True
            elif part is not None:
                part.force = True
            else:
                peer.forced[key] = None
        if peer.first_dirty_ms is None and peer.forced:
            peer.first_dirty_ms = now_ms

    def due(self, now_ms: int) -> list[Effect]:
        """What to send now: at most one batch per idle peer, and the digests when verify is due.

        A peer's next batch is, in this order: a held service whose backoff is over (alone;
        never twice in a row while other work waits), the oldest half of a failed batch, forced
        repairs, then ordinary changes."""
        effects: list[Effect] = []
        for address, peer in self._peers.items():
            if not peer.reachable or peer.in_flight is not None or now_ms < peer.not_before_ms:
                continue
            probe = self._due_held(peer, now_ms)
            other_work = bool(peer.parts or peer.forced or peer.dirty)
            if probe is not None and (not other_work or not peer.last_was_probe):
                batch = self._send_held(address, peer, probe)
            elif other_work:
                batch = self._send_next(address, peer, now_ms)
            else:
                continue
            peer.in_flight = batch
            peer.not_before_ms = now_ms + self.config.sync_window_ms
            effects.append(batch)
        if now_ms >= self._next_verify_ms:
            self._next_verify_ms = now_ms + self.config.verify_interval_ms
            if self.self_address in self.healthy:
                effects.extend(SendDigests(a) for a, p in self._peers.items() if p.reachable and a in self.healthy)
        return effects

    def batch_done(self, peer_address: str, ok: bool, now_ms: int, refused: bool = False) -> BatchOutcome | None:
        """The batch in flight to a peer was acknowledged (`ok`) or failed (`refused`: the peer
        answered that it will not take this body). A failed batch of several services is split in
        two; one of a single service holds it back (see the module docstring). None when no batch
        was in flight there."""
        peer = self._peers.get(peer_address)
        if peer is None or peer.in_flight is None:
            return None
        batch, peer.in_flight = peer.in_flight, None
        probe, peer.probe = peer.probe, None
        note: Literal["failing", "recovered"] | None = None
        if ok:
            peer.acks += 1
            if peer.failing:
                peer.failing, note = False, "recovered"
            released = batch.keys if probe is not None and probe.quarantined else ()
            return BatchOutcome(batch, True, note, released=released)
        if not refused and probe is None and not peer.failing:
            peer.failing, note = True, "failing"
        forced = peer.take_out(batch.keys) or batch.force
        if refused:
            peer.not_before_ms = now_ms + self.config.sync_window_ms
        else:
            peer.not_before_ms = now_ms + self.config.retry_delay_ms
        if len(batch.keys) > 1:
            middle = len(batch.keys) // 2
            for half in (batch.keys[:middle], batch.keys[middle:]):
                part = _Part(half, forced, batch.first_dirty_ms)
                peer.parts.append(part)
                for key in half:
                    peer.queued[key] = part
            return BatchOutcome(batch, False, note, split=True)
        (key,) = batch.keys
        quarantined = self._strike(peer, key, probe, forced, batch.first_dirty_ms, refused, now_ms)
        return BatchOutcome(batch, False, note, quarantined=quarantined)

    def next_deadline(self) -> int:
        """When `due` may next have something to do."""
        deadline = self._next_verify_ms
        for peer in self._peers.values():
            if not peer.reachable or peer.in_flight is not None:
                continue
            if peer.parts or peer.dirty or peer.forced:
                deadline = min(deadline, peer.not_before_ms)
            elif peer.held:
                soonest = min(held.due_ms for held in peer.held.values())
                deadline = min(deadline, max(peer.not_before_ms, soonest))
        return deadline

    def pending(self) -> int:
        """Services waiting to be sent to reachable peers, plus batches in flight (what a drain
        waits for; a DOWN peer gets its changes from verify or a snapshot when it is back, and a
        held service waits out its backoff)."""
        return sum(
            len(p.dirty) + len(p.forced) + len(p.queued) + (0 if p.in_flight is None or p.probe is not None else 1)
            for p in self._peers.values()
            if p.reachable
        )

    def pending_for(self, peer_address: str) -> int:
        """Services not yet sent to a peer, held ones included."""
        peer = self._peers.get(peer_address)
        if peer is None:
            return 0
        return len(peer.dirty) + len(peer.forced) + len(peer.queued) + len(peer.held)

    def held(self, peer_address: str) -> tuple[ServiceKey, ...]:
        """The services sent to a peer only alone, waiting out their backoff (not in flight)."""
        peer = self._peers.get(peer_address)
        return () if peer is None else tuple(peer.held)

    def quarantined(self, peer_address: str) -> int:
        """Services in quarantine for a peer (a lone send in flight included)."""
        peer = self._peers.get(peer_address)
        if peer is None:
            return 0
        in_flight = 1 if peer.probe is not None and peer.probe.quarantined else 0
        return sum(1 for held in peer.held.values() if held.quarantined) + in_flight

    def flush_now(self) -> None:
        """Drop the windows and retry delays: the next `due` sends everything it can (a drain;
        held services keep their backoff)."""
        for peer in self._peers.values():
            peer.not_before_ms = 0

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _due_held(peer: _Peer, now_ms: int) -> ServiceKey | None:
        """The held service whose backoff ended first, if one has."""
        soonest: ServiceKey | None = None
        soonest_ms = now_ms
        for key, held in peer.held.items():
            if held.due_ms <= soonest_ms:
                soonest, soonest_ms = key, held.due_ms
        return soonest

    @staticmethod
    def _send_held(address: str, peer: _Peer, key: ServiceKey) -> SendBatch:
        held = peer.probe = peer.held.pop(key)
        peer.last_was_probe = True
        return SendBatch(address, (key,), held.force, held.first_dirty_ms)

    def _send_next(self, address: str, peer: _Peer, now_ms: int) -> SendBatch:
        """The oldest half of a failed batch, else forced repairs, else ordinary changes."""
        peer.last_was_probe = False
        if peer.parts:
            part = peer.parts.popleft()
            for key in part.keys:
                del peer.queued[key]
            return SendBatch(address, part.keys, part.force, part.first_dirty_ms)
        pending = peer.forced or peer.dirty
        force = bool(peer.forced)
        keys = tuple(list(pending)[: self.config.max_batch])
        for key in keys:
            del pending[key]
            if force:
                peer.dirty.pop(key, None)  # the forced state is at least as new
        first = peer.first_dirty_ms if peer.first_dirty_ms is not None else now_ms
        peer.first_dirty_ms = now_ms if (peer.forced or peer.dirty) else None
        return SendBatch(address, keys, force, first)

    def _strike(
        self,
        peer: _Peer,
        key: ServiceKey,
        probe: _Held | None,
        force: bool,
        first_dirty_ms: int,
        refused: bool,
        now_ms: int,
    ) -> tuple[ServiceKey, ...]:
        """A batch of `key` alone failed: hold it (again), with a longer backoff when the failure
        is the service's own. Returns `(key,)` when this puts it in quarantine."""
        held = probe or _Held(0, 0, force, first_dirty_ms, peer.acks - 1)
        held.force = held.force or force
        held.first_dirty_ms = min(held.first_dirty_ms, first_dirty_ms)
        if refused or peer.acks != held.acks_seen:
            held.strikes += 1
        held.acks_seen = peer.acks
        backoff = self.config.retry_delay_ms * 2 ** max(0, held.strikes - 1)
        held.due_ms = now_ms + min(backoff, self.config.quarantine_max_ms)
        peer.held[key] = held
        if held.strikes >= QUARANTINE_STRIKES and not held.quarantined:
            held.quarantined = True
            return (key,)
        return ()

    @staticmethod
    def _merge_parts(peer: _Peer) -> None:
        """Fold the halves of failed batches back into the forced and dirty sets."""
        for part in peer.parts:
            target = peer.forced if part.force else peer.dirty
            for key in part.keys:
                target[key] = None
            if peer.first_dirty_ms is None or part.first_dirty_ms < peer.first_dirty_ms:
                peer.first_dirty_ms = part.first_dirty_ms
        peer.parts.clear()
        peer.queued.clear()
