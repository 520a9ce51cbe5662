"""Request helpers shared by the HTTP tests: every parameter in the query or in a form body."""

from __future__ import annotations

from tests.http.conftest import BASE


async def call(client, method, path, params, via="query"):
    """`method` `BASE + path` with `params` in the query string (via='query') or a form body."""
    if via == "query":
        return await client.request(method, f"{BASE}{path}", params=params)
    return await client.request(method, f"{BASE}{path}", data=params)


async def ok(client, method, path, params, via="query"):
    """The request must answer 200 `ok`."""
    response = await call(client, method, path, params, via)
    text = await response.text()
    assert (response.status, text) == (200, "ok"), text


async def refused(client, method, path, params, status=400, via="query"):
    """The request must answer `status`; returns its message."""
    response = await call(client, method, path, params, via)
    text = await response.text()
    assert response.status == status, text
    return text


async def enveloped(client, method, url, params=None, via="query", status=200):
    """The `{code, message, data}` answer of `method` `url` (the 2.x/3.x APIs), which must have
    `status` and be JSON."""
    if via == "query":
        response = await client.request(method, url, params=params)
    else:
        response = await client.request(method, url, data=params)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def enveloped_data(client, method, url, params=None, via="query"):
    """The `data` of a successful 2.x/3.x call (code 0, message success)."""
    document = await enveloped(client, method, url, params, via)
    assert (document["code"], document["message"]) == (0, "success"), document
    return document["data"]
