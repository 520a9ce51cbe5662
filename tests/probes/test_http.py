"""The HTTP checker against a real aiohttp server on the loopback (and raw listeners)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from nacos_actors.core.probing import PROBE_BAD_ANSWER, PROBE_ERROR, PROBE_OK, PROBE_REFUSED
from nacos_actors.model import HTTP_CHECKER
from nacos_actors.probes.finding import Finding
from nacos_actors.probes.http import USER_AGENT, HttpChecker, classify_status, probe_headers, probe_url
from tests.probes.servers import HOST, HOST6, closed_port, has_ipv6_loopback, silent_listener, target


@dataclass
class Seen:
    """What the server received: each request's raw target and headers."""

    targets: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


def app_of(seen: Seen) -> web.Application:
    """Answers the status in `?status=` (200 when absent) to any path; a 302 points at /."""

    async def answer(request: web.Request) -> web.Response:
        seen.targets.append(request.raw_path)
        seen.headers.append(dict(request.headers))
        status = int(request.query.get("status", "200"))
        headers = {"Location": "/"} if status == 302 else {}
        return web.Response(status=status, text="body" * 1000, headers=headers)

    app = web.Application()
    app.router.add_route("GET", r"/{tail:[\s\S]*}", answer)
    return app


Server = tuple[Seen, int]


@pytest.fixture
async def http_server(aiohttp_server: Callable[..., Awaitable[object]]) -> Server:
    seen = Seen()
    server = await aiohttp_server(app_of(seen), host=HOST)
    return seen, server.port  # type: ignore[attr-defined]


@pytest.fixture
async def checker():
    checker = HttpChecker(max_connections=64)
    yield checker
    await checker.async_close()


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, Finding(PROBE_OK, False, "http:200")),
        (204, Finding(PROBE_OK, False, "http:204")),
        (302, Finding(PROBE_BAD_ANSWER, False, "http:302")),
        (503, Finding(PROBE_BAD_ANSWER, False, "http:503")),
        (404, Finding(PROBE_BAD_ANSWER, True, "http:404")),
        (500, Finding(PROBE_BAD_ANSWER, True, "http:500")),
    ],
)
async def test_statuses_are_classified_as_nacos_does(
    http_server: Server, checker: HttpChecker, status: int, expected: Finding
):
    seen, port = http_server
    assert await checker.probe(target(HTTP_CHECKER, port, path=f"/health?status={status}")) == expected
    assert seen.targets == [f"/health?status={status}"]  # a 302 is not followed


async def test_an_expected_status_other_than_200_is_the_only_ok_one(http_server: Server, checker: HttpChecker):
    _, port = http_server
    assert (
        await checker.probe(target(HTTP_CHECKER, port, path="/?status=404", expected_status=404))
    ).outcome == PROBE_OK
    assert await checker.probe(target(HTTP_CHECKER, port, path="/?status=200", expected_status=204)) == Finding(
        PROBE_BAD_ANSWER, True, "http:200"
    )


async def test_the_path_query_and_custom_headers_arrive(http_server: Server, checker: HttpChecker):
    seen, port = http_server
    headers = (
        ("X-Probe", "yes"),
        ("Authorization", "Bearer t0ken"),
        ("Bad Name", "x"),
        ("X-Split", "a\r\nX-Injected: 1"),
        ("Content-Length", "5"),
    )
    finding = await checker.probe(target(HTTP_CHECKER, port, path="/app/health?deep=1&who=a%20b", headers=headers))
    assert finding.outcome == PROBE_OK
    assert seen.targets == ["/app/health?deep=1&who=a%20b"]
    received = seen.headers[0]
    assert received["X-Probe"] == "yes"
    assert received["Authorization"] == "Bearer t0ken"
    assert received["User-Agent"] == USER_AGENT
    assert received["Host"] == f"{HOST}:{port}"
    assert "X-Injected" not in received and "X-Split" not in received and "Bad Name" not in received
    assert "Content-Length" not in received


async def test_a_host_header_and_user_agent_from_the_checker_are_sent_as_given(
    http_server: Server, checker: HttpChecker
):
    seen, port = http_server
    headers = (("Host", "app.internal"), ("User-Agent", "mine"))
    assert (await checker.probe(target(HTTP_CHECKER, port, headers=headers))).outcome == PROBE_OK
    assert seen.headers[0]["Host"] == "app.internal"
    assert seen.headers[0]["User-Agent"] == "mine"


@pytest.mark.parametrize(
    ("path", "arrives_as"),
    [
        ("//evil.example/x", "//evil.example/x"),
        ("http://10.0.0.1/", "/http://10.0.0.1/"),
        ("@10.0.0.1/x", "/@10.0.0.1/x"),
        ("", "/"),
        ("/a b/é?q=é#fragment", "/a%20b/%C3%A9?q=%C3%A9"),
        ("/x\r\nHost: 10.0.0.1", "/x%0D%0AHost:%2010.0.0.1"),
    ],
)
async def test_no_path_changes_where_the_probe_goes(
    http_server: Server, checker: HttpChecker, path: str, arrives_as: str
):
    seen, port = http_server
    assert (await checker.probe(target(HTTP_CHECKER, port, path=path))).outcome == PROBE_OK
    assert seen.targets == [arrives_as]
    assert seen.headers[0]["Host"] == f"{HOST}:{port}"


@given(
    path=st.text(max_size=60),
    port=st.integers(1, 65_535),
    ip=st.sampled_from(["127.0.0.1", "10.1.2.3", "::1", "fd00::5"]),
)
def test_the_url_always_holds_the_targets_address(path: str, port: int, ip: str):
    url = probe_url(target(HTTP_CHECKER, port, ip=ip, path=path))
    assert (url.scheme, url.host, url.port, url.user, url.password) == ("http", ip, port, None, None)
    assert url.raw_path.startswith("/")
    assert not any(c in url.raw_path_qs for c in "\r\n\x00 #")


@given(headers=st.lists(st.tuples(st.text(max_size=12), st.text(max_size=20)), max_size=5))
def test_headers_never_hold_a_line_break_or_a_bad_name(headers: list[tuple[str, str]]):
    for name, value in probe_headers(target(HTTP_CHECKER, 80, headers=tuple(headers))).items():
        assert name and not any(c in name for c in " :\r\n\x00") and name.isascii()
        assert not any(c in value for c in "\r\n\x00")


def test_classify_status_table():
    assert classify_status(299, 200).outcome == PROBE_OK
    assert classify_status(301, 200) == Finding(PROBE_BAD_ANSWER, True, "http:301")
    assert classify_status(200, 201) == Finding(PROBE_BAD_ANSWER, True, "http:200")


async def test_a_closed_port_is_refused_and_fails_at_once(checker: HttpChecker):
    assert await checker.probe(target(HTTP_CHECKER, closed_port())) == Finding(PROBE_REFUSED, True, "http:refused")


async def test_a_server_that_closes_without_answering_is_an_error(checker: HttpChecker):
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, HOST, 0)
    async with server:
        finding = await checker.probe(target(HTTP_CHECKER, server.sockets[0].getsockname()[1]))
    assert (finding.outcome, finding.immediate) == (PROBE_ERROR, False)
    assert finding.detail.startswith("http:")


async def test_a_server_that_never_answers_is_bounded_by_the_caller_and_the_connection_closed(checker: HttpChecker):
    async with silent_listener() as listener:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await checker.probe(target(HTTP_CHECKER, listener.port))
        async with asyncio.timeout(2):
            while listener.closed_by_peer < 1:
                await asyncio.sleep(0.005)
        assert listener.received.startswith(b"GET / HTTP/1.1\r\n")


@pytest.mark.parametrize("ip", ["localhost", "example.com", "fe80::1%lo"])
async def test_a_name_is_never_asked_for(checker: HttpChecker, ip: str):
    assert await checker.probe(target(HTTP_CHECKER, 80, ip=ip)) == Finding(
        PROBE_ERROR, False, "http:not an IP literal and port"
    )


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
async def test_ipv6(aiohttp_server, checker: HttpChecker):
    seen = Seen()
    server = await aiohttp_server(app_of(seen), host=HOST6)
    assert (await checker.probe(target(HTTP_CHECKER, server.port, ip=HOST6, path="/v6"))).outcome == PROBE_OK
    assert seen.targets == ["/v6"]
    assert seen.headers[0]["Host"] == f"[{HOST6}]:{server.port}"
