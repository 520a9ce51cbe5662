"""Malformed requests: each is a 4xx whose body names the parameter, and nothing is stored.

A table of bad requests, each sent with its parameters in the query string and again as a
form-urlencoded body; then body limits (413), unknown paths (404) and undecodable bodies.
No response in this module may be a 5xx.
"""

from __future__ import annotations

import gzip
from dataclasses import replace

import pytest

from nacos_actors.settings import Settings
from tests.http.conftest import BASE

SERVICE = "demo"
IP = "127.0.0.1"
REGISTER = {"serviceName": SERVICE, "ip": IP, "port": "8080"}
BEAT = {"serviceName": SERVICE}
PAGE = {"pageNo": "1", "pageSize": "10"}
CATALOG = {"serviceName": SERVICE, "clusterName": "DEFAULT", "pageNo": "1", "pageSize": "10"}


@pytest.fixture
def settings(request, small_body_settings):
    """Default settings; `small` (indirect parametrization) gives a 1 KiB body limit, `no
    metadata limit` lets metadata fill a whole body."""
    given = getattr(request, "param", None)
    if given == "no metadata limit":
        return replace(Settings(), max_instance_metadata_bytes=0)
    return small_body_settings if given == "small" else Settings()




def without(params, name):
    return {k: v for k, v in params.items() if k != name}


def case(method, path, params, named, status=400, id=None):
    return pytest.param(method, path, params, named, status, id=id or f"{method} {path} {named}")


def register_with(name, value, named=None):
    return case("POST", "/instance", {**REGISTER, name: value}, named or name, id=f"register {name}={value!r:.40}")


def _table():
    rows = []
    # -- required parameters: missing, empty, blank ------------------------------------
    for method, path, params in (
        ("POST", "/instance", REGISTER),
        ("PUT", "/instance", REGISTER),
        ("PATCH", "/instance", REGISTER),
        ("DELETE", "/instance", REGISTER),
        ("GET", "/instance", REGISTER),
    ):
        for name in ("serviceName", "ip", "port"):
            rows.append(case(method, path, without(params, name), name, id=f"{method} {path} no {name}"))
            for blank in ("", "   "):
                rows.append(case(method, path, {**params, name: blank}, name,
                                 id=f"{method} {path} {name}={blank!r}"))
    for method, path in (("GET", "/instance/list"), ("PUT", "/instance/beat"), ("POST", "/service"),
                         ("DELETE", "/service"), ("GET", "/service"), ("PUT", "/instance/metadata/batch")):
        rows.append(case(method, path, {}, "serviceName", id=f"{method} {path} no serviceName"))
    rows.append(case("PUT", "/service", {"serviceName": SERVICE}, "protectThreshold"))
    rows.append(case("PUT", "/service", {"protectThreshold": "0.5"}, "serviceName", id="PUT /service no name"))
    for name in ("pageNo", "pageSize"):
        rows.append(case("GET", "/service/list", without(PAGE, name), name, id=f"service/list no {name}"))
        rows.append(case("GET", "/catalog/services", without(PAGE, name), name, id=f"catalog/services no {name}"))
    for name in CATALOG:
        rows.append(case("GET", "/catalog/instances", without(CATALOG, name), name,
                         id=f"catalog/instances no {name}"))
    rows.append(case("PUT", "/instance/beat", {**BEAT, "port": "8080"}, "ip", id="light beat no ip"))
    rows.append(case("PUT", "/instance/beat", {**BEAT, "ip": IP}, "port", id="light beat no port"))

    # -- port ----------------------------------------------------------------------------
    for value in ("x", "0", "65536", "-1", "8080.5", "1e3", "0x50", "\uff18\uff10", "80 80",
                  "99999999999999999999999"):
        rows.append(register_with("port", value))
    rows.append(case("GET", "/instance", {**REGISTER, "port": "0"}, "port", id="detail port=0"))
    rows.append(case("DELETE", "/instance", {**REGISTER, "port": "65536"}, "port", id="delete port=65536"))
    rows.append(case("PATCH", "/instance", {**REGISTER, "port": "x"}, "port", id="patch port=x"))

    # -- weight --------------------------------------------------------------------------
    for value in ("NaN", "nan", "inf", "-inf", "Infinity", "-1", "-0.001", "10001", "1e5", "abc", "1_0",
                  "\uff11", "1,5", "0x1p3"):
        rows.append(register_with("weight", value))
    rows.append(case("PUT", "/instance", {**REGISTER, "weight": "NaN"}, "weight", id="update weight=NaN"))
    rows.append(case("PATCH", "/instance", {**REGISTER, "weight": "-1"}, "weight", id="patch weight=-1"))

    # -- metadata ------------------------------------------------------------------------
    for value in ("[1]", '{"a":{"b":1}}', '{"a":[1]}', '{"a":null}', "a=b=c", "=x", "abc", "a=1,,b=2",
                  '"text"', "1", "true", "null", "{bad json", "a=1,b"):
        rows.append(register_with("metadata", value))
    rows.append(case("PUT", "/instance", {**REGISTER, "metadata": "[1]"}, "metadata", id="update metadata=[1]"))
    rows.append(case("PATCH", "/instance", {**REGISTER, "metadata": "=x"}, "metadata", id="patch metadata==x"))
    rows.append(case("POST", "/service", {"serviceName": SERVICE, "metadata": "a=b=c"}, "metadata",
                     id="create service metadata=a=b=c"))
    rows.append(case("PUT", "/service", {"serviceName": SERVICE, "protectThreshold": "0", "metadata": "[1]"},
                     "metadata", id="update service metadata=[1]"))

    # -- booleans ------------------------------------------------------------------------
    for name in ("healthy", "enabled", "enable", "ephemeral"):
        for value in ("yes", "1", "maybe", "t", "on", "0", "no"):
            rows.append(register_with(name, value))
    rows.append(case("PATCH", "/instance", {**REGISTER, "healthy": "yes"}, "healthy", id="patch healthy=yes"))
    rows.append(case("PATCH", "/instance", {**REGISTER, "ephemeral": "1"}, "ephemeral", id="patch ephemeral=1"))
    rows.append(case("DELETE", "/instance", {**REGISTER, "ephemeral": "maybe"}, "ephemeral",
                     id="delete ephemeral=maybe"))
    rows.append(case("GET", "/instance/list", {"serviceName": SERVICE, "healthyOnly": "yes"}, "healthyOnly"))
    rows.append(case("GET", "/catalog/services", {**PAGE, "withInstances": "1"}, "withInstances"))
    rows.append(case("GET", "/catalog/services", {**PAGE, "hasIpCount": "y"}, "hasIpCount"))

    # -- service and group names ---------------------------------------------------------
    for value in ("a@@b@@c", "@@name", "group@@", "@@", "my service", "a/b", "d\u00e9mo", "\u670d\u52a1",
                  "x" * 256, "g" * 129 + "@@svc", "grp\n@@svc", "a#b", "a%b", "a\x00b", "a\tb"):
        rows.append(register_with("serviceName", value))
        rows.append(case("GET", "/instance/list", {"serviceName": value}, "serviceName",
                         id=f"list serviceName={value!r:.40}"))
    for value in ("g" * 129, "bad group", "a/b", "grp@@x", "gr\u00fcn"):
        rows.append(register_with("groupName", value))
    rows.append(case("POST", "/service", {"serviceName": "a@@b@@c"}, "serviceName", id="create service a@@b@@c"))
    rows.append(case("GET", "/service/list", {**PAGE, "groupName": "bad group"}, "groupName"))

    # -- cluster names -------------------------------------------------------------------
    for value in ("a_b", "a.b", "a b", "c" * 65, "cl\u00fcster", "a,b"):
        rows.append(register_with("clusterName", value))
    rows.append(register_with("cluster", "a_b", named="cluster"))
    rows.append(case("GET", "/instance/list", {"serviceName": SERVICE, "clusters": "ok,a.b"}, "clusters"))
    rows.append(case("GET", "/instance/list", {"serviceName": SERVICE, "clusters": "a_b"}, "clusters",
                     id="list clusters=a_b"))
    rows.append(case("GET", "/instance", {**REGISTER, "clusterName": "a.b"}, "clusterName", id="detail cluster"))
    rows.append(case("GET", "/catalog/instances", {**CATALOG, "clusterName": "a_b"}, "clusterName",
                     id="catalog/instances clusterName=a_b"))

    # -- namespaces ----------------------------------------------------------------------
    for value in ("bad ns", "a/b", "ns.1", "n\u00e4s", "n" * 129, "a@@b"):
        rows.append(register_with("namespaceId", value))
    rows.append(case("GET", "/service/list", {**PAGE, "namespaceId": "bad ns"}, "namespaceId"))
    rows.append(case("GET", "/catalog/services", {**PAGE, "namespaceId": "a/b"}, "namespaceId"))

    # -- addresses and other fields ------------------------------------------------------
    for value in ("999.1.1.1", "1.2.3", "1.2.3.4.5", "not an ip!", "::zz", "127.0.0.1:80", "-host", "a..b"):
        rows.append(register_with("ip", value))
    rows.append(register_with("app", "a" * 129))
    rows.append(case("GET", "/instance/list", {"serviceName": SERVICE, "udpPort": "x"}, "udpPort"))
    rows.append(case("GET", "/instance/list", {"serviceName": SERVICE, "udpPort": "70000"}, "udpPort",
                     id="list udpPort=70000"))
    rows.append(case("GET", "/instance/list", {"serviceName": SERVICE, "clientIP": "bad ip!"}, "clientIP"))

    # -- pages ---------------------------------------------------------------------------
    for name in ("pageNo", "pageSize"):
        for value in ("0", "-1", "x", str(2**31), "1.5", ""):
            rows.append(case("GET", "/service/list", {**PAGE, name: value}, name,
                             id=f"service/list {name}={value!r}"))
            rows.append(case("GET", "/catalog/services", {**PAGE, name: value}, name,
                             id=f"catalog/services {name}={value!r}"))
            rows.append(case("GET", "/catalog/instances", {**CATALOG, name: value}, name,
                             id=f"catalog/instances {name}={value!r}"))

    # -- services ------------------------------------------------------------------------
    for value in ("-0.1", "1.1", "NaN", "inf", "abc", "2"):
        rows.append(case("POST", "/service", {"serviceName": SERVICE, "protectThreshold": value},
                         "protectThreshold", id=f"create service protectThreshold={value}"))
        rows.append(case("PUT", "/service", {"serviceName": SERVICE, "protectThreshold": value},
                         "protectThreshold", id=f"update service protectThreshold={value}"))
    for value in ("{", '{"type":"x"}', "[1]", '{"type":"label","expression":1}', "null"):
        rows.append(case("POST", "/service", {"serviceName": SERVICE, "selector": value}, "selector",
                         id=f"create service selector={value}"))

    # -- beats ---------------------------------------------------------------------------
    for value in ("{", "[1]", '"x"', "1", "null", '{"ip":"127.0.0.1","port":"x"}',
                  '{"ip":"127.0.0.1","port":1,"weight":"NaN"}'):
        rows.append(case("PUT", "/instance/beat", {**BEAT, "beat": value}, "beat", id=f"beat={value}"))
    rows.append(case("PUT", "/instance/beat", {**BEAT, "ip": IP, "port": "8080", "healthy": "x",
                                               "clusterName": "a_b"}, "clusterName", id="beat clusterName=a_b"))

    # -- metadata batch ------------------------------------------------------------------
    rows.append(case("PUT", "/instance/metadata/batch", {"serviceName": SERVICE, "consistencyType": "ephemeral"},
                     "metadata", id="batch no metadata"))
    rows.append(case("DELETE", "/instance/metadata/batch", {"serviceName": SERVICE, "metadata": "k=v",
                                                            "instances": "{"}, "instances", id="batch instances={"))
    return rows


TABLE = _table()


async def send(client, method, path, params, via):
    if via == "query":
        return await client.request(method, f"{BASE}{path}", params=params)
    return await client.request(method, f"{BASE}{path}", data=params)


async def assert_nothing_stored(client, front):
    assert front.view.namespaces == {}
    metrics = await (await client.get(f"{BASE}/operator/metrics")).json()
    assert (metrics["serviceCount"], metrics["instanceCount"]) == (0, 0)
    listed = await (await client.get(f"{BASE}/instance/list", params={"serviceName": SERVICE})).json()
    assert listed["hosts"] == []


@pytest.mark.parametrize("via", ["query", "form"])
@pytest.mark.parametrize("method, path, params, named, status", TABLE)
async def test_bad_request_is_refused_naming_the_parameter(client, front, method, path, params, named, status, via):
    response = await send(client, method, path, params, via)
    text = await response.text()
    assert response.status == status, text
    assert named in text, text
    assert len(text) < 600  # bad values are echoed clipped
    await assert_nothing_stored(client, front)


def test_the_table_is_large_and_unique():
    ids = [row.id for row in TABLE]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert len(ids) > 250


# -- an existing instance is left alone by bad writes ------------------------------------


async def test_bad_writes_leave_an_existing_instance_unchanged(client):
    await client.post(f"{BASE}/instance", params={**REGISTER, "weight": "2", "metadata": "a=1"})
    before = await (await client.get(f"{BASE}/instance", params=REGISTER)).json()
    bad = [
        ("POST", "/instance", {**REGISTER, "weight": "NaN"}),
        ("POST", "/instance", {**REGISTER, "metadata": "[1]"}),
        ("POST", "/instance", {**REGISTER, "healthy": "maybe"}),
        ("PUT", "/instance", {**REGISTER, "weight": "abc"}),
        ("PUT", "/instance", {**REGISTER, "clusterName": "a_b"}),
        ("PATCH", "/instance", {**REGISTER, "weight": "10001"}),
        ("PATCH", "/instance", {**REGISTER, "enabled": "1", "weight": "3"}),
        ("PATCH", "/instance", {**REGISTER, "metadata": '{"a":{"b":1}}', "weight": "3"}),
        ("DELETE", "/instance", {**REGISTER, "ephemeral": "x"}),
        ("DELETE", "/instance", {**REGISTER, "serviceName": "@@demo"}),
        ("PUT", "/instance/beat", {"serviceName": SERVICE, "beat": '{"ip":"127.0.0.1","port":8080,"weight":-1}'}),
        ("PUT", "/service", {"serviceName": SERVICE, "protectThreshold": "2"}),
        ("DELETE", "/service", {"serviceName": "a@@b@@c"}),
        ("PUT", "/instance/metadata/batch", {"serviceName": SERVICE, "metadata": "a=b=c",
                                             "consistencyType": "ephemeral"}),
    ]
    for method, path, params in bad:
        for via in ("query", "form"):
            response = await send(client, method, path, params, via)
            assert response.status == 400, (method, path, params, await response.text())
    after = await (await client.get(f"{BASE}/instance", params=REGISTER)).json()
    assert after == before
    service = await (await client.get(f"{BASE}/service", params={"serviceName": SERVICE})).json()
    assert service["protectThreshold"] == 0.0


# -- body limit --------------------------------------------------------------------------


def padded_register(size):
    """A valid register form body of exactly `size` bytes (padding in the metadata)."""
    head = "serviceName=demo&ip=127.0.0.1&port=8080&metadata=k%3D"
    return (head + "v" * (size - len(head))).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize("settings", ["small"], indirect=True)
@pytest.mark.parametrize("method, path", [("POST", "/instance"), ("PUT", "/instance"), ("PUT", "/instance/beat"),
                                          ("GET", "/instance/list"), ("DELETE", "/instance"),
                                          ("PATCH", "/instance"), ("POST", "/service")])
async def test_body_over_the_limit_is_a_413(client, front, method, path):
    response = await client.request(method, f"{BASE}{path}", data=padded_register(1025), headers=FORM)
    text = await response.text()
    assert response.status == 413, text
    assert "1024" in text
    await assert_nothing_stored(client, front)


@pytest.mark.parametrize("settings", ["small"], indirect=True)
async def test_body_at_the_limit_is_fine(client):
    response = await client.post(f"{BASE}/instance", data=padded_register(1024), headers=FORM)
    assert (response.status, await response.text()) == (200, "ok")


@pytest.mark.parametrize("settings", ["small"], indirect=True)
async def test_chunked_body_over_the_limit_is_a_413(client, front):
    async def chunks():
        body = padded_register(4096)
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    response = await client.post(f"{BASE}/instance", data=chunks(), headers=FORM)
    assert response.status == 413, await response.text()
    await assert_nothing_stored(client, front)


@pytest.mark.parametrize("settings", ["small"], indirect=True)
async def test_non_form_body_over_the_limit_is_a_413(client, front):
    response = await client.post(f"{BASE}/instance", params=REGISTER, data=b"{" + b" " * 2000 + b"}",
                                 headers={"Content-Type": "application/json"})
    assert response.status == 413
    await assert_nothing_stored(client, front)


@pytest.mark.parametrize("settings", ["no metadata limit"], indirect=True)
async def test_default_limit_is_one_mebibyte(client, front):
    assert front.settings.max_body_bytes == 1024 * 1024
    response = await client.post(f"{BASE}/instance", data=padded_register(1024 * 1024 + 1), headers=FORM)
    assert response.status == 413
    await assert_nothing_stored(client, front)
    response = await client.post(f"{BASE}/instance", data=padded_register(1024 * 1024), headers=FORM)
    assert (response.status, await response.text()) == (200, "ok")


# -- paths and methods -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/nacos/v1/ns/nope", "/nacos/v1/ns/raft/peer", "/nacos/v1/ns/distro/datum", "/nope", "/nacos/v2/cs/config",
     "/nacos/v1/ns/instance/", "/nacos/v1/ns/instance/list/extra", "/v1/ns/instance/list", "/nacos/v1/cs/configs"],
)
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
async def test_unknown_path_is_a_404(client, front, method, path):
    response = await client.request(method, path, params=REGISTER)
    assert response.status == 404
    await assert_nothing_stored(client, front)


@pytest.mark.parametrize(
    "method, path",
    [("DELETE", "/instance/list"), ("POST", "/instance/beat"), ("GET", "/instance/beat"), ("PATCH", "/service"),
     ("POST", "/service/list"), ("DELETE", "/operator/metrics")],
)
async def test_wrong_method_is_a_405(client, front, method, path):
    response = await client.request(method, f"{BASE}{path}", params=REGISTER)
    assert response.status == 405
    await assert_nothing_stored(client, front)


# -- undecodable input -------------------------------------------------------------------


async def test_form_body_that_is_not_utf8_is_a_400(client, front):
    response = await client.post(f"{BASE}/instance", data=b"serviceName=d\xffmo&ip=127.0.0.1&port=8080",
                                 headers=FORM)
    assert response.status == 400
    assert "body" in await response.text()
    await assert_nothing_stored(client, front)


async def test_form_body_with_an_unknown_charset_is_a_400(client, front):
    response = await client.post(f"{BASE}/instance", data=b"serviceName=demo&ip=127.0.0.1&port=8080",
                                 headers={"Content-Type": "application/x-www-form-urlencoded; charset=klingon"})
    assert response.status == 400
    await assert_nothing_stored(client, front)


async def test_form_body_in_latin1_is_decoded_with_its_charset(client):
    response = await client.post(
        f"{BASE}/instance", data=b"serviceName=demo&ip=127.0.0.1&port=8080&metadata=k%3Dv",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=iso-8859-1"})
    assert (response.status, await response.text()) == (200, "ok")


@pytest.mark.parametrize("query", ["serviceName=d%FFmo&ip=127.0.0.1&port=8080",
                                   "serviceName=demo&ip=127.0.0.1&port=8080&metadata=%7B%22a%22%3A%FF%7D",
                                   "serviceName=demo&ip=127.0.0.1&port=80%0080"])
async def test_bad_percent_encoding_in_the_query_is_a_400(client, front, query):
    response = await client.post(f"{BASE}/instance?{query}")
    assert response.status == 400
    await assert_nothing_stored(client, front)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
async def test_form_body_whose_content_encoding_does_not_decode_is_a_400(client, front, encoding):
    response = await client.post(f"{BASE}/instance", data=b"not compressed at all",
                                 headers={**FORM, "Content-Encoding": encoding})
    assert response.status == 400, await response.text()
    if encoding != "br":  # aiohttp itself refuses br (no decoder) before our handler runs
        # the rest of the body is unreadable, so the server must not keep the connection
        assert response.headers.get("Connection", "").lower() == "close"
    await assert_nothing_stored(client, front)


async def test_gzipped_form_body_is_read(client):
    response = await client.post(f"{BASE}/instance", data=gzip.compress(b"serviceName=demo&ip=127.0.0.1&port=8080"),
                                 headers={**FORM, "Content-Encoding": "gzip"})
    assert (response.status, await response.text()) == (200, "ok")


@pytest.mark.parametrize(
    "beat",
    ['{"ip":"127.0.0.1","port":1e300}', '{"ip":"127.0.0.1","port":123456789012345678901234567890}',
     '{"ip":"127.0.0.1","port":1,"weight":1e400}'],
)
async def test_huge_numbers_in_a_beat_are_400s_with_short_messages(client, front, beat):
    response = await client.put(f"{BASE}/instance/beat", params={"serviceName": SERVICE, "beat": beat})
    text = await response.text()
    assert response.status == 400
    assert "beat" in text and len(text) < 200
    await assert_nothing_stored(client, front)


async def test_over_long_request_line_is_a_4xx(client, front):
    response = await client.get(f"{BASE}/instance/list?serviceName=" + "a" * 20000)
    assert 400 <= response.status < 500
    await assert_nothing_stored(client, front)
