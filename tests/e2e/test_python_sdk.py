"""An unmodified nacos-sdk-python 2.0.11 `NacosClient` against a real node process.

The client speaks the v1 HTTP API (all parameters in the query string, User-Agent
`Nacos-Python-Client`); see PROTOCOL.md section 8.2 for what it sends, quirks included.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import nacos
import pytest
from nacos.task import HeartbeatTask

pytestmark = pytest.mark.e2e

IP = "127.0.0.1"
IP2 = "127.0.0.2"
IP3 = "127.0.0.3"


@pytest.fixture
def client_for(node, nacos_log_dir):
    """`client_for(namespace=None)` -> a NacosClient talking to the node."""

    def make(namespace: str | None = None) -> nacos.NacosClient:
        return nacos.NacosClient(node.address, namespace=namespace, logDir=nacos_log_dir)

    return make


@pytest.fixture
def client(client_for) -> nacos.NacosClient:
    return client_for()


def hosts(answer: dict) -> dict[tuple[str, int], dict]:
    """A list answer's hosts keyed by (ip, port)."""
    return {(h["ip"], h["port"]): h for h in answer["hosts"]}


def endpoints(answer: dict) -> set[tuple[str, int, str]]:
    return {(h["ip"], h["port"], h["clusterName"]) for h in answer["hosts"]}


def test_register_list_get_remove_in_the_default_namespace(client):
    metadata = {"version": "1.2", "zone": "a"}
    assert client.add_naming_instance("orders", IP, 8080, cluster_name="c1", weight=2.5, metadata=metadata)
    assert client.add_naming_instance("orders", IP2, 8080, cluster_name="c1")

    listed = client.list_naming_instance("orders")
    assert listed["name"] == "DEFAULT_GROUP@@orders"
    assert listed["dom"] == "orders"
    assert endpoints(listed) == {(IP, 8080, "c1"), (IP2, 8080, "c1")}
    first = hosts(listed)[(IP, 8080)]
    assert first["weight"] == 2.5
    assert first["metadata"] == metadata
    assert first["healthy"] is True and first["enabled"] is True and first["ephemeral"] is True
    assert first["instanceId"] == f"{IP}#8080#c1#DEFAULT_GROUP@@orders"

    detail = client.get_naming_instance("orders", IP, 8080, "c1")
    assert detail["service"] == "DEFAULT_GROUP@@orders"
    assert (detail["ip"], detail["port"], detail["clusterName"]) == (IP, 8080, "c1")
    assert detail["weight"] == 2.5
    assert detail["metadata"] == metadata
    assert detail["healthy"] is True

    assert client.remove_naming_instance("orders", IP, 8080, cluster_name="c1")
    assert endpoints(client.list_naming_instance("orders")) == {(IP2, 8080, "c1")}
    assert client.remove_naming_instance("orders", IP2, 8080, cluster_name="c1")
    assert client.list_naming_instance("orders")["hosts"] == []
    # Removing what is not there is still ok, as in Nacos.
    assert client.remove_naming_instance("orders", IP2, 8080, cluster_name="c1")


def test_another_namespace_and_group_are_separate(client_for):
    dev = client_for("dev")
    public = client_for()
    assert dev.add_naming_instance("pay", IP, 9000, cluster_name="c1", group_name="BLUE", metadata={"env": "dev"})
    assert public.add_naming_instance("pay", IP2, 9000, cluster_name="c1")

    in_blue = dev.list_naming_instance("pay", group_name="BLUE")
    assert in_blue["name"] == "BLUE@@pay"
    assert endpoints(in_blue) == {(IP, 9000, "c1")}
    assert hosts(in_blue)[(IP, 9000)]["metadata"] == {"env": "dev"}
    assert dev.list_naming_instance("pay")["hosts"] == []  # DEFAULT_GROUP in dev
    assert endpoints(public.list_naming_instance("pay")) == {(IP2, 9000, "c1")}
    assert public.list_naming_instance("pay", group_name="BLUE")["hosts"] == []
    # namespace_id on the call overrides the client's namespace.
    assert endpoints(public.list_naming_instance("pay", namespace_id="dev", group_name="BLUE")) == {(IP, 9000, "c1")}

    # get_naming_instance sends no groupName: the group rides in the service name.
    detail = dev.get_naming_instance("BLUE@@pay", IP, 9000, "c1")
    assert detail["service"] == "BLUE@@pay"
    with pytest.raises(nacos.NacosException, match="404"):
        public.get_naming_instance("BLUE@@pay", IP, 9000, "c1")

    assert dev.remove_naming_instance("pay", IP, 9000, cluster_name="c1", group_name="BLUE")
    assert dev.list_naming_instance("pay", group_name="BLUE")["hosts"] == []
    assert endpoints(public.list_naming_instance("pay")) == {(IP2, 9000, "c1")}


def test_the_clusters_filter(client):
    for ip, cluster in ((IP, "c1"), (IP2, "c2"), (IP3, "c3")):
        assert client.add_naming_instance("search", ip, 7000, cluster_name=cluster)

    assert endpoints(client.list_naming_instance("search")) == {(IP, 7000, "c1"), (IP2, 7000, "c2"), (IP3, 7000, "c3")}
    two = client.list_naming_instance("search", clusters="c1,c2")
    assert two["clusters"] == "c1,c2"
    assert endpoints(two) == {(IP, 7000, "c1"), (IP2, 7000, "c2")}
    assert endpoints(client.list_naming_instance("search", clusters="c3")) == {(IP3, 7000, "c3")}
    assert client.list_naming_instance("search", clusters="nowhere")["hosts"] == []


def test_modify_weight_metadata_and_enable(client):
    assert client.add_naming_instance("cart", IP, 8000, cluster_name="c1", metadata={"v": "1"})
    assert client.add_naming_instance("cart", IP2, 8000, cluster_name="c1")

    assert client.modify_naming_instance("cart", IP, 8000, cluster_name="c1", weight=7.5, metadata={"v": "2", "x": "y"})
    changed = hosts(client.list_naming_instance("cart"))[(IP, 8000)]
    assert changed["weight"] == 7.5
    assert changed["metadata"] == {"v": "2", "x": "y"}
    assert changed["enabled"] is True

    assert client.modify_naming_instance(
        "cart", IP, 8000, cluster_name="c1", weight=7.5, metadata={"v": "2"}, enable=False
    )
    assert endpoints(client.list_naming_instance("cart")) == {(IP2, 8000, "c1")}  # disabled: hidden
    detail = client.get_naming_instance("cart", IP, 8000, "c1")
    assert detail["enabled"] is False
    assert detail["metadata"] == {"v": "2"}

    assert client.modify_naming_instance("cart", IP, 8000, cluster_name="c1", enable=True)
    back = hosts(client.list_naming_instance("cart"))[(IP, 8000)]
    assert back["enabled"] is True
    # PUT rebuilds the instance from the request (Nacos 1.x): no weight -> 1, no metadata -> {}.
    assert back["weight"] == 1.0
    assert back["metadata"] == {}


def test_modify_of_an_unknown_instance_registers_it(client):
    """For a non-Java User-Agent, PUT is an upsert (PROTOCOL 2.3)."""
    assert client.modify_naming_instance("late", IP, 8100, cluster_name="c1", weight=3.0)
    assert hosts(client.list_naming_instance("late"))[(IP, 8100)]["weight"] == 3.0


def test_enable_and_healthy_flags_on_register(client):
    assert client.add_naming_instance("flags", IP, 8200, cluster_name="c1", healthy=True)
    assert client.add_naming_instance("flags", IP2, 8200, cluster_name="c1", healthy=False)
    assert client.add_naming_instance("flags", IP3, 8200, cluster_name="c1", enable=False)

    listed = hosts(client.list_naming_instance("flags"))
    assert set(listed) == {(IP, 8200), (IP2, 8200)}  # the disabled one is hidden
    assert listed[(IP, 8200)]["healthy"] is True
    assert listed[(IP2, 8200)]["healthy"] is False
    assert listed[(IP2, 8200)]["valid"] is False
    healthy = client.list_naming_instance("flags", healthy_only=True)
    assert endpoints(healthy) == {(IP, 8200, "c1")}
    assert client.get_naming_instance("flags", IP2, 8200, "c1")["healthy"] is False


def test_cluster_name_none_lands_in_a_cluster_named_none(client):
    """The client sends clusterName=None literally; its beats carry no cluster (PROTOCOL 8.2)."""
    assert client.add_naming_instance("quirk", IP, 8300)
    assert endpoints(client.list_naming_instance("quirk")) == {(IP, 8300, "None")}
    assert client.get_naming_instance("quirk", IP, 8300, "None")["clusterName"] == "None"

    # The beat has no cluster, so the server looks in DEFAULT and registers a second copy there.
    answer = client.send_heartbeat("quirk", IP, 8300)
    assert answer["code"] == 10200
    assert endpoints(client.list_naming_instance("quirk")) == {(IP, 8300, "None"), (IP, 8300, "DEFAULT")}

    # remove without cluster_name sends no clusterName: it removes the DEFAULT copy only.
    assert client.remove_naming_instance("quirk", IP, 8300)
    assert endpoints(client.list_naming_instance("quirk")) == {(IP, 8300, "None")}
    assert client.remove_naming_instance("quirk", IP, 8300, cluster_name="None")
    assert client.list_naming_instance("quirk")["hosts"] == []


def test_heartbeat_of_a_registered_instance(client):
    assert client.add_naming_instance("beat", IP, 8400, cluster_name="c1", metadata={"a": "b"})
    answer = client.send_heartbeat("beat", IP, 8400, cluster_name="c1", metadata={"a": "b"})
    assert answer["code"] == 10200
    assert answer["clientBeatInterval"] == 5000
    assert answer["lightBeatEnabled"] is True
    listed = client.list_naming_instance("beat")
    assert endpoints(listed) == {(IP, 8400, "c1")}
    assert hosts(listed)[(IP, 8400)]["metadata"] == {"a": "b"}


def test_heartbeat_of_an_unknown_instance_registers_it(client_for):
    client = client_for("beats")
    answer = client.send_heartbeat(
        "ghost", IP2, 8500, cluster_name="c2", weight=4.0, metadata={"k": "v"}, group_name="G"
    )
    assert answer["code"] == 10200
    assert answer["clientBeatInterval"] == 5000
    listed = client.list_naming_instance("ghost", group_name="G")
    assert endpoints(listed) == {(IP2, 8500, "c2")}
    host = hosts(listed)[(IP2, 8500)]
    assert host["weight"] == 4.0
    assert host["metadata"] == {"k": "v"}
    assert host["healthy"] is True and host["enabled"] is True


def test_the_heartbeat_thread_runs_without_errors(client, node, caplog):
    caplog.set_level(logging.DEBUG, logger="nacos")
    assert client.add_naming_instance("auto", IP, 8600, cluster_name="c1", heartbeat_interval=1)
    beat_tasks = [t for t in threading.enumerate() if isinstance(t, HeartbeatTask)]
    assert len(beat_tasks) == 1
    try:
        first = _last_beat(node, "auto", "c1")
        deadline = time.monotonic() + 5
        while _last_beat(node, "auto", "c1") == first and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _last_beat(node, "auto", "c1") > first, "no beat reached the node"
        time.sleep(1.2)
        assert beat_tasks[0].is_alive()
        assert endpoints(client.list_naming_instance("auto")) == {(IP, 8600, "c1")}
    finally:
        assert client.remove_naming_instance("auto", IP, 8600, cluster_name="c1")
        beat_tasks[0].join(timeout=5)
    assert not beat_tasks[0].is_alive()
    assert client.list_naming_instance("auto")["hosts"] == []
    beat_answers = [r.getMessage() for r in caplog.records if "[send-heartbeat]" in r.getMessage()]
    assert beat_answers, "the heartbeat thread sent nothing"
    assert all("10200" in message for message in beat_answers if "server response" in message)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


def _last_beat(node, service: str, cluster: str) -> int:
    status, body = node.get(
        f"/nacos/v1/ns/catalog/instances?serviceName={service}&clusterName={cluster}&pageNo=1&pageSize=10"
    )
    assert status == 200, body
    (row,) = json.loads(body)["list"]
    return row["lastBeat"]


def test_console_namespaces_lists_the_namespaces_used(client_for, node):
    assert client_for().add_naming_instance("a", IP, 1000, cluster_name="c1")
    assert client_for("dev").add_naming_instance("a", IP, 1000, cluster_name="c1")
    assert client_for("team-b_2").add_naming_instance("a", IP, 1000, cluster_name="c1", group_name="G")
    status, body = node.get("/nacos/v1/console/namespaces")
    assert status == 200
    answer = json.loads(body)
    assert answer["code"] == 200
    listed = {(n["namespace"], n["namespaceShowName"], n["type"]) for n in answer["data"]}
    assert listed == {("", "public", 0), ("dev", "dev", 2), ("team-b_2", "team-b_2", 2)}
    assert answer["data"][0]["namespace"] == ""
