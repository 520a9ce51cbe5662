"""Beat deadlines: which ephemeral instances turn unhealthy or expire, and when. Pure.

No threads or clock: time comes in as `now_ms` (wall-clock milliseconds) and the last beat of an
instance is read through the `last_beat` function passed in. The core keeps the latest snapshot
of every service and one deadline per service (the earliest moment any of its instances can
change state), in a heap; the actor sleeps until `next_deadline()` and then calls `due`, which
answers the commands to write. A service is scanned only when its deadline comes, not on a
fixed sweep, so 100k instances cost little and verdicts land at their deadline.

Nacos's rules (1.4 ClientBeatCheckTask): an ephemeral, unmarked instance is unhealthy once more
than `preserved.heart.beat.timeout` ms (default 15000) passed since its last beat, and removed
once more than `preserved.ip.delete.timeout` ms (default 30000) passed. An instance with no
beat on record counts from the moment the checker first saw its service.

In a cluster only the member responsible for a service judges it (`set_owner`); a service
this node takes over counts every instance's beats from the takeover, since they were sent to
the previous owner.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from nacos_actors.core.distro import health_judged_here
from nacos_actors.core.members import MemberView
from nacos_actors.messages import Command, ExpireInstance, MarkUnhealthy, RemoveEmptyService, ServiceChange
from nacos_actors.model import Instance, InstanceKey, Service, ServiceKey

LastBeat = Callable[[ServiceKey, InstanceKey], int | None]
"""The last beat (wall-clock ms) of an instance, or None when none is on record."""
Owns = Callable[[ServiceKey], bool]
"""Whether this node is responsible for a service (always, on a standalone node)."""


def owns_everything(key: ServiceKey) -> bool:
    return True


BEAT_RECORDED = "recorded"  # a healthy (or marked) instance: the beat log only, no registry write
BEAT_REVIVED = "revived"  # an unhealthy instance made healthy again (a registry write)
BEAT_REREGISTERED = "reregistered"  # an unknown instance registered again from a full beat
BEAT_NOT_FOUND = "not_found"  # a light beat for an unknown instance (code 20404)


def beat_outcome(found: Instance | None, full_beat: bool) -> str:
    """What a beat calls for, given the instance as the front finds it (None: unknown):
    BEAT_NOT_FOUND for a light beat on an unknown instance (nothing is recorded), BEAT_RECORDED
    for a healthy, marked or persistent one (its time goes to the beat log), else BEAT_REVIVED
    or BEAT_REREGISTERED: the beat log first, then a BeatInstance write.

    A full beat whose JSON says `ephemeral: false` names a persistent instance: unknown, it is
    registered (Nacos 1.4's InstanceController.beat registers `clientBeat.isEphemeral()`);
    known, nothing changes, since Nacos's ClientBeatProcessor refreshes and revives only
    ephemeral instances (`cluster.allIPs(true)`): a beat never overrides the health a
    persistent instance was given by hand."""
    if found is None:
        return BEAT_REREGISTERED if full_beat else BEAT_NOT_FOUND
    if found.healthy or found.marked or not found.ephemeral:
        return BEAT_RECORDED
    return BEAT_REVIVED


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """`check_beats` (Nacos's healthCheckEnabled) turns beat deadlines on; `expire_instances`
    (nacos.naming.expireInstance) lets a silent instance be removed, not only marked unhealthy.
    With `clean_empty_services` a service that stays empty for `empty_service_ttl_ms` is deleted
    (Nacos's nacos.naming.empty-service.auto-clean, off by default)."""

    check_beats: bool = True
    expire_instances: bool = True
    clean_empty_services: bool = False
    empty_service_ttl_ms: int = 60_000


@dataclass(frozen=True, slots=True)
class Observed:
    """Instances that appeared in, and left, a service with one snapshot."""

    appeared: tuple[InstanceKey, ...]
    removed: tuple[InstanceKey, ...]


class BeatClocks(NamedTuple):
    """What the beat log must learn from a round of changes: instances whose clock starts now
    unless a beat is on record (`start`), and instances that left at some ms, whose beats are
    forgotten unless they beat again since (`forget`)."""

    start: tuple[tuple[ServiceKey, InstanceKey], ...] = ()
    forget: tuple[tuple[ServiceKey, InstanceKey, int], ...] = ()


NO_BEAT_CLOCKS = BeatClocks()


class HealthCore:
    """Snapshots and deadlines per service. Runs on the health actor's thread only."""

    def __init__(self, config: HealthConfig) -> None:
        self.config = config
        self._services: dict[ServiceKey, Service] = {}
        self._since: dict[ServiceKey, int] = {}
        self._empty_since: dict[ServiceKey, int] = {}
        self._deadline: dict[ServiceKey, int] = {}
        self._heap: list[tuple[int, ServiceKey]] = []
        self._owns: Owns = owns_everything

    def set_owner(self, owns: Owns, now_ms: int) -> None:
        """Responsibility moved (the healthy members changed). Services this node now owns are
        judged from `now_ms` on (their beats went to the old owner until now); services it no
        longer owns are not judged here any more."""
        before, self._owns = self._owns, owns
        for key, service in self._services.items():
            had, has = before(key), owns(key)
            if has and not had:
                self._since[key] = now_ms
                if not service.instances:
                    self._empty_since[key] = now_ms
                self._schedule(key, now_ms)
            elif had and not has:
                self._deadline.pop(key, None)
                self._empty_since.pop(key, None)

    @property
    def service_count(self) -> int:
        return len(self._services)

    def observe(
        self,
        key: ServiceKey,
        snapshot: Service | None,
        now_ms: int,
        last_beat: LastBeat,
        touched: Collection[InstanceKey] | None = None,
    ) -> Observed:
        """Take the latest snapshot of a service (None: deleted). `touched` names the instances
        that may differ from the previous snapshot (None: any may). Answers which instances
        appeared (the caller starts their beat clock at `now_ms` unless a beat is on record) and
        which left (the caller may forget their beats). Costs O(touched), not O(instances)."""
        previous = self._services.get(key)
        if snapshot is None:
            self._forget_service(key)
            return Observed((), tuple(previous.instances) if previous is not None else ())
        self._services[key] = snapshot
        if not self._owns(key):
            self._since.setdefault(key, now_ms)
            return Observed((), ())
        if previous is None:
            self._since[key] = now_ms
            removed: tuple[InstanceKey, ...] = ()
            appeared = tuple(snapshot.instances)
            changed = list(snapshot.instances.items())
        elif touched is None:
            old = previous.instances
            removed = tuple(k for k in old if k not in snapshot.instances)
            changed = [(k, i) for k, i in snapshot.instances.items() if old.get(k) is not i]
            appeared = tuple(k for k, _ in changed if k not in old)
        else:
            old, new = previous.instances, snapshot.instances
            removed = tuple(k for k in touched if k in old and k not in new)
            changed = [(k, new[k]) for k in touched if k in new and old.get(k) is not new[k]]
            appeared = tuple(k for k, _ in changed if k not in old)
        earliest = None
        for instance_key, instance in changed:
            candidate = self._instance_deadline(key, instance_key, instance, now_ms, last_beat)
            if candidate is not None and (earliest is None or candidate < earliest):
                earliest = candidate
        if self.config.clean_empty_services:
            if snapshot.instances:
                self._empty_since.pop(key, None)
            elif previous is None or previous.instances or previous.revision != snapshot.revision:
                self._empty_since[key] = now_ms
                candidate = now_ms + self.config.empty_service_ttl_ms
                earliest = candidate if earliest is None else min(earliest, candidate)
        if earliest is not None:
            self._schedule(key, earliest)
        return Observed(appeared, removed)

    def observe_changes(self, changes: Iterable[ServiceChange], now_ms: int, last_beat: LastBeat) -> BeatClocks:
        """`observe` each change; answers the beat clocks to start (instances that appeared) and
        the beats to forget (instances that left, at the time their service changed)."""
        start: list[tuple[ServiceKey, InstanceKey]] = []
        forget: list[tuple[ServiceKey, InstanceKey, int]] = []
        for change in changes:
            service = change.key
            observed = self.observe(service, change.snapshot, now_ms, last_beat, change.touched)
            for key in observed.appeared:
                start.append((service, key))
            if observed.removed:
                left_at = change.snapshot.modified_ms if change.snapshot is not None else now_ms
                for key in observed.removed:
                    forget.append((service, key, left_at))
        if not start and not forget:
            return NO_BEAT_CLOCKS
        return BeatClocks(tuple(start), tuple(forget))

    def members_changed(self, view: MemberView, now_ms: int) -> None:
        """The cluster's membership changed: judge only the services this node is responsible for
        in `view`, and only while it sees at least half the members."""
        self.set_owner(health_judged_here(view.healthy, len(view.members), view.self_address), now_ms)

    def due(self, now_ms: int, last_beat: LastBeat) -> list[Command]:
        """The verdicts whose deadline has come, as registry commands."""
        commands: list[Command] = []
        while self._heap and self._heap[0][0] <= now_ms:
            deadline, key = heapq.heappop(self._heap)
            if self._deadline.get(key) != deadline:
                continue
            del self._deadline[key]
            service = self._services.get(key)
            if service is not None and self._owns(key):
                following = self._check(service, now_ms, last_beat, commands)
                if following is not None:
                    self._schedule(key, following)
        return commands

    def next_deadline(self) -> int | None:
        """When `due` next has something to do, or None when nothing is scheduled."""
        while self._heap and self._deadline.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    # -- internals -------------------------------------------------------------------------

    def _last(self, key: ServiceKey, instance_key: InstanceKey, last_beat: LastBeat) -> int:
        beat = last_beat(key, instance_key)
        since = self._since[key]
        return since if beat is None or beat < since else beat

    def _instance_deadline(
        self, key: ServiceKey, instance_key: InstanceKey, instance: Instance, now_ms: int, last_beat: LastBeat
    ) -> int | None:
        """The next moment this instance may change state (one past Nacos's strict `>`)."""
        if not self.config.check_beats or not instance_key.ephemeral or instance.marked:
            return None
        beat = last_beat(key, instance_key)
        return self._next_change(instance, now_ms if beat is None else beat)

    def _next_change(self, instance: Instance, last: int) -> int | None:
        """One past the first timeout still ahead of an instance that last beat at `last`."""
        expire = self.config.expire_instances
        if instance.healthy:
            timeout = instance.beat_timeout_ms
            if expire:
                timeout = min(timeout, instance.delete_timeout_ms)
            return last + timeout + 1
        return last + instance.delete_timeout_ms + 1 if expire else None

    def _check(self, service: Service, now_ms: int, last_beat: LastBeat, commands: list[Command]) -> int | None:
        key = service.key
        following: int | None = None
        if self.config.check_beats:
            expire = self.config.expire_instances
            for instance_key, instance in service.instances.items():
                if not instance_key.ephemeral or instance.marked:
                    continue
                last = self._last(key, instance_key, last_beat)
                idle = now_ms - last
                if expire and idle > instance.delete_timeout_ms:
                    commands.append(ExpireInstance(key, instance_key))
                    continue
                if instance.healthy and idle > instance.beat_timeout_ms:
                    commands.append(MarkUnhealthy(key, instance_key))
                    candidate = last + instance.delete_timeout_ms + 1 if expire else None
                else:
                    candidate = self._next_change(instance, last)
                if candidate is not None and (following is None or candidate < following):
                    following = candidate
        empty_since = self._empty_since.get(key)
        if self.config.clean_empty_services and empty_since is not None and not service.instances:
            ends = empty_since + self.config.empty_service_ttl_ms
            if now_ms >= ends:
                commands.append(RemoveEmptyService(key, service.revision))
            elif following is None or ends < following:
                following = ends
        return following

    def _schedule(self, key: ServiceKey, deadline: int) -> None:
        current = self._deadline.get(key)
        if current is not None and current <= deadline:
            return
        self._deadline[key] = deadline
        heapq.heappush(self._heap, (deadline, key))

    def _forget_service(self, key: ServiceKey) -> None:
        self._services.pop(key, None)
        self._since.pop(key, None)
        self._empty_since.pop(key, None)
        self._deadline.pop(key, None)
