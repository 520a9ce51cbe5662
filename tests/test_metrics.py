"""NodeMetrics and its collectors, pure: a fresh CollectorRegistry per test, no node, no loop."""

from __future__ import annotations

import json
import logging
import queue
from io import StringIO
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from nacos_actors.core.peer_auth import REJECT_REASONS
from nacos_actors.core.probing import PROBE_KINDS, PROBE_OUTCOMES
from nacos_actors.logs import JsonFormatter, configure_logging, event
from nacos_actors.messages import (
    BeatInstance,
    CreateService,
    DeleteService,
    DeregisterInstance,
    ExpireInstance,
    MarkUnhealthy,
    PatchInstance,
    RegisterInstance,
    RemoveEmptyService,
    SetInstanceHealth,
    UpdateCluster,
    UpdateInstance,
    UpdateMetadataBatch,
    UpdateService,
    WriteBatch,
)
from nacos_actors.metrics import (
    BEAT_OUTCOMES,
    COMMAND_TYPES,
    CONTENT_TYPE,
    REQUEST_BUCKETS,
    PROBE_BUCKETS,
    LoopHistogram,
    NodeMetrics,
    ProbeRecorder,
    command_label,
    method_label,
)


class Counts:
    def __init__(self, services: int = 0, instances: int = 0) -> None:
        self.service_count = services
        self.instance_count = instances


def scrape(metrics: NodeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the text exposition: (sample name, sorted labels) -> value."""
    samples = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, sample_name: str, /, **labels: str) -> float:
    return samples[(sample_name, tuple(sorted(labels.items())))]


@pytest.fixture
def counts() -> Counts:
    return Counts()


@pytest.fixture
def metrics(counts) -> NodeMetrics:
    return NodeMetrics(CollectorRegistry(), counts)


def test_the_content_type_is_the_text_format_nacos_serves():
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_nacos_monitor_reads_the_counts_at_scrape_time(metrics, counts):
    samples = scrape(metrics)
    assert value(samples, "nacos_monitor", module="naming", name="serviceCount") == 0
    assert value(samples, "nacos_monitor", module="naming", name="ipCount") == 0
    counts.service_count, counts.instance_count = 3, 7
    samples = scrape(metrics)
    assert value(samples, "nacos_monitor", module="naming", name="serviceCount") == 3
    assert value(samples, "nacos_monitor", module="naming", name="ipCount") == 7


def test_leader_status_is_zero_as_in_nacos_once_its_old_raft_is_retired(metrics):
    assert value(scrape(metrics), "nacos_monitor", module="naming", name="leaderStatus") == 0


def test_nacos_monitor_is_a_gauge_with_nacos_labels_only(metrics):
    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}
    monitor = families["nacos_monitor"]
    assert monitor.type == "gauge"
    assert {s.labels["name"] for s in monitor.samples} == {
        "serviceCount",
        "ipCount",
        "leaderStatus",
        "subscriberCount",
        "totalPush",
        "failedPush",
        "avgPushCost",
        "maxPushCost",
        "pushPendingTaskCount",
        "tcpHealthCheck",
        "httpHealthCheck",
        "mysqlhealthCheck",
        "longConnection",
    }
    assert all(set(s.labels) == {"module", "name"} for s in monitor.samples)


def test_labelled_counters_start_at_zero_for_every_known_label(metrics):
    samples = scrape(metrics)
    for name in ("requestFailed", "actorFailed"):
        assert value(samples, "nacos_exception_total", module="naming", name=name) == 0
    for outcome in BEAT_OUTCOMES:
        assert value(samples, "nacos_actors_beats_total", outcome=outcome) == 0
    for kind in COMMAND_TYPES:
        for outcome in ("applied", "rejected"):
            labels = {"command": command_label(kind), "outcome": outcome}
            assert value(samples, "nacos_actors_registry_writes_total", **labels) == 0
    for reason in REJECT_REASONS:
        assert value(samples, "nacos_actors_peer_rejected_total", reason=reason) == 0


def test_every_command_type_has_its_write_counters():
    assert set(COMMAND_TYPES) == {
        RegisterInstance,
        DeregisterInstance,
        UpdateInstance,
        PatchInstance,
        BeatInstance,
        MarkUnhealthy,
        ExpireInstance,
        CreateService,
        UpdateService,
        DeleteService,
        RemoveEmptyService,
        UpdateMetadataBatch,
        UpdateCluster,
        SetInstanceHealth,
    }
    assert command_label(RegisterInstance) == "register_instance"
    assert command_label(UpdateMetadataBatch) == "update_metadata_batch"


def test_recording_shows_in_the_exposition(metrics):
    metrics.beats["revived"].inc()
    applied, rejected = metrics.write_counters()[DeleteService]
    rejected.inc()
    metrics.write_batch_size.observe(3)
    metrics.message_seconds("registry", WriteBatch).observe(0.002)
    metrics.request_seconds_child("/nacos/v1/ns/instance", "POST", 200).observe(0.003)
    metrics.exceptions_actor.inc()
    samples = scrape(metrics)
    assert value(samples, "nacos_actors_beats_total", outcome="revived") == 1
    assert value(samples, "nacos_actors_registry_writes_total", command="delete_service", outcome="rejected") == 1
    assert value(samples, "nacos_actors_registry_writes_total", command="delete_service", outcome="applied") == 0
    assert value(samples, "nacos_actors_registry_write_batch_size_count") == 1
    assert value(samples, "nacos_actors_registry_write_batch_size_bucket", le="4.0") == 1
    assert value(samples, "nacos_actors_registry_write_batch_size_bucket", le="2.0") == 0
    handled = "nacos_actors_actor_message_duration_seconds_count"
    assert value(samples, handled, actor="registry", message="WriteBatch") == 1
    labels = {"route": "/nacos/v1/ns/instance", "method": "POST", "status": "200"}
    assert value(samples, "nacos_actors_http_request_duration_seconds_count", **labels) == 1
    assert value(samples, "nacos_actors_http_request_duration_seconds_bucket", le="0.005", **labels) == 1
    assert value(samples, "nacos_actors_http_request_duration_seconds_bucket", le="0.0025", **labels) == 0
    assert value(samples, "nacos_exception_total", module="naming", name="actorFailed") == 1


def test_two_nodes_metrics_do_not_share_anything():
    first, second = NodeMetrics(CollectorRegistry(), Counts(1, 1)), NodeMetrics(CollectorRegistry(), Counts(2, 5))
    first.beats["recorded"].inc(5)
    assert value(scrape(first), "nacos_actors_beats_total", outcome="recorded") == 5
    assert value(scrape(second), "nacos_actors_beats_total", outcome="recorded") == 0
    assert value(scrape(second), "nacos_monitor", module="naming", name="ipCount") == 5


def test_mailbox_depth_is_read_at_scrape_time_for_watched_actors(metrics):
    inbox: queue.Queue = queue.Queue()
    metrics.mailboxes.watch("registry", SimpleNamespace(actor_inbox=inbox))  # type: ignore[arg-type]
    assert value(scrape(metrics), "nacos_actors_actor_mailbox_depth", actor="registry") == 0
    inbox.put("a")
    inbox.put("b")
    assert value(scrape(metrics), "nacos_actors_actor_mailbox_depth", actor="registry") == 2
    metrics.mailboxes.forget("registry")
    assert not [k for k in scrape(metrics) if k[0] == "nacos_actors_actor_mailbox_depth"]


def test_process_figures_are_exported(metrics):
    names = {name for name, _ in scrape(metrics)}
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "nacos_actors_process_threads",
        "python_gc_collections_total",
        "python_gc_objects_collected_total",
        "python_info",
    ):
        assert name in names
    assert value(scrape(metrics), "nacos_actors_process_threads") >= 1


def test_our_metric_names_carry_the_prefix_and_a_unit_and_have_help(metrics):
    ours = [f for f in metrics.registry.collect() if f.name.startswith("nacos_actors_")]
    assert {f.name for f in ours} == {
        "nacos_actors_actor_mailbox_depth",
        "nacos_actors_process_threads",
        "nacos_actors_http_request_duration_seconds",
        "nacos_actors_beats",
        "nacos_actors_registry_writes",
        "nacos_actors_registry_write_batch_size",
        "nacos_actors_actor_message_duration_seconds",
        "nacos_actors_health_transitions",
        "nacos_actors_push_delay_seconds",
        "nacos_actors_push_ack_seconds",
        "nacos_actors_pushes",
        "nacos_actors_push_sends",
        "nacos_actors_push_send_errors",
        "nacos_actors_push_datagrams_received",
        "nacos_actors_push_subscriptions_refused",
        "nacos_actors_grpc_push_delay_seconds",
        "nacos_actors_grpc_push_ack_seconds",
        "nacos_actors_grpc_pushes",
        "nacos_actors_grpc_push_answers_unmatched",
        "nacos_actors_grpc_push_subscriptions_refused",
        "nacos_actors_member_state",
        "nacos_actors_member_state_changes",
        "nacos_actors_distro_batches",
        "nacos_actors_distro_batch_services",
        "nacos_actors_distro_sync_lag_seconds",
        "nacos_actors_distro_verify_repairs",
        "nacos_actors_distro_batch_splits",
        "nacos_actors_distro_quarantines",
        "nacos_actors_distro_quarantined_services",
        "nacos_actors_distro_forwarded_requests",
        "nacos_actors_distro_replicated_services",
        "nacos_actors_peer_rejected",
        "nacos_actors_connections_open",
        "nacos_actors_connections_rejected",
        "nacos_actors_connections_idle_closed",
        "nacos_actors_raft_term",
        "nacos_actors_raft_role",
        "nacos_actors_raft_commit_index",
        "nacos_actors_raft_applied_index",
        "nacos_actors_raft_log_entries",
        "nacos_actors_raft_journal_bytes",
        "nacos_actors_raft_snapshot_bytes",
        "nacos_actors_raft_snapshot_seconds",
        "nacos_actors_raft_ready",
        "nacos_actors_raft_proposals",
        "nacos_actors_raft_proposal_duration_seconds",
        "nacos_actors_raft_snapshots",
        "nacos_actors_grpc_connections",
        "nacos_actors_grpc_client_versions",
        "nacos_actors_grpc_requests",
        "nacos_actors_grpc_request_seconds",
        "nacos_actors_grpc_connections_closed",
        "nacos_actors_grpc_connections_refused",
        "nacos_actors_grpc_stream_dropped",
        "nacos_actors_health_probes",
        "nacos_actors_health_probe_seconds",
        "nacos_actors_health_probe_verdicts",
        "nacos_actors_health_probes_in_flight",
        "nacos_actors_health_probe_targets",
    }
    for family in ours:
        assert family.documentation.strip(), family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)


# -- active probes ---------------------------------------------------------------------------


ACTIVE_CHECKS = {"TCP": "tcpHealthCheck", "HTTP": "httpHealthCheck", "MYSQL": "mysqlhealthCheck"}


def test_probe_series_exist_at_zero_for_every_type_outcome_and_verdict(metrics):
    samples = scrape(metrics)
    assert set(PROBE_KINDS) == set(ACTIVE_CHECKS)
    for kind in PROBE_KINDS:
        for outcome in PROBE_OUTCOMES:
            assert value(samples, "nacos_actors_health_probes_total", type=kind, outcome=outcome) == 0
        for verdict in ("healthy", "unhealthy"):
            assert value(samples, "nacos_actors_health_probe_verdicts_total", type=kind, verdict=verdict) == 0
        assert value(samples, "nacos_actors_health_probe_seconds_count", type=kind) == 0
        assert value(samples, "nacos_monitor", module="naming", name=ACTIVE_CHECKS[kind]) == 0
    assert value(samples, "nacos_actors_health_probes_in_flight") == 0
    assert value(samples, "nacos_actors_health_probe_targets") == 0


def test_probe_latency_buckets_span_half_a_millisecond_to_five_seconds():
    assert PROBE_BUCKETS[0] == 0.0005 and PROBE_BUCKETS[-1] == 5.0
    assert list(PROBE_BUCKETS) == sorted(set(PROBE_BUCKETS))


def test_recorded_probes_show_in_the_exposition_and_in_nacos_monitor(metrics):
    recorder: ProbeRecorder = metrics.probes
    for _ in range(3):
        recorder.probe_started("TCP")
    recorder.probe_started("HTTP")
    recorder.probe_finished("TCP", "ok", 0.0007)
    recorder.probe_finished("TCP", "refused", 0.0002)
    recorder.probe_finished("HTTP", "timeout", 0.5)
    recorder.verdict("TCP", False)
    recorder.verdict("HTTP", True)
    recorder.figures(in_flight=2, targets=7)
    samples = scrape(metrics)
    assert value(samples, "nacos_monitor", module="naming", name="tcpHealthCheck") == 3
    assert value(samples, "nacos_monitor", module="naming", name="httpHealthCheck") == 1
    assert value(samples, "nacos_monitor", module="naming", name="mysqlhealthCheck") == 0
    assert value(samples, "nacos_actors_health_probes_total", type="TCP", outcome="ok") == 1
    assert value(samples, "nacos_actors_health_probes_total", type="TCP", outcome="refused") == 1
    assert value(samples, "nacos_actors_health_probes_total", type="HTTP", outcome="timeout") == 1
    assert value(samples, "nacos_actors_health_probes_total", type="MYSQL", outcome="ok") == 0
    assert value(samples, "nacos_actors_health_probe_seconds_count", type="TCP") == 2
    assert value(samples, "nacos_actors_health_probe_seconds_bucket", type="TCP", le="0.0005") == 1
    assert value(samples, "nacos_actors_health_probe_seconds_bucket", type="TCP", le="0.001") == 2
    assert value(samples, "nacos_actors_health_probe_seconds_bucket", type="HTTP", le="0.25") == 0
    assert value(samples, "nacos_actors_health_probe_seconds_bucket", type="HTTP", le="0.5") == 1
    assert value(samples, "nacos_actors_health_probe_verdicts_total", type="TCP", verdict="unhealthy") == 1
    assert value(samples, "nacos_actors_health_probe_verdicts_total", type="TCP", verdict="healthy") == 0
    assert value(samples, "nacos_actors_health_probe_verdicts_total", type="HTTP", verdict="healthy") == 1
    assert value(samples, "nacos_actors_health_probes_in_flight") == 2
    assert value(samples, "nacos_actors_health_probe_targets") == 7
    recorder.figures(in_flight=0, targets=6)
    samples = scrape(metrics)
    assert value(samples, "nacos_actors_health_probes_in_flight") == 0
    assert value(samples, "nacos_actors_health_probe_targets") == 6


def test_a_probe_kind_or_outcome_outside_the_known_ones_makes_no_series(metrics):
    before = scrape(metrics)
    metrics.probes.probe_started("NONE")
    metrics.probes.probe_finished("NONE", "ok", 0.1)
    metrics.probes.probe_finished("TCP", "surprise", 0.1)
    metrics.probes.verdict("NONE", True)
    after = scrape(metrics)
    assert set(after) == set(before)
    assert value(after, "nacos_actors_health_probe_seconds_count", type="TCP") == 0


def test_probe_counts_are_per_node():
    first, second = NodeMetrics(CollectorRegistry(), Counts()), NodeMetrics(CollectorRegistry(), Counts())
    first.probes.probe_started("MYSQL")
    assert value(scrape(first), "nacos_monitor", module="naming", name="mysqlhealthCheck") == 1
    assert value(scrape(second), "nacos_monitor", module="naming", name="mysqlhealthCheck") == 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(PROBE_KINDS), max_size=60))
def test_nacos_monitor_active_checks_count_every_probe_started(kinds):
    metrics = NodeMetrics(CollectorRegistry(), Counts())
    for kind in kinds:
        metrics.probes.probe_started(kind)
    samples = scrape(metrics)
    for kind, name in ACTIVE_CHECKS.items():
        assert value(samples, "nacos_monitor", module="naming", name=name) == kinds.count(kind)


@pytest.mark.parametrize(("method", "label"), [("GET", "GET"), ("PATCH", "PATCH"), ("FOO", "other"), ("get", "other")])
def test_method_labels_are_bounded(method, label):
    assert method_label(method) == label


# -- logs ------------------------------------------------------------------------------------


def _record(message: str, *args, extra=None, exc_info=None) -> logging.LogRecord:
    logger = logging.getLogger("nacos_actors.test")
    return logger.makeRecord(logger.name, logging.INFO, __file__, 1, message, args, exc_info, extra=extra)


def test_a_json_line_has_the_core_keys_and_the_event_fields():
    extra = event("register", namespace="public", service="DEFAULT_GROUP@@a", ip="127.0.0.1", port=80, ephemeral=True)
    line = json.loads(JsonFormatter().format(_record("registered %s", "x", extra=extra)))
    assert line.pop("timestamp").endswith("Z")
    assert line == {
        "level": "INFO",
        "logger": "nacos_actors.test",
        "message": "registered x",
        "event": "register",
        "namespace": "public",
        "service": "DEFAULT_GROUP@@a",
        "ip": "127.0.0.1",
        "port": 80,
        "ephemeral": True,
    }


def test_event_fields_never_replace_the_core_keys_and_odd_values_become_text():
    extra = event("x", message="spoof", level="spoof", when=object.__new__(Counts))
    line = json.loads(JsonFormatter().format(_record("real", extra=extra)))
    assert (line["message"], line["level"], line["event"]) == ("real", "INFO", "x")
    assert "Counts" in line["when"]


def test_a_json_line_carries_the_traceback():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record = _record("failed", exc_info=sys.exc_info())
    text = JsonFormatter().format(record)
    assert "\n" not in text
    line = json.loads(text)
    assert line["message"] == "failed" and "RuntimeError: boom" in line["exception"]


def test_configure_logging_in_json(monkeypatch):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    stream = StringIO()
    configure_logging("INFO", "json", stream)
    logging.getLogger("nacos_actors.x").info("hello %d", 1, extra=event("hi", n=1))
    logging.getLogger("nacos_actors.x").debug("hidden")
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert (line["message"], line["event"], line["n"], line["logger"]) == ("hello 1", "hi", 1, "nacos_actors.x")


def test_configure_logging_in_text(monkeypatch):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    stream = StringIO()
    configure_logging("WARNING", "text", stream)
    logging.getLogger("nacos_actors.x").warning("careful", extra=event("w", n=1))
    logging.getLogger("nacos_actors.x").info("hidden")
    (line,) = stream.getvalue().splitlines()
    assert line.endswith(" WARNING nacos_actors.x careful")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=30, allow_nan=False), max_size=40))
def test_the_loop_histogram_exports_what_a_prometheus_histogram_would(values):
    """LoopHistogram (lock-free, one writer) keeps prometheus_client's Histogram semantics."""
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = LoopHistogram("h_seconds", "h", ("route",), REQUEST_BUCKETS, ours_registry)
    theirs = Histogram("h_seconds", "h", ["route"], registry=theirs_registry, buckets=REQUEST_BUCKETS)
    for value in values:
        ours.labels("/r").observe(value)
        theirs.labels("/r").observe(value)

    def samples(registry):
        return sorted(
            (s.name, tuple(sorted(s.labels.items())), round(s.value, 9))
            for family in registry.collect()
            for s in family.samples
            if not s.name.endswith("_created")
        )

    assert samples(ours_registry) == samples(theirs_registry)
