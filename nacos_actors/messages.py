"""Frozen messages between the front and the drivers, and between drivers.

Commands are the registry core's inputs: pure data, already validated at the HTTP edge.
`WriteBatch` carries the commands the event loop gathered in one turn and the reply the driver
resolves once they are all applied, with one `Ok` or `Refused` per command. Nothing here holds
a mutable value; pykka does not copy messages between threads.

Drivers name each other by the names below (`REGISTRY`, ...); the bridge (real actors) and the
cluster simulation map a name to whatever carries a message there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, NamedTuple, Protocol, TypeVar

from nacos_actors.core.members import MemberView
from nacos_actors.core.probing import ProbeResult
from nacos_actors.core.push import Datagram, Subscription
from nacos_actors.core.streams import GrpcSubscription
from nacos_actors.model import (
    ClusterConfig,
    Definition,
    Instance,
    InstanceKey,
    ReplicatedState,
    Selector,
    Service,
    ServiceKey,
)

REGISTRY: Final = "registry"
HEALTH: Final = "health"
PUSH: Final = "push"
DISTRO: Final = "distro"
MEMBERS: Final = "members"
RAFT: Final = "raft"
PROBE: Final = "probe"
ActorName = Literal["registry", "health", "push", "distro", "members", "raft", "probe"]

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class Reply(Protocol[T_contra]):
    """Where a driver sends the answer to one request. Safe to call from any thread, once."""

    def resolve(self, value: T_contra) -> None: ...

    def fail(self, error: BaseException) -> None: ...


class Ok(NamedTuple, Generic[T]):
    """A command that was applied, with its answer. (A NamedTuple: one is built per write, and
    a tuple is built at half the cost of a frozen dataclass.)"""

    value: T


@dataclass(frozen=True, slots=True)
class Refused:
    """A command the registry refused: answered to the client as `status` with `message`."""

    status: int
    message: str


Outcome = Ok[Any] | Refused


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


@dataclass(frozen=True, slots=True)
class ApplyProbeVerdict:
    """An active probe's verdict on a persistent instance (the member responsible for the
    service probed it with its cluster's `checker` type). Applied only while the instance
    exists and its cluster is still checked by that type: a verdict that raced a change of
    checker (to NONE, say) changes nothing. Always answers Ok."""

    service: ServiceKey
    ip: str
    port: int
    cluster: str
    healthy: bool
    checker: str


@dataclass(frozen=True, slots=True)
class ImportDefinition:
    """Store a service's persistent half read from a data file an earlier version wrote, unless
    Raft holds that service already (so importing twice changes nothing)."""

    definition: Definition


PersistentCommand = (
    RegisterInstance
    | DeregisterInstance
    | UpdateInstance
    | PatchInstance
    | CreateService
    | UpdateService
    | DeleteService
    | UpdateCluster
    | SetInstanceHealth
    | UpdateMetadataBatch
    | ApplyProbeVerdict
    | ImportDefinition
)
"""What goes through Raft: writes of persistent instances, service settings and clusters (the
edge routes each write; a persistent command carries persistent instance keys only)."""


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
    """Apply `commands` in order, then resolve `reply` once with one Outcome per command."""

    commands: tuple[Command, ...]
    reply: Reply[tuple[Outcome, ...]]


class NoReply:
    """A Reply for writes whose outcome nobody waits for (the health checker's verdicts)."""

    def resolve(self, value: object) -> None:
        pass

    def fail(self, error: BaseException) -> None:
        pass


NO_REPLY = NoReply()


@dataclass(frozen=True, slots=True)
class Ping:
    """Told by the lifecycle to prove an actor is up: its actor answers 'pong' (as pykka's ask
    result, and through `reply` when one is given); drivers never see it."""

    reply: Reply[str] | None = None


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
    """Apply service states a peer sent (a Service, Tombstone or Dropped); with `force` they
    replace ours whatever their version. `reply` gets how many changed something."""

    states: tuple[ReplicatedState, ...]
    force: bool
    reply: Reply[int]


@dataclass(frozen=True, slots=True)
class LoadSnapshot:
    """Replace the whole registry with a peer's snapshot (a starting node); `reply` gets the
    number of services loaded."""

    services: tuple[Service, ...]
    reply: Reply[int]


@dataclass(frozen=True, slots=True)
class Watch:
    """Ask the registry to tell the driver named `watcher` a ServicesChanged after every batch
    that changes something; it first tells it every current service, so it starts complete.
    With `persistent_only`, only the changes that may touch a persistent half (what Raft
    applied, a snapshot loaded): the ephemeral writes, the bulk of them, never do."""

    watcher: ActorName
    persistent_only: bool = False


@dataclass(frozen=True, slots=True)
class Tick:
    """Told by the ticker when the deadline a driver asked to be woken at has come."""


PeerPurpose = Literal["report", "farewell", "batch", "digests"]


@dataclass(frozen=True, slots=True)
class PeerCall:
    """A request to a peer that a driver wants made (msgpack `body` to `path` under the context
    path). Whatever happens, the caller `reply_to` is told one PeerAnswered carrying this call."""

    peer: str
    method: str
    path: str
    body: bytes
    timeout_ms: int
    reply_to: ActorName
    purpose: PeerPurpose


@dataclass(frozen=True, slots=True)
class PeerAnswered:
    """How a PeerCall ended: the peer's `status` and `body`, or `status` None when no answer came
    (`refused`: nothing listened there)."""

    call: PeerCall
    status: int | None
    body: bytes = b""
    refused: bool = False

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True, slots=True)
class Subscribe:
    """A list query carried `udpPort` from a push-capable client: add or refresh the subscriber."""

    subscription: Subscription


@dataclass(frozen=True, slots=True)
class DatagramsReceived:
    """Datagrams that arrived on the push socket during one loop turn (acks, or anything else no
    larger than an ack), each with the address and port it came from. The push driver resolves
    `handled` with their number once it has handled them: until then they count against the
    socket's bound on datagrams in flight."""

    datagrams: tuple[Datagram, ...]
    handled: Reply[int]


@dataclass(frozen=True, slots=True)
class QuerySubscribers:
    """Answer, through `reply`, the live subscriptions of `namespace`: UDP ones and gRPC ones."""

    namespace: str
    reply: Reply[tuple[Subscription | GrpcSubscription, ...]]


@dataclass(frozen=True, slots=True)
class GrpcSubscribe:
    """A gRPC client subscribed (SubscribeServiceRequest with `subscribe` true): add or refresh
    the subscription; the push driver then pushes the current state to it."""

    subscription: GrpcSubscription


@dataclass(frozen=True, slots=True)
class GrpcUnsubscribe:
    """A gRPC client unsubscribed from `service` as it named it by `clusters_text`."""

    connection_id: str
    service: ServiceKey
    clusters_text: str


@dataclass(frozen=True, slots=True)
class GrpcConnectionClosed:
    """A gRPC connection ended (its stream closed, or it was evicted): forget its subscriptions
    and the pushes awaiting its acks."""

    connection_id: str


@dataclass(frozen=True, slots=True)
class GrpcPushAnswered:
    """A client answered a server request on its stream: `request_id` as it echoed it, `ok`
    when the answer was a success (resultCode 200)."""

    connection_id: str
    request_id: str
    ok: bool


@dataclass(frozen=True, slots=True)
class MembersChanged:
    """Told by the member driver whenever a member's state changed: the new view."""

    view: MemberView


@dataclass(frozen=True, slots=True)
class ReportReceived:
    """A peer reported its state to us (POST /v1/core/cluster/report)."""

    peer: str
    state: str


@dataclass(frozen=True, slots=True)
class PeerFailed:
    """A request the front made to `peer` failed (`refused`: connection refused)."""

    peer: str
    refused: bool


@dataclass(frozen=True, slots=True)
class MarkReady:
    """This node holds its data and serves: it is UP."""


@dataclass(frozen=True, slots=True)
class Leave:
    """This node is stopping: report DOWN to every peer, then resolve `reply` with the number of
    peers told."""

    reply: Reply[int]


@dataclass(frozen=True, slots=True)
class Drain:
    """The node is stopping: send every pending change now, and resolve `reply` with how many
    services were still unsent once nothing is in flight or the driver stops."""

    reply: Reply[int]


class DefinitionChange(NamedTuple):
    """What one entry did to a service's persistent half: its new Definition, or None when it
    is gone; `deleted_service` when DELETE /v1/ns/service removed it (the registry then drops
    the whole service if no ephemeral instance is left); `touched` the instances it changed."""

    key: ServiceKey
    definition: Definition | None
    deleted_service: bool = False
    touched: tuple[InstanceKey, ...] = ()


@dataclass(frozen=True, slots=True)
class Propose:
    """Put `command` through Raft, stamped with the proposer's clock `now_ms`; `reply` gets its
    Outcome once it is committed and this member's registry applied it, or a Refused 503 when
    there is no leader or the outcome is unknown."""

    command: PersistentCommand
    now_ms: int
    reply: Reply[Outcome]


@dataclass(frozen=True, slots=True)
class PollRaft:
    """The Raft driver's own loop: tick the group once (it tells itself the next one)."""


@dataclass(frozen=True, slots=True)
class DefinitionsApplied:
    """Told by the Raft driver after a tick applied entries: each changed service's persistent
    half in order (`None`: gone; `deleted_service`: DELETE /v1/ns/service removed it), then the
    answers to resolve once they are merged (read-your-writes on the member that answers)."""

    changes: tuple[DefinitionChange, ...]
    answers: tuple[tuple[Reply[Outcome], Outcome], ...]


@dataclass(frozen=True, slots=True)
class DefinitionsLoaded:
    """Told by the Raft driver when a snapshot replaced every definition (at start, or sent by
    the leader to a member that fell behind)."""

    definitions: tuple[Definition, ...]


@dataclass(frozen=True, slots=True)
class ProbesFinished:
    """Told by the loop's prober: how probes the probe driver started ended."""

    results: tuple[ProbeResult, ...]


RegistryMessage = WriteBatch | ApplyReplicated | LoadSnapshot | Watch | DefinitionsApplied | DefinitionsLoaded
RaftMessage = Propose | PollRaft
HealthMessage = ServicesChanged | MembersChanged | Tick
ProbeMessage = ServicesChanged | MembersChanged | ProbesFinished | Tick
PushMessage = (
    ServicesChanged
    | Subscribe
    | DatagramsReceived
    | Tick
    | QuerySubscribers
    | GrpcSubscribe
    | GrpcUnsubscribe
    | GrpcConnectionClosed
    | GrpcPushAnswered
)
MemberMessage = ReportReceived | PeerAnswered | PeerFailed | MarkReady | Leave | Tick
DistroMessage = ServicesChanged | MembersChanged | PeerAnswered | Drain | Tick
