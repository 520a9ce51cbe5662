"""Free text (metadata keys and values, `app`, a selector's expression, a checker's strings)
holds no control character and nothing that was not UTF-8: either is a 400 naming the
parameter, and nothing is stored (issue 14, finding 8: NUL and other control characters were
stored and served, in Prometheus discovery labels too, and percent-encoded bytes that are not
UTF-8 were stored as U+FFFD). Nacos refuses neither; we are stricter on purpose.

Also: a full beat whose JSON says `ephemeral: false` never changes a known persistent instance
(Nacos 1.4's ClientBeatProcessor refreshes ephemeral instances only), while an unknown one is
registered as Nacos's InstanceController.beat does.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from tests.http.conftest import BASE
from tests.http.support import ok, refused

SERVICE = "demo"
REGISTER = {"serviceName": SERVICE, "ip": "127.0.0.1", "port": "8080"}
CONTROL = ["\x00", "\x01", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9f"]


async def nothing_stored(client, front) -> None:
    assert front.view.namespaces == {}
    listed = await (await client.get(f"{BASE}/instance/list", params={"serviceName": SERVICE})).json()
    assert listed["hosts"] == []


@pytest.mark.parametrize("via", ["query", "form"])
@pytest.mark.parametrize("char", CONTROL, ids=[f"U+{ord(c):04X}" for c in CONTROL])
@pytest.mark.parametrize(
    "name, make",
    [
        ("metadata", lambda c: json.dumps({"k": f"a{c}b"})),
        ("metadata", lambda c: json.dumps({f"k{c}": "v"})),
        ("metadata", lambda c: f"k=a{c}b"),
        ("app", lambda c: f"my{c}app"),
    ],
    ids=["metadata JSON value", "metadata JSON key", "metadata pairs", "app"],
)
async def test_a_control_character_in_free_text_is_a_400_naming_the_parameter(client, front, name, make, char, via):
    text = await refused(client, "POST", "/instance", {**REGISTER, name: make(char)}, via=via)
    assert f"Param '{name}' must not contain control characters, got U+{ord(char):04X}." == text
    await nothing_stored(client, front)


@pytest.mark.parametrize(
    "method, path, params, named",
    [
        ("PUT", "/instance", {**REGISTER, "metadata": '{"k": "a\\u0000b"}'}, "metadata"),
        ("PATCH", "/instance", {**REGISTER, "app": "a\x00b"}, "app"),
        ("PUT", "/instance/beat", {"serviceName": SERVICE, "beat": '{"ip": "127.0.0.1", "port": 80, '
                                   '"metadata": {"k": "a\\u001bb"}}'}, "beat.metadata"),
        ("POST", "/service", {"serviceName": SERVICE, "metadata": "k=a\x00b"}, "metadata"),
        ("POST", "/service", {"serviceName": SERVICE, "selector": '{"type": "label", "expression": "a\\nb"}'},
         "selector"),
        ("GET", "/instance/list", {"serviceName": SERVICE, "app": "a\x00b"}, "app"),
    ],
)
async def test_every_way_in_refuses_control_characters(client, front, method, path, params, named):
    text = await refused(client, method, path, params)
    assert f"Param '{named}'" in text and "control characters" in text
    await nothing_stored(client, front)


async def test_a_checkers_strings_refuse_control_characters(client, front):
    await ok(client, "POST", "/instance", REGISTER)
    checker = {"type": "HTTP", "path": "/health\r\nX-Injected: 1"}
    params = {"serviceName": SERVICE, "clusterName": "DEFAULT", "checkPort": "80", "useInstancePort4Check": "true",
              "healthChecker": json.dumps(checker)}
    text = await refused(client, "PUT", "/cluster", params)
    assert "Param 'healthChecker.path'" in text
    detail = await (await client.get(f"{BASE}/service", params={"serviceName": SERVICE})).json()
    assert detail["clusters"] == [] or all("X-Injected" not in json.dumps(c) for c in detail["clusters"])


@pytest.mark.parametrize(
    "query, named",
    [
        ("metadata=k%3Dv%FF", "metadata"),
        ("metadata=%7B%22k%22%3A%22v%FF%22%7D", "metadata"),
        ("metadata=k%FF%3Dv", "metadata"),
        ("app=%C3", "app"),
        ("app=%E2%82", "app"),
    ],
)
async def test_percent_encoded_bytes_that_are_not_utf8_are_a_400_not_a_replacement_character(
    client, front, query, named
):
    response = await client.post(f"{BASE}/instance?serviceName={SERVICE}&ip=127.0.0.1&port=8080&{query}")
    text = await response.text()
    assert response.status == 400, text
    assert f"Param '{named}'" in text and "UTF-8" in text
    await nothing_stored(client, front)


async def test_a_beat_with_bytes_that_are_not_utf8_is_a_400(client, front):
    beat = quote('{"ip":"127.0.0.1","port":80,"metadata":{"k":"v') + "%FF" + quote('"}}')
    response = await client.put(f"{BASE}/instance/beat?serviceName={SERVICE}&beat={beat}")
    text = await response.text()
    assert response.status == 400, text
    assert "Param 'beat' is not valid UTF-8 text." == text
    await nothing_stored(client, front)


async def test_a_name_with_bytes_that_are_not_utf8_is_refused_with_an_escaped_echo(client, front):
    response = await client.post(f"{BASE}/instance?serviceName=d%FFmo&ip=127.0.0.1&port=8080")
    text = await response.text()
    assert response.status == 400
    assert "Param 'serviceName'" in text and "d\\udcffmo" in text
    await nothing_stored(client, front)


async def test_valid_text_is_kept_exactly(client):
    metadata = {"k": "caf\u00e9 \u670d\u52a1 \ufffd \U0001f600", "spaces inside": "a b"}
    await ok(client, "POST", "/instance", {**REGISTER, "metadata": json.dumps(metadata), "app": "\u00e9t\u00e9"})
    response = await client.post(f"{BASE}/instance?serviceName={SERVICE}&ip=127.0.0.2&port=8080"
                                 "&metadata=k%3D%C3%A9%EF%BF%BD")
    assert (response.status, await response.text()) == (200, "ok")
    hosts = (await (await client.get(f"{BASE}/instance/list", params={"serviceName": SERVICE})).json())["hosts"]
    assert [h["metadata"] for h in hosts] == [metadata, {"k": "\u00e9\ufffd"}]


async def test_discovery_labels_carry_no_control_characters(client):
    await refused(client, "POST", "/instance", {**REGISTER, "metadata": '{"zone": "a\\u0000b"}'})
    await ok(client, "POST", "/instance", {**REGISTER, "metadata": '{"zone": "a-b"}'})
    targets = await (await client.get("/nacos/prometheus")).json()
    assert targets == [{"targets": ["127.0.0.1:8080"], "labels": {"__meta_clusterName": "DEFAULT", "zone": "a-b"}}]


# -- a beat never changes a persistent instance -------------------------------------------


async def persistent_set_unhealthy(client) -> None:
    await ok(client, "POST", "/service", {"serviceName": SERVICE})
    await ok(client, "PUT", "/cluster", {"serviceName": SERVICE, "clusterName": "DEFAULT", "checkPort": "80",
                                         "useInstancePort4Check": "true", "healthChecker": '{"type":"NONE"}'})
    await ok(client, "POST", "/instance", {**REGISTER, "ephemeral": "false"})
    await ok(client, "PUT", "/health/instance", {**REGISTER, "healthy": "false"})


async def detail(client) -> dict:
    return await (await client.get(f"{BASE}/instance", params=REGISTER)).json()


async def test_a_full_beat_never_revives_a_persistent_instance_set_unhealthy_by_hand(client):
    await persistent_set_unhealthy(client)
    assert (await detail(client))["healthy"] is False
    beat = json.dumps({"ip": "127.0.0.1", "port": 8080, "ephemeral": False, "serviceName": SERVICE})

    response = await client.put(f"{BASE}/instance/beat", params={"serviceName": SERVICE, "beat": beat})

    assert response.status == 200
    assert (await response.json())["code"] == 10200
    assert (await detail(client))["healthy"] is False


async def test_a_full_ephemeral_false_beat_for_an_unknown_instance_registers_it_persistent_as_nacos(client):
    beat = json.dumps({"ip": "127.0.0.1", "port": 8080, "ephemeral": False, "serviceName": SERVICE})
    response = await client.put(f"{BASE}/instance/beat", params={"serviceName": SERVICE, "beat": beat})
    assert (await response.json())["code"] == 10200
    assert [(h["ip"], h["ephemeral"]) for h in (await (await client.get(
        f"{BASE}/instance/list", params={"serviceName": SERVICE})).json())["hosts"]] == [("127.0.0.1", False)]
