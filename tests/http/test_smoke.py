"""A first pass over the instance API through the real app and actor."""

from tests.http.conftest import BASE


async def test_register_then_list_sees_the_instance(client):
    response = await client.post(f"{BASE}/instance", params={"serviceName": "demo", "ip": "127.0.0.1", "port": "8080"})
    assert response.status == 200
    assert await response.text() == "ok"
    listed = await (await client.get(f"{BASE}/instance/list", params={"serviceName": "demo"})).json()
    assert [(h["ip"], h["port"]) for h in listed["hosts"]] == [("127.0.0.1", 8080)]
    assert listed["name"] == "DEFAULT_GROUP@@demo"


async def test_bad_port_is_a_400_naming_it_and_stores_nothing(client):
    response = await client.post(f"{BASE}/instance", params={"serviceName": "demo", "ip": "127.0.0.1", "port": "x"})
    assert response.status == 400
    assert "port" in await response.text()
    listed = await (await client.get(f"{BASE}/instance/list", params={"serviceName": "demo"})).json()
    assert listed["hosts"] == []
