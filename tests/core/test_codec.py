"""Registry snapshots survive the msgpack round trip; damaged bytes are refused, never loaded."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nacos_actors.core.codec import CodecError, decode_services, encode_services
from nacos_actors.core.registry import RegistryCore
from nacos_actors.messages import CreateService, RegisterInstance
from nacos_actors.model import Instance, Selector, ServiceKey, freeze

text = st.text(min_size=1, max_size=8)
instances = st.builds(
    Instance,
    ip=st.sampled_from(["127.0.0.1", "::1", "localhost"]),
    port=st.integers(1, 65535),
    cluster=st.sampled_from(["DEFAULT", "c-1"]),
    weight=st.floats(0, 10000),
    healthy=st.booleans(),
    enabled=st.booleans(),
    ephemeral=st.booleans(),
    metadata=st.dictionaries(text, text, max_size=3).map(freeze),
    app=text,
    marked=st.booleans(),
)


def comparable(core: RegistryCore) -> list:
    return [
        (s.key, s.protect_threshold, dict(s.metadata), s.selector, s.explicit, s.revision, s.modified_ms,
         [(k, i) for k, i in s.instances.items()])
        for s in core.all_services()
    ]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["a@@x", "b@@y"]), st.sampled_from(["public", "dev"]), instances), max_size=10),
    st.floats(0, 1),
)
def test_round_trip_keeps_every_service_and_instance(writes, threshold):
    core = RegistryCore()
    core.apply(CreateService(ServiceKey("public", "g@@explicit"), threshold, freeze({"k": "v"}), Selector("label", "a=b")), 1)
    for n, (name, namespace, instance) in enumerate(writes):
        core.apply(RegisterInstance(ServiceKey(namespace, name), instance), n + 2)
    loaded = RegistryCore()
    loaded.load(decode_services(encode_services(core.all_services())))
    assert comparable(loaded) == comparable(core)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"version": 99, "services": []}),
        msgpack.packb({"version": 1, "services": [["public"]]}),
        msgpack.packb({"version": 1, "services": [["public", "a@@b", 0.0, {}, ["none", ""], False, 1, 1, [["127.0.0.1", "80"] + [None] * 9]]]}),
        msgpack.packb({"version": 1, "services": [["public", "a@@b", 0.0, {"k": 1}, ["none", ""], False, 1, 1, []]]}),
        msgpack.packb({"version": 1, "services": [["public", "a@@b", 0.0, {}, ["none", ""], False, True, 1, []]]}),
    ],
)
def test_malformed_snapshots_are_refused(data):
    with pytest.raises(CodecError):
        decode_services(data)
