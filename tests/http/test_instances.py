"""POST/DELETE/PUT/PATCH/GET /v1/ns/instance and GET /v1/ns/instance/list through the real app.

Every test runs against a real RegistryActor; no response may be a 5xx.
"""

from __future__ import annotations

import pytest

from tests.http.conftest import BASE

SERVICE = "demo"
IP = "127.0.0.1"
JAVA_UA = {"User-Agent": "Nacos-Java-Client:v1.0.0"}
PYTHON_UA = {"User-Agent": "Nacos-Python-Client:v0.1.16"}
HOST_FIELDS = {
    "ip",
    "port",
    "valid",
    "healthy",
    "marked",
    "instanceId",
    "metadata",
    "enabled",
    "weight",
    "clusterName",
    "serviceName",
    "ephemeral",
    "instanceHeartBeatInterval",
    "instanceHeartBeatTimeOut",
    "ipDeleteTimeout",
    "instanceIdGenerator",
}




async def call(client, method, path, params, via="query", **kwargs):
    """One request with `params` in the query string or as a form-urlencoded body."""
    if via == "query":
        return await client.request(method, f"{BASE}{path}", params=params, **kwargs)
    return await client.request(method, f"{BASE}{path}", data=params, **kwargs)


async def ok(client, method, path, params, via="query", **kwargs):
    response = await call(client, method, path, params, via, **kwargs)
    text = await response.text()
    assert (response.status, text) == (200, "ok"), text
    return text


async def register(client, service=SERVICE, ip=IP, port=8080, via="query", **extra):
    await ok(client, "POST", "/instance", {"serviceName": service, "ip": ip, "port": str(port), **extra}, via)


async def listing(client, service=SERVICE, via="query", headers=None, **extra):
    response = await call(client, "GET", "/instance/list", {"serviceName": service, **extra}, via, headers=headers)
    assert response.status == 200, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def hosts(client, service=SERVICE, **extra):
    return (await listing(client, service, **extra))["hosts"]


async def detail(client, service=SERVICE, ip=IP, port=8080, **extra):
    response = await client.get(
        f"{BASE}/instance", params={"serviceName": service, "ip": ip, "port": str(port), **extra}
    )
    return response.status, (await response.json() if response.status == 200 else await response.text())


def addresses(host_list):
    return sorted((h["ip"], h["port"], h["clusterName"]) for h in host_list)


# -- parameters in the query or in a form body, every verb -------------------------------


@pytest.mark.parametrize("via", ["query", "form"])
async def test_every_verb_reads_params_from_query_or_form_body(client, via):
    base = {"serviceName": SERVICE, "ip": IP, "port": "8080"}
    await ok(client, "POST", "/instance", {**base, "weight": "2"}, via)

    response = await call(client, "GET", "/instance", base, via)
    assert response.status == 200
    assert (await response.json())["weight"] == 2.0

    listed = await listing(client, via=via)
    assert [h["weight"] for h in listed["hosts"]] == [2.0]

    await ok(client, "PUT", "/instance", {**base, "weight": "3"}, via)
    assert [h["weight"] for h in await hosts(client)] == [3.0]

    await ok(client, "PATCH", "/instance", {**base, "weight": "4"}, via)
    assert [h["weight"] for h in await hosts(client)] == [4.0]

    await ok(client, "DELETE", "/instance", base, via)
    assert await hosts(client) == []


async def test_query_and_form_body_are_merged_query_first(client):
    response = await client.post(
        f"{BASE}/instance",
        params={"serviceName": SERVICE, "weight": "7"},
        data={"ip": IP, "port": "8080", "weight": "9"},
    )
    assert response.status == 200
    assert [(h["ip"], h["port"], h["weight"]) for h in await hosts(client)] == [(IP, 8080, 7.0)]


async def test_blank_values_count_as_absent_for_optional_params(client):
    await register(client, weight="  ", clusterName="", healthy=" ", namespaceId="")
    [host] = await hosts(client)
    assert (host["weight"], host["clusterName"], host["healthy"]) == (1.0, "DEFAULT", True)


async def test_values_are_trimmed(client):
    await ok(client, "POST", "/instance", {"serviceName": " demo ", "ip": " 127.0.0.1 ", "port": " 8080 "})
    assert addresses(await hosts(client)) == [(IP, 8080, "DEFAULT")]


# -- defaults and aliases ----------------------------------------------------------------


async def test_register_defaults(client):
    await register(client)
    listed = await listing(client)
    assert listed["name"] == "DEFAULT_GROUP@@demo"
    assert listed["groupName"] == "DEFAULT_GROUP"
    [host] = listed["hosts"]
    assert host == {
        "ip": IP,
        "port": 8080,
        "valid": True,
        "healthy": True,
        "marked": False,
        "instanceId": "127.0.0.1#8080#DEFAULT#DEFAULT_GROUP@@demo",
        "metadata": {},
        "enabled": True,
        "weight": 1.0,
        "clusterName": "DEFAULT",
        "serviceName": "demo",
        "ephemeral": True,
        "instanceHeartBeatInterval": 5000,
        "instanceHeartBeatTimeOut": 15000,
        "ipDeleteTimeout": 30000,
        "instanceIdGenerator": "simple",
    }
    # the namespace defaults to public, the group to DEFAULT_GROUP
    explicit = await listing(client, namespaceId="public", groupName="DEFAULT_GROUP")
    assert explicit["hosts"] == listed["hosts"]


async def test_enable_is_an_alias_of_enabled(client):
    await register(client, enable="false")
    status, body = await detail(client)
    assert (status, body["enabled"]) == (200, False)
    await register(client, enable="false", enabled="true")
    status, body = await detail(client)
    assert body["enabled"] is True  # `enabled` wins over the legacy `enable`


async def test_cluster_is_an_alias_of_cluster_name(client):
    await register(client, cluster="c1")
    assert addresses(await hosts(client)) == [(IP, 8080, "c1")]
    await register(client, cluster="c2", clusterName="c3")
    assert addresses(await hosts(client)) == [(IP, 8080, "c1"), (IP, 8080, "c3")]


async def test_service_name_may_carry_its_group(client):
    await register(client, service="grp@@demo", groupName="ignored")
    listed = await listing(client, service="grp@@demo")
    assert (listed["name"], listed["groupName"], listed["dom"]) == ("grp@@demo", "grp", "demo")
    assert len(listed["hosts"]) == 1
    # the same service by bare name + groupName
    assert len(await hosts(client, groupName="grp")) == 1
    # and not in DEFAULT_GROUP
    assert await hosts(client) == []


@pytest.mark.parametrize(
    "healthy, enabled, ephemeral",
    [("True", "TRUE", "False"), ("FALSE", "true", "fAlSe"), ("true", "True", "TRUE")],
)
async def test_booleans_in_any_case(client, healthy, enabled, ephemeral):
    await register(client, healthy=healthy, enabled=enabled, ephemeral=ephemeral)
    status, body = await detail(client)
    assert status == 200
    assert body["healthy"] is (healthy.lower() == "true")
    assert body["enabled"] is (enabled.lower() == "true")
    assert body["ephemeral"] is (ephemeral.lower() == "true")


async def test_python_client_cluster_name_none_is_a_cluster_named_none(client):
    # nacos-sdk-python urlencodes cluster_name=None as the text "None"
    await register(client, clusterName="None", weight="1.0", enable="True", healthy="True", ephemeral="True",
                   groupName="DEFAULT_GROUP")
    [host] = await hosts(client)
    assert host["clusterName"] == "None"
    assert host["instanceId"] == "127.0.0.1#8080#None#DEFAULT_GROUP@@demo"
    assert await hosts(client, clusters="DEFAULT") == []


async def test_namespaces_are_kept_apart(client):
    await register(client, namespaceId="dev", weight="2")
    await register(client, weight="3")
    assert [h["weight"] for h in await hosts(client, namespaceId="dev")] == [2.0]
    assert [h["weight"] for h in await hosts(client)] == [3.0]
    assert await hosts(client, namespaceId="test") == []


async def test_host_names_and_ipv6_are_accepted(client):
    await register(client, ip="localhost", port=1)
    await register(client, ip="::1", port=2)
    assert addresses(await hosts(client)) == [("::1", 2, "DEFAULT"), ("localhost", 1, "DEFAULT")]


# -- register semantics ------------------------------------------------------------------


async def test_register_replaces_same_ip_port_in_cluster_and_keeps_its_id(client):
    await register(client, weight="5", metadata='{"a":"1"}', healthy="false", enabled="false")
    status, first = await detail(client)
    assert (first["weight"], first["metadata"], first["healthy"], first["enabled"]) == (5.0, {"a": "1"}, False, False)
    await register(client)
    status, second = await detail(client)
    assert (second["weight"], second["metadata"], second["healthy"], second["enabled"]) == (1.0, {}, True, True)
    assert second["instanceId"] == first["instanceId"]
    assert len(await hosts(client)) == 1


async def test_same_ip_port_in_two_clusters_is_two_instances(client):
    await register(client, clusterName="c1")
    await register(client, clusterName="c2")
    listed = await hosts(client)
    assert addresses(listed) == [(IP, 8080, "c1"), (IP, 8080, "c2")]
    assert len({h["instanceId"] for h in listed}) == 2


async def test_ephemeral_and_persistent_with_same_address_are_kept_apart(client):
    await register(client, ephemeral="true", weight="1")
    await register(client, ephemeral="false", weight="2")
    listed = await hosts(client)
    assert sorted((h["ephemeral"], h["weight"]) for h in listed) == [(False, 2.0), (True, 1.0)]
    await ok(client, "DELETE", "/instance", {"serviceName": SERVICE, "ip": IP, "port": "8080", "ephemeral": "false"})
    assert [(h["ephemeral"], h["weight"]) for h in await hosts(client)] == [(True, 1.0)]
    await ok(client, "DELETE", "/instance", {"serviceName": SERVICE, "ip": IP, "port": "8080"})
    assert await hosts(client) == []


async def test_register_answers_after_the_write_is_applied(client):
    for port in range(1, 21):
        await register(client, port=port)
        assert len(await hosts(client)) == port


async def test_register_creates_the_service_implicitly(client):
    await register(client)
    response = await client.get(f"{BASE}/service", params={"serviceName": SERVICE})
    body = await response.json()
    assert (response.status, body["name"], body["protectThreshold"]) == (200, SERVICE, 0.0)


# -- PUT (update) ------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [None, PYTHON_UA, {"User-Agent": "Nacos-Java-Client:v0.9.9"}, {"User-Agent": "curl/8"}])
async def test_put_is_an_upsert_for_non_java_clients(client, headers):
    await ok(client, "PUT", "/instance", {"serviceName": SERVICE, "ip": IP, "port": "8080", "weight": "3"},
             headers=headers)
    assert [h["weight"] for h in await hosts(client)] == [3.0]


@pytest.mark.parametrize(
    "headers, skip",
    [(JAVA_UA, ()), ({"User-Agent": "Nacos-Java-Client:v1.4.1"}, ()),
     ({"Client-Version": "Nacos-Java-Client:v1.0.0"}, ("User-Agent",))],
)
async def test_put_needs_an_existing_instance_for_java_clients(client, headers, skip):
    params = {"serviceName": SERVICE, "ip": IP, "port": "8080", "weight": "3"}
    response = await call(client, "PUT", "/instance", params, headers=headers, skip_auto_headers=skip)
    assert response.status == 400
    assert "service not found" in await response.text()
    assert (await client.get(f"{BASE}/service", params={"serviceName": SERVICE})).status == 404

    await register(client, port=9090)
    response = await call(client, "PUT", "/instance", params, headers=headers, skip_auto_headers=skip)
    assert response.status == 400
    assert "instance not exist" in await response.text()
    assert addresses(await hosts(client)) == [(IP, 9090, "DEFAULT")]

    await register(client, metadata="a=1", weight="5")
    await ok(client, "PUT", "/instance", params, headers=headers, skip_auto_headers=skip)
    status, body = await detail(client)
    assert (body["weight"], body["metadata"]) == (3.0, {})  # the whole instance is rebuilt


async def test_put_rebuilds_the_whole_instance(client):
    await register(client, weight="5", metadata='{"a":"1"}', clusterName="c1")
    await ok(client, "PUT", "/instance", {"serviceName": SERVICE, "ip": IP, "port": "8080", "clusterName": "c1",
                                          "enabled": "false"})
    status, body = await detail(client, clusterName="c1")
    assert (body["weight"], body["metadata"], body["enabled"], body["healthy"]) == (1.0, {}, False, True)


# -- PATCH -------------------------------------------------------------------------------


async def test_patch_changes_only_the_given_fields(client):
    await register(client, weight="5", metadata='{"a":"1"}', healthy="false", app="shop")
    base = {"serviceName": SERVICE, "ip": IP, "port": "8080"}
    await ok(client, "PATCH", "/instance", {**base, "weight": "6"})
    status, body = await detail(client)
    assert (body["weight"], body["metadata"], body["healthy"], body["enabled"]) == (6.0, {"a": "1"}, False, True)

    await ok(client, "PATCH", "/instance", {**base, "metadata": "b=2"})
    status, body = await detail(client)
    assert (body["weight"], body["metadata"]) == (6.0, {"b": "2"})

    await ok(client, "PATCH", "/instance", {**base, "healthy": "TRUE", "enable": "false"})
    status, body = await detail(client)
    assert (body["weight"], body["metadata"], body["healthy"], body["enabled"]) == (6.0, {"b": "2"}, True, False)
    instance_id = body["instanceId"]

    catalog = await (await client.get(f"{BASE}/catalog/instances", params={
        "serviceName": SERVICE, "clusterName": "DEFAULT", "pageNo": "1", "pageSize": "10"})).json()
    assert catalog["list"][0]["app"] == "shop"
    assert catalog["list"][0]["instanceId"] == instance_id


async def test_patch_finds_the_persistent_instance_and_the_cluster(client):
    await register(client, ephemeral="false", clusterName="c1")
    await ok(client, "PATCH", "/instance", {"serviceName": SERVICE, "ip": IP, "port": "8080", "cluster": "c1",
                                            "weight": "9"})
    [host] = await hosts(client)
    assert (host["weight"], host["ephemeral"], host["clusterName"]) == (9.0, False, "c1")


@pytest.mark.parametrize(
    "extra",
    [{}, {"port": "9090"}, {"clusterName": "other"}, {"ephemeral": "false"}],
    ids=["no-service", "other-port", "other-cluster", "other-kind"],
)
async def test_patch_of_a_missing_instance_is_a_400(client, extra):
    if extra:
        await register(client)
    params = {"serviceName": SERVICE, "ip": IP, "port": "8080", "weight": "9", **extra}
    response = await call(client, "PATCH", "/instance", params)
    assert response.status == 400
    assert "instance not found" in await response.text()
    assert all(h["weight"] == 1.0 for h in await hosts(client))


# -- DELETE ------------------------------------------------------------------------------


async def test_delete_of_unknown_service_or_instance_is_ok(client):
    base = {"serviceName": SERVICE, "ip": IP, "port": "8080"}
    await ok(client, "DELETE", "/instance", base)
    await register(client, clusterName="c1")
    await ok(client, "DELETE", "/instance", base)  # DEFAULT cluster: nothing there
    await ok(client, "DELETE", "/instance", {**base, "port": "1"})
    assert addresses(await hosts(client)) == [(IP, 8080, "c1")]
    await ok(client, "DELETE", "/instance", {**base, "cluster": "c1"})
    assert await hosts(client) == []


async def test_delete_leaves_an_empty_service(client):
    await register(client)
    await ok(client, "DELETE", "/instance", {"serviceName": SERVICE, "ip": IP, "port": "8080"})
    response = await client.get(f"{BASE}/service", params={"serviceName": SERVICE})
    assert response.status == 200


# -- GET /instance -----------------------------------------------------------------------


async def test_instance_detail_shape(client):
    await register(client, service="grp@@demo", clusterName="c1", weight="2.5", metadata='{"k":"v"}')
    status, body = await detail(client, service="grp@@demo", clusterName="c1")
    assert status == 200
    assert body == {
        "service": "grp@@demo",
        "ip": IP,
        "port": 8080,
        "clusterName": "c1",
        "weight": 2.5,
        "healthy": True,
        "instanceId": "127.0.0.1#8080#c1#grp@@demo",
        "metadata": {"k": "v"},
        "enabled": True,
        "ephemeral": True,
    }


async def test_instance_detail_finds_persistent_instances(client):
    await register(client, ephemeral="false", weight="3")
    status, body = await detail(client)
    assert (status, body["ephemeral"], body["weight"]) == (200, False, 3.0)


async def test_instance_detail_404s(client):
    status, text = await detail(client)
    assert (status, text) == (404, "no service DEFAULT_GROUP@@demo found!")
    await register(client)
    status, text = await detail(client, clusterName="c9")
    assert (status, text) == (404, "no ips found for cluster c9 in service DEFAULT_GROUP@@demo")
    status, text = await detail(client, port=9999)
    assert (status, text) == (404, "no matched ip found!")
    status, text = await detail(client, ip="127.0.0.2")
    assert (status, text) == (404, "no matched ip found!")


# -- instance/list -----------------------------------------------------------------------


async def test_list_of_unknown_service(client):
    listed = await listing(client, service="nope", clusters="c1,c2")
    assert listed["hosts"] == []
    assert listed["name"] == "DEFAULT_GROUP@@nope"
    assert listed["clusters"] == "c1,c2"
    assert listed["reachProtectionThreshold"] is False


async def test_list_top_level_fields(client):
    await register(client)
    listed = await listing(client)
    for field in ("dom", "name", "cacheMillis", "lastRefTime", "checksum", "useSpecifiedURL", "clusters", "env",
                  "metadata", "hosts", "groupName", "allIPs", "reachProtectionThreshold", "valid"):
        assert field in listed, field
    assert (listed["groupName"], listed["allIPs"], listed["reachProtectionThreshold"], listed["valid"]) == (
        "DEFAULT_GROUP", False, False, True)
    assert listed["clusters"] == ""
    assert isinstance(listed["lastRefTime"], int) and listed["lastRefTime"] > 0
    assert isinstance(listed["cacheMillis"], int) and listed["cacheMillis"] > 0
    assert set(listed["hosts"][0]) == HOST_FIELDS


async def test_list_clusters_filter_and_exact_echo(client):
    for port, cluster in ((1, "c1"), (2, "c2"), (3, "c3")):
        await register(client, port=port, clusterName=cluster)
    listed = await listing(client, clusters="c2,c1")
    assert listed["clusters"] == "c2,c1"
    assert addresses(listed["hosts"]) == [(IP, 1, "c1"), (IP, 2, "c2")]
    spaced = await listing(client, clusters="c3, c9")
    assert spaced["clusters"] == "c3, c9"
    assert addresses(spaced["hosts"]) == [(IP, 3, "c3")]
    assert len(await hosts(client)) == 3
    assert len(await hosts(client, clusters="")) == 3


async def test_list_healthy_only_and_order(client):
    await register(client, port=1, healthy="false")
    await register(client, port=2)
    listed = await hosts(client)
    assert [(h["port"], h["healthy"], h["valid"]) for h in listed] == [(2, True, True), (1, False, False)]
    assert [h["port"] for h in await hosts(client, healthyOnly="true")] == [2]
    assert [h["port"] for h in await hosts(client, healthyOnly="FALSE")] == [2, 1]


async def test_list_orders_hosts_by_ip_then_port_whatever_the_registration_order(client):
    for ip, port in (("127.0.0.2", 80), ("127.0.0.1", 9000), ("127.0.0.1", 81), ("127.0.0.1", 80)):
        await register(client, ip=ip, port=port)
    listed = await hosts(client)
    assert [(h["ip"], h["port"]) for h in listed] == [
        ("127.0.0.1", 80), ("127.0.0.1", 81), ("127.0.0.1", 9000), ("127.0.0.2", 80)
    ]


async def test_list_hides_disabled_instances(client):
    await register(client, port=1, enabled="false")
    await register(client, port=2)
    assert [h["port"] for h in await hosts(client)] == [2]
    await ok(client, "PATCH", "/instance", {"serviceName": SERVICE, "ip": IP, "port": "1", "enabled": "true"})
    assert sorted(h["port"] for h in await hosts(client)) == [1, 2]


async def set_threshold(client, threshold, service=SERVICE):
    await ok(client, "PUT", "/service", {"serviceName": service, "protectThreshold": str(threshold)})


async def test_protect_threshold_reports_everyone_healthy_at_or_below_it(client):
    await register(client, port=1, healthy="false")
    await register(client, port=2)
    await set_threshold(client, 0.5)  # 1/2 healthy <= 0.5: protection
    listed = await listing(client)
    assert listed["reachProtectionThreshold"] is True
    assert sorted((h["port"], h["healthy"], h["valid"]) for h in listed["hosts"]) == [(1, True, True), (2, True, True)]
    assert sorted(h["port"] for h in await hosts(client, healthyOnly="true")) == [1, 2]  # protection wins

    await set_threshold(client, 0.49)
    listed = await listing(client)
    assert listed["reachProtectionThreshold"] is False
    assert [(h["port"], h["healthy"]) for h in listed["hosts"]] == [(2, True), (1, False)]


async def test_protect_threshold_zero_triggers_when_all_are_unhealthy(client):
    await register(client, port=1, healthy="false")
    await register(client, port=2, healthy="false")
    listed = await listing(client)
    assert listed["reachProtectionThreshold"] is True
    assert all(h["healthy"] for h in listed["hosts"]) and len(listed["hosts"]) == 2
    # the stored health is unchanged
    status, body = await detail(client, port=1)
    assert body["healthy"] is False


async def test_protect_threshold_counts_disabled_instances_and_only_requested_clusters(client):
    await register(client, port=1, clusterName="a", healthy="false")
    await register(client, port=2, clusterName="a", enabled="false")
    await register(client, port=3, clusterName="b", healthy="false")
    await set_threshold(client, 0.5)
    listed = await listing(client, clusters="a")  # 1 healthy (disabled) of 2 in a: protected
    assert listed["reachProtectionThreshold"] is True
    assert [(h["port"], h["healthy"]) for h in listed["hosts"]] == [(1, True)]
    only_b = await listing(client, clusters="b")  # 0 of 1
    assert only_b["reachProtectionThreshold"] is True
    everyone = await listing(client)  # 1 of 3 <= 0.5
    assert everyone["reachProtectionThreshold"] is True
    await set_threshold(client, 0.3)
    everyone = await listing(client)  # 1/3 > 0.3
    assert everyone["reachProtectionThreshold"] is False


async def test_protect_threshold_never_triggers_for_an_empty_service(client):
    await ok(client, "POST", "/service", {"serviceName": SERVICE, "protectThreshold": "1"})
    listed = await listing(client)
    assert (listed["hosts"], listed["reachProtectionThreshold"]) == ([], False)
    await register(client, clusterName="c1")
    listed = await listing(client, clusters="c2")  # no candidates in c2
    assert (listed["hosts"], listed["reachProtectionThreshold"]) == ([], False)


async def test_name_is_grouped_and_dom_grouped_only_for_java(client):
    await register(client, service="grp@@demo")
    plain = await listing(client, service="grp@@demo")
    assert (plain["name"], plain["dom"]) == ("grp@@demo", "demo")
    assert plain["hosts"][0]["serviceName"] == "demo"
    python = await listing(client, service="grp@@demo", headers=PYTHON_UA)
    assert (python["name"], python["dom"]) == ("grp@@demo", "demo")
    java = await listing(client, service="grp@@demo", headers=JAVA_UA)
    assert (java["name"], java["dom"]) == ("grp@@demo", "grp@@demo")
    assert java["hosts"][0]["serviceName"] == "grp@@demo"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ('{"a":"1","b":"x y"}', {"a": "1", "b": "x y"}),
        ('{"n":1,"f":1.5,"t":true}', {"n": "1", "f": "1.5", "t": "true"}),
        ("a=1,b=2", {"a": "1", "b": "2"}),
        (" a = 1 , b=2 ", {"a": "1", "b": "2"}),
        ("{}", {}),
        ("k=", {"k": ""}),
    ],
)
async def test_metadata_json_and_pairs(client, raw, expected):
    await register(client, metadata=raw)
    [host] = await hosts(client)
    assert host["metadata"] == expected


async def test_preserved_metadata_drives_the_timing_fields(client):
    metadata = ('{"preserved.heart.beat.interval":"1000","preserved.heart.beat.timeout":"3000",'
                '"preserved.ip.delete.timeout":"6000"}')
    await register(client, metadata=metadata)
    [host] = await hosts(client)
    assert (host["instanceHeartBeatInterval"], host["instanceHeartBeatTimeOut"], host["ipDeleteTimeout"]) == (
        1000, 3000, 6000)
    await register(client, metadata='{"preserved.heart.beat.interval":"soon"}')
    [host] = await hosts(client)
    assert host["instanceHeartBeatInterval"] == 5000  # not digits: the default


async def test_memoized_list_body_changes_after_a_write(client):
    await register(client, port=1)
    first = await (await client.get(f"{BASE}/instance/list", params={"serviceName": SERVICE})).read()
    again = await (await client.get(f"{BASE}/instance/list", params={"serviceName": SERVICE})).read()
    assert first == again
    await ok(client, "PATCH", "/instance", {"serviceName": SERVICE, "ip": IP, "port": "1", "weight": "2"})
    listed = await listing(client)
    assert [h["weight"] for h in listed["hosts"]] == [2.0]
    await register(client, port=2)
    later = await listing(client)
    assert sorted(h["port"] for h in later["hosts"]) == [1, 2]
    assert later["lastRefTime"] > listed["lastRefTime"]
    assert later["checksum"] != listed["checksum"]
    await ok(client, "DELETE", "/instance", {"serviceName": SERVICE, "ip": IP, "port": "1"})
    assert [h["port"] for h in await hosts(client)] == [2]
    await set_threshold(client, 1.0)
    assert (await listing(client))["reachProtectionThreshold"] is True


async def test_memo_is_per_query_shape(client):
    await register(client, port=1, clusterName="c1")
    await register(client, port=2, clusterName="c2", healthy="false")
    await register(client, port=3, clusterName="c2")
    assert [h["port"] for h in await hosts(client, clusters="c1")] == [1]
    assert sorted(h["port"] for h in await hosts(client, clusters="c2")) == [2, 3]
    assert [h["port"] for h in await hosts(client, clusters="c2", healthyOnly="true")] == [3]
    assert (await listing(client, headers=JAVA_UA))["dom"] == "DEFAULT_GROUP@@demo"
    assert (await listing(client))["dom"] == "demo"


async def test_snowflake_generator_gives_integer_ids(client):
    snowflake = '{"preserved.instance.id.generator":"snowflake"}'
    for port in (1, 2, 3):
        await register(client, port=port, metadata=snowflake)
    listed = await hosts(client)
    assert sorted((h["port"], h["instanceId"]) for h in listed) == [(1, "0"), (2, "1"), (3, "2")]
    assert {h["instanceIdGenerator"] for h in listed} == {"snowflake"}
    await ok(client, "DELETE", "/instance", {"serviceName": SERVICE, "ip": IP, "port": "1"})
    await register(client, port=4, metadata=snowflake)  # the smallest unused id
    await register(client, port=2, metadata=snowflake)  # re-register keeps its id
    assert sorted((h["port"], h["instanceId"]) for h in await hosts(client)) == [(2, "1"), (3, "2"), (4, "0")]


async def test_names_at_their_length_limits_are_accepted(client):
    name, group, cluster, namespace = "s" * 255, "g" * 128, "c" * 64, "n" * 128
    await register(client, service=f"{group}@@{name}", clusterName=cluster, namespaceId=namespace)
    listed = await listing(client, service=name, groupName=group, namespaceId=namespace)
    assert listed["name"] == f"{group}@@{name}"
    assert [h["clusterName"] for h in listed["hosts"]] == [cluster]


async def test_every_legal_name_character_is_accepted(client):
    await register(client, service="Grp.1:x_y-z@@Svc.1:x_y-z", clusterName="Az-09", namespaceId="Ns_1-x")
    listed = await listing(client, service="Grp.1:x_y-z@@Svc.1:x_y-z", namespaceId="Ns_1-x")
    assert [h["clusterName"] for h in listed["hosts"]] == ["Az-09"]
