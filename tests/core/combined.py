"""One member's whole registry for core tests: the RegistryCore (ephemeral half) and the
DefinitionCore (persistent half, as a Raft of one member applies it), with each write routed
by nacos_actors.core.writes as the HTTP edge routes it. Pure and synchronous: a persistent
write is committed and merged at once."""

from __future__ import annotations

from typing import Any

from nacos_actors.core.definitions import DefinitionCore
from nacos_actors.core.registry import NO_LIMITS, Applied, RegistryCore, RegistryLimits, Rejected
from nacos_actors.core.writes import route_write
from nacos_actors.messages import Command, Ok, PersistentCommand, Refused, ServiceChange
from nacos_actors.model import Service, ServiceKey


class LocalRegistry:
    """`registry` and `definitions` of one member; `apply` routes and applies one write.

    `changes` lists every change the registry published, in order (what its watchers are told);
    `written` the services the registry's own writes changed, in order (what Distro sends to the
    other members); `entries` every persistent command committed, with its proposer's clock (the
    Raft log, for another member to replay with `propose`)."""

    def __init__(self, limits: RegistryLimits = NO_LIMITS, registry: RegistryCore | None = None) -> None:
        self.registry = registry if registry is not None else RegistryCore(limits)
        self.definitions = DefinitionCore(limits)
        self.index = 0
        self.changes: list[ServiceChange] = []
        self.written: list[ServiceKey] = []
        self.entries: list[tuple[PersistentCommand, int]] = []

    def service(self, key: ServiceKey) -> Service | None:
        return self.registry.service(key)

    def apply(self, command: Command, now_ms: int) -> Any:
        """Apply `command` as a node would; answers its value, raises Rejected for a refusal."""
        key = command.service
        held = len(self.registry.namespaces.get(key.namespace, {}))
        routed = route_write(command, self.registry.service(key), self.registry.limits, held)
        value: Any = ()
        if routed.raft is not None:
            value = self.propose(routed.raft, now_ms)
        if routed.registry is not None:
            applied: Applied = self.registry.apply(routed.registry, now_ms)
            self._note(applied)
            if routed.raft is None:
                return applied.value
            return (*value, *applied.value)
        return value

    def propose(self, command: PersistentCommand, now_ms: int) -> Any:
        """Commit `command` through the one-member Raft and merge its change; its value."""
        self.index += 1
        self.entries.append((command, now_ms))
        done = self.definitions.apply(command, now_ms, self.index)
        if done.change is not None:
            self.changes.extend(self.registry.apply_definitions([done.change]))
        if isinstance(done.outcome, Refused):
            raise Rejected(done.outcome.status, done.outcome.message)
        assert isinstance(done.outcome, Ok)
        return done.outcome.value

    def _note(self, applied: Applied) -> None:
        if applied.changed is not None:
            self.changes.append(ServiceChange(applied.changed.key, applied.changed, frozenset(applied.touched)))
            self.written.append(applied.changed.key)
        elif applied.deleted is not None:
            self.changes.append(ServiceChange(applied.deleted, None))
            self.written.append(applied.deleted)
