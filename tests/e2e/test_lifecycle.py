"""The node process: start, probes, clean stop on signals, restart from --data-dir, bad input."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from nacos_actors import __version__
from tests.e2e.conftest import HOST, REPO, clean_environment, free_port

pytestmark = pytest.mark.e2e

NS = "/nacos/v1/ns"


def register(node, service: str, ip: str, port: int, **extra: str) -> None:
    query = "&".join(f"{k}={v}" for k, v in {"serviceName": service, "ip": ip, "port": port, **extra}.items())
    request = urllib.request.Request(node.url(f"{NS}/instance?{query}"), method="POST")
    with urllib.request.urlopen(request, timeout=2) as response:
        assert response.read() == b"ok"


def listed(node, service: str, **extra: str) -> dict:
    query = "&".join(f"{k}={v}" for k, v in {"serviceName": service, **extra}.items())
    status, body = node.get(f"{NS}/instance/list?{query}")
    assert status == 200, body
    return json.loads(body)


def run_cli(*args: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    """`python -m nacos_actors ...` to completion (only for commands that end by themselves)."""
    return subprocess.run(
        [sys.executable, "-m", "nacos_actors", *args],
        cwd=REPO,
        env=clean_environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_node_cleanly(start_node, signum):
    node = start_node()
    register(node, "svc", "127.0.0.1", 8080)
    assert node.stop(signum) == 0
    assert "Traceback" not in node.stderr()
    with pytest.raises(OSError):
        socket.create_connection((HOST, node.port), timeout=1).close()


def test_open_connections_do_not_hold_up_the_stop(node):
    """An idle keep-alive connection and a half-sent request: SIGTERM still ends it promptly."""
    idle = http.client.HTTPConnection(HOST, node.port, timeout=2)
    idle.request("GET", "/nacos/v1/console/health/liveness")
    assert idle.getresponse().read() == b"OK"
    half = socket.create_connection((HOST, node.port), timeout=2)
    try:
        half.sendall(b"GET /nacos/v1/console/health/liveness HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert node.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 3
    finally:
        half.close()
        idle.close()


def test_probes_answer_200(node):
    assert node.get("/nacos/v1/console/health/readiness") == (200, b"OK")
    assert node.get("/nacos/v1/console/health/liveness") == (200, b"OK")
    status, body = node.get(f"{NS}/operator/metrics")
    assert status == 200
    assert json.loads(body)["status"] == "UP"


def test_data_dir_keeps_the_registry_across_a_clean_restart(start_node, tmp_path):
    data = tmp_path / "data"
    first = start_node("--data-dir", str(data))
    register(first, "kept", "127.0.0.1", 8080, clusterName="c1", weight="3", metadata='{"k":"v"}')
    register(first, "kept", "127.0.0.2", 8080, namespaceId="dev", groupName="G")
    assert first.stop(signal.SIGTERM) == 0
    assert any(data.iterdir()), "nothing saved in the data directory"
    # the process leaves without interpreter teardown: its last log lines must still be there
    assert "saved 2 services, 2 instances" in first.stderr()

    second = start_node("--data-dir", str(data))
    hosts = listed(second, "kept")["hosts"]
    assert [(h["ip"], h["port"], h["clusterName"], h["weight"], h["metadata"]) for h in hosts] == [
        ("127.0.0.1", 8080, "c1", 3.0, {"k": "v"})
    ]
    other = listed(second, "kept", namespaceId="dev", groupName="G")["hosts"]
    assert [(h["ip"], h["port"]) for h in other] == [("127.0.0.2", 8080)]


def test_without_data_dir_a_restart_starts_empty(start_node):
    first = start_node()
    register(first, "gone", "127.0.0.1", 8080)
    assert first.stop() == 0
    second = start_node()
    assert listed(second, "gone")["hosts"] == []


def test_a_port_in_use_exits_non_zero_with_a_readable_error(start_node):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = start_node(port=port, wait=False)
        code = node.wait_exit()
    assert code != 0
    stderr = node.stderr()
    assert f"{HOST}:{port}" in stderr
    assert "address already in use" in stderr.lower()
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--port", "0"], "port"),
        (["--port", "http"], "port"),
        (["--members", "nonsense:xx"], "members"),
        (["--host", "not a host"], "host"),
        (["--config", "/nonexistent/nacos-actors.toml"], "config"),
        (["--log-level", "LOUD"], "log_level"),
        (["--request-timeout", "0"], "request_timeout"),
        (["--max-body-bytes", "-1"], "max_body_bytes"),
        (["--members", "127.0.0.1:8848", "--cluster-conf", "config/cluster.conf"], "--cluster-conf"),
    ],
)
def test_bad_settings_exit_2_naming_the_setting(args, named):
    done = run_cli("serve", *args)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr
    assert done.stderr.startswith("nacos-actors: ")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--members", "127.0.0.1:18848,127.0.0.1:18849", "--port", "18848"],
        ["--cluster-conf", "config/cluster.conf"],
    ],
)
def test_a_cluster_member_without_a_secret_refuses_to_start(args):
    # Issue 14: without a secret any local process could act as a member.
    done = run_cli("serve", *args)
    assert done.returncode == 1, done.stderr
    for way in ("--cluster-secret", "NACOS_ACTORS_CLUSTER_SECRET", "cluster_secret"):
        assert way in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreadable_or_invalid_config_exits_2(tmp_path):
    unreadable = tmp_path / "a-directory.toml"
    unreadable.mkdir()
    done = run_cli("serve", "--config", str(unreadable))
    assert done.returncode == 2
    assert done.stderr.startswith(f"nacos-actors: config: cannot read {unreadable}")

    invalid = tmp_path / "invalid.toml"
    invalid.write_text("port = \n")
    done = run_cli("serve", "--config", str(invalid))
    assert done.returncode == 2
    assert done.stderr.startswith(f"nacos-actors: config: {invalid} is not valid TOML")

    bad_value = tmp_path / "bad-value.toml"
    bad_value.write_text("port = 70000\n")
    done = run_cli("serve", "--config", str(bad_value))
    assert done.returncode == 2
    assert "port" in done.stderr and "70000" in done.stderr


def test_an_unknown_flag_exits_2():
    done = run_cli("serve", "--no-such-flag")
    assert done.returncode == 2
    assert "--no-such-flag" in done.stderr


def test_version():
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"nacos-actors {__version__}"


def test_settings_from_the_environment_reach_the_node(start_node):
    port = free_port()
    command = [sys.executable, "-m", "nacos_actors", "serve"]
    node = start_node(command=command, port=port, env={"NACOS_ACTORS_PORT": str(port), "NACOS_ACTORS_GRPC_PORT": "0"})
    assert node.get("/nacos/v1/console/health/liveness")[0] == 200


def test_scripts_serve_starts_a_node(start_node):
    port = free_port()
    command = [str(REPO / "scripts" / "serve"), "--port", str(port), "--grpc-port", str(free_port())]
    node = start_node(command=command, port=port)
    register(node, "via-script", "127.0.0.1", 8080)
    assert [h["ip"] for h in listed(node, "via-script")["hosts"]] == ["127.0.0.1"]
    assert node.stop(signal.SIGTERM) == 0
