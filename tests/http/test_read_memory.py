"""Bounded memory for reads (issue 14, finding 4): whole-registry answers written in chunks as
they are rendered; instance/list answers memoized once per query whatever its spelling, within
the memo's bytes.

Every test runs against a real registry actor; no response may be a 5xx.
"""

from __future__ import annotations

import asyncio
import gzip
import json

from tests.http.conftest import BASE

IP = "127.0.0.1"


async def register(client, service="demo", port=80, **extra):
    params = {"serviceName": service, "ip": IP, "port": str(port), **extra}
    response = await client.post(f"{BASE}/instance", params=params)
    assert (response.status, await response.text()) == (200, "ok")


# -- whole-registry answers are written in chunks ----------------------------------------------


async def test_whole_registry_answers_are_chunked_when_large_and_plain_when_small(client):
    async def get(path, params):
        response = await client.get(path, params=params)
        assert response.status == 200
        return response.headers, await response.json()

    headers, small = await get(f"{BASE}/service/list", {"pageNo": "1", "pageSize": "10"})
    assert small == {"count": 0, "doms": []} and "Content-Length" in headers
    await asyncio.gather(*(register(client, f"svc-{i:04}", port=i + 1) for i in range(1500)))
    names = [f"svc-{i:04}" for i in range(1500)]
    headers, listed = await get(f"{BASE}/service/list", {"pageNo": "1", "pageSize": "5000"})
    assert listed == {"count": 1500, "doms": names} and "Content-Length" in headers  # 20 KB: one piece
    headers, catalog = await get(f"{BASE}/catalog/services", {"pageNo": "1", "pageSize": "5000"})
    assert headers.get("Transfer-Encoding") == "chunked"
    assert catalog["count"] == 1500 and [row["name"] for row in catalog["serviceList"]] == names
    headers, page = await get(f"{BASE}/catalog/services", {"pageNo": "2", "pageSize": "700"})
    assert [row["name"] for row in page["serviceList"]] == names[700:1400]
    headers, detailed = await get(f"{BASE}/catalog/services", {"withInstances": "true"})
    assert headers.get("Transfer-Encoding") == "chunked"
    assert [item["clusterMap"]["DEFAULT"]["hosts"][0]["port"] for item in detailed] == list(range(1, 1501))
    headers, targets = await get("/nacos/prometheus", {})
    assert headers.get("Transfer-Encoding") == "chunked"
    assert [t["targets"] for t in targets] == [[f"{IP}:{i + 1}"] for i in range(1500)]


# -- the instance/list memo ---------------------------------------------------------------------


async def test_spellings_of_one_list_query_share_one_memo_entry(client, front):
    """Finding 4: each spelling of `clusters` was memoized apart, up to 16 per snapshot."""
    await register(client)
    spellings = ["DEFAULT", "DEFAULT,DEFAULT", ",DEFAULT", "DEFAULT,,", "DEFAULT , DEFAULT"]
    for spelling in spellings * 3:
        response = await client.get(f"{BASE}/instance/list", params={"serviceName": "demo", "clusters": spelling})
        document = await response.json()
        assert document["clusters"] == spelling and [h["port"] for h in document["hosts"]] == [80]
    assert len(front.list_memo) == 1
    gzipped = {"Accept-Encoding": "gzip"}
    for port in range(81, 83):
        await register(client, port=port, metadata="k=" + "v" * 18)
    for _ in range(2):
        response = await client.get(f"{BASE}/instance/list", params={"serviceName": "demo"}, headers=gzipped,
                                    auto_decompress=False)
        assert response.headers.get("Content-Encoding") == "gzip"
        assert [h["port"] for h in json.loads(gzip.decompress(await response.read()))["hosts"]] == [80, 81, 82]
    assert len(front.list_memo) <= 2  # the old snapshot's entry is gone or replaced
    assert front.list_memo.bytes <= front.list_memo.max_bytes
