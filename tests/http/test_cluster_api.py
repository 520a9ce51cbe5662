"""The cluster front through the real app: peer authentication and bodies, member reports,
Distro batches, verify digests and snapshots, the starting gate, forwarding of client writes to
the responsible member, joining, and Nacos's cluster JSON views (member and standalone).

The member under test is 127.0.0.1:18848 (it never listens there: its app runs on the test
client's server); its view is set directly. Its peers are an `owner` server that records what it
is sent, and a `dead` address nothing listens on.
"""

from __future__ import annotations

import dataclasses
import json
from urllib.parse import quote, urlencode

import msgpack
import pytest
from blockbuster import blockbuster_ctx
from yarl import URL

from nacos_actors.core.codec import (
    MemberReport,
    decode_keys,
    decode_report,
    decode_services,
    encode_batch,
    encode_digests,
    encode_report,
    encode_services,
)
from nacos_actors.core.distro import responsible_member
from nacos_actors.core.members import DOWN, REPORTED_STATES, STARTING, SUSPICIOUS, UP
from nacos_actors.core.registry import Tombstone
from nacos_actors.http.app import build_app
from nacos_actors.http.cluster import FORWARD_ATTEMPTS, async_join
from nacos_actors.http.front import FORM_CONTENT_TYPE
from nacos_actors.messages import MarkReady, PeerFailed, ReportReceived
from nacos_actors.clock import wall_clock_ms
from nacos_actors.core.peer_auth import (
    BAD_SIGNATURE,
    MEMBER_HEADER,
    NOT_MEMBER,
    REJECT_REASONS,
    SIGNATURE_HEADER,
    STALE,
    TIMESTAMP_HEADER,
    UNSIGNED,
    WRONG_ADDRESS,
    PeerAccepted,
    PeerCallRules,
    judge_peer_call,
)
from nacos_actors.model import freeze, instance_map
from nacos_actors.peers import FORWARDED_HEADER, MSGPACK
from tests.http.cluster_support import (
    SECRET,
    SELF,
    OwnerServer,
    closed_port,
    eventually,
    grouped,
    member_header,
    name_owned_by,
    names_owned_by,
    peer_headers,
    record_server_errors,
    service,
    service_key,
    start_member,
)

NS = "/nacos/v1/ns"
CORE = "/nacos/v1/core/cluster"
REPORT = f"{CORE}/report"
DATUM = f"{NS}/distro/datum"
CHECKSUM = f"{NS}/distro/checksum"
DATUMS = f"{NS}/distro/datums"
PEER_ENDPOINTS = [("POST", REPORT), ("PUT", DATUM), ("PUT", CHECKSUM), ("GET", DATUMS)]
USER_AGENT = "Nacos-Java-Client:v1.4.1"


@pytest.fixture
async def owner(aiohttp_server) -> OwnerServer:
    """Another member: a server recording every request, answering 200 `ok` unless told."""
    server = OwnerServer()
    test_server = await aiohttp_server(server.app())
    server.address = f"127.0.0.1:{test_server.port}"
    return server


@pytest.fixture
def dead() -> str:
    """A member nothing listens on."""
    return f"127.0.0.1:{closed_port()}"


@pytest.fixture
async def member(owner, dead):
    """The member under test: itself, `owner` and `dead` all UP; serving."""
    node = start_member({SELF: UP, owner.address: UP, dead: UP})
    yield node
    await node.async_stop()


@pytest.fixture
async def member_client(aiohttp_client, member, monkeypatch):
    """A test client for the member's app: blocking calls on the loop and 5xx answers fail the
    test (as tests/http/conftest.py's `client`; a wanted 5xx is asked through `.session`)."""
    test_client = await aiohttp_client(build_app(member.front))
    server_errors = record_server_errors(test_client, monkeypatch)
    with blockbuster_ctx("nacos_actors"):
        yield test_client
    assert server_errors == [], f"5xx answers: {server_errors}"


# -- helpers --------------------------------------------------------------------------------


async def hosts(client, name: str) -> list[str]:
    """The ips a list query of `name` answers."""
    response = await client.get(f"{NS}/instance/list", params={"serviceName": name})
    assert response.status == 200, await response.text()
    return sorted(h["ip"] for h in (await response.json())["hosts"])


async def replicate(client, peer: str, states, force: bool = False) -> None:
    """Send a Distro batch from `peer` (signed); it must answer `ok`."""
    body = encode_batch(peer, states, force)
    response = await client.put(DATUM, data=body, headers=peer_headers(peer, "PUT", DATUM, body))
    assert (response.status, await response.text()) == (200, "ok")


def valid_body(path: str, peer: str, healthy: tuple[str, ...], name: str) -> bytes:
    """A body the endpoint accepts from `peer`: a report, a batch adding `name`, digests that
    list nothing (which drop every service `peer` owns), or nothing (the snapshot GET)."""
    if path == REPORT:
        return encode_report(peer, UP)
    if path == DATUM:
        return encode_batch(peer, [service(name, 1, "127.0.0.31")], False)
    if path == CHECKSUM:
        return encode_digests(peer, healthy, [])
    return b""


async def session_request(client, method: str, path: str, **kwargs):
    """A request outside the 5xx guard (for the 503s the test wants): (status, text)."""
    async with client.session.request(method, client.make_url(path), **kwargs) as response:
        return response.status, await response.text()


def fields_of(snapshot) -> dict:
    """A service snapshot's fields (snapshots compare by identity)."""
    return {f.name: getattr(snapshot, f.name) for f in dataclasses.fields(snapshot)}


def packed(document) -> bytes:
    return msgpack.packb(document)


# -- 1. peer authentication -----------------------------------------------------------------
# The outside probe of issue 14: without a secret the only check was the member header's IP,
# and on one host every member is 127.0.0.1, so any local process with a forged header
# downloaded every namespace, pushed forced batches and reported live members DOWN.


async def assert_nothing_changed(member_client, member, kept: str) -> None:
    assert member.core.service_count == 1
    assert await hosts(member_client, kept) == ["127.0.0.30"]
    assert await hosts(member_client, "fresh") == []
    assert member.stub.told == []


@pytest.fixture
async def kept(member_client, member, owner) -> str:
    """A service the owner replicated before the test: it must survive every refused call."""
    name = name_owned_by(owner.address, member.healthy, "kept")
    await replicate(member_client, owner.address, [service(name, 1, "127.0.0.30")])
    return name


@pytest.mark.parametrize("method, path", PEER_ENDPOINTS)
async def test_a_forged_member_header_without_a_signature_is_refused_and_counted(
    member_client, member, owner, kept, method, path
):
    body = valid_body(path, owner.address, member.healthy, "fresh")

    response = await member_client.request(method, path, data=body, headers=member_header(owner.address))

    assert response.status == 403
    text = await response.text()
    assert SIGNATURE_HEADER in text and TIMESTAMP_HEADER in text
    assert member.rejected(UNSIGNED) == 1
    await assert_nothing_changed(member_client, member, kept)


@pytest.mark.parametrize("method, path", PEER_ENDPOINTS)
@pytest.mark.parametrize("caller", ["no header", "stranger", "this node"])
async def test_peer_endpoint_refuses_a_caller_that_is_not_a_peer_and_stores_nothing(
    member_client, member, owner, kept, method, path, caller
):
    body = valid_body(path, owner.address, member.healthy, "fresh")
    claimed = {"no header": None, "stranger": "127.0.0.1:1", "this node": SELF}[caller]
    headers = {} if claimed is None else peer_headers(claimed, method, path, body)  # even signed

    response = await member_client.request(method, path, data=body, headers=headers)

    assert response.status == 403
    assert MEMBER_HEADER in await response.text()
    assert member.rejected(NOT_MEMBER) == 1
    await assert_nothing_changed(member_client, member, kept)


@pytest.mark.parametrize("method, path", PEER_ENDPOINTS)
async def test_peer_endpoint_refuses_a_member_calling_from_another_address(member_client, member, method, path):
    elsewhere = "127.0.0.2:18850"
    member.cluster.peers = (*member.cluster.peers, elsewhere)
    body = valid_body(path, elsewhere, member.healthy, "fresh")

    response = await member_client.request(method, path, data=body, headers=peer_headers(elsewhere, method, path, body))

    assert response.status == 403
    text = await response.text()
    assert MEMBER_HEADER in text and "does not match the caller" in text
    assert member.rejected(WRONG_ADDRESS) == 1
    assert member.core.service_count == 0
    assert member.stub.told == []


WINDOW_MS = 5_000


def _wrong_signature(peer, method, path, body):
    return peer_headers(peer, method, path, body, secret="another-secret")


def _no_signature(peer, method, path, body):
    return {k: v for k, v in peer_headers(peer, method, path, body).items() if k != SIGNATURE_HEADER}


def _no_timestamp(peer, method, path, body):
    return {k: v for k, v in peer_headers(peer, method, path, body).items() if k != TIMESTAMP_HEADER}


def _bad_timestamp(peer, method, path, body):
    return {**peer_headers(peer, method, path, body), TIMESTAMP_HEADER: "soon"}


def _stale(peer, method, path, body):
    return peer_headers(peer, method, path, body, now_ms=wall_clock_ms() - WINDOW_MS - 2_000)


def _from_the_future(peer, method, path, body):
    return peer_headers(peer, method, path, body, now_ms=wall_clock_ms() + WINDOW_MS + 2_000)


def _another_body(peer, method, path, body):
    return peer_headers(peer, method, path, body + b"\x00")


def _another_path(peer, method, path, body):
    return peer_headers(peer, method, f"{path}?x=1", body)


def _another_method(peer, method, path, body):
    return peer_headers(peer, "DELETE", path, body)


def _another_member(peer, method, path, body):
    return {**peer_headers(SELF, method, path, body), MEMBER_HEADER: peer}


FORGERIES = {
    "wrong secret": (_wrong_signature, BAD_SIGNATURE, SIGNATURE_HEADER),
    "no signature": (_no_signature, UNSIGNED, SIGNATURE_HEADER),
    "no timestamp": (_no_timestamp, UNSIGNED, TIMESTAMP_HEADER),
    "bad timestamp": (_bad_timestamp, UNSIGNED, TIMESTAMP_HEADER),
    "stale": (_stale, STALE, TIMESTAMP_HEADER),
    "from the future": (_from_the_future, STALE, TIMESTAMP_HEADER),
    "signed for another body": (_another_body, BAD_SIGNATURE, SIGNATURE_HEADER),
    "signed for another path": (_another_path, BAD_SIGNATURE, SIGNATURE_HEADER),
    "signed for another method": (_another_method, BAD_SIGNATURE, SIGNATURE_HEADER),
    "signed as another member": (_another_member, BAD_SIGNATURE, SIGNATURE_HEADER),
}


@pytest.mark.parametrize("method, path", PEER_ENDPOINTS)
@pytest.mark.parametrize("forgery", list(FORGERIES))
async def test_peer_endpoint_refuses_a_call_not_signed_for_it_in_time(
    member_client, member, owner, kept, method, path, forgery
):
    forge, reason, header = FORGERIES[forgery]
    body = valid_body(path, owner.address, member.healthy, "fresh")

    response = await member_client.request(method, path, data=body, headers=forge(owner.address, method, path, body))

    assert response.status == 403
    assert header in await response.text()
    assert member.rejected(reason) == 1
    await assert_nothing_changed(member_client, member, kept)


@pytest.mark.parametrize("method, path", PEER_ENDPOINTS)
async def test_a_replay_of_a_signed_call_is_refused_once_the_window_has_passed(
    member_client, member, owner, method, path
):
    body = valid_body(path, owner.address, member.healthy, "fresh")
    headers = peer_headers(owner.address, method, path, body)
    sent_ms = int(headers[TIMESTAMP_HEADER])
    member.cluster.clock = lambda: sent_ms + 1_000

    first = await member_client.request(method, path, data=body, headers=headers)
    assert first.status == 200, await first.text()
    told = len((await member.settled_stub()).told)  # a report is told to the member actor, not awaited

    member.cluster.clock = lambda: sent_ms + member.cluster.signature_window_ms + 1
    replay = await member_client.request(method, path, data=body, headers=headers)

    assert replay.status == 403
    assert TIMESTAMP_HEADER in await replay.text()
    assert member.rejected(STALE) == 1
    assert len(member.stub.told) == told


@pytest.mark.parametrize("method, path", PEER_ENDPOINTS)
async def test_peer_endpoint_accepts_a_member_that_signed_its_call(member_client, member, owner, method, path):
    body = valid_body(path, owner.address, member.healthy, "fresh")

    response = await member_client.request(
        method, path, data=body, headers=peer_headers(owner.address, method, path, body)
    )

    assert response.status == 200, await response.text()
    assert sum(member.rejected(reason) for reason in REJECT_REASONS) == 0


async def test_refused_peer_calls_are_counted_each_and_logged_once_per_interval(member_client, member, owner, caplog):
    for _ in range(3):
        response = await member_client.post(
            REPORT, data=encode_report(owner.address, DOWN), headers=member_header(owner.address)
        )
        assert response.status == 403
    response = await member_client.get(DATUMS, headers=member_header("127.0.0.1:1"))
    assert response.status == 403

    lines = [r.getMessage() for r in caplog.records if r.name == "nacos_actors.http.front"]
    assert (member.rejected(UNSIGNED), member.rejected(NOT_MEMBER)) == (3, 1)
    assert len(lines) == 2, lines  # one per reason in the interval
    assert "unsigned" in lines[0] and REPORT in lines[0]
    assert member.stub.told == []


# -- 2. bad bodies --------------------------------------------------------------------------

MISSING = object()


def _document(base: dict, changes: dict) -> bytes:
    return packed({k: v for k, v in {**base, **changes}.items() if v is not MISSING})


def report_doc(peer: str, **changes) -> bytes:
    """A report document from `peer`, with fields changed (MISSING: left out)."""
    return _document({"version": 2, "address": peer, "state": UP}, changes)


def batch_doc(peer: str, **changes) -> bytes:
    """A batch document from `peer` holding one tombstone, with fields changed."""
    base = {"version": 2, "sender": peer, "force": False, "services": [], "tombstones": [["public", "g@@x", 1]]}
    return _document(base, changes)


def digests_doc(peer: str, **changes) -> bytes:
    """A digests document from `peer` listing nothing, with fields changed."""
    return _document({"version": 2, "sender": peer, "healthy": [peer], "digests": []}, changes)


BAD_BODIES = [
    # (path, body made from the peer's address, words the 400 must contain)
    (REPORT, lambda peer: b"", "body is empty"),
    (REPORT, lambda peer: b"\xc1\x00", "not a msgpack document"),
    (REPORT, lambda peer: packed([peer, UP]), "report: unexpected list"),
    (REPORT, lambda peer: report_doc(peer, state="DANCING"), "state: unknown 'DANCING'"),
    (REPORT, lambda peer: report_doc(peer, state=SUSPICIOUS), "state: unknown 'SUSPICIOUS'"),
    (REPORT, lambda peer: report_doc(peer, state=MISSING), "state: unexpected NoneType"),
    (REPORT, lambda peer: report_doc(peer, version=99), "report version 99"),
    (REPORT, lambda peer: report_doc(peer, address=7), "address: unexpected int"),
    (REPORT, lambda peer: encode_report("127.0.0.1:1", UP), "Field 'address'"),
    (DATUM, lambda peer: b"", "body is empty"),
    (DATUM, lambda peer: b"not msgpack at all", "not a msgpack document"),
    (DATUM, lambda peer: batch_doc(peer, tombstones=[]), "batch: no services"),
    (DATUM, lambda peer: batch_doc(peer, services=[[1, 2]]), "service: wrong number of fields"),
    (DATUM, lambda peer: batch_doc(peer, tombstones=[["public", "x"]]), "tombstone: wrong number of fields"),
    (DATUM, lambda peer: batch_doc(peer, force="yes"), "force: unexpected str"),
    (DATUM, lambda peer: batch_doc(peer, services={}), "services: unexpected dict"),
    (DATUM, lambda peer: batch_doc(peer, sender=MISSING), "sender: unexpected NoneType"),
    (DATUM, lambda peer: encode_batch("127.0.0.1:1", [service("fresh", 1, "127.0.0.31")], False), "Field 'sender'"),
    (CHECKSUM, lambda peer: b"", "body is empty"),
    (CHECKSUM, lambda peer: b"\xff\xff", "not valid"),
    (CHECKSUM, lambda peer: digests_doc(peer, healthy="all"), "healthy: unexpected str"),
    (CHECKSUM, lambda peer: digests_doc(peer, digests=[["public", "x", 1]]), "digest: wrong number of fields"),
    (CHECKSUM, lambda peer: digests_doc(peer, digests=[["public", "g@@x", 1, "t"]]), "digest: unexpected str"),
    (CHECKSUM, lambda peer: digests_doc(peer, version=MISSING), "digests version None"),
    (CHECKSUM, lambda peer: encode_digests("127.0.0.1:1", [peer], []), "Field 'sender'"),
]


@pytest.mark.parametrize(
    "path, make_body, words", BAD_BODIES, ids=[f"{p.rsplit('/', 1)[1]}-{w}" for p, _, w in BAD_BODIES]
)
async def test_a_bad_peer_body_is_a_400_naming_the_fault_and_changes_nothing(
    member_client, member, owner, path, make_body, words
):
    kept = name_owned_by(owner.address, member.healthy, "kept")
    await replicate(member_client, owner.address, [service(kept, 1, "127.0.0.30")])
    method = "POST" if path == REPORT else "PUT"

    body = make_body(owner.address)
    response = await member_client.request(
        method, path, data=body, headers=peer_headers(owner.address, method, path, body)
    )

    text = await response.text()
    assert response.status == 400, text
    assert words in text
    assert member.core.service_count == 1
    assert await hosts(member_client, kept) == ["127.0.0.30"]
    assert await hosts(member_client, "fresh") == []
    assert member.stub.told == []


def _instance_record(ip="127.0.0.1", port=8080, weight=1.0) -> list:
    return [ip, port, "DEFAULT", weight, True, True, True, {}, "DEFAULT", False, f"{ip}#{port}"]


def _service_record(namespace: str, name: str, instance: list) -> list:
    return [namespace, name, 0.0, {}, ["none", ""], False, 1, 1_000, [instance], []]


# What the outside probe of issue 14 injected through a peer batch: each was stored and served.
INJECTED = [
    (_service_record("public", "DEFAULT_GROUP@@bad-ip", _instance_record(ip="not an ip!!")), "'ip'"),
    (
        _service_record("public", "DEFAULT_GROUP@@port-zero", _instance_record(port=0)),
        "'port' must be in 1..65535, got 0",
    ),
    (_service_record("public", "DEFAULT_GROUP@@port-minus", _instance_record(port=-5)), "got -5"),
    (
        _service_record("public", "DEFAULT_GROUP@@nan", _instance_record(weight=float("nan"))),
        "'weight' must be a finite",
    ),
    (_service_record("../../etc", "DEFAULT_GROUP@@passwd", _instance_record()), "'namespace'"),
    (_service_record("public", "DEFAULT_GROUP@@nul\x00name", _instance_record()), "'service name'"),
]


@pytest.mark.parametrize("record, words", INJECTED, ids=[r[1] for r, _ in INJECTED])
async def test_a_peer_batch_with_a_value_no_client_could_store_is_a_400_naming_it_and_stores_nothing(
    member_client, member, owner, record, words
):
    kept = name_owned_by(owner.address, member.healthy, "kept")
    await replicate(member_client, owner.address, [service(kept, 1, "127.0.0.30")])
    valid = _service_record("public", grouped("fresh"), _instance_record(ip="127.0.0.31"))
    body = batch_doc(owner.address, force=True, services=[valid, record], tombstones=[])

    response = await member_client.put(DATUM, data=body, headers=peer_headers(owner.address, "PUT", DATUM, body))

    text = await response.text()
    assert response.status == 400, text
    assert "service 1: " in text and words in text
    assert member.core.service_count == 1
    assert await hosts(member_client, kept) == ["127.0.0.30"]
    assert await hosts(member_client, "fresh") == []


# -- 3. member reports ----------------------------------------------------------------------


async def test_a_report_is_told_to_the_member_actor_and_answered_with_this_nodes_state(member_client, member, owner):
    response = await member_client.post(
        REPORT,
        data=(body := encode_report(owner.address, STARTING)),
        headers=peer_headers(owner.address, "POST", REPORT, body),
    )

    assert response.status == 200
    assert response.content_type == MSGPACK
    assert decode_report(await response.read(), REPORTED_STATES) == MemberReport(SELF, UP)
    await eventually(lambda: member.stub.told)
    assert member.stub.told == [ReportReceived(owner.address, STARTING)]


async def test_a_report_answer_says_starting_while_this_node_starts(member_client, member, owner, dead):
    member.set_view({SELF: STARTING, owner.address: UP, dead: DOWN})

    response = await member_client.post(
        REPORT,
        data=(body := encode_report(owner.address, DOWN)),
        headers=peer_headers(owner.address, "POST", REPORT, body),
    )

    assert decode_report(await response.read(), REPORTED_STATES) == MemberReport(SELF, STARTING)
    await eventually(lambda: member.stub.told)
    assert member.stub.told == [ReportReceived(owner.address, DOWN)]


# -- 4. Distro batches ----------------------------------------------------------------------


async def test_a_batch_is_applied_before_it_is_answered_newer_revisions_winning(member_client, member, owner):
    peer = owner.address
    alpha, beta = service_key("alpha"), service_key("beta")

    await replicate(member_client, peer, [service("alpha", 3, "127.0.0.11"), service("beta", 1, "127.0.0.21")])
    # answered once applied: the registry already holds both
    assert member.core.service_count == 2
    assert member.core.service(alpha).revision == 3
    assert await hosts(member_client, "alpha") == ["127.0.0.11"]
    assert await hosts(member_client, "beta") == ["127.0.0.21"]

    # an older state is ignored; a newer tombstone deletes
    await replicate(member_client, peer, [service("alpha", 2, "127.0.0.12"), Tombstone(beta, 2)])
    assert await hosts(member_client, "alpha") == ["127.0.0.11"]
    assert member.core.service(beta) is None
    assert await hosts(member_client, "beta") == []

    # an older tombstone is ignored, and so is a state older than the deletion
    await replicate(member_client, peer, [Tombstone(alpha, 1), service("beta", 1, "127.0.0.22")])
    assert await hosts(member_client, "alpha") == ["127.0.0.11"]
    assert await hosts(member_client, "beta") == []

    # made again after the deletion (its revisions carry on from the tombstone's): back
    await replicate(member_client, peer, [service("beta", 2, "127.0.0.23")])
    assert await hosts(member_client, "beta") == ["127.0.0.23"]

    # force (a verify repair) replaces whatever the version
    await replicate(member_client, peer, [service("alpha", 1, "127.0.0.13", "127.0.0.14")], force=True)
    assert member.core.service(alpha).revision == 1
    assert await hosts(member_client, "alpha") == ["127.0.0.13", "127.0.0.14"]
    assert member.core.service_count == 2
    assert member.replicated() == 5  # 2 + beta deleted + beta back + alpha forced


# -- 4b. peer bodies have their own limit -----------------------------------------------------

CLIENT_LIMIT = 1024
PEER_LIMIT = 64 * 1024


@pytest.fixture
async def limited(aiohttp_client, owner, dead, monkeypatch):
    """(client, member): a member whose clients may send 1 KiB bodies and peers 64 KiB."""
    node = start_member(
        {SELF: UP, owner.address: UP, dead: UP}, max_body_bytes=CLIENT_LIMIT, peer_max_body_bytes=PEER_LIMIT
    )
    test_client = await aiohttp_client(build_app(node.front))
    server_errors = record_server_errors(test_client, monkeypatch)
    with blockbuster_ctx("nacos_actors"):
        yield test_client, node
    assert server_errors == [], f"5xx answers: {server_errors}"
    await node.async_stop()


def large_service(name: str, metadata_bytes: int):
    """A replicated service whose one instance carries `metadata_bytes` of metadata."""
    state = service(name, 1, "127.0.0.41")
    (instance,) = state.instances.values()
    big = dataclasses.replace(instance, metadata=freeze({"blob": "x" * metadata_bytes}))
    return dataclasses.replace(state, instances=instance_map([big]))


async def chunked(body: bytes):
    for start in range(0, len(body), 4096):
        yield body[start : start + 4096]


@pytest.mark.parametrize("transfer", ["content-length", "chunked"])
async def test_a_batch_larger_than_the_client_limit_is_applied_up_to_the_peer_limit(limited, owner, transfer):
    client, member = limited
    body = encode_batch(owner.address, [large_service("large", 20_000), service("small", 1, "127.0.0.42")], False)
    assert CLIENT_LIMIT < len(body) < PEER_LIMIT
    data = body if transfer == "content-length" else chunked(body)
    response = await client.put(DATUM, data=data, headers=peer_headers(owner.address, "PUT", DATUM, body))
    assert (response.status, await response.text()) == (200, "ok")
    assert await hosts(client, "large") == ["127.0.0.41"]
    assert await hosts(client, "small") == ["127.0.0.42"]


@pytest.mark.parametrize("transfer", ["content-length", "chunked"])
async def test_a_batch_over_the_peer_limit_is_a_413_and_changes_nothing(limited, owner, transfer):
    client, member = limited
    body = encode_batch(
        owner.address, [large_service("huge", 2 * PEER_LIMIT), service("small", 1, "127.0.0.42")], False
    )
    data = body if transfer == "content-length" else chunked(body)
    response = await client.put(DATUM, data=data, headers=peer_headers(owner.address, "PUT", DATUM, body))
    assert response.status == 413
    if transfer == "content-length":
        assert f"the limit (peer_max_body_bytes) is {PEER_LIMIT}" in await response.text()
    assert member.core.service_count == 0


async def test_client_endpoints_keep_the_client_limit_on_a_member(limited):
    client, member = limited
    metadata = json.dumps({"blob": "x" * 4 * CLIENT_LIMIT})
    form = {"serviceName": name_owned_by(SELF, member.healthy), "ip": "127.0.0.43", "port": "80", "metadata": metadata}
    response = await client.post(f"{NS}/instance", data=form)
    assert response.status == 413
    assert f"the limit (max_body_bytes) is {CLIENT_LIMIT}" in await response.text()
    assert member.core.service_count == 0


async def test_a_stranger_gets_403_before_its_large_body_is_read(limited, owner):
    client, member = limited
    body = encode_batch("127.0.0.9:8848", [large_service("large", 20_000)], False)
    response = await client.put(DATUM, data=body, headers=peer_headers("127.0.0.9:8848", "PUT", DATUM, body))
    assert response.status == 403
    assert member.core.service_count == 0


# -- 5. verify digests ----------------------------------------------------------------------


async def test_digests_on_the_same_view_want_what_differs_and_drop_what_the_sender_no_longer_has(
    member_client, member, owner, dead
):
    peer = owner.address
    same, differs, missing, gone = names_owned_by(peer, member.healthy, 4, "owned")
    mine = name_owned_by(SELF, member.healthy, "mine")
    theirs = name_owned_by(dead, member.healthy, "theirs")
    await replicate(
        member_client,
        peer,
        [
            service(same, 2, "127.0.0.41", modified_ms=1_000),
            service(differs, 2, "127.0.0.42", modified_ms=1_000),
            service(gone, 2, "127.0.0.43", modified_ms=1_000),
            service(mine, 1, "127.0.0.44"),
            service(theirs, 1, "127.0.0.45"),
        ],
    )
    stamps = [(service_key(same), (2, 1_000)), (service_key(differs), (3, 2_000)), (service_key(missing), (1, 500))]

    response = await member_client.put(
        CHECKSUM,
        data=(body := encode_digests(peer, member.healthy, stamps)),
        headers=peer_headers(peer, "PUT", CHECKSUM, body),
    )

    assert response.status == 200
    assert response.content_type == MSGPACK
    assert set(decode_keys(await response.read())) == {service_key(differs), service_key(missing)}
    assert await hosts(member_client, gone) == []
    assert member.core.service(service_key(gone)) is None
    for name, ip in ((same, "127.0.0.41"), (differs, "127.0.0.42"), (mine, "127.0.0.44"), (theirs, "127.0.0.45")):
        assert await hosts(member_client, name) == [ip]
    assert member.core.service_count == 4


async def test_digests_on_another_view_want_nothing_and_drop_nothing(member_client, member, owner):
    peer = owner.address
    held, gone = names_owned_by(peer, member.healthy, 2, "owned")
    await replicate(member_client, peer, [service(held, 2, "127.0.0.41"), service(gone, 2, "127.0.0.43")])
    stamps = [(service_key(held), (5, 5_000)), (service_key("unknown"), (1, 1))]
    other_view = tuple(sorted((SELF, peer)))

    response = await member_client.put(
        CHECKSUM,
        data=(body := encode_digests(peer, other_view, stamps)),
        headers=peer_headers(peer, "PUT", CHECKSUM, body),
    )

    assert response.status == 200
    assert decode_keys(await response.read()) == ()
    assert member.core.service_count == 2
    assert await hosts(member_client, gone) == ["127.0.0.43"]


async def test_digests_while_starting_want_nothing_and_drop_nothing(member_client, member, owner):
    peer = owner.address
    gone = name_owned_by(peer, member.healthy, "owned")
    await replicate(member_client, peer, [service(gone, 2, "127.0.0.43")])
    member.cluster.serving = False

    response = await member_client.put(
        CHECKSUM,
        data=(body := encode_digests(peer, member.healthy, [])),
        headers=peer_headers(peer, "PUT", CHECKSUM, body),
    )

    assert response.status == 200
    assert decode_keys(await response.read()) == ()
    assert member.core.service_count == 1


# -- 6. snapshots ---------------------------------------------------------------------------


async def test_the_snapshot_is_503_until_serving_then_holds_every_service(member_client, member, owner):
    peer = owner.address
    await replicate(
        member_client, peer, [service("alpha", 3, "127.0.0.11"), service("beta", 1, "127.0.0.21", "127.0.0.22")]
    )
    member.cluster.serving = False

    status, text = await session_request(member_client, "GET", DATUMS, headers=peer_headers(peer, "GET", DATUMS))
    assert status == 503, text

    member.cluster.serving = True
    response = await member_client.get(DATUMS, headers=peer_headers(peer, "GET", DATUMS))
    assert response.status == 200
    assert response.content_type == MSGPACK
    loaded = {s.key: s for s in decode_services(await response.read())}
    assert set(loaded) == {service_key("alpha"), service_key("beta")}
    assert fields_of(loaded[service_key("alpha")]) == fields_of(member.core.service(service_key("alpha")))
    assert sorted(i.ip for i in loaded[service_key("beta")].instances.values()) == ["127.0.0.21", "127.0.0.22"]


# -- 7. the starting gate -------------------------------------------------------------------


async def test_while_starting_clients_get_503_and_the_member_views_and_peers_still_answer(member_client, member, owner):
    member.cluster.serving = False
    mine = name_owned_by(SELF, member.healthy, "mine")

    status, _ = await session_request(member_client, "GET", f"{NS}/instance/list", params={"serviceName": mine})
    assert status == 503
    register = {"serviceName": mine, "ip": "127.0.0.51", "port": "8080"}
    status, text = await session_request(member_client, "POST", f"{NS}/instance", params=register)
    assert status == 503 and "starting" in text
    assert member.core.service_count == 0
    status, _ = await session_request(member_client, "GET", "/nacos/v1/console/health/readiness")
    assert status == 503

    metrics = await (await member_client.get(f"{NS}/operator/metrics")).json()
    assert metrics["status"] == STARTING
    nodes = await member_client.get(f"{CORE}/nodes")
    assert nodes.status == 200
    assert (await member_client.get("/nacos/v1/console/health/liveness")).status == 200
    report = await member_client.post(
        REPORT,
        data=(body := encode_report(owner.address, UP)),
        headers=peer_headers(owner.address, "POST", REPORT, body),
    )
    assert report.status == 200
    await replicate(member_client, owner.address, [service("early", 1, "127.0.0.52")])
    assert member.core.service_count == 1

    member.cluster.serving = True
    assert (await member_client.get("/nacos/v1/console/health/readiness")).status == 200
    assert (await (await member_client.get(f"{NS}/operator/metrics")).json())["status"] == UP
    response = await member_client.post(f"{NS}/instance", params=register)
    assert (response.status, await response.text()) == (200, "ok")


# -- 8. forwarding --------------------------------------------------------------------------


def _query(params: dict[str, str]) -> str:
    return urlencode(params, quote_via=quote)


BEAT = json.dumps({"ip": "127.0.0.61", "port": 8080, "cluster": "DEFAULT", "serviceName": "x"})
WRITES = {
    "register": ("POST", "/instance", {"ip": "127.0.0.61", "port": "8080", "metadata": '{"k": "a&b=c+d é%"}'}),
    "deregister": ("DELETE", "/instance", {"ip": "127.0.0.61", "port": "8080"}),
    "update instance": ("PUT", "/instance", {"ip": "127.0.0.61", "port": "8080", "weight": "2"}),
    "beat": ("PUT", "/instance/beat", {"beat": BEAT}),
    "patch instance": ("PATCH", "/instance", {"ip": "127.0.0.61", "port": "8080", "weight": "2"}),
    "metadata batch": ("PUT", "/instance/metadata/batch", {"metadata": "k=v", "consistencyType": "ephemeral"}),
    "set health": ("PUT", "/health/instance", {"ip": "127.0.0.61", "port": "8080", "healthy": "false"}),
}


@pytest.mark.parametrize("write", list(WRITES))
@pytest.mark.parametrize("via", ["query", "form"])
async def test_a_write_for_another_members_service_is_forwarded_as_it_came(member_client, member, owner, write, via):
    method, path, params = WRITES[write]
    name = name_owned_by(owner.address, member.healthy, "theirs")
    params = {"serviceName": name, **params}
    owner.status, owner.content_type = 200, "application/json"
    owner.body = json.dumps({"clientBeatInterval": 5000, "code": 10200, "lightBeatEnabled": True}).encode()
    headers = {"User-Agent": USER_AGENT, "X-Custom": "kept"}
    if via == "query":
        path_qs, body = f"{NS}{path}?{_query(params)}", b""
    else:
        path_qs, body = f"{NS}{path}", _query(params).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"

    response = await member_client.request(method, path_qs, data=body, headers=headers)

    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert await response.read() == owner.body
    [received] = owner.received
    assert (received.method, received.body) == (method, body)
    # the same query (the test client's URL library may normalise its escapes, e.g. %3A to :)
    assert URL(received.path_qs).path == f"{NS}{path}"
    assert received.path_qs == URL(path_qs).raw_path_qs
    assert dict(URL(received.path_qs).query) == ({} if via == "form" else params)
    assert received.headers[FORWARDED_HEADER] == SELF
    assert received.headers["User-Agent"] == USER_AGENT
    assert received.headers["X-Custom"] == "kept"
    if via == "form":
        assert received.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert member.core.service_count == 0
    assert (member.forwarded("ok"), member.forwarded("failed")) == (1, 0)


PERSISTENT = {"ip": "127.0.0.67", "port": "8080", "ephemeral": "false"}
CLUSTER_CONFIG = {
    "clusterName": "DEFAULT",
    "checkPort": "80",
    "useInstancePort4Check": "true",
    "healthChecker": '{"type":"NONE"}',
}
# Writes for Raft alone, each after the persistent registration, and what the service then shows.
RAFT_WRITES = {
    "register persistent": ("POST", "/instance", {**PERSISTENT, "weight": "3"}),
    "update persistent": ("PUT", "/instance", {**PERSISTENT, "weight": "3"}),
    "patch persistent": ("PATCH", "/instance", {**PERSISTENT, "weight": "3"}),
    "patch without ephemeral": ("PATCH", "/instance", {"ip": "127.0.0.67", "port": "8080", "weight": "3"}),
    "deregister persistent": ("DELETE", "/instance", PERSISTENT),
    "metadata batch persist": ("PUT", "/instance/metadata/batch", {"metadata": "k=v", "consistencyType": "persist"}),
    "metadata batch of persistent ones": (
        "PUT",
        "/instance/metadata/batch",
        {"metadata": "k=v", "instances": '[{"ip": "127.0.0.67", "port": 8080, "ephemeral": false}]'},
    ),
    "update service": ("PUT", "/service", {"protectThreshold": "0.5"}),
    "update cluster": ("PUT", "/cluster", CLUSTER_CONFIG),
}


@pytest.mark.parametrize("write", list(RAFT_WRITES))
async def test_a_write_for_raft_alone_is_handled_here_and_readable_here_at_once(member_client, member, owner, write):
    # Raft takes it to its leader; forwarded to the Distro owner it would be answered once the
    # owner applied it, maybe before this member did (no read-your-writes here).
    name = name_owned_by(owner.address, member.healthy, "theirs")
    method, path, params = RAFT_WRITES[write]
    first = await member_client.post(f"{NS}/instance", params={"serviceName": name, **PERSISTENT})
    assert (first.status, await first.text()) == (200, "ok")
    setup = await member_client.put(f"{NS}/cluster", params={"serviceName": name, **CLUSTER_CONFIG})
    assert setup.status == 200

    response = await member_client.request(method, f"{NS}{path}", params={"serviceName": name, **params})

    assert response.status == 200, await response.text()
    assert owner.received == []
    assert (member.forwarded("ok"), member.forwarded("failed")) == (0, 0)
    detail = await member_client.get(f"{NS}/service", params={"serviceName": name})
    listed = await member_client.get(f"{NS}/instance/list", params={"serviceName": name})
    hosts = (await listed.json())["hosts"]
    if write == "deregister persistent":
        assert hosts == []
    elif write.startswith("metadata batch"):
        assert hosts[0]["metadata"] == {"k": "v"}
    elif write == "update service":
        assert (await detail.json())["protectThreshold"] == 0.5
    elif write != "update cluster":
        assert [(h["ip"], h["weight"], h["ephemeral"]) for h in hosts] == [("127.0.0.67", 3.0, False)]


async def test_health_of_a_persistent_instance_is_set_here_and_of_an_ephemeral_one_forwarded(
    member_client, member, owner
):
    name = name_owned_by(owner.address, member.healthy, "theirs")
    for params in ({"serviceName": name, **PERSISTENT}, {"serviceName": name, **CLUSTER_CONFIG}):
        method, path = ("POST", "/instance") if "ip" in params else ("PUT", "/cluster")
        response = await member_client.request(method, f"{NS}{path}", params=params)
        assert response.status == 200
    health = {"serviceName": name, "ip": "127.0.0.67", "port": "8080", "healthy": "false"}

    response = await member_client.put(f"{NS}/health/instance", params=health)

    assert (response.status, await response.text()) == (200, "ok")
    assert owner.received == []
    # (the detail: a list would show it healthy, as every instance is unhealthy: protection)
    detail = await member_client.get(f"{NS}/instance", params={**health, "ephemeral": "false"})
    assert (await detail.json())["healthy"] is False
    # Another address is no persistent instance here: the owner decides.
    response = await member_client.put(f"{NS}/health/instance", params={**health, "ip": "127.0.0.68"})
    assert response.status == 200
    assert len(owner.received) == 1


@pytest.mark.parametrize("write", ["create service", "delete service"])
async def test_service_writes_are_handled_here(member_client, member, owner, write):
    name = name_owned_by(owner.address, member.healthy, "theirs")
    created = await member_client.post(f"{NS}/service", params={"serviceName": name, "metadata": "a=b"})
    assert (created.status, await created.text()) == (200, "ok")
    if write == "delete service":
        deleted = await member_client.delete(f"{NS}/service", params={"serviceName": name})
        assert (deleted.status, await deleted.text()) == (200, "ok")

    detail = await member_client.get(f"{NS}/service", params={"serviceName": name})

    assert detail.status == (200 if write == "create service" else 404)
    assert owner.received == []
    assert (member.forwarded("ok"), member.forwarded("failed")) == (0, 0)


async def test_the_owners_refusal_comes_back_to_the_client_unchanged(member_client, member, owner):
    name = name_owned_by(owner.address, member.healthy, "theirs")
    owner.status, owner.body, owner.content_type = 400, b"caused: bad weight;", "text/plain; charset=utf-8"

    response = await member_client.put(f"{NS}/instance", params={"serviceName": name, "ip": "127.0.0.61", "port": "80"})

    assert response.status == 400
    assert await response.text() == "caused: bad weight;"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert len(owner.received) == 1
    assert member.forwarded("ok") == 1


def forwarded_by(peer: str, method: str, path_qs: str, body: bytes = b"", **options) -> dict[str, str]:
    """The headers of a request `peer` forwards: the mark and its signature of the request
    target as the test client sends it (its URL library may normalise escapes)."""
    return {FORWARDED_HEADER: peer, **peer_headers(peer, method, URL(path_qs).raw_path_qs, body, **options)}


def signed_by(receiver_peers: tuple[str, ...], request, receiver: str) -> object:
    """The verdict `receiver` (listing `receiver_peers`) reaches on a recorded request."""
    rules = PeerCallRules(receiver, receiver_peers, SECRET, 5_000)
    return judge_peer_call(
        rules, request.headers, request.method, request.path_qs, request.body, "127.0.0.1", wall_clock_ms()
    )


async def test_a_forwarded_write_is_handled_here_whatever_the_view(member_client, member, owner):
    name = name_owned_by(owner.address, member.healthy, "theirs")
    params = {"serviceName": name, "ip": "127.0.0.62", "port": "8080"}
    path_qs = f"{NS}/instance?{_query(params)}"

    response = await member_client.post(path_qs, headers=forwarded_by(owner.address, "POST", path_qs))

    assert (response.status, await response.text()) == (200, "ok")
    assert owner.received == []
    assert await hosts(member_client, name) == ["127.0.0.62"]
    assert member.forwarded("ok") == 0


async def test_a_forwarded_write_with_a_form_body_is_handled_here_with_its_parameters(member_client, member, owner):
    # The signature check reads the body before the handler: the form must still be read (a
    # register the Java client forwards carries its parameters in the body).
    name = name_owned_by(owner.address, member.healthy, "form")
    body = _query({"serviceName": name, "ip": "127.0.0.63", "port": "8080", "metadata": '{"k":"v"}'}).encode()
    headers = {**forwarded_by(owner.address, "POST", f"{NS}/instance", body), "Content-Type": FORM_CONTENT_TYPE}

    response = await member_client.post(f"{NS}/instance", data=body, headers=headers)

    assert (response.status, await response.text()) == (200, "ok")
    assert await hosts(member_client, name) == ["127.0.0.63"]


@pytest.mark.parametrize(
    "forgery",
    ["the mark alone", "unsigned", "signed by a stranger", "wrong secret", "stale", "signed for another query"],
)
async def test_a_forged_forwarded_mark_is_refused_and_nothing_is_written(member_client, member, owner, forgery):
    # The probe of issue 14: the mark alone (even with a secret set) made a member handle a
    # write of a service it does not own, skipping the forward.
    name = name_owned_by(owner.address, member.healthy, "theirs")
    path_qs = f"{NS}/instance?{_query({'serviceName': name, 'ip': '127.0.0.62', 'port': '8080'})}"
    headers, reason = {
        "the mark alone": ({FORWARDED_HEADER: owner.address}, NOT_MEMBER),
        "unsigned": ({FORWARDED_HEADER: owner.address, **member_header(owner.address)}, UNSIGNED),
        "signed by a stranger": (forwarded_by("127.0.0.1:1", "POST", path_qs), NOT_MEMBER),
        "wrong secret": (forwarded_by(owner.address, "POST", path_qs, secret="another-secret"), BAD_SIGNATURE),
        "stale": (forwarded_by(owner.address, "POST", path_qs, now_ms=wall_clock_ms() - 60_000), STALE),
        "signed for another query": (forwarded_by(owner.address, "POST", path_qs + "&weight=2"), BAD_SIGNATURE),
    }[forgery]

    response = await member_client.post(path_qs, headers=headers)

    assert response.status == 403
    assert member.rejected(reason) == 1
    assert owner.received == []
    assert member.core.service_count == 0
    assert (member.forwarded("ok"), member.forwarded("failed")) == (0, 0)


async def test_a_forwarded_request_is_signed_by_this_member_whatever_the_client_sent(member_client, member, owner):
    name = name_owned_by(owner.address, member.healthy, "theirs")
    params = {"serviceName": name, "ip": "127.0.0.61", "port": "8080", "metadata": '{"k": "a&b=c+d é%"}'}
    # A client's headers of ours are not passed on (a client's own forwarded mark is refused, above).
    client_headers = {MEMBER_HEADER: owner.address, SIGNATURE_HEADER: "v1=junk", TIMESTAMP_HEADER: "1"}

    response = await member_client.post(f"{NS}/instance", params=params, headers=client_headers)

    assert response.status == 200
    [received] = owner.received
    assert received.headers[FORWARDED_HEADER] == SELF
    assert received.headers[MEMBER_HEADER] == SELF
    assert received.headers[SIGNATURE_HEADER] != "v1=junk"
    assert signed_by((SELF,), received, owner.address) == PeerAccepted(SELF)


async def test_a_write_for_this_members_service_is_handled_here(member_client, member, owner):
    name = name_owned_by(SELF, member.healthy, "mine")
    params = {"serviceName": name, "ip": "127.0.0.63", "port": "8080"}

    response = await member_client.post(f"{NS}/instance", params=params)
    assert (response.status, await response.text()) == (200, "ok")
    beat = await member_client.put(f"{NS}/instance/beat", params=params)
    assert beat.status == 200 and (await beat.json())["code"] == 10200

    assert owner.received == []
    assert await hosts(member_client, name) == ["127.0.0.63"]
    assert member.forwarded("ok") == 0


async def test_reads_are_never_forwarded(member_client, member, owner):
    name = name_owned_by(owner.address, member.healthy, "theirs")
    await replicate(member_client, owner.address, [service(name, 1, "127.0.0.64")])

    assert await hosts(member_client, name) == ["127.0.0.64"]
    detail = await member_client.get(f"{NS}/instance", params={"serviceName": name, "ip": "127.0.0.64", "port": "8080"})
    assert detail.status == 200
    assert (await member_client.get(f"{NS}/service", params={"serviceName": name})).status == 200

    assert owner.received == []
    assert member.forwarded("ok") == 0


async def test_an_unreachable_owner_is_reported_and_the_client_gets_503_after_the_retries(member_client, member, dead):
    name = name_owned_by(dead, member.healthy, "lost")
    params = {"serviceName": name, "ip": "127.0.0.65", "port": "8080"}

    status, text = await session_request(member_client, "POST", f"{NS}/instance", params=params)

    assert status == 503, text
    assert name in text
    await eventually(lambda: len(member.stub.told) == FORWARD_ATTEMPTS)
    assert member.stub.told == [PeerFailed(dead, True)] * FORWARD_ATTEMPTS
    assert member.forwarded("failed") == FORWARD_ATTEMPTS
    assert member.forwarded("ok") == 0
    assert member.core.service_count == 0


async def test_an_unreachable_owner_taken_over_meanwhile_gets_the_write_handled_here(
    member_client, member, owner, dead
):
    after = tuple(sorted((SELF, owner.address)))
    index = 0
    while not (
        responsible_member(grouped(f"moved-{index}"), member.healthy) == dead
        and responsible_member(grouped(f"moved-{index}"), after) == SELF
    ):
        index += 1
    name = f"moved-{index}"

    def mark_down(message) -> None:
        if isinstance(message, PeerFailed):
            member.set_view({SELF: UP, owner.address: UP, message.peer: DOWN})

    member.stub.react = mark_down
    response = await member_client.post(
        f"{NS}/instance", params={"serviceName": name, "ip": "127.0.0.66", "port": "8080"}
    )

    assert (response.status, await response.text()) == (200, "ok")
    assert await hosts(member_client, name) == ["127.0.0.66"]
    assert PeerFailed(dead, True) in member.stub.told
    assert owner.received == []
    assert member.forwarded("failed") >= 1


# -- joining --------------------------------------------------------------------------------


async def test_joining_loads_a_snapshot_from_a_serving_peer_then_serves(member_client, member, owner, dead):
    member.cluster.serving = False
    member.cluster.peers = (dead, owner.address)
    await replicate(member_client, owner.address, [service("stale", 1, "127.0.0.70")])
    owner.body, owner.content_type = encode_services([service("alpha", 4, "127.0.0.71")]), MSGPACK

    await async_join(member.front)

    assert member.cluster.serving
    [request] = owner.received
    assert (request.method, request.path_qs) == ("GET", DATUMS)
    assert request.headers[MEMBER_HEADER] == SELF
    assert signed_by((SELF,), request, owner.address) == PeerAccepted(SELF)
    assert await hosts(member_client, "alpha") == ["127.0.0.71"]
    assert await hosts(member_client, "stale") == []
    await eventually(lambda: member.stub.of_type(MarkReady))


async def test_joining_with_no_serving_peer_serves_this_members_own_data(member_client, member, owner, dead):
    member.cluster.serving = False
    member.cluster.peers = (dead, owner.address)
    await replicate(member_client, owner.address, [service("own", 1, "127.0.0.72")])
    owner.status, owner.body = 503, b"this member is starting"

    await async_join(member.front)

    assert member.cluster.serving
    assert len(owner.received) == 1
    assert await hosts(member_client, "own") == ["127.0.0.72"]
    await eventually(lambda: member.stub.of_type(MarkReady))


# -- 9. JSON views --------------------------------------------------------------------------


@pytest.fixture
def spread_view(member, owner, dead):
    """Self and `owner` UP, `dead` SUSPICIOUS, one more member DOWN."""
    down = "127.0.0.1:18851"
    member.set_view({SELF: UP, owner.address: UP, dead: SUSPICIOUS, down: DOWN})
    return {SELF: UP, owner.address: UP, dead: SUSPICIOUS, down: DOWN}


async def rest_data(client, path: str, **params):
    response = await client.get(path, params=params)
    assert response.status == 200
    document = await response.json()
    assert (document["code"], document["message"]) == (200, None)
    return document["data"]


async def test_cluster_nodes_list_every_member_with_its_state(member_client, spread_view, owner):
    rows = await rest_data(member_client, f"{CORE}/nodes")

    assert [r["address"] for r in rows] == sorted(spread_view)
    assert {r["address"]: r["state"] for r in rows} == spread_view
    for row in rows:
        host, _, port = row["address"].rpartition(":")
        assert (row["ip"], row["port"]) == (host, int(port))
        assert row["extendInfo"]["lastRefreshTime"] == 1_700_000_000_000
    filtered = await rest_data(member_client, f"{CORE}/nodes", keyword=owner.address.rpartition(":")[2])
    assert [r["address"] for r in filtered] == [owner.address]
    assert await rest_data(member_client, f"{CORE}/nodes", keyword="10.0.0.") == []


async def test_cluster_self_simple_nodes_and_health(member_client, member, spread_view):
    me = await rest_data(member_client, f"{CORE}/self")
    assert (me["address"], me["ip"], me["port"], me["state"]) == (SELF, "127.0.0.1", 18848, UP)
    assert await rest_data(member_client, f"{CORE}/simple/nodes") == sorted(spread_view)
    assert await rest_data(member_client, f"{CORE}/health") == UP

    member.set_view({**spread_view, SELF: STARTING})
    assert await rest_data(member_client, f"{CORE}/health") == STARTING
    assert (await rest_data(member_client, f"{CORE}/self"))["state"] == STARTING


async def test_operator_servers_with_and_without_healthy_only(member_client, spread_view):
    every = (await (await member_client.get(f"{NS}/operator/servers")).json())["servers"]
    assert {s["address"]: s["state"] for s in every} == spread_view

    healthy = (await (await member_client.get(f"{NS}/operator/servers", params={"healthy": "true"})).json())["servers"]
    assert {s["address"]: s["state"] for s in healthy} == {a: s for a, s in spread_view.items() if s == UP}


async def test_distro_server_and_status_follow_the_healthy_view(member_client, member, spread_view):
    healthy = member.healthy
    assert len(healthy) == 3  # UP and SUSPICIOUS members
    for owner_address in healthy:
        name = name_owned_by(owner_address, healthy, "placed")
        for base in ("operator", "ops"):
            response = await member_client.get(f"{NS}/{base}/distro/server", params={"serviceName": name})
            assert await response.json() == {"responsibleServer": owner_address}
    grouped_query = {"serviceName": "placed-0", "groupName": "G1"}
    answer = await (await member_client.get(f"{NS}/operator/distro/server", params=grouped_query)).json()
    assert answer == {"responsibleServer": responsible_member("G1@@placed-0", healthy)}

    status = await (await member_client.get(f"{NS}/operator/distro/status")).json()
    assert status == {"status": list(healthy)}


async def test_operator_metrics_count_only_the_services_this_member_owns(member_client, member, owner, dead):
    mine = names_owned_by(SELF, member.healthy, 2, "mine")
    theirs = names_owned_by(owner.address, member.healthy, 2, "theirs")
    lost = name_owned_by(dead, member.healthy, "lost")
    await replicate(
        member_client,
        owner.address,
        [
            service(mine[0], 1, "127.0.0.81", "127.0.0.82"),
            service(mine[1], 1, "127.0.0.83"),
            *(service(n, 1, "127.0.0.84") for n in theirs),
            service(lost, 1, "127.0.0.85", "127.0.0.86"),
        ],
    )

    metrics = await (await member_client.get(f"{NS}/operator/metrics")).json()

    assert (metrics["serviceCount"], metrics["instanceCount"]) == (5, 7)
    assert (metrics["responsibleServiceCount"], metrics["responsibleInstanceCount"]) == (2, 3)
    assert metrics["status"] == UP


# -- the standalone node --------------------------------------------------------------------


async def test_a_standalone_node_lists_itself_up_and_has_no_peer_endpoints(client):
    rows = await rest_data(client, f"{CORE}/nodes")
    assert [(r["address"], r["state"]) for r in rows] == [("127.0.0.1:8848", UP)]
    assert await rest_data(client, f"{CORE}/simple/nodes") == ["127.0.0.1:8848"]
    assert await rest_data(client, f"{CORE}/health") == UP
    status = await (await client.get(f"{NS}/operator/distro/status")).json()
    assert status == {"status": ["127.0.0.1:8848"]}
    for method, path in PEER_ENDPOINTS:
        body = encode_report("127.0.0.1:8849", UP)
        response = await client.request(
            method, path, data=body, headers=peer_headers("127.0.0.1:8849", method, path, body)
        )
        assert response.status == 404, path


# The 2.x and 3.x APIs' writes go the same way (http/naming_v2, naming_v3).
API_WRITES = {
    "v2 register": ("POST", "/nacos/v2/ns/instance", {"ip": "127.0.0.61", "port": "8080"}),
    "v2 deregister": ("DELETE", "/nacos/v2/ns/instance", {"ip": "127.0.0.61", "port": "8080"}),
    "v2 update": ("PUT", "/nacos/v2/ns/instance", {"ip": "127.0.0.61", "port": "8080", "weight": "2"}),
    "v2 patch": ("PATCH", "/nacos/v2/ns/instance", {"ip": "127.0.0.61", "port": "8080", "weight": "2"}),
    "v2 beat": ("PUT", "/nacos/v2/ns/instance/beat", {"beat": BEAT}),
    "v2 metadata batch": (
        "PUT",
        "/nacos/v2/ns/instance/metadata/batch",
        {"metadata": "k=v", "consistencyType": "ephemeral"},
    ),
    "v2 set health": ("PUT", "/nacos/v2/ns/health/instance", {"ip": "127.0.0.61", "port": "8080", "healthy": "false"}),
    "v3 register": ("POST", "/nacos/v3/client/ns/instance", {"ip": "127.0.0.61", "port": "8080"}),
    "v3 beat": ("POST", "/nacos/v3/client/ns/instance", {"ip": "127.0.0.61", "port": "8080", "heartBeat": "true"}),
    "v3 deregister": ("DELETE", "/nacos/v3/client/ns/instance", {"ip": "127.0.0.61", "port": "8080"}),
}


@pytest.mark.parametrize("write", list(API_WRITES))
async def test_a_v2_or_v3_write_for_another_members_service_is_forwarded(member_client, member, owner, write):
    method, path, params = API_WRITES[write]
    name = name_owned_by(owner.address, member.healthy, "theirs")
    owner.status, owner.content_type = 200, "application/json"
    owner.body = b'{"code":0,"message":"success","data":"ok"}'

    response = await member_client.request(method, path, params={"serviceName": name, **params})

    assert response.status == 200
    assert await response.read() == owner.body
    [received] = owner.received
    assert (received.method, URL(received.path_qs).path) == (method, path)
    assert received.headers[FORWARDED_HEADER] == SELF
    assert member.core.service_count == 0
    assert (member.forwarded("ok"), member.forwarded("failed")) == (1, 0)


@pytest.mark.parametrize("path", ["/nacos/v2/ns/instance", "/nacos/v3/client/ns/instance"])
async def test_a_persistent_v2_or_v3_register_is_handled_here(member_client, member, owner, path):
    name = name_owned_by(owner.address, member.healthy, "theirs")

    response = await member_client.post(path, params={"serviceName": name, **PERSISTENT})

    assert response.status == 200, await response.text()
    assert (await response.json())["code"] == 0
    assert owner.received == []
    listed = await member_client.get("/nacos/v2/ns/instance/list", params={"serviceName": name})
    assert [h["ip"] for h in (await listed.json())["data"]["hosts"]] == ["127.0.0.67"]


async def test_a_bad_v2_write_is_refused_in_the_envelope_before_any_forwarding(member_client, member, owner):
    response = await member_client.post("/nacos/v2/ns/instance", params={"ip": "127.0.0.61", "port": "8080"})

    assert response.status == 400
    assert await response.json() == {
        "code": 10000,
        "message": "parameter missing",
        "data": "Param 'serviceName' is required.",
    }
    assert owner.received == []


async def test_while_starting_v2_clients_get_503_and_the_v2_operator_views_still_answer(member_client, member):
    member.cluster.serving = False
    mine = name_owned_by(SELF, member.healthy, "mine")

    register = {"serviceName": mine, "ip": "127.0.0.51", "port": "8080"}
    for path in ("/nacos/v2/ns/instance", "/nacos/v3/client/ns/instance"):
        status, text = await session_request(member_client, "POST", path, params=register)
        assert status == 503 and "starting" in text
    assert member.core.service_count == 0
    for base in ("/nacos/v2/ns/operator", "/nacos/v2/ns/ops"):
        metrics = await (await member_client.get(f"{base}/metrics")).json()
        assert metrics["data"]["status"] == STARTING
