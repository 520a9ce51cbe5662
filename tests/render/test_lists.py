"""The instance list's two caches. The rendered-instance cache: owned by whoever renders,
reused while an Instance object lives on in snapshots, forgetting an instance once it is freed,
bounded, and never changing a byte of the answer. The list memo: one entry per query shape
whatever its spelling, only for the snapshot it was rendered from, and within its bytes."""

from __future__ import annotations

import gc
import gzip
import json
import weakref
from dataclasses import replace

from prometheus_client import CollectorRegistry

from nacos_actors.core.registry import RegistryCore
from nacos_actors.http.front import Front
from nacos_actors.metrics import NodeMetrics
from nacos_actors.model import Instance, Service, ServiceKey, freeze, instance_map
from nacos_actors.render.lists import (
    MEMO_ENTRY_OVERHEAD,
    RENDERED_ENTRY_OVERHEAD,
    RENDERED_HOST_OVERHEAD,
    ListMemo,
    RenderedInstances,
    instance_list,
    list_body,
)
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


def test_it_starts_afresh_past_its_bytes():
    first, *others = hosts(3)
    one_host = len(list_body(service([first]), KEY, "", (), False, True, 10_000, 0)) // 2  # a generous guess
    rendered = RenderedInstances(max_bytes=2 * (RENDERED_ENTRY_OVERHEAD + RENDERED_HOST_OVERHEAD + one_host))
    fragment = rendered.host(first, True, KEY.name)
    assert rendered.host(first, True, KEY.name) is fragment
    for instance in others:
        rendered.host(instance, True, KEY.name)
        assert rendered.rendered_bytes <= rendered.max_bytes
    assert rendered.host(first, True, KEY.name) is not fragment
    unbounded, alive = RenderedInstances(), hosts(50)
    for instance in alive:
        unbounded.host(instance, True, KEY.name)
    assert len(unbounded) == 50


def test_a_freed_instance_is_forgotten_and_not_kept_alive():
    """Finding 4 of issue 14: the cache held strong references, so deregistered instances (and
    their metadata) stayed alive until 131,072 others had been rendered."""
    rendered = RenderedInstances()
    instances = [Instance(ip="10.0.0.1", port=p, metadata=freeze({"blob": "x" * 1000})) for p in range(1, 4)]
    body(service(instances), rendered)
    assert len(rendered) == 3
    watched = weakref.ref(instances[0])
    del instances[0]
    gc.collect()
    assert watched() is None
    assert len(rendered) == 2
    assert body(service(instances), rendered) == body(service(instances), None)


def test_each_front_owns_its_caches_and_the_list_answer_uses_them():
    core = RegistryCore()
    metrics = NodeMetrics(CollectorRegistry(), core)
    fronts = [Front(Settings(), None, core, metrics) for _ in range(2)]  # type: ignore[arg-type]
    assert fronts[0].rendered is not fronts[1].rendered
    assert fronts[0].list_memo is not fronts[1].list_memo
    assert fronts[0].list_memo.max_bytes == Settings().list_memo_bytes
    assert fronts[0].rendered.max_bytes == Settings().rendered_instances_bytes
    instance = hosts(1)[0]
    snapshot = service([instance])
    answer, compressed = instance_list(
        snapshot, KEY, "", (), False, True, 10_000, 0, False, fronts[0].rendered, fronts[0].list_memo
    )
    assert not compressed and answer == body(snapshot, None)
    assert (True, KEY.name) in fronts[0].rendered.of(instance).hosts
    assert (True, KEY.name) not in fronts[1].rendered.of(instance).hosts
    assert len(fronts[0].list_memo) == 1 and len(fronts[1].list_memo) == 0


# -- the list memo ------------------------------------------------------------------------------


def listed(snapshot: Service, memo: ListMemo, clusters_text: str = "", gzipped: bool = False, key=KEY):
    names = tuple(sorted({part.strip() for part in clusters_text.split(",") if part.strip()}))
    return instance_list(snapshot, key, clusters_text, names, False, True, 10_000, 0, gzipped, RenderedInstances(), memo)


def test_a_repeated_query_of_an_unchanged_snapshot_is_one_lookup():
    memo = ListMemo(1 << 20)
    snapshot = service(hosts(3))
    first, _ = listed(snapshot, memo)
    again, _ = listed(snapshot, memo)
    assert again is first
    assert first == body(snapshot, None)


def test_spellings_of_one_query_share_one_entry_and_each_hears_its_own_echo():
    """Finding 4: 16 entries per snapshot, one per `clusters` spelling."""
    memo = ListMemo(1 << 20)
    snapshot = service([*hosts(2), Instance(ip="10.0.1.1", port=80, cluster="B")])
    spellings = ["DEFAULT", "DEFAULT,DEFAULT", " DEFAULT", "DEFAULT,", ",DEFAULT , DEFAULT", "DEFAULT ,,"]
    for spelling in spellings * 2:
        answer, _ = listed(snapshot, memo, spelling)
        document = json.loads(answer)
        assert document["clusters"] == spelling  # clients key their caches by the echo
        assert [h["ip"] for h in document["hosts"]] == ["10.0.0.1", "10.0.0.2"]
    assert len(memo) == 1
    assert listed(snapshot, memo, "DEFAULT")[0] is listed(snapshot, memo, "DEFAULT")[0]  # the first spelling's
    for spelling in ("B,DEFAULT", "DEFAULT,B", "B ,DEFAULT,B"):
        listed(snapshot, memo, spelling)
    assert len(memo) == 2


def test_a_newer_snapshot_replaces_the_entry_and_a_freed_one_leaves():
    memo = ListMemo(1 << 20)
    instances = hosts(2)
    old = service(instances, revision=1)
    listed(old, memo)
    newer = service([*instances, Instance(ip="10.0.0.9", port=1)], revision=2)
    answer, _ = listed(newer, memo)
    assert answer == body(newer, None)
    assert len(memo) == 1
    other = replace(old, key=ServiceKey("public", "DEFAULT_GROUP@@other"))
    listed(other, memo, key=other.key)
    assert len(memo) == 2
    del other
    gc.collect()
    listed(newer, memo, gzipped=True)  # any put drops the entries of freed snapshots
    assert len(memo) == 2  # newer, plain and gzip
    assert memo.bytes == sum(len(e.body) + len(e.clusters_text) + MEMO_ENTRY_OVERHEAD for e in memo._entries.values())


def test_the_memo_stays_within_its_bytes_least_recently_used_out_first():
    one = listed(service(hosts(3)), ListMemo(1 << 20))[0]
    entry_cost = len(one) + MEMO_ENTRY_OVERHEAD
    memo = ListMemo(entry_cost * 10)
    kept = []  # snapshots stay alive, as the registry would hold them
    for index in range(40):
        snapshot = replace(service(hosts(3)), key=ServiceKey("public", f"DEFAULT_GROUP@@s{index:02}"))
        kept.append(snapshot)
        listed(snapshot, memo, key=snapshot.key)
        listed(kept[0], memo, key=kept[0].key)  # the first one stays in use
        assert memo.bytes <= memo.max_bytes
    assert len(memo) == 10
    names = {shape[0].name for shape in memo._entries}
    assert "DEFAULT_GROUP@@s00" in names and "DEFAULT_GROUP@@s39" in names and "DEFAULT_GROUP@@s05" not in names


def test_an_answer_over_an_eighth_of_the_memo_is_not_kept_and_zero_keeps_nothing():
    snapshot = service(hosts(50))
    size = len(body(snapshot, None))
    memo = ListMemo((size + MEMO_ENTRY_OVERHEAD) * 8 - 1)
    assert listed(snapshot, memo)[0] == body(snapshot, None)
    assert len(memo) == 0 and memo.bytes == 0
    nothing = ListMemo(0)
    listed(service(hosts(1)), nothing)
    assert len(nothing) == 0


def test_gzip_answers_are_memoized_compressed():
    memo = ListMemo(1 << 20)
    snapshot = service(hosts(20))
    answer, compressed = listed(snapshot, memo, gzipped=True)
    assert compressed and gzip.decompress(answer) == body(snapshot, None)
    assert listed(snapshot, memo, gzipped=True)[0] is answer
    assert listed(snapshot, memo)[0] == body(snapshot, None)  # plain: another entry
    assert len(memo) == 2
