"""The real Nacos 2.x/3.x gRPC clients, unmodified, against a real node: nacos-sdk-python 3.2.0
(`v2.nacos.NacosNamingService`) and nacos-sdk-rust-binding-py 0.8.0 (the Rust crate nacos-sdk),
each in its own process (tests/e2e/grpc_support.py). Each test runs for both where the SDK has the
operation; the v1 HTTP API and the v1 client (nacos-sdk-python 2.0.11) check what the node holds.

The node runs with a short idle detection (`--grpc-detect-idle-ms`) so that a client that vanishes
without closing is found out in seconds; the idle test shows that a live client that sends
nothing but its own health checks is kept anyway.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import nacos
import pytest

from tests.e2e.conftest import NodeProcess
from tests.e2e.grpc_support import KINDS, ClientFailed, clients_in, endpoints, start_grpc_node

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

IP1, IP2, IP3 = "127.0.0.1", "127.0.0.2", "127.0.0.3"
DETECT = ("--grpc-detect-idle-ms", "2000", "--grpc-detect-timeout-ms", "1000")
GONE_TIMEOUT_S = 10.0  # close: at once; SIGKILL: the socket closes at once too, detection is the backstop
V1 = "/nacos/v1/ns"


@pytest.fixture
def grpc_client(tmp_path):
    """`grpc_client(kind, node, **settings)` -> a started GrpcClient (python or rust), stopped after."""
    yield from clients_in(tmp_path)


@pytest.fixture
def node(start_node) -> NodeProcess:
    """A node with gRPC on its HTTP port + 1000 and short connection detection."""
    return start_grpc_node(start_node, *DETECT)


def v1_hosts(node: NodeProcess, service: str, group: str = "DEFAULT_GROUP") -> dict[tuple[str, int], dict[str, Any]]:
    """What the node lists over v1 HTTP (healthy or not), keyed by (ip, port)."""
    query = urllib.parse.urlencode({"serviceName": service, "groupName": group, "healthyOnly": "false"})
    status, body = node.get(f"{V1}/instance/list?{query}")
    assert status == 200, body
    return {(h["ip"], h["port"]): h for h in json.loads(body)["hosts"]}


def client_lists(client: Any, service: str, expected: set[tuple[str, int]], **query: Any) -> None:
    """The client lists `expected` (soon: Py 3.x answers a list from its subscribed cache, which a
    push updates)."""
    seen: list[Any] = []

    def listed() -> bool:
        seen[:] = [endpoints(client.call("list", service=service, subscribe=False, **query))]
        return seen[0] == expected

    wait_until(listed, f"{client.kind} lists {expected} in {service} (last {seen})", timeout=5.0)


def wait_until(check: Any, what: str, timeout: float = GONE_TIMEOUT_S) -> float:
    """Poll `check()` until true; the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.parametrize("kind", KINDS)
def test_register_list_and_deregister(kind, node, grpc_client):
    client = grpc_client(kind, node)
    assert client.call("register", service="orders", ip=IP1, port=8080, cluster="c1", weight=2.5, metadata={"v": "1"})
    assert client.call("register", service="orders", ip=IP2, port=8080, cluster="c1")

    listed = {(i["ip"], i["port"]): i for i in client.call("list", service="orders", subscribe=False)}
    assert set(listed) == {(IP1, 8080), (IP2, 8080)}
    first = listed[(IP1, 8080)]
    assert first["weight"] == 2.5 and first["metadata"] == {"v": "1"} and first["clusterName"] == "c1"
    assert first["healthy"] and first["enabled"] and first["ephemeral"]
    on_node = v1_hosts(node, "orders")
    assert set(on_node) == {(IP1, 8080), (IP2, 8080)}
    assert on_node[(IP1, 8080)]["metadata"] == {"v": "1"} and on_node[(IP1, 8080)]["weight"] == 2.5
    assert endpoints(client.call("list", service="orders", healthy_only=True, subscribe=False)) == set(listed)

    assert client.call("deregister", service="orders", ip=IP1, port=8080, cluster="c1")
    assert set(v1_hosts(node, "orders")) == {(IP2, 8080)}
    client_lists(client, "orders", {(IP2, 8080)})


@pytest.mark.parametrize("kind", KINDS)
def test_groups_are_separate(kind, node, grpc_client):
    client = grpc_client(kind, node)
    assert client.call("register", service="pay", group="BLUE", ip=IP1, port=9000)
    assert set(v1_hosts(node, "pay", "BLUE")) == {(IP1, 9000)}
    assert v1_hosts(node, "pay") == {}
    assert endpoints(client.call("list", service="pay", group="BLUE", subscribe=False)) == {(IP1, 9000)}
    assert client.call("list", service="pay", subscribe=False) == []


@pytest.mark.parametrize("kind", KINDS)
def test_batch_register(kind, node, grpc_client):
    client = grpc_client(kind, node)
    batch = [{"ip": IP1, "port": 7001}, {"ip": IP2, "port": 7002, "weight": 3.0}, {"ip": IP3, "port": 7003}]
    assert client.call("batch_register", service="batch", instances=batch)
    on_node = v1_hosts(node, "batch")
    assert set(on_node) == {(IP1, 7001), (IP2, 7002), (IP3, 7003)}
    assert on_node[(IP2, 7002)]["weight"] == 3.0
    # A batch replaces what this connection registered in the service.
    assert client.call("batch_register", service="batch", instances=batch[:2])
    assert set(v1_hosts(node, "batch")) == {(IP1, 7001), (IP2, 7002)}
    if kind == "python":  # Py's batch deregister sends the batch it keeps; Rust has none
        assert client.call("batch_deregister", service="batch", instances=[batch[0]])
        assert set(v1_hosts(node, "batch")) == {(IP2, 7002)}


@pytest.mark.parametrize("kind", KINDS)
def test_persistent_register_outlives_the_connection(kind, node, grpc_client):
    client = grpc_client(kind, node)
    assert client.call("register_persistent", service="db", ip=IP1, port=5432, metadata={"role": "primary"})
    host = v1_hosts(node, "db")[(IP1, 5432)]
    assert host["ephemeral"] is False and host["metadata"] == {"role": "primary"}
    client.kill()
    time.sleep(1.0)
    assert set(v1_hosts(node, "db")) == {(IP1, 5432)}  # owned by ip:port, not by the connection
    again = grpc_client(kind, node)
    assert again.call("deregister", service="db", ip=IP1, port=5432, ephemeral=False)
    wait_until(lambda: v1_hosts(node, "db") == {}, "the persistent instance removed")


def test_get_service_and_list_services_with_paging(node, grpc_client):
    """Python only: the Rust binding has neither call."""
    client = grpc_client("python", node)
    names = [f"svc-{n}" for n in range(5)]
    for port, name in enumerate(names, start=6000):
        assert client.call("register", service=name, ip=IP1, port=port, cluster="c1")
    assert client.call("register", service="elsewhere", group="OTHER", ip=IP1, port=6100)

    first = client.call("list_services", page_no=1, page_size=2)
    assert first["count"] == 5 and len(first["services"]) == 2
    pages = [client.call("list_services", page_no=n, page_size=2)["services"] for n in (1, 2, 3)]
    assert [len(p) for p in pages] == [2, 2, 1]
    seen = [name.split("@@")[-1] for page in pages for name in page]
    assert sorted(seen) == names
    assert client.call("list_services", page_no=4, page_size=2)["services"] == []
    other = client.call("list_services", group="OTHER", page_no=1, page_size=10)
    assert other["count"] == 1 and [n.split("@@")[-1] for n in other["services"]] == ["elsewhere"]

    service = client.call("get_service", service="svc-3")
    assert service["name"] == "svc-3" and service["groupName"] == "DEFAULT_GROUP"
    assert endpoints(service["hosts"]) == {(IP1, 6003)}
    assert service["lastRefTime"] > 0


@pytest.mark.parametrize("kind", KINDS)
def test_subscribe_callback_fires_on_every_change(kind, node, grpc_client):
    registrar = grpc_client("python", node)
    subscriber = grpc_client(kind, node)
    assert registrar.call("register", service="watched", ip=IP1, port=8000, metadata={"v": "1"})
    assert subscriber.call("subscribe", service="watched")
    subscriber.wait_notify(lambda hosts: endpoints(hosts) == {(IP1, 8000)}, "the first instance")

    assert registrar.call("register", service="watched", ip=IP2, port=8000)
    subscriber.wait_notify(lambda hosts: endpoints(hosts) == {(IP1, 8000), (IP2, 8000)}, "a second instance")

    assert registrar.call("update", service="watched", ip=IP1, port=8000, weight=4.0, metadata={"v": "1"})
    subscriber.wait_notify(lambda hosts: any(h["ip"] == IP1 and h["weight"] == 4.0 for h in hosts), "the new weight")
    assert registrar.call("update", service="watched", ip=IP1, port=8000, weight=4.0, metadata={"v": "2"})
    subscriber.wait_notify(
        lambda hosts: any(h["ip"] == IP1 and h["metadata"] == {"v": "2"} for h in hosts), "the new metadata"
    )

    assert registrar.call("deregister", service="watched", ip=IP2, port=8000)
    subscriber.wait_notify(lambda hosts: endpoints(hosts) == {(IP1, 8000)}, "the second instance gone")
    assert registrar.call("deregister", service="watched", ip=IP1, port=8000)
    subscriber.wait_notify(lambda hosts: hosts == [], "the empty service (the last instance gone)")
    assert subscriber.notifications.empty()


def test_unsubscribe_stops_the_callbacks(node, grpc_client):
    """Python only: the Rust binding cannot unsubscribe."""
    registrar = grpc_client("python", node)
    subscriber = grpc_client("python", node)
    assert subscriber.call("subscribe", service="quiet")
    assert registrar.call("register", service="quiet", ip=IP1, port=8100)
    subscriber.wait_notify(lambda hosts: endpoints(hosts) == {(IP1, 8100)}, "the instance")
    assert subscriber.call("unsubscribe", service="quiet")
    assert registrar.call("register", service="quiet", ip=IP2, port=8100)
    time.sleep(1.5)  # pushes go out within milliseconds; one would have arrived by now
    assert subscriber.notifications.empty(), subscriber.notifications.get()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ending", ["close", "sigkill"])
def test_a_clients_instances_go_when_it_goes(kind, ending, node, grpc_client):
    leaving = grpc_client(kind, node)
    staying = grpc_client("python", node)
    assert leaving.call("register", service="fleeting", ip=IP1, port=8200)
    assert leaving.call("batch_register", service="fleeting-batch", instances=[{"ip": IP1, "port": 8201}])
    assert staying.call("register", service="fleeting", ip=IP2, port=8200)
    assert staying.call("subscribe", service="fleeting")
    staying.wait_notify(lambda hosts: endpoints(hosts) == {(IP1, 8200), (IP2, 8200)}, "both instances")

    if ending == "close":
        assert leaving.call("close")
    else:
        leaving.kill()
    took = wait_until(lambda: set(v1_hosts(node, "fleeting")) == {(IP2, 8200)}, f"{kind}'s instance gone ({ending})")
    wait_until(lambda: v1_hosts(node, "fleeting-batch") == {}, f"{kind}'s batch gone ({ending})")
    staying.wait_notify(lambda hosts: endpoints(hosts) == {(IP2, 8200)}, "the subscriber told")
    assert took < GONE_TIMEOUT_S
    assert staying.call("list", service="fleeting", subscribe=False)  # the other connection is untouched


@pytest.mark.parametrize("kind", KINDS)
def test_a_frozen_client_is_evicted_and_comes_back(kind, node, grpc_client):
    """SIGSTOP leaves the socket open and silent: the node's ClientDetectionRequest goes
    unanswered, so it evicts the connection and its instances. After SIGCONT the client finds its
    connection gone, reconnects, and registers its instances again (its redo)."""
    frozen = grpc_client(kind, node)
    assert frozen.call("register", service="frozen", ip=IP1, port=8600)
    frozen.pause()
    try:
        took = wait_until(lambda: v1_hosts(node, "frozen") == {}, f"the frozen {kind} client evicted", timeout=15.0)
    finally:
        frozen.resume()
    assert took >= 1.0  # not before the idle time and the answer's time-out ran out
    # Py reconnects at once but its redo task runs every 30 s; Rust redoes on reconnecting.
    wait_until(lambda: set(v1_hosts(node, "frozen")) == {(IP1, 8600)}, f"{kind} re-registered", timeout=45.0)


def test_idle_connections_are_kept_past_30_seconds(start_node, grpc_client):
    """Both clients, registered and then silent but for their own health checks, for 32 s on a
    node with Nacos's default detection (20 s idle, then a ClientDetectionRequest)."""
    node = start_grpc_node(start_node)
    clients = {kind: grpc_client(kind, node) for kind in KINDS}
    for port, (kind, client) in enumerate(clients.items(), start=8300):
        assert client.call("register", service=f"idle-{kind}", ip=IP1, port=port)
    time.sleep(32)
    for port, (kind, client) in enumerate(clients.items(), start=8300):
        assert set(v1_hosts(node, f"idle-{kind}")) == {(IP1, port)}, kind
        assert endpoints(client.call("list", service=f"idle-{kind}", subscribe=False)) == {(IP1, port)}
    assert clients["python"].call("health") is True


@pytest.mark.parametrize("kind", KINDS)
def test_v1_and_grpc_clients_see_each_other(kind, node, grpc_client, nacos_log_dir):
    v1 = nacos.NacosClient(node.address, logDir=nacos_log_dir)
    client = grpc_client(kind, node)
    assert client.call("subscribe", service="mixed")
    assert v1.add_naming_instance("mixed", IP1, 8400, cluster_name="c1", metadata={"by": "v1"})
    seen = client.wait_notify(lambda hosts: endpoints(hosts) == {(IP1, 8400)}, "the v1 client's instance")
    assert seen[0]["metadata"] == {"by": "v1"}
    assert endpoints(client.call("list", service="mixed", subscribe=False)) == {(IP1, 8400)}

    assert client.call("register", service="mixed", ip=IP2, port=8400, metadata={"by": "grpc"})
    listed = {(h["ip"], h["port"]): h for h in v1.list_naming_instance("mixed")["hosts"]}
    assert set(listed) == {(IP1, 8400), (IP2, 8400)}
    assert listed[(IP2, 8400)]["metadata"] == {"by": "grpc"}
    client.wait_notify(lambda hosts: endpoints(hosts) == {(IP1, 8400), (IP2, 8400)}, "its own instance too")

    assert v1.remove_naming_instance("mixed", IP1, 8400, cluster_name="c1")
    client.wait_notify(lambda hosts: endpoints(hosts) == {(IP2, 8400)}, "the v1 instance gone")


def test_bad_input_is_refused_and_nothing_stored(node, grpc_client):
    """The clients check most input themselves; what they let through is the node's to refuse."""
    client = grpc_client("python", node)
    answer = client.call("register", may_fail=True, service="bad", ip=IP1, port=8500, weight=-5.0)
    assert not answer["ok"], answer
    assert v1_hosts(node, "bad") == {}
    with pytest.raises(ClientFailed):
        client.call("register", service="bad", ip="not an ip", port=8500)
    assert v1_hosts(node, "bad") == {}
