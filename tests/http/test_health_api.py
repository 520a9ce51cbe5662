"""PUT /v1/ns/cluster and PUT /v1/ns/health/instance (also /v1/ns/health) through the real app.

Every bad parameter is a 4xx naming it that stores nothing; no response may be a 5xx.
"""

from __future__ import annotations

import json

import pytest

from nacos_actors.model import ServiceKey
from tests.http.conftest import BASE
from tests.http.support import ok, refused

SERVICE = "demo"
KEY = ServiceKey("public", "DEFAULT_GROUP@@demo")
IP = "127.0.0.1"
NONE = '{"type":"NONE"}'
CLUSTER = {
    "serviceName": SERVICE,
    "clusterName": "DEFAULT",
    "checkPort": "80",
    "useInstancePort4Check": "true",
    "healthChecker": NONE,
}
HEALTH = {"serviceName": SERVICE, "ip": IP, "port": "8080", "healthy": "false"}
HEALTH_PATHS = ["/health/instance", "/health"]


async def get_service(client, **params):
    response = await client.get(f"{BASE}/service", params={"serviceName": SERVICE, **params})
    assert response.status == 200, await response.text()
    return await response.json()


async def clusters_of(client, **params):
    return {c["name"]: c for c in (await get_service(client, **params))["clusters"]}


async def hosts(client, **params):
    response = await client.get(f"{BASE}/instance/list", params={"serviceName": SERVICE, **params})
    assert response.status == 200, await response.text()
    return await response.json()


async def register(client, port=8080, **extra):
    await ok(client, "POST", "/instance", {"serviceName": SERVICE, "ip": IP, "port": str(port), **extra})


def without(params, name):
    return {k: v for k, v in params.items() if k != name}


# -- PUT /v1/ns/cluster ----------------------------------------------------------------------


async def test_unconfigured_clusters_show_the_tcp_default(client):
    await register(client)
    assert await clusters_of(client) == {
        "DEFAULT": {
            "name": "DEFAULT",
            "serviceName": "DEFAULT_GROUP@@demo",
            "healthChecker": {"type": "TCP"},
            "metadata": {},
            "defaultPort": 80,
            "defaultCheckPort": 80,
            "useIPPort4Check": True,
            "defCkport": 80,
            "defIPPort": 80,
        }
    }


@pytest.mark.parametrize("via", ["query", "form"])
async def test_update_cluster_shows_in_the_service(client, front, via):
    await register(client)
    before = front.service(KEY)
    await ok(client, "PUT", "/cluster", {
        **CLUSTER,
        "checkPort": "8081",
        "useInstancePort4Check": "False",
        "healthChecker": '{"type":"HTTP","path":"/health","headers":"a:b","expectedResponseCode":204,"other":1}',
        "metadata": '{"zone":"a","n":1}',
    }, via)
    after = front.service(KEY)
    # A cluster is persistent (Raft): the ephemeral half's stamp, which Distro compares, stays.
    assert after.revision == before.revision and after.definition is not None
    assert after.last_ref_ms >= before.last_ref_ms
    entry = (await clusters_of(client))["DEFAULT"]
    assert entry["healthChecker"] == {"type": "HTTP", "path": "/health", "headers": "a:b", "expectedResponseCode": 204}
    assert entry["metadata"] == {"zone": "a", "n": "1"}
    assert (entry["defaultCheckPort"], entry["defCkport"], entry["defIPPort"], entry["useIPPort4Check"]) == (
        8081, 8081, 8081, False)


async def test_a_cluster_without_instances_is_created_and_listed(client):
    await ok(client, "POST", "/service", {"serviceName": SERVICE})
    await ok(client, "PUT", "/cluster", {**CLUSTER, "clusterName": "c-1"})
    await register(client)
    assert list(await clusters_of(client)) == ["DEFAULT", "c-1"]
    assert (await clusters_of(client))["c-1"]["healthChecker"] == {"type": "NONE"}
    assert (await clusters_of(client))["DEFAULT"]["healthChecker"] == {"type": "TCP"}


@pytest.mark.parametrize(
    ("checker", "shown"),
    [
        ('{"type":"TCP"}', {"type": "TCP"}),
        ('{"type":"NONE","path":"/left-over"}', {"type": "NONE"}),
        ('{"type":"HTTP"}', {"type": "HTTP", "path": "", "headers": "", "expectedResponseCode": 200}),
        ('{"type":"HTTP","path":null,"expectedResponseCode":"503"}',
         {"type": "HTTP", "path": "", "headers": "", "expectedResponseCode": 503}),
        ('{"type":"MYSQL","user":"u","pwd":"p","cmd":"select 1"}',
         {"type": "MYSQL", "user": "u", "pwd": "******", "cmd": "select 1"}),
        ('{"type":"MYSQL"}', {"type": "MYSQL"}),
    ],
)
async def test_each_checker_type_is_stored_as_nacos_shows_it(client, checker, shown):
    await register(client)
    await ok(client, "PUT", "/cluster", {**CLUSTER, "healthChecker": checker})
    assert (await clusters_of(client))["DEFAULT"]["healthChecker"] == shown


async def test_metadata_is_replaced_and_emptied_when_absent(client):
    await register(client)
    await ok(client, "PUT", "/cluster", {**CLUSTER, "metadata": "a=1,b=2"})
    assert (await clusters_of(client))["DEFAULT"]["metadata"] == {"a": "1", "b": "2"}
    await ok(client, "PUT", "/cluster", CLUSTER)
    assert (await clusters_of(client))["DEFAULT"]["metadata"] == {}


async def test_group_and_namespace_name_the_service(client):
    await ok(client, "POST", "/service", {"serviceName": SERVICE, "groupName": "grp", "namespaceId": "dev"})
    await ok(client, "PUT", "/cluster", {**CLUSTER, "serviceName": "grp@@demo", "namespaceId": "dev"})
    assert "DEFAULT" in await clusters_of(client, groupName="grp", namespaceId="dev")
    await ok(client, "PUT", "/cluster", {**CLUSTER, "groupName": "grp", "namespaceId": "dev", "clusterName": "x"})
    assert list(await clusters_of(client, groupName="grp", namespaceId="dev")) == ["DEFAULT", "x"]


async def test_cluster_of_a_missing_service_is_a_400(client, front):
    text = await refused(client, "PUT", "/cluster", CLUSTER)
    assert text == "service not found:DEFAULT_GROUP@@demo"
    assert front.service(KEY) is None


async def test_a_cluster_change_moves_the_list_answer_on(client):
    await register(client)
    before = await hosts(client)
    await ok(client, "PUT", "/cluster", CLUSTER)
    after = await hosts(client)
    assert after["lastRefTime"] > before["lastRefTime"]
    assert after["hosts"] == before["hosts"]


BAD_CLUSTER = [
    ("serviceName", None),
    ("serviceName", "a b"),
    ("groupName", "g/x"),
    ("namespaceId", "bad ns"),
    ("clusterName", None),
    ("clusterName", ""),
    ("clusterName", "a_b"),
    ("checkPort", None),
    ("checkPort", "abc"),
    ("checkPort", "0"),
    ("checkPort", "65536"),
    ("checkPort", "80.5"),
    ("useInstancePort4Check", None),
    ("useInstancePort4Check", "yes"),
    ("healthChecker", None),
    ("healthChecker", "  "),
    ("healthChecker", "{not json"),
    ("healthChecker", "[]"),
    ("healthChecker", '"NONE"'),
    ("healthChecker", "{}"),
    ("healthChecker", '{"type":"tcp"}'),
    ("healthChecker", '{"type":"BOGUS"}'),
    ("healthChecker", '{"type":null}'),
    ("healthChecker", '{"type":"HTTP","path":1}'),
    ("healthChecker", '{"type":"HTTP","headers":{}}'),
    ("healthChecker", '{"type":"HTTP","expectedResponseCode":"abc"}'),
    ("healthChecker", '{"type":"HTTP","expectedResponseCode":99}'),
    ("healthChecker", '{"type":"HTTP","expectedResponseCode":true}'),
    ("healthChecker", '{"type":"MYSQL","user":1}'),
    ("healthChecker", '{"type":"HTTP","path":"//health"}'),
    ("healthChecker", '{"type":"HTTP","path":"http://127.0.0.2/x"}'),
    ("healthChecker", '{"type":"HTTP","path":"//127.0.0.2/x"}'),
    ("healthChecker", '{"type":"HTTP","headers":"a"}'),
    ("healthChecker", '{"type":"HTTP","headers":"a b:c"}'),
    ("healthChecker", '{"type":"MYSQL","pwd":"******"}'),
    ("metadata", "a=b=c"),
    ("metadata", '{"a":{"b":"c"}}'),
    ("metadata", "[1]"),
]


@pytest.mark.parametrize("via", ["query", "form"])
@pytest.mark.parametrize(("name", "value"), BAD_CLUSTER, ids=[f"{n}={v!r}" for n, v in BAD_CLUSTER])
async def test_every_bad_cluster_parameter_is_a_400_naming_it(client, front, name, value, via):
    await register(client)
    before = front.service(KEY)
    params = without(CLUSTER, name) if value is None else {**CLUSTER, name: value}
    text = await refused(client, "PUT", "/cluster", params, via=via)
    assert f"'{name}" in text, text
    assert front.service(KEY) is before
    assert dict(front.service(KEY).clusters) == {}


@pytest.mark.parametrize(
    ("checker", "named", "problem"),
    [
        ({"type": "HTTP", "path": "http://127.0.0.2:80/x"}, "healthChecker.path", "must not contain '://'"),
        ({"type": "HTTP", "path": "//127.0.0.2/x"}, "healthChecker.path", "must not start with '//'"),
        ({"type": "HTTP", "path": "/x://127.0.0.2"}, "healthChecker.path", "must not contain '://'"),
        ({"type": "HTTP", "path": "/a b"}, "healthChecker.path", "whitespace"),
        ({"type": "HTTP", "headers": "a:b|c"}, "healthChecker.headers", "'name:value' entries"),
        ({"type": "HTTP", "headers": "a:b\r\nX-Injected: 1"}, "healthChecker.headers", "control characters"),
        ({"type": "MYSQL", "cmd": "x" * 4097}, "healthChecker.cmd", "at most 4096 characters"),
        ({"type": "MYSQL", "pwd": "******"}, "healthChecker.pwd", "cluster DEFAULT has none"),
    ],
)
async def test_a_checker_that_could_probe_elsewhere_or_break_its_request_is_a_400_naming_the_field(
    client, front, checker, named, problem
):
    await register(client)
    before = front.service(KEY)
    text = await refused(client, "PUT", "/cluster", {**CLUSTER, "healthChecker": json.dumps(checker)})
    assert f"Param '{named}'" in text and problem in text, text
    assert front.service(KEY) is before


async def test_a_mysql_password_is_stored_but_never_shown(client, front):
    await register(client)
    checker = {"type": "MYSQL", "user": "probe", "pwd": "s3cret-pwd", "cmd": ""}
    await ok(client, "PUT", "/cluster", {**CLUSTER, "healthChecker": json.dumps(checker)})
    assert front.service(KEY).cluster_config("DEFAULT").health_checker["pwd"] == "s3cret-pwd"
    shown = (await clusters_of(client))["DEFAULT"]["healthChecker"]
    assert shown == {"type": "MYSQL", "user": "probe", "pwd": "******", "cmd": ""}
    v2 = await client.get("/nacos/v2/ns/service", params={"serviceName": SERVICE})
    assert (await v2.json())["data"]["clusterMap"]["DEFAULT"]["healthChecker"]["pwd"] == "******"


async def test_sending_back_the_shown_checker_keeps_the_stored_password(client, front):
    """A console edits a cluster by sending back what GET /v1/ns/service showed it."""
    await register(client)
    checker = {"type": "MYSQL", "user": "probe", "pwd": "s3cret-pwd"}
    await ok(client, "PUT", "/cluster", {**CLUSTER, "healthChecker": json.dumps(checker)})
    shown = (await clusters_of(client))["DEFAULT"]["healthChecker"]
    await ok(client, "PUT", "/cluster", {**CLUSTER, "healthChecker": json.dumps({**shown, "user": "other"})})
    stored = front.service(KEY).cluster_config("DEFAULT").health_checker
    assert dict(stored) == {"type": "MYSQL", "user": "other", "pwd": "s3cret-pwd"}
    await ok(client, "PUT", "/cluster", {**CLUSTER, "healthChecker": json.dumps({**shown, "pwd": "new-pwd"})})
    assert front.service(KEY).cluster_config("DEFAULT").health_checker["pwd"] == "new-pwd"
    # Another cluster's password is not taken for this one.
    text = await refused(client, "PUT", "/cluster", {**CLUSTER, "clusterName": "c-2", "healthChecker": json.dumps(shown)})
    assert "Param 'healthChecker.pwd'" in text and "cluster c-2 has none" in text


# -- PUT /v1/ns/health/instance --------------------------------------------------------------


@pytest.mark.parametrize("path", HEALTH_PATHS)
async def test_health_is_refused_while_the_cluster_is_checked(client, front, path):
    await register(client)
    before = front.service(KEY)
    text = await refused(client, "PUT", path, HEALTH)
    assert text == "health check is still working, service: DEFAULT_GROUP@@demo"
    await ok(client, "PUT", "/cluster", {**CLUSTER, "healthChecker": '{"type":"HTTP","path":"/"}'})
    assert "still working" in await refused(client, "PUT", path, HEALTH)
    assert front.service(KEY).instances == before.instances


@pytest.mark.parametrize("path", HEALTH_PATHS)
@pytest.mark.parametrize("via", ["query", "form"])
async def test_health_is_set_by_hand_once_the_checker_is_none(client, front, path, via):
    await register(client)
    await register(client, port=8081)  # one healthy instance keeps the protect threshold (0) away
    await ok(client, "PUT", "/cluster", CLUSTER)
    revision = front.service(KEY).revision
    await ok(client, "PUT", path, {**HEALTH, "healthy": "False"}, via)
    assert front.service(KEY).revision == revision + 1
    listed = await hosts(client)
    assert sorted((h["port"], h["healthy"], h["valid"]) for h in listed["hosts"]) == [
        (8080, False, False), (8081, True, True)]
    assert [h["port"] for h in (await hosts(client, healthyOnly="true"))["hosts"]] == [8081]
    detail = await client.get(f"{BASE}/instance", params={"serviceName": SERVICE, "ip": IP, "port": "8080"})
    assert (await detail.json())["healthy"] is False
    # the legacy alias `valid`
    await ok(client, "PUT", path, {**without(HEALTH, "healthy"), "valid": "TRUE"}, via)
    assert [h["healthy"] for h in (await hosts(client))["hosts"]] == [True, True]


async def test_healthy_wins_over_valid(client, front):
    await register(client)
    await ok(client, "PUT", "/cluster", CLUSTER)
    await ok(client, "PUT", "/health/instance", {**HEALTH, "healthy": "false", "valid": "true"})
    assert [i.healthy for i in front.service(KEY).instances.values()] == [False]


async def test_the_persistent_instance_is_preferred(client):
    await register(client, ephemeral="true")
    await register(client, ephemeral="false")
    await ok(client, "PUT", "/cluster", CLUSTER)
    await ok(client, "PUT", "/health/instance", HEALTH)
    shown = {h["ephemeral"]: h["healthy"] for h in (await hosts(client))["hosts"]}
    assert shown == {False: False, True: True}


async def test_only_the_named_cluster_is_touched(client):
    await register(client, clusterName="a")
    await register(client, clusterName="b")
    await ok(client, "PUT", "/cluster", {**CLUSTER, "clusterName": "a"})
    await ok(client, "PUT", "/cluster", {**CLUSTER, "clusterName": "b"})
    await ok(client, "PUT", "/health/instance", {**HEALTH, "clusterName": "b"})
    shown = {h["clusterName"]: h["healthy"] for h in (await hosts(client))["hosts"]}
    assert shown == {"a": True, "b": False}


async def test_no_instance_at_that_address_answers_ok_and_changes_nothing(client, front):
    await register(client)
    await ok(client, "PUT", "/cluster", CLUSTER)
    before = front.service(KEY)
    await ok(client, "PUT", "/health/instance", {**HEALTH, "port": "8081"})
    assert front.service(KEY) is before


async def test_health_of_a_missing_service_or_cluster_is_a_404(client, front):
    text = await refused(client, "PUT", "/health/instance", HEALTH, status=404)
    assert text == "service DEFAULT_GROUP@@demo is not found!"
    assert front.service(KEY) is None
    await register(client)
    before = front.service(KEY)
    text = await refused(client, "PUT", "/health", {**HEALTH, "clusterName": "other"}, status=404)
    assert text == "cluster other is not found in service DEFAULT_GROUP@@demo!"
    assert front.service(KEY) is before


async def test_the_service_detail_shows_the_change_too(client):
    await register(client)
    await ok(client, "PUT", "/cluster", CLUSTER)
    await ok(client, "PUT", "/health/instance", HEALTH)
    response = await client.get(
        f"{BASE}/catalog/instances",
        params={"serviceName": SERVICE, "clusterName": "DEFAULT", "pageNo": "1", "pageSize": "10"},
    )
    assert [i["healthy"] for i in (await response.json())["list"]] == [False]


BAD_HEALTH = [
    ("healthy", None, "Param 'healthy' is required."),
    ("healthy", "", "Param 'healthy' is required."),
    ("healthy", "maybe", "'healthy'"),
    ("healthy", "1", "'healthy'"),
    ("serviceName", None, "'serviceName'"),
    ("serviceName", "@@x", "'serviceName'"),
    ("namespaceId", "bad ns", "'namespaceId'"),
    ("groupName", "g/x", "'groupName'"),
    ("clusterName", "a_b", "'clusterName'"),
    ("ip", None, "'ip'"),
    ("ip", "300.1.1.1", "'ip'"),
    ("port", None, "'port'"),
    ("port", "x", "'port'"),
    ("port", "0", "'port'"),
    ("port", "65536", "'port'"),
]


@pytest.mark.parametrize("path", HEALTH_PATHS)
@pytest.mark.parametrize(("name", "value", "named"), BAD_HEALTH, ids=[f"{n}={v!r}" for n, v, _ in BAD_HEALTH])
async def test_every_bad_health_parameter_is_a_400_naming_it(client, front, path, name, value, named):
    await register(client)
    await ok(client, "PUT", "/cluster", CLUSTER)
    before = front.service(KEY)
    params = without(HEALTH, name) if value is None else {**HEALTH, name: value}
    text = await refused(client, "PUT", path, params)
    assert named in text, text
    assert front.service(KEY) is before


async def test_a_bad_valid_alias_names_valid(client):
    text = await refused(client, "PUT", "/health", {**without(HEALTH, "healthy"), "valid": "nope"})
    assert "'valid'" in text


async def test_the_cluster_config_reaches_the_openapi_documented_shape(client):
    await register(client)
    await ok(client, "PUT", "/cluster", {**CLUSTER, "metadata": json.dumps({"k": "v"})})
    body = await get_service(client)
    assert set(body["clusters"][0]) == {
        "name", "serviceName", "healthChecker", "metadata", "defaultPort", "defaultCheckPort",
        "useIPPort4Check", "defCkport", "defIPPort",
    }
