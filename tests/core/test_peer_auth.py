"""The signature of peer calls and the verdict on a call (nacos_actors.core.peer_auth): a
member's call signed with the cluster secret is accepted; any change of its method, request
target, body, member or time breaks the signature; a call outside the window is stale; a caller
that is not another listed member, or calls from elsewhere, is refused before anything else."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nacos_actors.core.peer_auth import (
    BAD_SIGNATURE,
    MEMBER_HEADER,
    NOT_MEMBER,
    SIGNATURE_HEADER,
    STALE,
    TIMESTAMP_HEADER,
    UNSIGNED,
    WRONG_ADDRESS,
    PeerAccepted,
    PeerCallRules,
    PeerRefused,
    judge_peer_call,
    signature,
    signed_headers,
)

SECRET = "a-cluster-secret"
SELF, PEER = "127.0.0.1:8848", "127.0.0.1:8849"
RULES = PeerCallRules(SELF, (PEER, "127.0.0.2:8850", "node-3.example:8848"), SECRET, 5_000)
NOW = 1_700_000_000_000
TARGET = "/nacos/v1/ns/distro/datum"

methods = st.sampled_from(["GET", "PUT", "POST", "DELETE", "PATCH"])
targets = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40).map(lambda t: "/" + t)
bodies = st.binary(max_size=64)
times = st.integers(0, 10**13)


def judge(headers, method="PUT", target=TARGET, body=b"body", remote="127.0.0.1", now=NOW, rules=RULES):
    return judge_peer_call(rules, headers, method, target, body, remote, now)


def test_a_signed_call_from_a_member_is_accepted():
    headers = signed_headers(SECRET, "PUT", TARGET, PEER, NOW, b"body")
    assert set(headers) == {MEMBER_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER}
    assert re.fullmatch(r"v1=[0-9a-f]{64}", headers[SIGNATURE_HEADER])
    assert SECRET not in "".join(headers.values())
    assert judge(headers) == PeerAccepted(PEER)


@settings(max_examples=300, deadline=None)
@given(methods, targets, bodies, times, methods, targets, bodies, times, st.sampled_from([PEER, "127.0.0.2:8850"]))
def test_any_change_of_method_target_body_or_time_breaks_the_signature(m1, t1, b1, s1, m2, t2, b2, s2, member):
    assume((m1, t1, b1, s1) != (m2, t2, b2, s2))
    assert signature(SECRET, m1, t1, member, s1, b1) != signature(SECRET, m2, t2, member, s2, b2)
    assert signature(SECRET, m1, t1, member, s1, b1) == signature(SECRET, m1.lower(), t1, member, s1, b1)


@settings(max_examples=200, deadline=None)
@given(methods, targets, bodies, st.integers(-4_999, 4_999))
def test_a_call_signed_for_something_else_is_refused_as_a_bad_signature(method, target, body, skew):
    headers = signed_headers(SECRET, method, target, PEER, NOW + skew, body)
    assert judge(headers, method, target, body) == PeerAccepted(PEER)
    for changed in (
        {"method": "HEAD"},
        {"target": target + "?x"},
        {"body": body + b"\x00"},
        {"headers": {**headers, TIMESTAMP_HEADER: str(NOW + skew + 1)}},
        {"headers": {**headers, MEMBER_HEADER: "127.0.0.2:8850"}, "remote": "127.0.0.2"},
    ):
        call = {"headers": headers, "method": method, "target": target, "body": body, **changed}
        verdict = judge(**call)
        assert isinstance(verdict, PeerRefused) and verdict.reason == BAD_SIGNATURE, changed


def test_another_secret_is_a_bad_signature():
    verdict = judge(signed_headers("another-secret", "PUT", TARGET, PEER, NOW, b"body"))
    assert verdict == PeerRefused(BAD_SIGNATURE, verdict.message)
    assert SIGNATURE_HEADER in verdict.message


@pytest.mark.parametrize("offset, accepted", [(0, True), (5_000, True), (-5_000, True), (5_001, False), (-5_001, False)])
def test_the_window_bounds_the_time_both_ways(offset, accepted):
    headers = signed_headers(SECRET, "PUT", TARGET, PEER, NOW + offset, b"body")
    verdict = judge(headers)
    if accepted:
        assert verdict == PeerAccepted(PEER)
    else:
        assert isinstance(verdict, PeerRefused) and verdict.reason == STALE
        assert TIMESTAMP_HEADER in verdict.message and "5000 ms" in verdict.message


def test_a_replay_is_accepted_until_the_window_has_passed():
    headers = signed_headers(SECRET, "PUT", TARGET, PEER, NOW, b"body")
    assert judge(headers, now=NOW + 4_999) == PeerAccepted(PEER)
    assert judge(headers, now=NOW + 5_001).reason == STALE  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "drop, replace",
    [
        (SIGNATURE_HEADER, None),
        (TIMESTAMP_HEADER, None),
        (None, {SIGNATURE_HEADER: ""}),
        (None, {TIMESTAMP_HEADER: "soon"}),
        (None, {TIMESTAMP_HEADER: "-5"}),
        (None, {TIMESTAMP_HEADER: "１２３"}),
        (None, {TIMESTAMP_HEADER: "9" * 40}),
    ],
)
def test_a_call_without_a_usable_signature_or_time_is_unsigned(drop, replace):
    headers = signed_headers(SECRET, "PUT", TARGET, PEER, NOW, b"body")
    headers = {k: v for k, v in headers.items() if k != drop} | (replace or {})
    verdict = judge(headers)
    assert isinstance(verdict, PeerRefused) and verdict.reason == UNSIGNED


@pytest.mark.parametrize("member", ["", SELF, "127.0.0.1:1", "10.0.0.1:8848", PEER + " "])
def test_only_another_listed_member_may_call_even_with_a_valid_signature(member):
    verdict = judge(signed_headers(SECRET, "PUT", TARGET, member, NOW, b"body"))
    assert isinstance(verdict, PeerRefused) and verdict.reason == NOT_MEMBER
    assert MEMBER_HEADER in verdict.message


def test_a_member_listed_by_address_must_call_from_it():
    headers = signed_headers(SECRET, "PUT", TARGET, "127.0.0.2:8850", NOW, b"body")
    assert judge(headers, remote="127.0.0.2") == PeerAccepted("127.0.0.2:8850")
    assert judge(headers, remote="127.0.0.1").reason == WRONG_ADDRESS  # type: ignore[union-attr]
    assert judge(headers, remote="not-an-ip").reason == WRONG_ADDRESS  # type: ignore[union-attr]


def test_a_member_listed_by_host_name_is_proven_by_its_signature_alone():
    headers = signed_headers(SECRET, "PUT", TARGET, "node-3.example:8848", NOW, b"body")
    assert judge(headers, remote="192.0.2.7") == PeerAccepted("node-3.example:8848")
    forged = {**headers, SIGNATURE_HEADER: "v1=" + "0" * 64}
    assert judge(forged, remote="192.0.2.7").reason == BAD_SIGNATURE  # type: ignore[union-attr]
