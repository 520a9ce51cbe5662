"""The clients of a node as Nacos 2.x names them, for GET /v2/ns/client/* and the v2 metrics.

Two kinds. A **connection** client is a live gRPC connection (a ConnectionSummary), named by its
connection id, owning the ephemeral instances it registered and its subscriptions. An **IP-port**
client stands for the instances registered over HTTP (the v1, v2 and v3 APIs): one per instance
address and kind, named `ip:port#true` (ephemeral) or `ip:port#false` (persistent), as Nacos's
IpPortBasedClient. The IP-port clients are derived from the registry's snapshots, leaving out
the instances a connection owns. Pure functions of the snapshots and summaries they are given:
any thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nacos_actors.core.streams import ConnectionSummary
from nacos_actors.model import Instance, InstanceKey, Service, ServiceKey, split_grouped_name

ID_DELIMITER = "#"
CONNECTION = "connection"
IP_PORT = "ipPort"
CONNECT_TYPE = "GRPC"
APP_NAME_LABEL = "AppName"
UNKNOWN_APP = "unknown"
NO_APP_NAME = "-"  # what Nacos's ConnectionMeta answers for a connection without an AppName label

LastBeat = Callable[[ServiceKey, InstanceKey], int | None]


def ip_port_client_id(ip: str, port: int, ephemeral: bool) -> str:
    """Nacos's IpPortBasedClient id: `ip:port#true` or `ip:port#false`."""
    return f"{ip}:{port}{ID_DELIMITER}{'true' if ephemeral else 'false'}"


@dataclass
class IpPortClient:
    """The HTTP-registered instances at one address and kind, with the services they are in."""

    client_id: str
    ip: str
    port: int
    ephemeral: bool
    published: list[tuple[Service, Instance]] = field(default_factory=list)

    def last_updated_ms(self, last_beat: LastBeat) -> int:
        """The latest beat of its instances, else the latest change of their services."""
        times = [last_beat(service.key, instance.key) or service.last_ref_ms for service, instance in self.published]
        return max(times, default=0)


@dataclass
class Clients:
    """Every client of the node: the connections by id, the IP-port clients by id, and which
    client owns each instance (for the publisher view)."""

    connections: dict[str, ConnectionSummary]
    ip_port: dict[str, IpPortClient]
    owner_of: dict[tuple[ServiceKey, InstanceKey], str]

    def ids(self) -> list[str]:
        """Every client id: the connections', then the IP-port clients', each sorted."""
        return sorted(self.connections) + sorted(self.ip_port)


def all_clients(services: Iterable[Service], connections: Sequence[ConnectionSummary]) -> Clients:
    """The clients the registry's `services` and the live `connections` make up."""
    by_connection = {summary.connection_id: summary for summary in connections}
    owner_of: dict[tuple[ServiceKey, InstanceKey], str] = {}
    for summary in connections:
        for published in summary.published:
            owner_of[published] = summary.connection_id
    ip_port: dict[str, IpPortClient] = {}
    for service in services:
        for key, instance in service.instances.items():
            place = (service.key, key)
            owner = owner_of.get(place)
            if owner is not None:
                continue
            client_id = ip_port_client_id(key.ip, key.port, key.ephemeral)
            client = ip_port.get(client_id)
            if client is None:
                client = ip_port[client_id] = IpPortClient(client_id, key.ip, key.port, key.ephemeral)
            client.published.append((service, instance))
            owner_of[place] = client_id
    return Clients(by_connection, ip_port, owner_of)


def app_name(summary: ConnectionSummary) -> str:
    return dict(summary.labels).get(APP_NAME_LABEL) or NO_APP_NAME


def connection_detail(summary: ConnectionSummary) -> dict[str, Any]:
    """GET /v2/ns/client for a connection (Nacos's ConnectionBasedClient view)."""
    return {
        "clientId": summary.connection_id,
        "ephemeral": True,
        "lastUpdatedTime": summary.last_active_ms,
        "clientType": CONNECTION,
        "connectType": CONNECT_TYPE,
        "appName": app_name(summary),
        "version": summary.client_version,
        "clientIp": summary.client_ip,
        "clientPort": str(summary.remote_port),
    }


def ip_port_detail(client: IpPortClient, last_beat: LastBeat) -> dict[str, Any]:
    """GET /v2/ns/client for an IP-port client (Nacos's IpPortBasedClient view)."""
    return {
        "clientId": client.client_id,
        "ephemeral": client.ephemeral,
        "lastUpdatedTime": client.last_updated_ms(last_beat),
        "clientType": IP_PORT,
        "clientIp": client.ip,
        "clientPort": str(client.port),
    }


def published_row(service: ServiceKey, ip: str, port: int, cluster: str) -> dict[str, Any]:
    """One row of GET /v2/ns/client/publish/list."""
    group, bare = split_grouped_name(service.name)
    return {
        "namespace": service.namespace,
        "group": group,
        "serviceName": bare,
        "registeredInstance": {"ip": ip, "port": port, "cluster": cluster},
    }


def connection_published(summary: ConnectionSummary) -> list[dict[str, Any]]:
    return [published_row(service, key.ip, key.port, key.cluster) for service, key in summary.published]


def ip_port_published(client: IpPortClient) -> list[dict[str, Any]]:
    return [
        published_row(service.key, instance.ip, instance.port, instance.cluster)
        for service, instance in client.published
    ]


def connection_subscribed(summary: ConnectionSummary) -> list[dict[str, Any]]:
    """GET /v2/ns/client/subscribe/list for a connection: Nacos's gRPC Subscriber has the
    client's own address and no port."""
    rows = []
    app = dict(summary.labels).get(APP_NAME_LABEL) or UNKNOWN_APP
    for service, _clusters in summary.subscribed:
        group, bare = split_grouped_name(service.name)
        rows.append(
            {
                "namespace": service.namespace,
                "group": group,
                "serviceName": bare,
                "subscriberInfo": {"app": app, "agent": summary.client_version, "addr": summary.client_ip},
            }
        )
    return rows


def service_publishers(
    clients: Clients, service: Service | None, ephemeral: bool, ip: str | None, port: int | None
) -> list[dict[str, Any]]:
    """GET /v2/ns/client/service/publisher/list: the service's instances of that kind (at `ip`
    and `port` when given) with the client that owns each."""
    if service is None:
        return []
    rows = []
    for instance in sorted(service.instances.values(), key=lambda i: (i.ip, i.port, i.cluster)):
        if instance.ephemeral != ephemeral or (ip is not None and instance.ip != ip):
            continue
        if port is not None and instance.port != port:
            continue
        owner = clients.owner_of.get((service.key, instance.key), "")
        rows.append({"ip": instance.ip, "port": instance.port, "cluster": instance.cluster, "clientId": owner})
    return rows


def connection_subscribers(
    connections: Sequence[ConnectionSummary], service: ServiceKey, ip: str | None, port: int | None
) -> list[dict[str, Any]]:
    """The gRPC subscribers of `service` for GET /v2/ns/client/service/subscriber/list (port 0,
    as Nacos records them)."""
    rows = []
    for summary in connections:
        if not any(subscribed == service for subscribed, _ in summary.subscribed):
            continue
        if (ip is not None and summary.client_ip != ip) or (port is not None and port != 0):
            continue
        rows.append({"clientId": summary.connection_id, "ip": summary.client_ip, "port": 0})
    return rows
