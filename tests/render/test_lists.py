"""The instance list's rendered-instance cache: owned by whoever renders, reused while an
Instance object lives on in snapshots, bounded, and never changing a byte of the answer."""

from __future__ import annotations

from dataclasses import replace

from prometheus_client import CollectorRegistry

from nacos_actors.core.registry import RegistryCore
from nacos_actors.http.front import Front
from nacos_actors.metrics import NodeMetrics
from nacos_actors.model import Instance, Service, ServiceKey, freeze, instance_map
from nacos_actors.render.lists import RenderedInstances, instance_list, list_body
from nacos_actors.settings import Settings

KEY = ServiceKey("public", "DEFAULT_GROUP@@demo")


def service(instances: list[Instance], revision: int = 1) -> Service:
    return Service(key=KEY, instances=instance_map(instances), revision=revision, modified_ms=1000 + revision)


def hosts(count: int) -> list[Instance]:
    return [Instance(ip=f"10.0.0.{i}", port=8080, metadata=freeze({"zone": "a"})) for i in range(1, count + 1)]


def body(snapshot: Service, rendered: RenderedInstances | None) -> bytes:
    return list_body(snapshot, KEY, "", (), False, True, 10_000, 0, rendered)


def test_the_same_bytes_with_a_cache_without_one_and_with_a_warm_one():
    snapshot = service(hosts(5))
    rendered = RenderedInstances()
    fresh = body(snapshot, None)
    assert body(snapshot, rendered) == fresh
    assert body(snapshot, rendered) == fresh  # warm


def test_a_new_snapshot_reuses_what_its_unchanged_instances_rendered_to():
    instances = hosts(3)
    rendered = RenderedInstances()
    body(service(instances), rendered)
    kept = {i.ip: rendered.host(i, True, KEY.name) for i in instances}
    changed = replace(instances[0], weight=2.0)
    next_snapshot = service([changed, *instances[1:]], revision=2)
    assert body(next_snapshot, rendered) == body(next_snapshot, None)
    assert rendered.host(instances[1], True, KEY.name) is kept[instances[1].ip]
    assert rendered.host(changed, True, KEY.name) is not kept[changed.ip]


def test_two_renderers_share_nothing():
    instance = hosts(1)[0]
    first, second = RenderedInstances(), RenderedInstances()
    assert first.host(instance, True, KEY.name) is not second.host(instance, True, KEY.name)


def test_it_starts_afresh_past_its_limit():
    first, *others = hosts(3)
    rendered = RenderedInstances(limit=2)
    fragment = rendered.host(first, True, KEY.name)
    assert rendered.host(first, True, KEY.name) is fragment
    for instance in others:
        rendered.host(instance, True, KEY.name)
    assert rendered.host(first, True, KEY.name) is not fragment


def test_each_front_owns_its_cache_and_the_list_answer_uses_it():
    core = RegistryCore()
    metrics = NodeMetrics(CollectorRegistry(), core)
    fronts = [Front(Settings(), None, core, metrics) for _ in range(2)]  # type: ignore[arg-type]
    assert fronts[0].rendered is not fronts[1].rendered
    instance = hosts(1)[0]
    snapshot = service([instance])
    answer, compressed = instance_list(snapshot, KEY, "", (), False, True, 10_000, 0, False, fronts[0].rendered)
    assert not compressed and answer == body(snapshot, None)
    assert (True, KEY.name) in fronts[0].rendered.of(instance).hosts
    assert (True, KEY.name) not in fronts[1].rendered.of(instance).hosts
