"""A node with more than one member refuses to start without the shared secret its peer calls
are signed with (issue 14: without one, any local process could act as a member)."""

from __future__ import annotations

import pytest

from nacos_actors.node import run_node
from nacos_actors.settings import Settings

MEMBERS = ("127.0.0.1:18848", "127.0.0.1:18849")


def test_a_member_without_a_secret_refuses_to_start_saying_how_to_set_one(monkeypatch):
    def started() -> None:  # what run_node does once its checks pass: never get there
        raise AssertionError("the node went on starting")

    monkeypatch.setattr("nacos_actors.node.tune_garbage_collector", started)
    with pytest.raises(SystemExit) as refused:
        run_node(Settings(port=18848, members=MEMBERS))
    message = str(refused.value.code)
    for way in ("--cluster-secret", "NACOS_ACTORS_CLUSTER_SECRET", "cluster_secret in the TOML file"):
        assert way in message
    assert "127.0.0.1:18849" in message


def test_a_standalone_node_needs_no_secret(monkeypatch):
    class Started(Exception):
        pass

    def started() -> None:
        raise Started

    monkeypatch.setattr("nacos_actors.node.tune_garbage_collector", started)
    for members in ((), ("127.0.0.1:18848",)):
        with pytest.raises(Started):
            run_node(Settings(port=18848, members=members))
