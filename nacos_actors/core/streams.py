"""What crosses between the gRPC connection layer (on the event loop) and the push driver:
a client's subscription over gRPC, and a request the server sends on a client's stream. Pure
values; the push core decides what to send, the loop's connection layer writes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from nacos_actors.model import InstanceKey, ServiceKey


@dataclass(frozen=True, slots=True)
class GrpcSubscription:
    """A SubscribeServiceRequest that the connection layer accepted.

    `connection_id` names the client's connection; `clusters_text` is the request's `clusters`
    string as sent (pushes echo it: the clients key their cache by it), `clusters` the parsed,
    sorted, unique names; `client_ip` the connection's `clientIp` (else its peer address),
    `agent` its client version, `app` the request's `app` header ("unknown" without one).
    """

    connection_id: str
    service: ServiceKey
    clusters_text: str
    clusters: tuple[str, ...]
    client_ip: str
    agent: str
    app: str


@dataclass(frozen=True, slots=True)
class StreamPush:
    """A server request to write on the stream of `connection_id`: `type` is the Payload's
    `metadata.type` (e.g. "NotifySubscriberRequest"), `body` its JSON (with its `requestId`).
    The connection layer drops it when the connection is gone."""

    connection_id: str
    type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class ConnectionSummary:
    """One live gRPC connection as the views show it (GET /v2/ns/client/*): its id, the client's
    own address (`clientIp`) and the peer address, what it said at setup, when it connected and
    was last active (wall-clock ms), the ephemeral instances it registered, and its
    subscriptions (service, clusters text)."""

    connection_id: str
    client_ip: str
    remote_ip: str
    remote_port: int
    client_version: str
    namespace: str
    labels: tuple[tuple[str, str], ...]
    connected_ms: int
    last_active_ms: int
    published: tuple[tuple[ServiceKey, InstanceKey], ...]
    subscribed: tuple[tuple[ServiceKey, str], ...]
