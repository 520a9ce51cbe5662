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
