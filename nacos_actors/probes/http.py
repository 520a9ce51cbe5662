"""The HTTP checker: GET the instance's own address with the checker's path and headers (Nacos
1.4's HttpHealthCheckProcessor), over one shared aiohttp session. Event loop thread only."""

from __future__ import annotations

import errno
import re
from typing import Final
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from nacos_actors import __version__
from nacos_actors.core.probing import (
    PROBE_BAD_ANSWER,
    PROBE_ERROR,
    PROBE_OK,
    PROBE_REFUSED,
    PROBE_TIMEOUT,
    ProbeTarget,
)
from nacos_actors.probes.finding import Finding, not_probed, probe_address

USER_AGENT: Final = f"Nacos-Server:nacos-actors/{__version__}"
"""Sent unless the checker's headers set User-Agent (Nacos sends its server version)."""

SOFT_FAILURE_STATUSES: Final = frozenset({302, 503})
"""Statuses Nacos counts as one failure; any other unhealthy status fails the instance at once."""

# What may stay as it is in a request target's path and query: the RFC 3986 characters and `%`
# (the checker's escapes are sent as written); anything else (spaces, controls, non-ASCII) is
# percent-encoded, so no header or second request can be smuggled in.
_PATH_SAFE: Final = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE: Final = _PATH_SAFE + "?"
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_HEADER_VALUE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_FRAMING_HEADERS: Final = frozenset({"content-length", "transfer-encoding"})


def probe_url(target: ProbeTarget) -> URL:
    """`http://ip:port` + the target's path and query (a fragment is dropped). Built from its
    parts, so no path (`//other-host/x`, `http://10.0.0.1/`) can change the host or port: the
    path only ever becomes the request target sent to the instance. ValueError for a target
    that is not probed (finding.probe_address)."""
    address = probe_address(target)
    if address is None:
        raise ValueError(f"not an IP literal and port: {target.ip!r} {target.port}")
    path, _, query = target.path.partition("#")[0].partition("?")
    if not path.startswith("/"):
        path = "/" + path
    return URL.build(
        scheme="http",
        host=f"[{address}]" if address.version == 6 else str(address),
        port=target.port,
        path=quote(path, safe=_PATH_SAFE),
        query_string=quote(query, safe=_QUERY_SAFE),
        encoded=True,
    )


def probe_headers(target: ProbeTarget) -> CIMultiDict[str]:
    """The request's headers: User-Agent, then the checker's own (they win). A header HTTP does
    not allow (a name that is not a token, a value with a line break or a control character)
    and the body's framing headers are left out."""
    headers: CIMultiDict[str] = CIMultiDict({"User-Agent": USER_AGENT})
    for name, value in target.headers:
        if not _HEADER_NAME.fullmatch(name) or _BAD_HEADER_VALUE.search(value):
            continue
        if name.lower() in _FRAMING_HEADERS:
            continue
        headers[name] = value
    return headers


def classify_status(status: int, expected_status: int) -> Finding:
    """OK on `expected_status`, and on any 2xx while that is the default 200; 302 and 503 are a
    counted failure; any other status fails the instance at once."""
    detail = f"http:{status}"
    if status == expected_status or (expected_status == 200 and 200 <= status < 300):
        return Finding(PROBE_OK, False, detail)
    return Finding(PROBE_BAD_ANSWER, status not in SOFT_FAILURE_STATUSES, detail)


class HttpChecker:
    """Runs HTTP probes over one aiohttp session, made on first use: every probe on a new
    connection (closed after the status line and headers; the body is not read), at most
    `max_connections` open at once, no redirect followed, no proxy, no resolver (only IP
    literals are probed). Event loop thread only."""

    def __init__(self, max_connections: int) -> None:
        self._max_connections = max(1, max_connections)
        self._session: aiohttp.ClientSession | None = None

    def _async_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    force_close=True, limit=self._max_connections, limit_per_host=0, use_dns_cache=False
                ),
                # The prober bounds each probe's whole run; aiohttp's own limits stay out of it.
                timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_connect=None, sock_read=None),
                trust_env=False,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def probe(self, target: ProbeTarget) -> Finding:
        """GET probe_url(target) with probe_headers(target) and classify the answer
        (classify_status). Refused: REFUSED, immediate; the kernel's connect timeout: TIMEOUT;
        another connection or protocol error: ERROR. The caller bounds the time."""
        if probe_address(target) is None:
            return not_probed("http")
        try:
            async with self._async_session().get(
                probe_url(target), headers=probe_headers(target), allow_redirects=False
            ) as response:
                status = response.status
        except aiohttp.ClientConnectorError as error:
            if error.os_error.errno in (errno.ECONNREFUSED, errno.ECONNRESET):
                return Finding(PROBE_REFUSED, True, "http:refused")
            if isinstance(error.os_error, TimeoutError):
                return Finding(PROBE_TIMEOUT, False, "http:timeout")
            return Finding(PROBE_ERROR, False, f"http:{_error_name(error.os_error)}")
        except TimeoutError:
            return Finding(PROBE_TIMEOUT, False, "http:timeout")
        except aiohttp.ClientError as error:
            return Finding(PROBE_ERROR, False, f"http:{type(error).__name__}")
        return classify_status(status, target.expected_status)

    async def async_close(self) -> None:
        """Close the session and its connections. Probes after this make a new one."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _error_name(error: OSError) -> str:
    return errno.errorcode.get(error.errno or 0, type(error).__name__)
