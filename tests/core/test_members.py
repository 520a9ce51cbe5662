"""The member core: states by failure accrual, report scheduling, and the sorted healthy view."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nacos_actors.core.members import (
    DOWN,
    HEALTHY_STATES,
    STARTING,
    SUSPICIOUS,
    UP,
    MemberConfig,
    MemberCore,
    standalone_view,
)

SELF = "127.0.0.1:8848"
PEER_B = "127.0.0.2:8848"
PEER_C = "127.0.0.3:8848"
STRANGER = "127.0.0.9:8848"
MEMBERS = (PEER_C, SELF, PEER_B)
CONFIG = MemberConfig(report_interval_ms=500, fail_threshold=3)


def make_core(now: int = 1_000, config: MemberConfig = CONFIG) -> MemberCore:
    return MemberCore(SELF, MEMBERS, config, now)


def state_of(core: MemberCore, address: str) -> str:
    return core.view.members[address].state


# -- initial state ------------------------------------------------------------------------------


def test_self_starts_starting_and_peers_down_with_nobody_healthy():
    core = make_core()
    assert state_of(core, SELF) == STARTING
    assert core.view.self_state == STARTING
    assert state_of(core, PEER_B) == DOWN and state_of(core, PEER_C) == DOWN
    assert core.view.healthy == ()
    assert set(core.peers) == {PEER_B, PEER_C}
    assert set(core.view.peers) == {PEER_B, PEER_C}


def test_self_listed_twice_or_not_at_all_is_one_member():
    core = MemberCore(SELF, [PEER_B, SELF, PEER_B], CONFIG, 0)
    assert set(core.view.members) == {SELF, PEER_B}
    alone = MemberCore(SELF, [PEER_B], CONFIG, 0)
    assert set(alone.view.members) == {SELF, PEER_B} and alone.peers == (PEER_B,)


def test_standalone_view_is_self_up_and_healthy():
    view = standalone_view(SELF)
    assert view.self_state == UP and view.healthy == (SELF,) and view.peers == ()


def test_mark_ready_puts_self_in_the_healthy_view():
    core = make_core()
    assert core.mark_ready(1_001) is True
    assert state_of(core, SELF) == UP
    assert core.view.healthy == (SELF,)
    assert core.mark_ready(1_002) is False  # already UP


def test_mark_leaving_takes_self_out_of_the_healthy_view():
    core = make_core()
    core.mark_ready(1_001)
    assert core.mark_leaving(1_002) is True
    assert state_of(core, SELF) == DOWN and core.view.healthy == ()
    assert core.mark_leaving(1_003) is False


# -- scheduling ---------------------------------------------------------------------------------


def test_every_peer_is_due_at_once_then_once_per_interval():
    core = make_core(now=1_000)
    assert set(core.due(1_000)) == {PEER_B, PEER_C}
    core.report_answered(PEER_B, UP, 1_010)
    core.report_answered(PEER_C, UP, 1_010)
    assert core.due(1_499) == ()
    assert core.next_deadline() == 1_500
    assert set(core.due(1_500)) == {PEER_B, PEER_C}


def test_a_peer_in_flight_is_never_due_twice():
    core = make_core(now=1_000)
    assert set(core.due(1_000)) == {PEER_B, PEER_C}
    core.report_answered(PEER_C, UP, 1_005)
    # PEER_B's report has not come back, however long it takes.
    assert core.due(1_500) == (PEER_C,)
    assert core.due(5_000) == ()
    core.report_failed(PEER_B, False, 5_001)
    assert core.due(5_001) == (PEER_B,)


def test_next_deadline_is_none_while_every_report_is_in_flight():
    core = make_core(now=1_000)
    assert core.next_deadline() == 1_000
    core.due(1_000)
    assert core.next_deadline() is None
    core.report_failed(PEER_B, False, 1_200)
    assert core.next_deadline() == 1_500  # scheduled from when it was sent, not when it failed


def test_a_late_answer_makes_the_peer_due_at_once():
    core = make_core(now=1_000)
    core.due(1_000)
    core.report_answered(PEER_B, UP, 1_800)
    assert PEER_B in core.due(1_800)


# -- answers and failures -----------------------------------------------------------------------


def test_answered_report_moves_the_peer_to_the_state_it_answered():
    core = make_core()
    core.due(1_000)
    assert core.report_answered(PEER_B, STARTING, 1_001) is True
    assert state_of(core, PEER_B) == STARTING and core.view.healthy == ()
    assert core.report_answered(PEER_B, UP, 1_002) is True
    assert state_of(core, PEER_B) == UP
    assert core.view.members[PEER_B].last_refresh_ms == 1_002
    assert core.view.healthy == (PEER_B,)


def test_answer_with_the_same_state_changes_nothing_visible():
    core = make_core()
    core.report_answered(PEER_B, UP, 1_001)
    assert core.report_answered(PEER_B, UP, 1_600) is False
    assert core.view.members[PEER_B].last_refresh_ms == 1_600


def test_failed_reports_make_a_peer_suspicious_then_down_past_the_threshold():
    core = make_core()
    core.mark_ready(1_000)
    core.report_answered(PEER_B, UP, 1_000)
    assert core.view.healthy == (SELF, PEER_B)
    assert core.report_failed(PEER_B, False, 1_500) is True
    assert state_of(core, PEER_B) == SUSPICIOUS
    assert core.view.healthy == (SELF, PEER_B)  # suspicious still counts as healthy
    assert core.report_failed(PEER_B, False, 2_000) is False
    assert core.report_failed(PEER_B, False, 2_500) is False
    assert (state_of(core, PEER_B), core.view.members[PEER_B].fail_count) == (SUSPICIOUS, 3)
    assert core.report_failed(PEER_B, False, 3_000) is True  # the fourth: more than three
    assert state_of(core, PEER_B) == DOWN
    assert core.view.healthy == (SELF,)
    assert core.view.members[PEER_B].last_refresh_ms == 1_000  # failures are not hearing from it


def test_fail_threshold_comes_from_the_config():
    core = make_core(config=MemberConfig(report_interval_ms=500, fail_threshold=1))
    core.report_answered(PEER_B, UP, 1_000)
    core.report_failed(PEER_B, False, 1_100)
    assert state_of(core, PEER_B) == SUSPICIOUS
    core.report_failed(PEER_B, False, 1_200)
    assert state_of(core, PEER_B) == DOWN


def test_refused_connection_is_down_at_once():
    core = make_core()
    core.report_answered(PEER_B, UP, 1_000)
    assert core.report_failed(PEER_B, True, 1_500) is True
    assert state_of(core, PEER_B) == DOWN and core.view.healthy == ()


def test_a_starting_or_down_peer_that_fails_stays_out_of_the_view():
    core = make_core()
    assert core.report_failed(PEER_B, False, 1_000) is False  # DOWN stays DOWN
    assert state_of(core, PEER_B) == DOWN
    core.report_answered(PEER_C, STARTING, 1_000)
    assert core.report_failed(PEER_C, False, 1_500) is True
    assert state_of(core, PEER_C) == DOWN


def test_success_resets_the_failure_count():
    core = make_core()
    core.report_answered(PEER_B, UP, 1_000)
    for at in (1_100, 1_200, 1_300):
        core.report_failed(PEER_B, False, at)
    assert core.view.members[PEER_B].fail_count == 3
    assert core.report_answered(PEER_B, UP, 1_400) is True
    assert core.view.members[PEER_B].fail_count == 0
    for at in (1_500, 1_600, 1_700):
        core.report_failed(PEER_B, False, at)
    assert state_of(core, PEER_B) == SUSPICIOUS  # counting started again from zero


def test_a_down_peer_is_up_again_on_the_next_answer():
    core = make_core()
    core.report_answered(PEER_B, UP, 1_000)
    core.report_failed(PEER_B, True, 1_100)
    assert core.report_answered(PEER_B, UP, 1_200) is True
    assert state_of(core, PEER_B) == UP and core.view.healthy == (PEER_B,)


def test_a_received_report_is_as_good_as_an_answer():
    core = make_core()
    assert core.report_received(PEER_C, UP, 1_000) is True
    assert state_of(core, PEER_C) == UP and core.view.members[PEER_C].last_refresh_ms == 1_000
    assert core.report_received(PEER_C, DOWN, 1_100) is True  # a peer leaving says so
    assert state_of(core, PEER_C) == DOWN


def test_a_report_from_a_stranger_changes_nothing():
    core = make_core()
    before = core.view
    assert core.report_received(STRANGER, UP, 1_000) is False
    assert core.report_answered(STRANGER, UP, 1_000) is False
    assert core.report_failed(STRANGER, True, 1_000) is False
    assert core.view is before and not core.knows(STRANGER)


def test_nobody_else_may_change_this_nodes_own_state():
    core = make_core()
    core.mark_ready(1_000)
    assert core.report_received(SELF, DOWN, 1_001) is False
    assert core.peer_failed(SELF, True, 1_001) is False
    assert state_of(core, SELF) == UP


def test_invalid_reported_states_are_ignored():
    core = make_core()
    core.report_answered(PEER_B, UP, 1_000)
    for bogus in (SUSPICIOUS, "ISOLATION", "up", ""):
        assert core.report_received(PEER_B, bogus, 1_100) is False
        assert core.report_answered(PEER_B, bogus, 1_100) is False
    assert state_of(core, PEER_B) == UP
    assert core.view.members[PEER_B].last_refresh_ms == 1_000


def test_healthy_view_is_sorted_whatever_the_configured_order():
    members = ["127.0.0.3:8848", "127.0.0.10:8848", "127.0.0.2:8848", SELF]
    core = MemberCore(SELF, members, CONFIG, 0)
    core.mark_ready(0)
    for address in members:
        core.report_received(address, UP, 1)
    assert core.view.healthy == tuple(sorted(members))


def test_views_are_immutable_snapshots():
    core = make_core()
    first = core.view
    core.report_answered(PEER_B, UP, 1_000)
    assert state_of(core, PEER_B) == UP
    assert first.members[PEER_B].state == DOWN and first.healthy == ()


# -- any sequence keeps the invariants ----------------------------------------------------------

ADDRESSES = [SELF, PEER_B, PEER_C, STRANGER]
events = st.lists(
    st.tuples(
        st.sampled_from(["answered", "failed", "received", "due", "ready", "leaving"]),
        st.sampled_from(ADDRESSES),
        st.sampled_from([STARTING, UP, SUSPICIOUS, DOWN, "BOGUS"]),
        st.booleans(),
        st.integers(0, 700),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(events, st.integers(0, 4))
def test_any_sequence_of_events_keeps_the_invariants(sequence, threshold):
    core = MemberCore(SELF, MEMBERS, MemberConfig(report_interval_ms=500, fail_threshold=threshold), 0)
    now = 0
    for kind, address, state, refused, step in sequence:
        now += step
        before = core.view
        match kind:
            case "answered":
                changed = core.report_answered(address, state, now)
            case "received":
                changed = core.report_received(address, state, now)
            case "failed":
                changed = core.report_failed(address, refused, now)
            case "due":
                chosen = core.due(now)
                assert len(set(chosen)) == len(chosen) and SELF not in chosen and STRANGER not in chosen
                continue
            case "ready":
                changed = core.mark_ready(now)
            case _:
                changed = core.mark_leaving(now)
        view = core.view
        members = view.members
        # The healthy view is exactly the sorted UP and SUSPICIOUS members.
        assert view.healthy == tuple(sorted(a for a, s in members.items() if s.state in HEALTHY_STATES))
        assert set(members) == {SELF, PEER_B, PEER_C}
        for status in members.values():
            assert status.fail_count == 0 or status.state != UP
            assert status.state != SUSPICIOUS or 0 < status.fail_count <= threshold
        # A mutator answers true exactly when some state changed.
        moved = any(before.members[a].state != members[a].state for a in members)
        assert changed == (moved or before.healthy != view.healthy)
        if kind in ("answered", "received") and address in (PEER_B, PEER_C):
            if state in (STARTING, UP, DOWN):
                # Hearing from a peer (even a DOWN one) puts it in the state it reports.
                assert members[address].state == state and members[address].fail_count == 0
            else:
                assert members[address] == before.members[address]
        if address == STRANGER and kind in ("answered", "received", "failed"):
            assert view is before
        if kind in ("answered", "received", "failed") and address == SELF:
            assert members[SELF] == before.members[SELF]
