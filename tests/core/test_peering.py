"""The cluster edge's pure decisions: what a peer's body means, and which peer a starting member
loads its data from."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nacos_actors.core.codec import decode_keys, encode_batch, encode_digests, encode_report
from nacos_actors.core.distro import responsible_member
from nacos_actors.core.peering import (
    FetchSnapshot,
    JoinCore,
    LoadFrom,
    PeerBodyError,
    RetryJoin,
    ServeAlone,
    judge_digests,
    read_batch,
    read_digests,
    read_report,
)
from nacos_actors.messages import ReportReceived
from nacos_actors.model import Service, ServiceKey

A, B, C = "127.0.0.1:8848", "127.0.0.1:8849", "127.0.0.1:8850"
SVC = ServiceKey("public", "DEFAULT_GROUP@@demo")


def test_a_report_names_the_caller_and_its_state():
    assert read_report(B, encode_report(B, "UP")) == ReportReceived(B, "UP")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (encode_report(C, "UP"), "Field 'address'"),
        (encode_report(B, "SUSPICIOUS"), "not valid"),  # a peer may not call itself suspicious
        (b"\x93garbage", "not valid"),
    ],
)
def test_a_report_that_does_not_decode_or_speaks_for_another_member_is_refused(body, message):
    with pytest.raises(PeerBodyError, match=message):
        read_report(B, body)


def test_batches_and_digests_must_come_from_their_sender():
    batch = encode_batch(C, [Service(SVC, revision=1)], force=False)
    assert read_batch(C, batch).sender == C
    with pytest.raises(PeerBodyError, match="Field 'sender'"):
        read_batch(B, batch)
    digests = encode_digests(C, [A, C], [(SVC, (1, 2))])
    assert read_digests(C, digests).stamps == {SVC: (1, 2)}
    with pytest.raises(PeerBodyError, match="Field 'sender'"):
        read_digests(B, digests)


def test_a_member_that_does_not_serve_yet_judges_no_digests():
    digests = read_digests(C, encode_digests(C, [A, C], [(SVC, (1, 2))]))
    judged = judge_digests(digests, serving=False, healthy=(A, C), local=[Service(SVC, revision=9)])
    assert judged.drops == () and decode_keys(judged.answer) == ()


def test_digests_want_what_differs_and_drop_what_the_owner_no_longer_has():
    healthy = (A, C)
    owner = responsible_member(SVC.name, healthy)
    assert owner is not None
    # A service of the same owner that the owner's digests no longer list.
    other = next(
        key
        for key in (ServiceKey("public", f"DEFAULT_GROUP@@gone-{i}") for i in range(100))
        if responsible_member(key.name, healthy) == owner
    )
    local = [Service(SVC, revision=1, modified_ms=1), Service(other, revision=3, modified_ms=4)]
    digests = read_digests(owner, encode_digests(owner, healthy, [(SVC, (2, 2))]))
    judged = judge_digests(digests, serving=True, healthy=healthy, local=local)
    assert decode_keys(judged.answer) == (SVC,)
    assert [(d.key, d.stamp) for d in judged.drops] == [(other, (3, 4))]


def test_the_first_serving_peer_is_loaded_from():
    join = JoinCore((B, C), retry_ms=500)
    assert join.start() == FetchSnapshot(B)
    assert join.answered(B, 503) == FetchSnapshot(C)
    service = Service(SVC)
    assert join.answered(C, 200, services=[service]) == LoadFrom(C, (service,))


def test_every_peer_refusing_or_starting_means_serving_alone():
    join = JoinCore((B, C), retry_ms=500)
    join.start()
    assert join.answered(B, None, refused=True) == FetchSnapshot(C)
    assert join.answered(C, 503) == ServeAlone()
    assert JoinCore((), retry_ms=500).start() == ServeAlone()


@pytest.mark.parametrize(
    "answer",
    [
        {"status": None, "refused": False},  # a timeout: it may serve soon
        {"status": 500},
        {"status": 200, "services": None},  # a snapshot that does not decode
    ],
)
def test_a_peer_that_may_serve_soon_makes_the_round_start_again(answer):
    join = JoinCore((B,), retry_ms=500)
    join.start()
    assert join.answered(B, **answer) == RetryJoin(500)
    assert join.start() == FetchSnapshot(B)
    assert join.answered(B, 503) == ServeAlone()  # a new round forgets the old one's doubts


@given(st.lists(st.sampled_from(["refused", "503", "timeout", "500"]), min_size=1, max_size=6))
def test_a_round_ends_in_a_retry_exactly_when_some_peer_may_serve_soon(outcomes):
    peers = tuple(f"127.0.0.1:{9000 + i}" for i in range(len(outcomes)))
    join = JoinCore(peers, retry_ms=500)
    step = join.start()
    for peer, outcome in zip(peers, outcomes, strict=True):
        assert step == FetchSnapshot(peer)
        if outcome == "refused":
            step = join.answered(peer, None, refused=True)
        elif outcome == "timeout":
            step = join.answered(peer, None, refused=False)
        else:
            step = join.answered(peer, int(outcome))
    doubtful = any(o in ("timeout", "500") for o in outcomes)
    assert step == (RetryJoin(500) if doubtful else ServeAlone())
