"""The registry core's batches: a batch publishes the same states as its commands applied one
by one, and a reader sees none of a batch's changes until it ends."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nacos_actors.core.registry import RegistryCore, Rejected
from nacos_actors.messages import (
    CreateService,
    DeleteService,
    DeregisterInstance,
    MarkUnhealthy,
    RegisterInstance,
    RemoveEmptyService,
    UpdateMetadataBatch,
)
from nacos_actors.model import NO_SELECTOR, Instance, InstanceKey, ServiceKey, freeze

SERVICES = [ServiceKey("public", f"DEFAULT_GROUP@@s{n}") for n in range(3)]
PORTS = range(8000, 8004)


def key(port: int) -> InstanceKey:
    return InstanceKey("127.0.0.1", port, "DEFAULT", True)


commands = st.one_of(
    st.builds(lambda s, p, w: RegisterInstance(s, Instance("127.0.0.1", p, weight=w)),
              st.sampled_from(SERVICES), st.sampled_from(PORTS), st.sampled_from([1.0, 2.0])),
    st.builds(lambda s, p: DeregisterInstance(s, key(p)), st.sampled_from(SERVICES), st.sampled_from(PORTS)),
    st.builds(lambda s, p: MarkUnhealthy(s, key(p)), st.sampled_from(SERVICES), st.sampled_from(PORTS)),
    st.builds(lambda s, v: UpdateMetadataBatch(s, freeze({"v": v}), False, "ephemeral", ()),
              st.sampled_from(SERVICES), st.sampled_from("ab")),
    st.builds(lambda s: CreateService(s, 0.0, freeze({}), NO_SELECTOR), st.sampled_from(SERVICES)),
    st.builds(DeleteService, st.sampled_from(SERVICES)),
    st.builds(lambda s, r: RemoveEmptyService(s, r), st.sampled_from(SERVICES), st.integers(0, 6)),
)


def apply(core: RegistryCore, command, now_ms: int):
    try:
        return core.apply(command, now_ms).value
    except Rejected as refusal:
        return ("rejected", refusal.status, refusal.message)


def published(core: RegistryCore) -> dict:
    return {
        s.key: (dict(s.instances), s.revision, s.modified_ms, dict(s.metadata), s.explicit)
        for s in core.all_services()
    }


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(commands, max_size=8), max_size=8))
def test_a_batch_publishes_what_its_commands_one_by_one_would(batches):
    one_by_one, batched = RegistryCore(), RegistryCore()
    now = 1_000
    for batch in batches:
        now += 10
        before = published(batched)
        batched.begin_batch()
        answers = []
        for command in batch:
            answers.append(apply(batched, command, now))
            # Readers see the state from before the batch (a deleted service may go at once).
            during = published(batched)
            assert all(during[k] == before[k] for k in during)
        batched.end_batch()
        assert answers == [apply(one_by_one, command, now) for command in batch]
        assert published(batched) == published(one_by_one)
        assert (batched.service_count, batched.instance_count) == (one_by_one.service_count, one_by_one.instance_count)
        assert batched.instance_count == sum(len(s.instances) for s in batched.all_services())
        assert batched.tombstones == one_by_one.tombstones


def test_a_service_written_twice_in_a_batch_is_published_once_with_both_writes():
    core = RegistryCore()
    service = SERVICES[0]
    core.apply(RegisterInstance(service, Instance("127.0.0.1", 1)), 1)
    first = core.service(service)
    core.begin_batch()
    core.apply(RegisterInstance(service, Instance("127.0.0.1", 2)), 2)
    core.apply(RegisterInstance(service, Instance("127.0.0.1", 3)), 3)
    assert core.service(service) is first and len(first.instances) == 1
    core.end_batch()
    latest = core.service(service)
    assert sorted(k.port for k in latest.instances) == [1, 2, 3]
    assert latest.revision == first.revision + 2
    assert len(first.instances) == 1  # a published snapshot never changes
