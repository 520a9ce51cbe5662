"""Frozen messages between the front and the actors.

Commands are the registry core's inputs: pure data, already validated at the HTTP edge.
`WriteBatch` carries the commands the event loop gathered in one turn and the reply the actor
resolves once they are all applied. Nothing here
holds a mutable value; pykka does not copy messages between threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from nacos_actors.model import ClusterConfig, Instance, InstanceKey, Selector, Service, ServiceKey


class Reply(Protocol):
    """Where an actor sends the answer to one request. Safe to call from any thread, once."""

    def resolve(self, value: Any) -> None: ...

    def fail(self, error: BaseException) -> None: ...


@dataclass(frozen=True, slots=True)
class RegisterInstance:
    """Add an instance, replacing any with the same key (Nacos resets every field on re-register)."""

    service: ServiceKey
    instance: Instance


@dataclass(frozen=True, slots=True)
class DeregisterInstance:
    """Remove an instance; unknown services and instances are not an error (as Nacos)."""

    service: ServiceKey
    key: InstanceKey


@dataclass(frozen=True, slots=True)
class UpdateInstance:
    """Rebuild an instance from the request; with `must_exist` a missing one is a 400 (Java UA)."""

    service: ServiceKey
    instance: Instance
    must_exist: bool


@dataclass(frozen=True, slots=True)
class PatchInstance:
    """Change only the given fields of an existing instance. `ephemeral=None` searches both kinds."""

    service: ServiceKey
    ip: str
    port: int
    cluster: str
    ephemeral: bool | None
    weight: float | None = None
    healthy: bool | None = None
    enabled: bool | None = None
    metadata: Mapping[str, str] | None = None
    app: str | None = None


@dataclass(frozen=True, slots=True)
class BeatInstance:
    """A beat that needs a write: revive an unhealthy instance, or re-register one from the beat.

    `reregister` is the instance built from the beat JSON, or None for a light beat (which then
    finds nothing and answers 20404).
    """

    service: ServiceKey
    key: InstanceKey
    reregister: Instance | None


@dataclass(frozen=True, slots=True)
class MarkUnhealthy:
    """The health checker's verdict: a healthy, unmarked instance missed its beat timeout.

    Changes nothing when the instance is gone, already unhealthy or marked meanwhile.
    """

    service: ServiceKey
    key: InstanceKey


@dataclass(frozen=True, slots=True)
class ExpireInstance:
    """The health checker's verdict: an unmarked instance missed its delete timeout; remove it.

    Changes nothing when the instance is gone or marked meanwhile.
    """

    service: ServiceKey
    key: InstanceKey


@dataclass(frozen=True, slots=True)
class CreateService:
    """Create an empty service explicitly; an existing one is a 400."""

    service: ServiceKey
    protect_threshold: float
    metadata: Mapping[str, str]
    selector: Selector


@dataclass(frozen=True, slots=True)
class UpdateService:
    """Change a service's threshold, and its metadata and selector when given."""

    service: ServiceKey
    protect_threshold: float
    metadata: Mapping[str, str] | None
    selector: Selector | None


@dataclass(frozen=True, slots=True)
class DeleteService:
    """Delete a service that has no instances left."""

    service: ServiceKey


@dataclass(frozen=True, slots=True)
class RemoveEmptyService:
    """Empty-service cleanup: delete the service only if it is still empty at `revision`."""

    service: ServiceKey
    revision: int


@dataclass(frozen=True, slots=True)
class UpdateMetadataBatch:
    """Merge (or with `remove`, delete the keys of) metadata on many instances of one service.

    `kind` selects every ephemeral ('ephemeral') or persistent ('persist') instance; otherwise
    `targets` names the instances.
    """

    service: ServiceKey
    metadata: Mapping[str, str]
    remove: bool
    kind: str | None
    targets: tuple[InstanceKey, ...]


@dataclass(frozen=True, slots=True)
class UpdateCluster:
    """Set a cluster's configuration (PUT /v1/ns/cluster), creating its entry if it has none.

    The service must exist (else a 400); the cluster need not hold instances.
    """

    service: ServiceKey
    cluster: str
    config: ClusterConfig


@dataclass(frozen=True, slots=True)
class SetInstanceHealth:
    """Set an instance's health by hand (PUT /v1/ns/health/instance).

    Allowed only when the cluster's checker is NONE (else a 400); the persistent instance at
    ip:port in the cluster is preferred, then the ephemeral one; when neither exists nothing
    changes (Nacos answers ok). A missing service or cluster is a 404.
    """

    service: ServiceKey
    ip: str
    port: int
    cluster: str
    healthy: bool


Command = (
    RegisterInstance
    | DeregisterInstance
    | UpdateInstance
    | PatchInstance
    | BeatInstance
    | MarkUnhealthy
    | ExpireInstance
    | CreateService
    | UpdateService
    | DeleteService
    | RemoveEmptyService
    | UpdateMetadataBatch
    | UpdateCluster
    | SetInstanceHealth
)


@dataclass(frozen=True, slots=True)
class WriteBatch:
    """Apply `commands` in order, then resolve `reply` once with one outcome per command.

    An outcome is the command's value, or the Rejected refusal itself for a refused command.
    """

    commands: tuple[Command, ...]
    reply: Reply


class NoReply:
    """A Reply for writes whose outcome nobody waits for (the health checker's verdicts)."""

    def resolve(self, value: Any) -> None:
        pass

    def fail(self, error: BaseException) -> None:
        pass


NO_REPLY = NoReply()


@dataclass(frozen=True, slots=True)
class Ping:
    """Asked by the lifecycle to prove an actor is up; answered with 'pong'."""


@dataclass(frozen=True, slots=True)
class ServiceChange:
    """The latest snapshot of a changed service, or None when the service was deleted.

    `touched` names every instance added, replaced or removed since the watcher's previous
    snapshot of the service; None means unknown (compare them all).
    """

    key: ServiceKey
    snapshot: Service | None
    touched: frozenset[InstanceKey] | None = None


@dataclass(frozen=True, slots=True)
class ServicesChanged:
    """Told by the registry to each watcher after a batch: every service it changed, latest state.

    `applied_ns` is `time.monotonic_ns()` when the batch was applied (push latency starts there).
    `replicated` is true when the changes came from a peer (Distro does not send them on).
    """

    changes: tuple[ServiceChange, ...]
    applied_ns: int
    replicated: bool = False


@dataclass(frozen=True, slots=True)
class ApplyReplicated:
    """Apply service states a peer sent (nacos_actors.core.registry.ReplicatedState: a Service,
    Tombstone or Dropped); with `force` they replace ours whatever their version. `reply` gets a
    one-element tuple: how many changed something."""

    states: tuple[Any, ...]
    force: bool
    reply: Reply


@dataclass(frozen=True, slots=True)
class LoadSnapshot:
    """Replace the whole registry with a peer's snapshot (a starting node); `reply` gets a
    one-element tuple: the number of services loaded."""

    services: tuple[Service, ...]
    reply: Reply


@dataclass(frozen=True, slots=True)
class Watch:
    """Ask the registry to tell `watcher` a ServicesChanged after every batch that changes
    something; it first tells it every current service, so the watcher starts complete."""

    watcher: Any  # a pykka.ActorRef


@dataclass(frozen=True, slots=True)
class Tick:
    """Told by an actor's Alarm when the deadline it was set to has come."""


RegistryMessage = WriteBatch | ApplyReplicated | LoadSnapshot | Watch | Ping


@dataclass(frozen=True, slots=True)
class Subscribe:
    """A list query carried `udpPort` from a push-capable client: add or refresh the subscriber.

    `subscription` is a nacos_actors.core.push.Subscription.
    """

    subscription: Any


@dataclass(frozen=True, slots=True)
class DatagramReceived:
    """A datagram arrived on the push socket (an ack, or anything else) from address:port."""

    payload: bytes
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class QuerySubscribers:
    """Answer, through `reply`, a one-element tuple: the live subscriptions of `namespace`."""

    namespace: str
    reply: Reply


@dataclass(frozen=True, slots=True)
class MembersChanged:
    """Told by the member actor whenever a member's state changed: the new
    nacos_actors.core.members.MemberView."""

    view: Any


@dataclass(frozen=True, slots=True)
class ReportReceived:
    """A peer reported its state to us (POST /v1/core/cluster/report)."""

    peer: str
    state: str


@dataclass(frozen=True, slots=True)
class ReportAnswered:
    """Our report to `peer` was answered with its state."""

    peer: str
    state: str


@dataclass(frozen=True, slots=True)
class PeerFailed:
    """A request to `peer` failed (`refused`: connection refused); `report` when it was our
    member report (which frees the next report)."""

    peer: str
    refused: bool
    report: bool = False


@dataclass(frozen=True, slots=True)
class MarkReady:
    """This node holds its data and serves: it is UP."""


@dataclass(frozen=True, slots=True)
class Leave:
    """This node is stopping: report DOWN to every peer, then resolve `reply` (a one-element tuple)."""

    reply: Reply


MemberMessage = ReportReceived | ReportAnswered | PeerFailed | MarkReady | Leave | Tick | Ping


@dataclass(frozen=True, slots=True)
class BatchDone:
    """A Distro batch (nacos_actors.core.distro.SendBatch) was acknowledged (`ok`) or failed."""

    batch: Any
    ok: bool


@dataclass(frozen=True, slots=True)
class DigestsAnswered:
    """`peer` answered our digests: it wants these services sent again."""

    peer: str
    wanted: tuple[ServiceKey, ...]


@dataclass(frozen=True, slots=True)
class Drain:
    """The node is stopping: send every pending change now, and resolve `reply` (a one-element
    tuple: how many services were still unsent) once nothing is in flight or time is up."""

    reply: Reply


DistroMessage = ServicesChanged | MembersChanged | BatchDone | DigestsAnswered | Drain | Tick | Ping
HealthMessage = ServicesChanged | MembersChanged | Tick | Ping
PushMessage = ServicesChanged | Subscribe | DatagramReceived | Tick | QuerySubscribers | Ping
