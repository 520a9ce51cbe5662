"""Nacos 2.x's clients derived from snapshots and connections (nacos_actors.render.clients):
every instance has exactly one owner, a connection for what it published, else the IP-port
client of its address and kind; each IP-port client holds exactly the instances at its address."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nacos_actors.core.streams import ConnectionSummary
from nacos_actors.model import Instance, Service, ServiceKey, instance_map
from nacos_actors.render.clients import all_clients, ip_port_client_id, service_publishers

instances = st.builds(
    Instance,
    ip=st.sampled_from(["127.0.0.1", "127.0.0.2", "::1"]),
    port=st.integers(1, 3),
    cluster=st.sampled_from(["DEFAULT", "c"]),
    ephemeral=st.booleans(),
)
services = st.lists(
    st.builds(
        lambda name, members: Service(ServiceKey("public", f"DEFAULT_GROUP@@{name}"), instance_map(members)),
        st.sampled_from(["a", "b", "c"]),
        st.lists(instances, max_size=6),
    ),
    max_size=3,
    unique_by=lambda service: service.key,
)


def connection(connection_id, published):
    return ConnectionSummary(connection_id, "127.0.0.9", "127.0.0.1", 5000, "v", "public", (), 1, 2, published, ())


@given(services, st.data())
def test_every_instance_has_exactly_one_owner(snapshots, data):
    placed = [(s.key, key) for s in snapshots for key in s.instances if key.ephemeral]
    owned = data.draw(st.lists(st.sampled_from(placed), unique=True) if placed else st.just([]))
    connections = (connection("c1", tuple(owned)),) if owned else ()

    clients = all_clients(snapshots, connections)

    every = {(s.key, key) for s in snapshots for key in s.instances}
    assert set(clients.owner_of) == every
    for place in owned:
        assert clients.owner_of[place] == "c1"
    for client_id, client in clients.ip_port.items():
        assert client_id == ip_port_client_id(client.ip, client.port, client.ephemeral)
        for service, instance in client.published:
            assert (instance.ip, instance.port, instance.ephemeral) == (client.ip, client.port, client.ephemeral)
            assert clients.owner_of[(service.key, instance.key)] == client_id
    held = sum(len(client.published) for client in clients.ip_port.values())
    assert held == len(every) - len(owned)
    assert clients.ids() == sorted(clients.connections) + sorted(clients.ip_port)


@given(services)
def test_the_publishers_of_a_service_are_its_instances_of_that_kind(snapshots):
    clients = all_clients(snapshots, ())
    for service in snapshots:
        for ephemeral in (True, False):
            rows = service_publishers(clients, service, ephemeral, None, None)
            assert len(rows) == sum(1 for key in service.instances if key.ephemeral == ephemeral)
            assert all(row["clientId"].endswith("#true" if ephemeral else "#false") for row in rows)
