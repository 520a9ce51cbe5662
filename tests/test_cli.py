"""The command line in-process, only on paths that end before a server starts."""

from __future__ import annotations

import os

import pytest

from nacos_actors import __version__
from nacos_actors.cli import build_parser, main


def test_serve_flags_parse_to_setting_names():
    args = build_parser().parse_args(
        [
            "serve",
            "--host", "127.0.0.1",
            "--port", "8849",
            "--context-path", "/nacos",
            "--config", "config/nacos-actors.toml",
            "--data-dir", "/tmp/d",
            "--members", "127.0.0.1:8848",
            "--max-body-bytes", "10",
            "--request-timeout", "2",
            "--max-connections", "100",
            "--header-timeout-ms", "2000",
            "--idle-timeout-ms", "3000",
            "--shutdown-timeout-ms", "4000",
            "--log-level", "DEBUG",
            "--log-format", "json",
            "--access-log",
            "--list-memo-bytes", "0",
            "--rendered-instances-bytes", "5",
            "--max-instance-metadata-bytes", "100",
            "--max-service-metadata-bytes", "200",
            "--max-instances-per-service", "3",
            "--max-services-per-namespace", "4",
            "--health-check-enabled", "false",
            "--expire-instances", "false",
            "--empty-service-auto-clean", "true",
            "--empty-service-ttl-ms", "5000",
            "--push-enabled", "false",
            "--push-window-ms", "0",
            "--push-cache-ms", "20000",
            "--push-ack-timeout-ms", "500",
            "--push-max-sends", "2",
            "--push-trust-client-ip", "true",
            "--push-max-subscribers-per-address", "8",
            "--push-max-subscribers-per-service", "9",
            "--push-max-subscribers", "10",
            "--push-max-pending", "11",
            "--push-receive-queue", "12",
            "--push-give-up-log-interval-ms", "1000",
            "--push-grpc-ack-timeout-ms", "700",
            "--push-max-subscribers-per-connection", "13",
            "--cluster-secret", "s3cret-s3cret",
            "--cluster-signature-window-ms", "2000",
            "--member-report-interval-ms", "250",
            "--member-fail-threshold", "2",
            "--distro-sync-window-ms", "10",
            "--distro-retry-delay-ms", "100",
            "--distro-verify-interval-ms", "1000",
            "--peer-max-body-bytes", "2048",
            "--distro-quarantine-max-ms", "5000",
            "--raft-port", "7849",
            "--raft-fsync", "false",
            "--raft-election-timeout-ms", "300",
            "--raft-proposal-timeout-ms", "2000",
            "--raft-max-pending", "13",
            "--raft-snapshot-entries", "14",
            "--raft-ready-timeout-ms", "15",
            "--grpc-port", "9849",
            "--grpc-max-receive-bytes", "4096",
            "--grpc-max-connections", "16",
            "--grpc-detect-idle-ms", "1000",
            "--grpc-detect-timeout-ms", "500",
            "--grpc-max-instances-per-connection", "17",
            "--grpc-max-subscriptions-per-connection", "18",
            "--grpc-stream-queue", "19",
            "--health-probe-interval-ms", "1500",
            "--health-probe-jitter-ms", "0",
            "--health-probe-timeout-ms", "250",
            "--health-check-times", "2",
            "--health-probe-max-in-flight", "20",
            "--health-probe-networks", "127.0.0.0/8",
        ]
    )
    assert vars(args) == {
        "command": "serve",
        "host": "127.0.0.1",
        "port": "8849",
        "context_path": "/nacos",
        "config": "config/nacos-actors.toml",
        "data_dir": "/tmp/d",
        "members": "127.0.0.1:8848",
        "cluster_conf": None,
        "max_body_bytes": "10",
        "request_timeout": "2",
        "max_connections": "100",
        "header_timeout_ms": "2000",
        "idle_timeout_ms": "3000",
        "shutdown_timeout_ms": "4000",
        "log_level": "DEBUG",
        "log_format": "json",
        "access_log": True,
        "list_memo_bytes": "0",
        "rendered_instances_bytes": "5",
        "max_instance_metadata_bytes": "100",
        "max_service_metadata_bytes": "200",
        "max_instances_per_service": "3",
        "max_services_per_namespace": "4",
        "health_check_enabled": "false",
        "expire_instances": "false",
        "empty_service_auto_clean": "true",
        "empty_service_ttl_ms": "5000",
        "push_enabled": "false",
        "push_window_ms": "0",
        "push_cache_ms": "20000",
        "push_ack_timeout_ms": "500",
        "push_max_sends": "2",
        "push_trust_client_ip": "true",
        "push_max_subscribers_per_address": "8",
        "push_max_subscribers_per_service": "9",
        "push_max_subscribers": "10",
        "push_max_pending": "11",
        "push_receive_queue": "12",
        "push_give_up_log_interval_ms": "1000",
        "push_grpc_ack_timeout_ms": "700",
        "push_max_subscribers_per_connection": "13",
        "cluster_secret": "s3cret-s3cret",
        "cluster_signature_window_ms": "2000",
        "member_report_interval_ms": "250",
        "member_fail_threshold": "2",
        "distro_sync_window_ms": "10",
        "distro_retry_delay_ms": "100",
        "distro_verify_interval_ms": "1000",
        "peer_max_body_bytes": "2048",
        "distro_quarantine_max_ms": "5000",
        "raft_port": "7849",
        "raft_fsync": "false",
        "raft_election_timeout_ms": "300",
        "raft_proposal_timeout_ms": "2000",
        "raft_max_pending": "13",
        "raft_snapshot_entries": "14",
        "raft_ready_timeout_ms": "15",
        "grpc_port": "9849",
        "grpc_max_receive_bytes": "4096",
        "grpc_max_connections": "16",
        "grpc_detect_idle_ms": "1000",
        "grpc_detect_timeout_ms": "500",
        "grpc_max_instances_per_connection": "17",
        "grpc_max_subscriptions_per_connection": "18",
        "grpc_stream_queue": "19",
        "health_probe_interval_ms": "1500",
        "health_probe_jitter_ms": "0",
        "health_probe_timeout_ms": "250",
        "health_check_times": "2",
        "health_probe_max_in_flight": "20",
        "health_probe_networks": "127.0.0.0/8",
    }


def test_flags_not_given_are_none():
    args = vars(build_parser().parse_args(["serve"]))
    assert args.pop("command") == "serve"
    assert set(args.values()) == {None}


@pytest.fixture(autouse=True)
def no_settings_from_the_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("NACOS_ACTORS_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["serve", "--port", "0"], "port"),
        (["serve", "--port", "x"], "port"),
        (["serve", "--host", "no such host!"], "host"),
        (["serve", "--members", "nonsense:xx"], "members"),
        (["serve", "--cluster-conf", "/nonexistent/cluster.conf"], "cluster_conf"),
        (["serve", "--config", "/nonexistent/nacos-actors.toml"], "config"),
        (["serve", "--log-level", "chatty"], "log_level"),
        (["serve", "--log-format", "xml"], "log_format"),
        (["serve", "--request-timeout", "-1"], "request_timeout"),
        (["serve", "--max-body-bytes", "big"], "max_body_bytes"),
        (["serve", "--peer-max-body-bytes", "0"], "peer_max_body_bytes"),
        (["serve", "--push-max-subscribers-per-address", "0"], "push_max_subscribers_per_address"),
        (["serve", "--push-receive-queue", "many"], "push_receive_queue"),
        (["serve", "--distro-quarantine-max-ms", "5"], "distro_quarantine_max_ms"),
        (["serve", "--context-path", "/a b"], "context_path"),
        (["serve", "--max-connections", "0"], "max_connections"),
        (["serve", "--header-timeout-ms", "10"], "header_timeout_ms"),
        (["serve", "--idle-timeout-ms", "soon"], "idle_timeout_ms"),
        (["serve", "--shutdown-timeout-ms", "100"], "shutdown_timeout_ms"),
        (["serve", "--health-probe-interval-ms", "99"], "health_probe_interval_ms"),
        (["serve", "--health-probe-jitter-ms", "-1"], "health_probe_jitter_ms"),
        (["serve", "--health-probe-timeout-ms", "60001"], "health_probe_timeout_ms"),
        (["serve", "--health-check-times", "0"], "health_check_times"),
        (["serve", "--health-probe-max-in-flight", "lots"], "health_probe_max_in_flight"),
        (["serve", "--members", "127.0.0.1", "--cluster-conf", "config/cluster.conf"], "--cluster-conf"),
    ],
)
def test_bad_settings_return_2_naming_the_setting(argv, named, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("nacos-actors: ")
    assert named in err


def test_a_bad_setting_from_the_environment_returns_2(monkeypatch, capsys):
    monkeypatch.setenv("NACOS_ACTORS_PORT", "99999")
    assert main(["serve"]) == 2
    assert "environment port: 99999 is not in 1..65535" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["serve", "--no-such-flag"], ["serve", "--port"], ["launch"], ["--port", "1"], ["serve", "extra"]],
)
def test_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage: nacos-actors" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"nacos-actors {__version__}"


def test_help_lists_the_serve_flags(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--config", "--data-dir", "--members", "--cluster-conf", "--access-log"):
        assert flag in out
