"""One dispatch for real and simulated nodes: every message a driver may receive has a case in
its `handle`, and the cluster simulation runs the very driver classes a node starts."""

from __future__ import annotations

import ast
import inspect
import textwrap
import typing

import pytest

from nacos_actors.drivers.distro import DistroDriver
from nacos_actors.drivers.health import HealthDriver
from nacos_actors.drivers.members import MemberDriver
from nacos_actors.drivers.probe import ProbeDriver
from nacos_actors.drivers.push import PushDriver
from nacos_actors.drivers.raft import RaftDriver
from nacos_actors.drivers.registry import RegistryDriver
from nacos_actors.messages import (
    DistroMessage,
    HealthMessage,
    MemberMessage,
    ProbeMessage,
    PushMessage,
    RaftMessage,
    RegistryMessage,
)
from tests.sim.cluster import Simulation

DRIVERS = {
    RegistryDriver: RegistryMessage,
    HealthDriver: HealthMessage,
    PushDriver: PushMessage,
    MemberDriver: MemberMessage,
    DistroDriver: DistroMessage,
    RaftDriver: RaftMessage,
    ProbeDriver: ProbeMessage,
}


def handled_types(driver: type) -> set[str]:
    """The class names matched by a `case Name(...)` in the driver's `handle`."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(driver.handle)))
    return {
        node.cls.id
        for node in ast.walk(tree)
        if isinstance(node, ast.MatchClass) and isinstance(node.cls, ast.Name)
    }


@pytest.mark.parametrize("driver", list(DRIVERS), ids=lambda d: d.__name__)
def test_every_message_a_driver_may_receive_has_a_case(driver):
    expected = {kind.__name__ for kind in typing.get_args(DRIVERS[driver])}
    assert expected <= handled_types(driver)


def test_the_simulation_runs_the_drivers_a_cluster_member_starts():
    sim = Simulation(seed=1)
    sim.start_all()
    sim.run_for(2_000)
    for node in sim.live_nodes():
        assert {type(d) for d in node.drivers.values()} == {
            RegistryDriver,
            RaftDriver,
            HealthDriver,
            ProbeDriver,
            DistroDriver,
            MemberDriver,
        }
        # Its Raft driver ticks a group of the simulation, which elected a leader by now.
        assert node.raft_board.status.ready
