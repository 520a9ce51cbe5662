"""Frozen messages between the front and the actors.

Commands are the registry core's inputs: pure data, already validated at the HTTP edge.
`WriteBatch` carries the commands the event loop gathered in one turn and the reply the actor
resolves once they are all applied. Nothing here
holds a mutable value; pykka does not copy messages between threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from nacos_actors.model import Instance, InstanceKey, Selector, ServiceKey


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


Command = (
    RegisterInstance
    | DeregisterInstance
    | UpdateInstance
    | PatchInstance
    | BeatInstance
    | CreateService
    | UpdateService
    | DeleteService
    | UpdateMetadataBatch
)


@dataclass(frozen=True, slots=True)
class WriteBatch:
    """Apply `commands` in order, then resolve `reply` once with one outcome per command.

    An outcome is the command's value, or the Rejected refusal itself for a refused command.
    """

    commands: tuple[Command, ...]
    reply: Reply


@dataclass(frozen=True, slots=True)
class Ping:
    """Asked by the lifecycle to prove an actor is up; answered with 'pong'."""


RegistryMessage = WriteBatch | Ping
