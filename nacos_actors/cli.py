"""The `nacos-actors` command line. Runs on the main thread."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from nacos_actors import __version__
from nacos_actors.logs import configure_logging
from nacos_actors.settings import SettingsError, load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nacos-actors", description="A drop-in Nacos naming server.")
    parser.add_argument("--version", action="version", version=f"nacos-actors {__version__}")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run a node (the default command)")
    flag = serve.add_argument
    flag("--host", help="address to listen on (default 127.0.0.1; env NACOS_ACTORS_HOST)")
    flag("--port", help="HTTP port (default 8848; env NACOS_ACTORS_PORT)")
    flag("--context-path", dest="context_path", help="URL prefix (default /nacos; env NACOS_ACTORS_CONTEXT_PATH)")
    flag("--config", help="TOML settings file (env NACOS_ACTORS_CONFIG); see config/")
    flag("--data-dir", dest="data_dir", help="keep the registry here across clean restarts (env NACOS_ACTORS_DATA_DIR)")
    flag("--members", help="cluster members host:port,... (env NACOS_ACTORS_MEMBERS)")
    flag("--cluster-conf", dest="cluster_conf", help="Nacos cluster.conf file (env NACOS_ACTORS_CLUSTER_CONF)")
    flag("--max-body-bytes", dest="max_body_bytes", help="largest request body, else 413 (default 1048576)")
    flag("--request-timeout", dest="request_timeout", help="seconds a request waits for the registry (default 5)")
    flag(
        "--max-connections",
        dest="max_connections",
        help="open HTTP connections at most; one more replaces the longest idle, or gets 503 (default 4096)",
    )
    flag(
        "--header-timeout-ms",
        dest="header_timeout_ms",
        help="a request's headers must arrive within this, else 408 and close (default 10000)",
    )
    flag(
        "--idle-timeout-ms",
        dest="idle_timeout_ms",
        help="close a keep-alive connection idle this long (default 30000)",
    )
    flag(
        "--shutdown-timeout-ms",
        dest="shutdown_timeout_ms",
        help="SIGTERM/SIGINT/SIGHUP stop the node within about this (default 5000)",
    )
    flag("--log-level", dest="log_level", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    flag("--log-format", dest="log_format", help="text or json (one JSON object a line; default text)")
    flag("--access-log", dest="access_log", action="store_const", const=True, help="log every request")
    flag(
        "--list-memo-bytes",
        dest="list_memo_bytes",
        help="bytes of rendered instance/list answers kept, node-wide (default 33554432; 0: none)",
    )
    flag(
        "--rendered-instances-bytes",
        dest="rendered_instances_bytes",
        help="bytes of rendered instance JSON kept for reuse, per renderer (default 67108864; 0: no bound)",
    )
    flag(
        "--max-instance-metadata-bytes",
        dest="max_instance_metadata_bytes",
        help="largest metadata of an instance, UTF-8 bytes of keys and values (default 16384; 0: no limit)",
    )
    flag(
        "--max-service-metadata-bytes",
        dest="max_service_metadata_bytes",
        help="largest metadata of a service or of one of its clusters (default 16384; 0: no limit)",
    )
    flag(
        "--max-instances-per-service",
        dest="max_instances_per_service",
        help="instances one service may hold (default 10000; 0: no limit)",
    )
    flag(
        "--max-services-per-namespace",
        dest="max_services_per_namespace",
        help="services one namespace may hold (default 100000; 0: no limit)",
    )
    flag(
        "--health-check-enabled",
        dest="health_check_enabled",
        help="true/false: beat deadlines and active probes on (default true)",
    )
    flag("--expire-instances", dest="expire_instances", help="true/false: remove silent instances (default true)")
    flag(
        "--empty-service-auto-clean",
        dest="empty_service_auto_clean",
        help="true/false: delete empty services (default false)",
    )
    flag(
        "--empty-service-ttl-ms",
        dest="empty_service_ttl_ms",
        help="ms a service stays empty before cleanup (default 60000)",
    )
    flag("--push-enabled", dest="push_enabled", help="true/false: UDP push to subscribers (default true)")
    flag(
        "--push-window-ms", dest="push_window_ms", help="coalesce one service's changes within this window (default 5)"
    )
    flag(
        "--push-cache-ms",
        dest="push_cache_ms",
        help="cacheMillis told to subscribers; dropped after 1.5x without a poll (default 10000)",
    )
    flag(
        "--push-ack-timeout-ms",
        dest="push_ack_timeout_ms",
        help="first resend after this without an ack (default 1000)",
    )
    flag("--push-max-sends", dest="push_max_sends", help="sends of one packet before it counts as failed (default 3)")
    flag(
        "--push-trust-client-ip",
        dest="push_trust_client_ip",
        help="true/false: push to clientIP, not the source (default false)",
    )
    flag(
        "--push-max-subscribers-per-address",
        dest="push_max_subscribers_per_address",
        help="push subscribers from one address; more keep polling (default 1024)",
    )
    flag(
        "--push-max-subscribers-per-service",
        dest="push_max_subscribers_per_service",
        help="push subscribers of one service; more keep polling (default 10000)",
    )
    flag(
        "--push-max-subscribers",
        dest="push_max_subscribers",
        help="push subscribers in all; more keep polling (default 100000)",
    )
    flag(
        "--push-max-pending",
        dest="push_max_pending",
        help="pushes awaiting their ack; beyond, the oldest are dropped (default 65536)",
    )
    flag(
        "--push-receive-queue",
        dest="push_receive_queue",
        help="received datagrams on their way to the push actor; beyond, dropped (default 1024)",
    )
    flag(
        "--push-give-up-log-interval-ms",
        dest="push_give_up_log_interval_ms",
        help="one summary line per interval for pushes given up (default 60000)",
    )
    flag(
        "--push-grpc-ack-timeout-ms",
        dest="push_grpc_ack_timeout_ms",
        help="a gRPC push unanswered this long is sent again, up to --push-max-sends (default 5000)",
    )
    flag(
        "--push-max-subscribers-per-connection",
        dest="push_max_subscribers_per_connection",
        help="gRPC push subscriptions of one connection; more get no pushes (default 1024)",
    )
    flag(
        "--cluster-secret",
        dest="cluster_secret",
        help="shared secret members sign their calls with; required with more than one member (default none)",
    )
    flag(
        "--cluster-signature-window-ms",
        dest="cluster_signature_window_ms",
        help="a signed peer call is refused when its time is further than this from ours (default 5000)",
    )
    flag(
        "--member-report-interval-ms",
        dest="member_report_interval_ms",
        help="ms between status reports to each peer (default 500)",
    )
    flag(
        "--member-fail-threshold",
        dest="member_fail_threshold",
        help="failed reports in a row beyond which a peer is DOWN (default 3)",
    )
    flag(
        "--distro-sync-window-ms",
        dest="distro_sync_window_ms",
        help="at most one sync batch per peer per window (default 20)",
    )
    flag(
        "--distro-retry-delay-ms",
        dest="distro_retry_delay_ms",
        help="retry a failed sync batch after this (default 500)",
    )
    flag(
        "--distro-verify-interval-ms",
        dest="distro_verify_interval_ms",
        help="ms between verify digests to each peer (default 3000)",
    )
    flag(
        "--peer-max-body-bytes",
        dest="peer_max_body_bytes",
        help="largest body a peer endpoint takes, else 413 (default 268435456)",
    )
    flag(
        "--distro-quarantine-max-ms",
        dest="distro_quarantine_max_ms",
        help="cap of the backoff of a service whose sync keeps failing alone (default 60000)",
    )
    flag("--raft-port", dest="raft_port", help="this member's Raft port (default: HTTP port - 1000, 7848 for 8848)")
    flag(
        "--raft-fsync",
        dest="raft_fsync",
        help="sync the Raft journal before a write is acknowledged; false is for tests only (default true)",
    )
    flag(
        "--raft-election-timeout-ms",
        dest="raft_election_timeout_ms",
        help="a follower that hears no leader for this long (to twice this, at random) starts an election (default 400)",
    )
    flag(
        "--raft-proposal-timeout-ms",
        dest="raft_proposal_timeout_ms",
        help="a persistent write not committed in this time answers 503, outcome unknown (default 3000)",
    )
    flag(
        "--raft-max-pending",
        dest="raft_max_pending",
        help="persistent writes waiting for Raft at once; beyond, 503 (default 10000)",
    )
    flag(
        "--raft-snapshot-entries",
        dest="raft_snapshot_entries",
        help="the journal is compacted into a snapshot past this many entries (default 5000)",
    )
    flag(
        "--raft-ready-timeout-ms",
        dest="raft_ready_timeout_ms",
        help="at start, wait this long for Raft to catch up before serving (default 10000)",
    )
    flag("--grpc-port", dest="grpc_port", help="gRPC port for Nacos 2.x/3.x clients (default HTTP port + 1000; 0: off)")
    flag(
        "--grpc-max-receive-bytes",
        dest="grpc_max_receive_bytes",
        help="largest gRPC message a client may send (default 10485760)",
    )
    flag(
        "--grpc-max-connections",
        dest="grpc_max_connections",
        help="gRPC connections at most; more are refused with RESOURCE_EXHAUSTED (default 20000)",
    )
    flag(
        "--grpc-detect-idle-ms",
        dest="grpc_detect_idle_ms",
        help="ask a gRPC client silent this long whether it is alive (default 20000)",
    )
    flag(
        "--grpc-detect-timeout-ms",
        dest="grpc_detect_timeout_ms",
        help="evict a gRPC client that does not answer within this (default 5000)",
    )
    flag(
        "--grpc-max-instances-per-connection",
        dest="grpc_max_instances_per_connection",
        help="ephemeral instances one gRPC connection may register (default 10000)",
    )
    flag(
        "--grpc-max-subscriptions-per-connection",
        dest="grpc_max_subscriptions_per_connection",
        help="services one gRPC connection may subscribe to (default 10000)",
    )
    flag(
        "--grpc-stream-queue",
        dest="grpc_stream_queue",
        help="server requests queued per gRPC stream; more are dropped and counted (default 1024)",
    )
    flag(
        "--health-probe-interval-ms",
        dest="health_probe_interval_ms",
        help="probe each persistent instance this often, plus the jitter (default 2000)",
    )
    flag(
        "--health-probe-jitter-ms",
        dest="health_probe_jitter_ms",
        help="a random extra delay in [0, this) added to each probe interval (default 1000)",
    )
    flag(
        "--health-probe-timeout-ms", dest="health_probe_timeout_ms", help="a probe not done in this fails (default 500)"
    )
    flag(
        "--health-check-times",
        dest="health_check_times",
        help="consecutive probe results that change an instance's health (Nacos's checkTimes, default 3)",
    )
    flag(
        "--health-probe-max-in-flight",
        dest="health_probe_max_in_flight",
        help="probes running at once; more wait for a slot (default 1024)",
    )
    flag(
        "--health-probe-networks",
        dest="health_probe_networks",
        help="probe only instances in these comma-separated networks, e.g. 10.0.0.0/8 (default: any)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k != "command"}
    try:
        settings = load_settings(flags, os.environ)
    except SettingsError as error:
        print(f"nacos-actors: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    from nacos_actors.node import run_node

    return run_node(settings)


def entry_point() -> None:
    """The console script and `python -m nacos_actors`: run `main`, then leave at once, with
    its exit code whatever happened (SystemExit's code; 1 and the traceback on an error).

    By the time `main` returns every actor has stopped or been left behind and the registry is
    saved (with --data-dir). The process skips interpreter teardown: teardown would wait for
    every non-daemon thread (an executor thread busy with a peer's body, say) and free the
    registry object by object: about 3 s per 200k instances, past a supervisor's stop timeout
    at a million.
    """
    code = 1
    try:
        code = main()
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
