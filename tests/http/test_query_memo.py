"""The query memo: a remembered parse is the parse the request would get afresh."""

import asyncio
from urllib.parse import quote

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st

from nacos_actors.http.front import memoized_params, request_params
from nacos_actors.http.naming_v1 import BEAT_QUERIES, LIST_QUERIES
from nacos_actors.http.params.base import MEMO_ENTRY_OVERHEAD, MEMO_QUERY_LENGTH, ParamError, Params, QueryMemo
from nacos_actors.http.params.instances import beat_query, list_query
from tests.http.conftest import BASE


def parsed_or_error(parse, params):
    try:
        return parse(params)
    except ParamError as error:
        return ("error", error.message)


def test_memo_remembers_a_parse_and_starts_afresh_when_full():
    calls = []

    def parse(params):
        calls.append(params.get("n"))
        return params.get("n")

    memo = QueryMemo(parse, limit=2)
    assert memo.remember("n=1", Params({"n": "1"})) == "1"
    assert memo.remember("n=2", Params({"n": "2"})) == "2"
    assert memo.known == {"n=1": "1", "n=2": "2"}
    memo.remember("n=3", Params({"n": "3"}))
    assert memo.known == {"n=3": "3"}
    assert calls == ["1", "2", "3"]


def test_memo_starts_afresh_past_its_bytes():
    """Long queries (up to MEMO_QUERY_LENGTH each) would have filled 131,072 entries: ~190 MB."""
    memo = QueryMemo(lambda params: 1, max_bytes=3 * (MEMO_ENTRY_OVERHEAD + 100))
    queries = [f"n={i:098}" for i in range(7)]  # 100 characters each
    for query in queries:
        memo.remember(query, Params({"n": "1"}))
        assert len(memo.known) <= 3
    assert list(memo.known) == queries[6:]


def test_memo_keeps_neither_failures_nor_long_queries():
    def parse(params):
        if params.get("bad"):
            raise ParamError("Param 'bad' is bad.")
        return 1

    memo = QueryMemo(parse)
    with pytest.raises(ParamError):
        memo.remember("bad=1", Params({"bad": "1"}))
    long_query = "x=" + "a" * MEMO_QUERY_LENGTH
    assert memo.remember(long_query, Params({"x": "a"})) == 1
    assert memo.known == {}


# Pieces that matter to the two memoized parsers, raw and percent-encoded, so that queries
# differing only in encoding (`%26` against `&`) are generated too.
_PIECES = st.sampled_from([
    "serviceName=", "s1", "DEFAULT_GROUP@@s1", "groupName=", "g", "namespaceId=", "public", "ns-1",
    "clusters=", "A,B", "healthyOnly=", "true", "FALSE", "maybe", "udpPort=", "53", "70000", "clientIP=",
    "127.0.0.1", "::1", "app=", "ip=", "port=", "8080", "0", "clusterName=", "C1", "ephemeral=",
    "beat=", '{"ip":"127.0.0.1","port":81}', "[]", "&", "=", "%26", "%3D", "%40", "%20", " ", "+", "é",
])
_QUERIES = st.lists(_PIECES, max_size=14).map("".join)


async def _twice(path_qs, memo):
    outcomes = []
    for _ in range(2):
        try:
            outcomes.append(await memoized_params(make_mocked_request("GET", path_qs), memo))
        except ParamError as error:
            outcomes.append(("error", error.message))
    return outcomes


@settings(max_examples=300, deadline=None)
@given(query=_QUERIES)
def test_a_remembered_parse_equals_a_fresh_one(query):
    """For any query: the first (parsed) and second (remembered) answers of memoized_params
    equal what the handler would get from the request's parameters parsed afresh."""
    encoded = quote(query, safe="=&%@,+:[]{}\"")
    for memo, parse in ((QueryMemo(list_query), list_query), (QueryMemo(beat_query), beat_query)):
        request = make_mocked_request("GET", f"{BASE}/instance/list?{encoded}")
        fresh = parsed_or_error(parse, asyncio.run(request_params(request)))

        assert asyncio.run(_twice(request.path_qs, memo)) == [fresh, fresh]


async def test_list_answers_alike_from_the_memo(client):
    await client.post(f"{BASE}/instance", params={"serviceName": "memo", "ip": "127.0.0.1", "port": "80"})
    url = f"{BASE}/instance/list?serviceName=memo&clusters=DEFAULT"
    first = await (await client.get(url)).json()
    assert "serviceName=memo&clusters=DEFAULT" in LIST_QUERIES.known
    second = await (await client.get(url)).json()
    assert first == second and [h["port"] for h in second["hosts"]] == [80]


async def test_an_encoded_ampersand_is_not_a_separator_to_the_memo(client):
    await client.post(f"{BASE}/instance", params={"serviceName": "amp", "ip": "127.0.0.1", "port": "80"})
    plain = await client.get(f"{BASE}/instance/list?serviceName=amp&clusters=DEFAULT")
    encoded = await client.get(f"{BASE}/instance/list?serviceName=amp%26clusters%3DDEFAULT")
    assert plain.status == 200
    assert encoded.status == 400 and "serviceName" in await encoded.text()


async def test_bad_beats_are_refused_every_time(client):
    for _ in range(2):
        response = await client.put(f"{BASE}/instance/beat?serviceName=memo-bad&ip=127.0.0.1&port=99999")
        assert response.status == 400 and "port" in await response.text()
    assert not any("memo-bad" in query for query in BEAT_QUERIES.known)


async def test_beats_with_a_form_body_are_parsed_afresh(client):
    await client.post(f"{BASE}/instance", params={"serviceName": "memo-form", "ip": "127.0.0.1", "port": "81"})
    body = {"serviceName": "memo-form", "ip": "127.0.0.1", "port": "81"}
    for _ in range(2):
        response = await client.put(f"{BASE}/instance/beat", data=body)
        assert response.status == 200 and (await response.json())["code"] == 10200
    assert "" not in BEAT_QUERIES.known
