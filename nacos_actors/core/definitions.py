"""The persistent half of the registry: what Raft replicates, and the rules that change it.

Pure: no threads, clock or I/O. The Raft driver applies each committed entry here, in log
order, on every member; an entry carries its proposer's clock, so every member builds equal
Definitions and gives the same answer. Each entry is idempotent (an absolute put of the fields
it names, or a delete): applying one twice leaves the state it left the first time, since an
entry that would change nothing leaves even the modified time and index as they are.

Which service exists is not this core's to judge: a service may be held only by its ephemeral
half (an ephemeral registration made it). The HTTP edge checks existence against the whole
registry before it proposes (as Nacos 2.x does), so updates here create the definition they
change when there is none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from types import MappingProxyType
from typing import Any, NamedTuple, assert_never

from nacos_actors.core.registry import (
    RegistryLimits,
    Rejected,
    assign_instance_id,
    instances_limit_refusal,
    merge_metadata,
    patched,
    services_limit_refusal,
)
from nacos_actors.messages import (
    ApplyProbeVerdict,
    CreateService,
    DefinitionChange,
    DeleteService,
    DeregisterInstance,
    ImportDefinition,
    Ok,
    Outcome,
    PatchInstance,
    PersistentCommand,
    Refused,
    RegisterInstance,
    SetInstanceHealth,
    UpdateCluster,
    UpdateInstance,
    UpdateMetadataBatch,
    UpdateService,
)
from nacos_actors.model import (
    DEFAULT_CLUSTER_CONFIG,
    NONE_CHECKER,
    Definition,
    Instance,
    InstanceKey,
    ServiceKey,
    freeze,
    in_order,
)


class DefinitionApplied(NamedTuple):
    """An entry's answer and, when it changed something, the change."""

    outcome: Outcome
    change: DefinitionChange | None


UNCHANGED_OK = Ok(None)


class DefinitionCore:
    """Every service's Definition, by key. Runs on the Raft driver's thread only."""

    def __init__(self, limits: RegistryLimits) -> None:
        self.limits = limits
        self.definitions: dict[ServiceKey, Definition] = {}
        self._per_namespace: dict[str, int] = {}
        self.instance_count = 0

    def all(self) -> list[Definition]:
        """Every definition (for a snapshot)."""
        return list(self.definitions.values())

    def load(self, definitions: Iterable[Definition]) -> None:
        """Replace everything with `definitions` (a Raft snapshot)."""
        self.definitions = {}
        self._per_namespace = {}
        self.instance_count = 0
        for definition in definitions:
            self._store(definition)

    def apply(self, command: PersistentCommand, now_ms: int, index: int) -> DefinitionApplied:
        """Apply one committed entry proposed at `now_ms`, Raft log index `index`."""
        try:
            return self._apply(command, now_ms, index)
        except Rejected as refusal:
            return DefinitionApplied(Refused(refusal.status, refusal.message), None)

    def _apply(self, command: PersistentCommand, now_ms: int, index: int) -> DefinitionApplied:
        match command:
            case RegisterInstance(service, instance):
                return self._put_instance(service, instance, now_ms, index)
            case UpdateInstance(service, instance, must_exist):
                if must_exist:
                    self._existing_instance(service, instance.key)
                return self._put_instance(service, instance, now_ms, index)
            case DeregisterInstance(service, key):
                current = self.definitions.get(service)
                if current is None or key not in current.instances:
                    return DefinitionApplied(UNCHANGED_OK, None)
                updated = self._next(current, now_ms, index, instances=current.instances.delete(key))
                return self._changed(None, updated, touched=(key,))
            case PatchInstance():
                return self._patch_instance(command, now_ms, index)
            case CreateService(service, threshold, metadata, selector):
                if service in self.definitions:
                    raise Rejected(400, f"specified service already exists, serviceName : {service.name}")
                self._make_room_for(service)
                created = Definition(
                    key=service,
                    protect_threshold=threshold,
                    metadata=freeze(metadata),
                    selector=selector,
                    explicit=True,
                    modified_ms=now_ms,
                    index=index,
                )
                return self._changed(None, created)
            case UpdateService(service, threshold, metadata, selector):
                current = self._definition_or_new(service)
                updated = replace(
                    current,
                    protect_threshold=threshold,
                    metadata=current.metadata if metadata is None else freeze(metadata),
                    selector=current.selector if selector is None else selector,
                )
                if updated == current and service in self.definitions:
                    return DefinitionApplied(UNCHANGED_OK, None)
                return self._changed(None, self._next(updated, now_ms, index))
            case DeleteService(service):
                current = self.definitions.get(service)
                if current is not None and current.instances:
                    raise Rejected(
                        400, f"Service {service.name} is not empty, can't be delete. Please unregister instance first"
                    )
                if current is not None:
                    self._remove(current)
                return DefinitionApplied(UNCHANGED_OK, DefinitionChange(service, None, deleted_service=True))
            case UpdateCluster(service, cluster, config):
                current = self._definition_or_new(service)
                if current.clusters.get(cluster) == config and service in self.definitions:
                    return DefinitionApplied(Ok(config), None)
                clusters = dict(current.clusters)
                clusters[cluster] = config
                updated = self._next(current, now_ms, index, clusters=MappingProxyType(clusters))
                return self._changed(config, updated)
            case SetInstanceHealth():
                return self._set_health(command, now_ms, index)
            case UpdateMetadataBatch():
                return self._update_metadata_batch(command, now_ms, index)
            case ApplyProbeVerdict():
                return self._apply_probe_verdict(command, now_ms, index)
            case ImportDefinition(definition):
                if definition.key in self.definitions:
                    return DefinitionApplied(Ok(False), None)
                self._make_room_for(definition.key)
                return self._changed(True, replace(definition, index=index))
            case _:
                assert_never(command)

    # -- instances ---------------------------------------------------------------------

    def _put_instance(self, service: ServiceKey, instance: Instance, now_ms: int, index: int) -> DefinitionApplied:
        if instance.ephemeral:
            raise Rejected(400, "an ephemeral instance is not Raft's to store")
        current = self._definition_or_new(service)
        key = instance.key
        previous = current.instances.get(key)
        if previous is None:
            refusal = instances_limit_refusal(self.limits, service, len(current.instances))
            if refusal is not None:
                raise refusal
        instance = assign_instance_id(service, current.instances, instance, previous)
        if previous == instance and service in self.definitions:
            return DefinitionApplied(Ok(previous), None)
        updated = self._next(current, now_ms, index, instances=current.instances.set(key, instance))
        return self._changed(instance, updated, touched=(key,))

    def _patch_instance(self, patch: PatchInstance, now_ms: int, index: int) -> DefinitionApplied:
        current = self.definitions.get(patch.service)
        key = InstanceKey(patch.ip, patch.port, patch.cluster, False)
        found = current.instances.get(key) if current is not None else None
        if found is None:
            raise Rejected(400, "instance not found")
        return self._put_instance(patch.service, patched(found, patch), now_ms, index)

    def _set_health(self, command: SetInstanceHealth, now_ms: int, index: int) -> DefinitionApplied:
        """Nacos's HealthController rule for a persistent instance: only under a NONE checker."""
        current = self.definitions.get(command.service)
        key = InstanceKey(command.ip, command.port, command.cluster, False)
        found = current.instances.get(key) if current is not None else None
        if current is None or found is None:
            return DefinitionApplied(UNCHANGED_OK, None)
        config = current.clusters.get(command.cluster)
        if config is None or config.health_checker_type != NONE_CHECKER:
            raise Rejected(400, f"health check is still working, service: {command.service.name}")
        return self._put_instance(command.service, replace(found, healthy=command.healthy), now_ms, index)

    def _apply_probe_verdict(self, verdict: ApplyProbeVerdict, now_ms: int, index: int) -> DefinitionApplied:
        """A probe's verdict counts only while its instance is there, unmarked, and its cluster is
        still checked by the checker that probed it (the verdict may have raced a change of
        checker, a re-registration as marked, or a deregistration): otherwise it changes nothing.
        Always Ok."""
        current = self.definitions.get(verdict.service)
        key = InstanceKey(verdict.ip, verdict.port, verdict.cluster, False)
        found = current.instances.get(key) if current is not None else None
        if current is None or found is None or found.marked or found.healthy == verdict.healthy:
            return DefinitionApplied(UNCHANGED_OK, None)
        checker = current.clusters.get(verdict.cluster, DEFAULT_CLUSTER_CONFIG).health_checker_type
        if checker != verdict.checker:
            return DefinitionApplied(UNCHANGED_OK, None)
        return self._put_instance(verdict.service, replace(found, healthy=verdict.healthy), now_ms, index)

    def _update_metadata_batch(self, command: UpdateMetadataBatch, now_ms: int, index: int) -> DefinitionApplied:
        current = self.definitions.get(command.service)
        if current is None:
            return DefinitionApplied(Ok(()), None)
        if command.kind is not None:
            chosen = in_order(current.instances.values()) if command.kind == "persist" else []
        else:
            chosen = [current.instances[k] for k in command.targets if k in current.instances]
        if not chosen:
            return DefinitionApplied(Ok(()), None)
        names = tuple(f"{i.key.datum_key()}:persist" for i in chosen)
        merged = [merge_metadata(instance, command.metadata, command.remove, self.limits) for instance in chosen]
        changed = [(old, new) for old, new in zip(chosen, merged, strict=True) if new != old]
        if not changed:
            return DefinitionApplied(Ok(names), None)
        draft = current.instances.mutate()
        for _, instance in changed:
            draft[instance.key] = instance
        updated = self._next(current, now_ms, index, instances=draft.finish())
        return self._changed(names, updated, touched=tuple(old.key for old, _ in changed))

    def _existing_instance(self, service: ServiceKey, key: InstanceKey) -> Instance:
        current = self.definitions.get(service)
        found = current.instances.get(key) if current is not None else None
        if found is None:
            raise Rejected(400, f"instance not exist: {key.datum_key()}")
        return found

    # -- helpers ------------------------------------------------------------------------

    def _definition_or_new(self, service: ServiceKey) -> Definition:
        current = self.definitions.get(service)
        if current is not None:
            return current
        self._make_room_for(service)
        return Definition(key=service)

    def _make_room_for(self, service: ServiceKey) -> None:
        refusal = services_limit_refusal(self.limits, service.namespace, self._per_namespace.get(service.namespace, 0))
        if refusal is not None:
            raise refusal

    @staticmethod
    def _next(current: Definition, now_ms: int, index: int, **changes: Any) -> Definition:
        return replace(current, modified_ms=max(now_ms, current.modified_ms + 1), index=index, **changes)

    def _changed(self, value: Any, definition: Definition, touched: tuple[InstanceKey, ...] = ()) -> DefinitionApplied:
        self._store(definition)
        return DefinitionApplied(Ok(value), DefinitionChange(definition.key, definition, touched=touched))

    def _store(self, definition: Definition) -> None:
        previous = self.definitions.get(definition.key)
        if previous is None:
            namespace = definition.key.namespace
            self._per_namespace[namespace] = self._per_namespace.get(namespace, 0) + 1
            self.instance_count += len(definition.instances)
        else:
            self.instance_count += len(definition.instances) - len(previous.instances)
        self.definitions[definition.key] = definition

    def _remove(self, definition: Definition) -> None:
        del self.definitions[definition.key]
        namespace = definition.key.namespace
        left = self._per_namespace[namespace] - 1
        if left:
            self._per_namespace[namespace] = left
        else:
            del self._per_namespace[namespace]
        self.instance_count -= len(definition.instances)
