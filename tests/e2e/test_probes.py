"""Active probes of persistent instances on real node processes (issue 17).

Each test points persistent instances at servers it runs on 127.0.0.1 and watches the health
the node holds (GET /v1/ns/catalog/instances: /instance/list would hide an all-unhealthy
service behind the protect threshold). `probe verdict s: ...` lines (printed with -s) are the
measured times from closing or opening a server to every member showing the verdict.

Nacos's classification holds (docs/health-probes.md): a refused connection or an HTTP status
other than 503/302 fails an instance at the next probe; timeouts, 503 and a read-only MySQL
fail it after `health_check_times` consecutive results; as many successes revive it.
"""

from __future__ import annotations

import json
import signal
import time

import nacos
import pytest

from tests.e2e.probe_support import (
    HealthServer,
    Listener,
    health_of,
    monitor,
    register_persistent,
    set_checker,
    wait_for_health,
)
from tests.e2e.raft_support import send

pytestmark = pytest.mark.e2e

INTERVAL_MS = 2000  # the defaults: every 2 s plus up to 1 s, three results per verdict
JITTER_MS = 1000
CHECK_TIMES = 3
ROUND_S = (INTERVAL_MS + JITTER_MS) / 1000
SLACK_S = 2.0  # a probe's own time, the Raft commit, the poll


def report(what: str, seconds: float) -> None:
    print(f"probe verdict s: {what}: {seconds:.2f}")


def test_a_tcp_checked_instance_follows_its_listener(node, nacos_log_dir):
    listener = Listener().open()
    try:
        client = nacos.NacosClient(node.address, logDir=nacos_log_dir)
        assert client.add_naming_instance("db", "127.0.0.1", listener.port, cluster_name="DEFAULT", ephemeral=False)
        wait_for_health([node], "db", listener.port, True, 5)
        accepted = listener.accepted
        # Two rounds later it is still healthy, and it was probed meanwhile.
        wait_for_health([node], "db", listener.port, True, 1)
        before = monitor(node, "tcpHealthCheck")
        time.sleep(2 * ROUND_S)
        assert health_of(node, "db", listener.port) is True
        assert listener.accepted > accepted
        assert monitor(node, "tcpHealthCheck") > before

        listener.close()
        took = wait_for_health([node], "db", listener.port, False, ROUND_S + SLACK_S)
        report("TCP listener closed -> unhealthy (refused: at once)", took)

        listener.open()
        took = wait_for_health([node], "db", listener.port, True, CHECK_TIMES * ROUND_S + SLACK_S)
        assert took >= (CHECK_TIMES - 1) * INTERVAL_MS / 1000 - 0.5
        report("TCP listener reopened -> healthy (3 successes)", took)
    finally:
        listener.close()


def test_an_http_checker_gets_its_path_and_headers_and_fails_on_a_500(node):
    server = HealthServer(200)
    try:
        register_persistent(node, "web", server.port)
        set_checker(node, "web", {"type": "HTTP", "path": "/health?deep=1", "headers": "X-Probe:yes|Accept:text/plain"})
        wait_for_health([node], "web", server.port, True, 5)
        deadline = time.monotonic() + 2 * ROUND_S + SLACK_S
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        path, headers = server.requests[-1]
        assert path == "/health?deep=1"
        assert headers.get("X-Probe") == "yes" and headers.get("Accept") == "text/plain"
        assert monitor(node, "httpHealthCheck") > 0

        server.status = 500
        took = wait_for_health([node], "web", server.port, False, ROUND_S + SLACK_S)
        report("HTTP 500 -> unhealthy (at once)", took)

        server.status = 200
        took = wait_for_health([node], "web", server.port, True, CHECK_TIMES * ROUND_S + SLACK_S)
        report("HTTP 200 again -> healthy", took)

        server.status = 503
        took = wait_for_health([node], "web", server.port, False, CHECK_TIMES * ROUND_S + SLACK_S)
        assert took >= (CHECK_TIMES - 1) * INTERVAL_MS / 1000 - 0.5, "a 503 is a soft failure: three of them"
        report("HTTP 503 -> unhealthy (3 failures)", took)
    finally:
        server.close()


def test_none_leaves_health_to_the_operator_and_shows_the_checker_without_its_password(node):
    listener = Listener().open()
    try:
        register_persistent(node, "manual", listener.port)
        set_checker(node, "manual", {"type": "NONE"})
        status, body = send(
            node, "PUT", "/nacos/v1/ns/health/instance", serviceName="manual", ip="127.0.0.1",
            port=listener.port, healthy="false",
        )  # fmt: skip
        assert (status, body) == (200, b"ok")
        accepted = listener.accepted
        time.sleep(ROUND_S + 0.5)
        assert health_of(node, "manual", listener.port) is False, "a NONE checker must not probe"
        assert listener.accepted == accepted

        set_checker(node, "manual", {"type": "MYSQL", "user": "probe", "pwd": "s3cret", "cmd": "SELECT 1"})
        status, body = send(node, "GET", "/nacos/v1/ns/service", serviceName="manual")
        assert status == 200
        (cluster,) = json.loads(body)["clusters"]
        assert cluster["healthChecker"]["user"] == "probe"
        assert "s3cret" not in body.decode()
    finally:
        listener.close()


def test_health_check_enabled_false_turns_probes_off(start_node):
    node = start_node("--health-check-enabled", "false")
    register_persistent(node, "idle", 1)  # nothing listens on port 1
    time.sleep(ROUND_S + 0.5)
    assert health_of(node, "idle", 1) is True
    assert monitor(node, "tcpHealthCheck") == 0


def test_the_verdict_shows_on_every_member_and_the_next_owner_takes_over(start_cluster):
    cluster = start_cluster(3)
    nodes = cluster.nodes
    listener = Listener().open()
    try:
        register_persistent(nodes[0], "ha", listener.port)
        wait_for_health(nodes, "ha", listener.port, True, 5)
        listener.close()
        took = wait_for_health(nodes, "ha", listener.port, False, ROUND_S + SLACK_S)
        report("3 members: listener closed -> unhealthy everywhere", took)
        listener.open()
        took = wait_for_health(nodes, "ha", listener.port, True, CHECK_TIMES * ROUND_S + SLACK_S)
        report("3 members: listener reopened -> healthy everywhere", took)

        status, body = send(nodes[0], "GET", "/nacos/v1/ns/operator/distro/server", serviceName="DEFAULT_GROUP@@ha")
        assert status == 200, body
        owner = cluster.node_at(json.loads(body)["responsibleServer"])
        owner.stop(signal.SIGKILL)
        cluster.wait_settled()
        survivors = cluster.running
        listener.close()
        took = wait_for_health(survivors, "ha", listener.port, False, ROUND_S + SLACK_S)
        report("prober killed, listener closed -> unhealthy on both survivors", took)
    finally:
        listener.close()


def test_a_mysql_checker_fails_a_read_only_server_and_passes_it_once_writable(node, mariadb):
    port = mariadb.port
    register_persistent(node, "orders-db", port)
    # Nacos's master check (`cmd` empty: the read-only check), as the probe user.
    set_checker(node, "orders-db", {"type": "MYSQL", "user": mariadb.user, "pwd": mariadb.password, "cmd": ""})
    wait_for_health([node], "orders-db", port, True, 5)
    time.sleep(ROUND_S)
    assert health_of(node, "orders-db", port) is True
    assert monitor(node, "mysqlhealthCheck") > 0

    mariadb.set_read_only(True)
    took = wait_for_health([node], "orders-db", port, False, CHECK_TIMES * ROUND_S + SLACK_S)
    assert took >= (CHECK_TIMES - 1) * INTERVAL_MS / 1000 - 0.5, "read-only is a soft failure: three of them"
    report("MariaDB read_only=1 -> unhealthy (3 failures)", took)

    mariadb.set_read_only(False)
    took = wait_for_health([node], "orders-db", port, True, CHECK_TIMES * ROUND_S + SLACK_S)
    report("MariaDB read_only=0 -> healthy", took)

    # A wrong password is an SQL error: unhealthy at the next probe (Nacos's checkFailNow).
    set_checker(node, "orders-db", {"type": "MYSQL", "user": mariadb.user, "pwd": "not-the-password"})
    took = wait_for_health([node], "orders-db", port, False, ROUND_S + SLACK_S)
    report("MariaDB wrong password -> unhealthy (at once)", took)
