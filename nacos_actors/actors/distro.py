"""DistroActor: replicates this node's writes to its peers, and repairs drift by verify."""

from __future__ import annotations

import logging
from time import perf_counter
from typing import Any, Callable, assert_never

from nacos_actors.actors.base import NodeActor
from nacos_actors.clock import wall_clock_ms
from nacos_actors.core.codec import CodecError, decode_keys, encode_batch, encode_digests
from nacos_actors.core.distro import DistroCore, SendBatch, stamp_of
from nacos_actors.core.members import HEALTHY_STATES
from nacos_actors.core.registry import RegistryCore
from nacos_actors.logs import event
from nacos_actors.messages import (
    BatchDone,
    DigestsAnswered,
    DistroMessage,
    Drain,
    MembersChanged,
    Ping,
    ServicesChanged,
    Tick,
)
from nacos_actors.metrics import NodeMetrics
from nacos_actors.peers import CHECKSUM_PATH, DATUM_PATH, PeerError, PeerLink

log = logging.getLogger(__name__)


class DistroActor(NodeActor):
    """Wraps the DistroCore on its own pykka thread.

    Watches the registry: every service a local write changed (not one a peer sent) is marked
    dirty. Learns the healthy view from the member actor. Carries out the core's effects: a
    batch is the latest state of its services read from the registry (any thread may read it)
    and encoded here, then sent by the PeerLink on the event loop, which tells the outcome back;
    digests likewise. Logs a peer's first failed batch after a success, and its recovery.
    """

    NAME = "distro"

    def __init__(
        self,
        core: DistroCore,
        registry_view: RegistryCore,
        link: PeerLink,
        metrics: NodeMetrics,
        on_fatal: Callable[[BaseException], None],
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        super().__init__(metrics, on_fatal, clock)
        self.core = core
        self._view = registry_view
        self._link = link
        self._cluster = metrics.cluster
        self._failing: set[str] = set()
        self._drains: list[Any] = []
        self._seconds = {
            kind: metrics.message_seconds(self.NAME, kind)
            for kind in (ServicesChanged, MembersChanged, BatchDone, DigestsAnswered, Drain, Tick)
        }

    def _release(self) -> None:
        super()._release()
        for reply in self._drains:
            reply.resolve((self.core.pending(),))

    def on_receive(self, message: Any) -> Any:
        received: DistroMessage = message
        started = perf_counter()
        now = self._clock()
        match received:
            case ServicesChanged(changes, _, replicated):
                if not replicated:
                    self.core.changed((change.key for change in changes), now)
            case MembersChanged(view):
                # Not a STARTING member: the snapshot it loads would replace what we send it now.
                reachable = [a for a, s in view.members.items() if a != view.self_address and s.state in HEALTHY_STATES]
                self.core.set_view(view.healthy, reachable)
            case BatchDone(batch, ok):
                self.core.batch_done(batch, ok, now)
                self._cluster.batch(batch.peer, ok, len(batch.keys), max(0, now - batch.first_dirty_ms) / 1000)
                self._note_outcome(batch.peer, ok)
            case DigestsAnswered(peer, wanted):
                if wanted:
                    self.core.repair(peer, wanted, now)
                    self._cluster.verify_repairs(peer, len(wanted))
            case Drain(reply):
                self.core.flush_now()
                self._drains.append(reply)
            case Tick():
                pass
            case Ping():
                return "pong"
            case _:
                assert_never(received)
        digests: bytes | None = None
        for effect in self.core.due(now):
            if isinstance(effect, SendBatch):
                self._send_batch(effect)
            else:
                digests = digests or self._digests()  # one body for every peer of this round
                self._send_digests(effect.peer, digests)
        if self._drains and self.core.pending() == 0:
            for reply in self._drains:
                reply.resolve((0,))
            self._drains.clear()
        self._alarm.set(self.core.next_deadline())
        self._seconds[type(received)].observe(perf_counter() - started)
        return None

    def _send_batch(self, batch: SendBatch) -> None:
        states = [self._view.state_of(key) for key in batch.keys]
        body = encode_batch(self._link.self_address, states, batch.force)
        link, tell = self._link, self._tell_me

        async def send() -> None:
            try:
                status, _ = await link.async_call("PUT", batch.peer, DATUM_PATH, body)
                ok = status == 200
            except PeerError:
                ok = False
            tell(BatchDone(batch, ok))

        if not link.submit(send):
            self.core.batch_done(batch, False, self._clock())

    def _digests(self) -> bytes:
        """The stamps of every service this member owns, with its healthy view, encoded."""
        owned = [(s.key, stamp_of(s)) for s in self._view.all_services() if self.core.owns(s.key)]
        return encode_digests(self._link.self_address, self.core.healthy, owned)

    def _send_digests(self, peer: str, body: bytes) -> None:
        link, tell = self._link, self._tell_me

        async def send() -> None:
            try:
                status, answer = await link.async_call("PUT", peer, CHECKSUM_PATH, body)
                if status == 200:
                    tell(DigestsAnswered(peer, decode_keys(answer)))
            except (PeerError, CodecError) as error:
                log.debug("digests to %s failed: %s", peer, error)

        link.submit(send)

    def _note_outcome(self, peer: str, ok: bool) -> None:
        if ok and peer in self._failing:
            self._failing.discard(peer)
            log.info("sync to %s works again", peer, extra=event("sync_recovered", peer=peer))
        elif not ok and peer not in self._failing:
            self._failing.add(peer)
            log.warning(
                "sync to %s failed; retrying (%d services pending)",
                peer,
                self.core.pending_for(peer),
                extra=event("sync_failure", peer=peer, pending=self.core.pending_for(peer)),
            )
