"""The shipped monitoring config: config/prometheus.yml and config/grafana/nacos-actors.json.

The dashboard may query only what a node exports (checked here against a fresh NodeMetrics, and
against a live node in tests/e2e/test_metrics.py); the scrape config must point at the Procfile
cluster's nodes and at the endpoints the node serves.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from nacos_actors.metrics import NodeMetrics
from nacos_actors.settings import parse_cluster_conf
from tests.grafana import equality_matchers, load_dashboard, metric_names, queries

REPO = Path(__file__).resolve().parents[1]
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created")}


class Counts:
    service_count = 1
    instance_count = 1


def exportable_names() -> set[str]:
    """Every sample name a node can export, whether or not a sample exists yet."""
    names = set()
    for family in NodeMetrics(CollectorRegistry(), Counts()).registry.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
    return names


def test_the_dashboard_queries_only_what_a_node_exports():
    exportable = exportable_names()
    for query in queries(load_dashboard()):
        names = metric_names(query.expr)
        assert names, (query.panel, query.expr)
        assert names <= exportable, (query.panel, names - exportable)


def test_the_dashboard_selects_nacos_monitor_names_a_node_exports():
    metrics = NodeMetrics(CollectorRegistry(), Counts())
    exported = [
        (sample.name, sample.labels)
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for sample in family.samples
    ]
    for query in queries(load_dashboard()):
        for metric, labels in equality_matchers(query.expr):
            if metric == "nacos_monitor":
                assert any(name == metric and labels.items() <= got.items() for name, got in exported), (
                    query.panel,
                    labels,
                )


def test_the_dashboard_covers_every_family_of_ours():
    queried = set().union(*(metric_names(q.expr) for q in queries(load_dashboard())))
    for family in NodeMetrics(CollectorRegistry(), Counts()).registry.collect():
        if family.name.startswith(("nacos_actors_", "nacos_")):
            assert any(name.startswith(family.name) for name in queried), family.name


def test_the_dashboard_is_importable_as_is():
    dashboard = load_dashboard()
    assert dashboard["id"] is None and dashboard["uid"] and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"job", "instance"} <= set(variables)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert 'instance=~"$instance"' in target["expr"] and 'job=~"$job"' in target["expr"], target["expr"]


def test_panels_do_not_overlap():
    cells: dict[tuple[int, int], str] = {}
    for panel in load_dashboard()["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]


def test_metric_names_of_promql():
    expr = 'histogram_quantile(0.99, sum by (le) (rate(a_bucket{job=~"$job",x="y"}[$__rate_interval]))) / on (i) b'
    assert metric_names(expr) == {"a_bucket", "b"}
    assert metric_names('sum(increase(c_total{name="rate"}[$__range])) > bool 1e3') == {"c_total"}
    assert equality_matchers('m{module="naming",name="ipCount",job=~"$job",z="$v",w!="q"}') == [
        ("m", {"module": "naming", "name": "ipCount"})
    ]


def test_the_prometheus_config_scrapes_the_procfile_cluster():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((REPO / "config" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    members = list(parse_cluster_conf((REPO / "config" / "cluster.conf").read_text()))
    nodes = jobs["nacos-actors"]
    assert nodes["metrics_path"] == "/nacos/actuator/prometheus"
    assert [t for group in nodes["static_configs"] for t in group["targets"]] == members
    (discovery,) = jobs["nacos-services"]["http_sd_configs"]
    url = urlsplit(discovery["url"])
    assert (url.scheme, url.netloc, url.path) == ("http", members[0], "/nacos/prometheus")
