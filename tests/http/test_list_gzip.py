"""instance/list answers gzip-compressed to clients that accept gzip (the Java and Node clients
send `Accept-Encoding: gzip,deflate,sdch`), plain JSON to the others, with the same content."""

from __future__ import annotations

import pytest

from nacos_actors.http.params.clients import accepts_gzip
from nacos_actors.render.lists import GZIP_MIN_BYTES
from tests.http.conftest import BASE
from tests.http.support import ok

CLIENT_ACCEPT_ENCODING = "gzip,deflate,sdch"


async def register(client, service: str, count: int) -> None:
    for port in range(8000, 8000 + count):
        await ok(client, "POST", "/instance", {"serviceName": service, "ip": "127.0.0.1", "port": port})


async def listed(client, service: str, accept_encoding: str | None):
    headers = {"Accept-Encoding": accept_encoding if accept_encoding is not None else "identity"}
    response = await client.get(f"{BASE}/instance/list", params={"serviceName": service}, headers=headers)
    assert response.status == 200
    return response, await response.read()


async def test_a_large_answer_is_gzipped_for_a_client_that_accepts_it_and_says_the_same(client):
    await register(client, "big", 20)
    zipped, zipped_json = await listed(client, "big", CLIENT_ACCEPT_ENCODING)
    plain, plain_json = await listed(client, "big", None)
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.headers["Vary"] == "Accept-Encoding"
    assert zipped.content_type == "application/json"
    assert "Content-Encoding" not in plain.headers
    assert len(plain_json) >= GZIP_MIN_BYTES
    assert zipped_json == plain_json  # the test client decompresses: the same bytes of JSON
    assert int(zipped.headers["Content-Length"]) < len(plain_json) // 4


async def test_a_small_answer_stays_plain(client):
    await register(client, "small", 1)
    response, body = await listed(client, "small", CLIENT_ACCEPT_ENCODING)
    assert len(body) < GZIP_MIN_BYTES
    assert "Content-Encoding" not in response.headers


async def test_an_answer_changes_with_the_service_in_both_encodings(client):
    await register(client, "moving", 20)
    await listed(client, "moving", CLIENT_ACCEPT_ENCODING)
    await listed(client, "moving", None)
    await register(client, "moving", 21)
    for encoding in (CLIENT_ACCEPT_ENCODING, None):
        _, body = await listed(client, "moving", encoding)
        assert body.count(b'"ip":"127.0.0.1"') == 21


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip,deflate,sdch", True),
        ("gzip", True),
        ("GZIP", True),
        ("deflate, gzip;q=0.5", True),
        ("x-gzip", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0", False),
        ("gzip;q=abc", False),
        ("identity", False),
        ("deflate, br", False),
        ("", False),
        (None, False),
    ],
)
def test_accept_encoding_is_read_as_http_says(header, expected):
    headers = {} if header is None else {"Accept-Encoding": header}
    assert accepts_gzip(headers) is expected
