"""The cluster edge of a member: what the peer endpoints make of a body, and how a starting
member picks the peer it loads its data from. Pure.

The HTTP front (nacos_actors.http.cluster) and the cluster simulation (tests/sim) both call
these, so a simulated member answers its peers exactly as a real one does. Bodies are decoded
by nacos_actors.core.codec; a body that does not decode, or that speaks for another member than
the caller, raises PeerBodyError (a 400 that changes nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from nacos_actors.core.codec import (
    CodecError,
    Digests,
    SyncBatch,
    decode_batch,
    decode_digests,
    decode_report,
    encode_keys,
)
from nacos_actors.core.distro import verdict
from nacos_actors.core.members import REPORTED_STATES
from nacos_actors.messages import ReportReceived
from nacos_actors.model import Dropped, Service, stamp_of

T = TypeVar("T")


class PeerBodyError(Exception):
    """A peer's body that does not decode or names another sender: answered 400, nothing changes."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def read_report(caller: str, body: bytes) -> ReportReceived:
    """POST /v1/core/cluster/report from `caller`: the state it reports about itself."""
    report = _decoded(lambda data: decode_report(data, REPORTED_STATES), body)
    if report.address != caller:
        raise PeerBodyError(f"Field 'address': {report.address[:64]!r} is not the caller {caller}")
    return ReportReceived(caller, report.state)


def read_batch(caller: str, body: bytes) -> SyncBatch:
    """PUT /v1/ns/distro/datum from `caller`: the service states it sends."""
    batch = _decoded(decode_batch, body)
    _check_sender(batch.sender, caller)
    return batch


def read_digests(caller: str, body: bytes) -> Digests:
    """PUT /v1/ns/distro/checksum from `caller`: the stamps of the services it owns."""
    digests = _decoded(decode_digests, body)
    _check_sender(digests.sender, caller)
    return digests


def _decoded(decode: Callable[[bytes], T], body: bytes) -> T:
    try:
        return decode(body)
    except CodecError as error:
        raise PeerBodyError(f"The request body is not valid: {error}") from None


def _check_sender(sender: str, caller: str) -> None:
    if sender != caller:
        raise PeerBodyError(f"Field 'sender': {sender[:64]!r} is not the caller {caller}")


@dataclass(frozen=True, slots=True)
class DigestsJudged:
    """What a member does with a peer's digests: drop `drops` (as a forced replicated write)
    before it answers `answer`, the encoded keys it wants sent again."""

    drops: tuple[Dropped, ...]
    answer: bytes


def judge_digests(digests: Digests, serving: bool, healthy: Sequence[str], local: Iterable[Service]) -> DigestsJudged:
    """Compare a peer's digests with this member's services (`healthy` is its view). A member
    that does not serve yet wants nothing and drops nothing: it is about to load a snapshot."""
    if not serving:
        return DigestsJudged((), encode_keys(()))
    services = list(local)
    found = verdict(digests.sender, digests.healthy, digests.stamps, healthy, services, digests.made_ms)
    by_key = {s.key: s for s in services} if found.dropped else {}
    drops = tuple(Dropped(key, stamp_of(by_key[key])) for key in found.dropped)
    return DigestsJudged(drops, encode_keys(found.wanted))


# -- joining --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FetchSnapshot:
    """Ask `peer` for its snapshot (GET /v1/ns/distro/datums)."""

    peer: str


@dataclass(frozen=True, slots=True)
class RetryJoin:
    """Some peer answered without a snapshot to give: start over after `after_ms`."""

    after_ms: int


@dataclass(frozen=True, slots=True)
class LoadFrom:
    """Load `services`, the snapshot `peer` gave, then serve."""

    peer: str
    services: tuple[Service, ...]


@dataclass(frozen=True, slots=True)
class ServeAlone:
    """No peer serves (every one refused or is starting too): serve this member's own data."""


JoinStep = FetchSnapshot | RetryJoin | LoadFrom | ServeAlone


class JoinCore:
    """Which peer a starting member asks for a snapshot next. Peers are asked in order; the
    first that gives one is loaded from. A peer that is starting (503) or refuses the connection
    is passed over; one that timed out, failed or gave a body that does not decode may serve
    soon, so once every peer was asked the round starts again after `retry_ms`. When nobody
    serves and nobody is about to, the member serves alone. One caller's thread at a time."""

    def __init__(self, peers: Sequence[str], retry_ms: int) -> None:
        self._peers = tuple(peers)
        self._retry_ms = retry_ms
        self._index = 0
        self._waiting = False

    def start(self) -> JoinStep:
        """The first step of a round (also after a RetryJoin)."""
        self._index = 0
        self._waiting = False
        return self._step()

    def answered(
        self, peer: str, status: int | None, refused: bool = False, services: Iterable[Service] | None = None
    ) -> JoinStep:
        """`peer` answered `status` with a snapshot that decoded to `services` (None: it did
        not decode), or gave no answer (`status` None; `refused`: nothing listened there)."""
        if status == 200 and services is not None:
            return LoadFrom(peer, tuple(services))
        if status is None:
            self._waiting = self._waiting or not refused
        elif status != 503:
            self._waiting = True
        self._index += 1
        return self._step()

    def _step(self) -> JoinStep:
        if self._index < len(self._peers):
            return FetchSnapshot(self._peers[self._index])
        return RetryJoin(self._retry_ms) if self._waiting else ServeAlone()
