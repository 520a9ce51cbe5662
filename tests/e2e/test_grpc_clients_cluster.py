"""The real gRPC clients against a three-node loopback cluster: an instance registered over gRPC
through one member reaches subscribers connected to the others, and when that member dies
(SIGKILL) the survivors expire its connections' instances within the usual timeouts and tell
their subscribers. Each member serves gRPC on its HTTP port + 1000 (grpc_support)."""

from __future__ import annotations

import signal
import time

import pytest

from tests.e2e.conftest import NODES_KEY, NodeLauncher
from tests.e2e.grpc_support import clients_in, endpoints, launch_grpc_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

IP1, IP2 = "127.0.0.1", "127.0.0.2"
REPLICATED_S = 10.0
# The usual ephemeral timeouts: unhealthy after 15 s, removed after 30 s without a beat, plus the
# members' failure detection (3 missed reports, 0.5 s apart) and a loaded machine's slack.
GONE_S = 30.0 + 10.0


@pytest.fixture
def grpc_client(tmp_path):
    """`grpc_client(kind, node, **settings)` -> a started GrpcClient (python or rust), stopped after."""
    yield from clients_in(tmp_path)


@pytest.fixture
def trio(request, tmp_path_factory):
    """Three members on port pairs, settled; every member still running must stop cleanly."""
    launcher = NodeLauncher(tmp_path_factory.mktemp("grpc-cluster-logs"))
    request.node.stash[NODES_KEY] = launcher.nodes
    try:
        yield launch_grpc_cluster(launcher, 3)
    finally:
        problems = launcher.stop_all()
        if problems:
            pytest.fail("\n\n".join(problems))


def test_register_on_one_member_subscribe_on_others_then_kill_the_first(trio, grpc_client):
    first, second, third = trio.nodes
    registrar = grpc_client("python", first)
    rust_subscriber = grpc_client("rust", second)
    python_subscriber = grpc_client("python", third)
    for subscriber in (rust_subscriber, python_subscriber):
        assert subscriber.call("subscribe", service="spread")

    assert registrar.call("register", service="spread", ip=IP1, port=9100, metadata={"via": "first"})
    assert registrar.call("register", service="spread", ip=IP2, port=9100)
    both = {(IP1, 9100), (IP2, 9100)}
    for subscriber in (rust_subscriber, python_subscriber):
        seen = subscriber.wait_notify(lambda hosts: endpoints(hosts) == both, "both instances", timeout=REPLICATED_S)
        assert next(h for h in seen if h["ip"] == IP1)["metadata"] == {"via": "first"}

    first.process.send_signal(signal.SIGKILL)
    first.process.wait(5)
    killed = time.monotonic()
    for subscriber in (rust_subscriber, python_subscriber):
        subscriber.wait_notify(
            lambda hosts: hosts == [], "the dead member's instances gone", timeout=GONE_S - (time.monotonic() - killed)
        )
    took = time.monotonic() - killed
    assert took < GONE_S
    # The survivors agree, and the subscribers' connections were never touched.
    for subscriber in (rust_subscriber, python_subscriber):
        assert subscriber.call("list", service="spread", subscribe=False) == []
