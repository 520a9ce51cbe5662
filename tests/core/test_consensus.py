"""How a proposal that cannot complete is answered (nacos_actors.core.consensus.unavailable)."""

from __future__ import annotations

import pytest

from nacos_actors.core.consensus import FAILURE_OUTCOMES, PROPOSAL_TIMED_OUT, unavailable
from nacos_actors.messages import Refused


@pytest.mark.parametrize("outcome", sorted({*FAILURE_OUTCOMES.values(), PROPOSAL_TIMED_OUT}))
def test_every_failed_proposal_is_a_503_that_names_raft_and_asks_for_a_retry(outcome):
    # A client (or an operator reading its log) learns that the consensus layer refused the
    # write, whichever way it failed: a leader alone times its proposals out, never "no leader".
    refused = unavailable(outcome, None)

    assert isinstance(refused, Refused)
    assert refused.status == 503
    assert "Raft" in refused.message
    assert refused.message.endswith("retry the request")


def test_the_leader_is_named_when_known():
    assert "(leader: 127.0.0.1:8848)" in unavailable(PROPOSAL_TIMED_OUT, "127.0.0.1:8848").message
    assert "leader:" not in unavailable(PROPOSAL_TIMED_OUT, None).message
