"""DistroDriver: replicates this node's writes to its peers, and repairs drift by verify."""

from __future__ import annotations

import logging
from typing import ClassVar, assert_never

from nacos_actors.core.codec import (
    CHECKSUM_PATH,
    DATUM_PATH,
    CodecError,
    decode_keys,
    encode_batch,
    encode_digests,
)
from nacos_actors.core.distro import BatchOutcome, DistroCore, SendBatch
from nacos_actors.core.registry import RegistryView
from nacos_actors.drivers.outbox import Outbox
from nacos_actors.logs import event
from nacos_actors.messages import (
    DISTRO,
    ActorName,
    DistroMessage,
    Drain,
    MembersChanged,
    PeerAnswered,
    PeerCall,
    PeerPurpose,
    Reply,
    ServicesChanged,
    Tick,
)
from nacos_actors.metrics import ClusterMetrics
from nacos_actors.model import ServiceKey, stamp_of

log = logging.getLogger(__name__)
PEER_TIMEOUT_MS = 2000
# A peer that answers these refuses the body itself (too large, does not decode): the batch is
# split at once. Anything else that is not a 200 (no answer, 403, 5xx) waits the retry delay.
REFUSED_STATUSES = frozenset({400, 413})


class DistroDriver:
    """Feeds the DistroCore the services local writes changed (it watches the registry; what a
    peer sent is not sent on), the membership, the peers' answers and Ticks; carries out the
    core's sends: a batch is the latest state of its services read from the registry's
    published snapshots, encoded here and sent as a PeerCall; digests likewise, one body per
    verify round. Tells the core whether a failed batch was refused (400, 413) or not answered.
    Logs a peer's first failed batch after a success and its recovery, and each service the
    core puts in quarantine or releases. A Drain is answered once nothing is pending (held
    services aside). Runs on the distro actor's thread."""

    NAME: ClassVar[ActorName] = DISTRO

    def __init__(self, core: DistroCore, registry: RegistryView, outbox: Outbox, metrics: ClusterMetrics) -> None:
        self.core = core
        self._registry = registry
        self._outbox = outbox
        self._cluster = metrics
        self._drains: list[Reply[int]] = []

    def start(self, now_ms: int) -> None:
        self._outbox.wake_at(self.NAME, self.core.next_deadline())

    def stop(self) -> None:
        for reply in self._drains:
            reply.resolve(self.core.pending())
        self._drains.clear()

    def handle(self, message: object, now_ms: int) -> object:
        received: DistroMessage = message  # type: ignore[assignment]  # what may arrive; the match covers it
        core = self.core
        match received:
            case ServicesChanged(changes, _, replicated):
                if not replicated:
                    core.changed((change.key for change in changes), now_ms)
            case MembersChanged(view):
                core.members_changed(view)
            case PeerAnswered(call) if call.purpose == "batch":
                refused = received.status in REFUSED_STATUSES
                outcome = core.batch_done(call.peer, received.ok, now_ms, refused)
                if outcome is not None:
                    self._record(outcome, received.status, now_ms)
            case PeerAnswered(call):
                wanted = self._wanted(received)
                if wanted:
                    core.repair(call.peer, wanted, now_ms)
                    self._cluster.verify_repairs(call.peer, len(wanted))
            case Drain(reply):
                core.flush_now()
                self._drains.append(reply)
            case Tick():
                pass
            case _:
                assert_never(received)
        digests: bytes | None = None
        for effect in core.due(now_ms):
            if isinstance(effect, SendBatch):
                states = [self._registry.state_of(key) for key in effect.keys]
                body = encode_batch(core.self_address, states, effect.force)
                self._call(effect.peer, "PUT", DATUM_PATH, body, "batch")
            else:
                digests = digests or self._digests(now_ms)  # one body for every peer of this round
                self._call(effect.peer, "PUT", CHECKSUM_PATH, digests, "digests")
        if self._drains and core.pending() == 0:
            for reply in self._drains:
                reply.resolve(0)
            self._drains.clear()
        self._outbox.wake_at(self.NAME, core.next_deadline())
        return None

    def _call(self, peer: str, method: str, path: str, body: bytes, purpose: PeerPurpose) -> None:
        self._outbox.call_peer(PeerCall(peer, method, path, body, PEER_TIMEOUT_MS, self.NAME, purpose))

    def _digests(self, now_ms: int) -> bytes:
        """The stamps of every service this member owns, with its healthy view and the time,
        encoded."""
        owned = [(s.key, stamp_of(s)) for s in self._registry.all_services() if self.core.owns(s.key)]
        return encode_digests(self.core.self_address, self.core.healthy, owned, now_ms)

    @staticmethod
    def _wanted(answer: PeerAnswered) -> tuple[ServiceKey, ...]:
        if answer.status != 200:
            return ()
        try:
            return tuple(decode_keys(answer.body))
        except CodecError as error:
            log.debug("digests to %s: %s", answer.call.peer, error)
            return ()

    def _record(self, outcome: BatchOutcome, status: int | None, now_ms: int) -> None:
        """Count the batch, and log what the core noted: the peer failing or working again, a
        service put in quarantine or released from it (one line each)."""
        batch = outcome.batch
        peer = batch.peer
        lag_s = max(0, now_ms - batch.first_dirty_ms) / 1000
        cluster = self._cluster
        cluster.batch(peer, outcome.ok, len(batch.keys), lag_s)
        if outcome.split:
            cluster.batch_split(peer)
        if outcome.quarantined or outcome.released:
            cluster.quarantined(peer, len(outcome.quarantined), self.core.quarantined(peer))
        self._log_sync(peer, outcome.note)
        answer = "no answer" if status is None else f"status {status}"
        for key in outcome.quarantined:
            log.warning(
                "sync of %s (namespace %s) to %s quarantined: it failed alone again (%s); "
                "sent alone with backoff up to %d ms while the other services flow",
                key.name,
                key.namespace,
                peer,
                answer,
                self.core.config.quarantine_max_ms,
                extra=event("sync_quarantine", peer=peer, namespace=key.namespace, service=key.name, status=status),
            )
        for key in outcome.released:
            log.info(
                "sync of %s (namespace %s) to %s works again: out of quarantine",
                key.name,
                key.namespace,
                peer,
                extra=event("sync_quarantine_released", peer=peer, namespace=key.namespace, service=key.name),
            )

    def _log_sync(self, peer: str, note: str | None) -> None:
        if note == "recovered":
            log.info("sync to %s works again", peer, extra=event("sync_recovered", peer=peer))
        elif note == "failing":
            pending = self.core.pending_for(peer)
            log.warning(
                "sync to %s failed; retrying (%d services pending)",
                peer,
                pending,
                extra=event("sync_failure", peer=peer, pending=pending),
            )
