"""The registry core: applies validated commands to the service map, copy-on-write per service.

Pure: no threads, clock or I/O. The registry actor's thread is the only caller of `apply`; it
assigns whole `Service` snapshots into the per-namespace dicts, so a reader on another thread
(the event loop) that looks up one key always sees a complete snapshot, old or new, and a
snapshot it holds never changes. A snapshot's instances are an `immutables.Map`, so the next
snapshot shares everything but the changed path of the previous one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, assert_never

from immutables import Map

from nacos_actors.messages import (
    BeatInstance,
    Command,
    CreateService,
    DefinitionChange,
    DeleteService,
    DeregisterInstance,
    ExpireInstance,
    MarkUnhealthy,
    Ok,
    Outcome,
    PatchInstance,
    Refused,
    RegisterInstance,
    RemoveEmptyService,
    ServiceChange,
    SetInstanceHealth,
    UpdateCluster,
    UpdateInstance,
    UpdateMetadataBatch,
    UpdateService,
)
from nacos_actors.model import (
    INSTANCE_ID_GENERATOR_KEY,
    NO_SELECTOR,
    NONE_CHECKER,
    Definition,
    Dropped,
    Instance,
    InstanceKey,
    ReplicatedState,
    Service,
    ServiceKey,
    Tombstone,
    default_instance_id,
    freeze,
    in_order,
    metadata_size,
    stamp_of,
)


class Rejected(Exception):
    """An expected domain refusal, answered to the client as `status` with `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


MAX_TOMBSTONES = 100_000


@dataclass(frozen=True, slots=True)
class RegistryLimits:
    """How far client writes may grow the registry (0: no limit): instances in one service,
    services in one namespace, and an instance's metadata as a metadata batch merge leaves it
    (UTF-8 bytes of keys and values, `model.metadata_size`; the metadata a write carries whole
    is checked at the HTTP edge). A write past one is Refused with a 400 naming the setting.
    States replicated from peers or loaded from a snapshot are taken as they come: refusing
    them would split the cluster's view, so members should share their limits."""

    max_instances_per_service: int = 0
    max_services_per_namespace: int = 0
    max_instance_metadata_bytes: int = 0


NO_LIMITS = RegistryLimits()


def instances_limit_refusal(limits: RegistryLimits, service: ServiceKey, held: int) -> Rejected | None:
    """The refusal of one more instance in a service that holds `held` instances, if any."""
    limit = limits.max_instances_per_service
    if limit and held >= limit:
        return Rejected(
            400, f"service {service.name} already holds {limit} instances, the limit (max_instances_per_service)"
        )
    return None


def services_limit_refusal(limits: RegistryLimits, namespace: str, held: int) -> Rejected | None:
    """The refusal of one more service in a namespace that holds `held`, if any."""
    limit = limits.max_services_per_namespace
    if limit and held >= limit:
        return Rejected(
            400, f"namespace {namespace} already holds {limit} services, the limit (max_services_per_namespace)"
        )
    return None


def assign_instance_id(
    service: ServiceKey, instances: Mapping[InstanceKey, Instance], instance: Instance, previous: Instance | None
) -> Instance:
    """`instance` with its id: an existing one's is kept; otherwise Nacos's simple id, or the
    smallest integer no instance of the service uses (the snowflake generator)."""
    if previous is not None:
        instance_id = previous.instance_id
    elif instance.metadata.get(INSTANCE_ID_GENERATOR_KEY) == "snowflake":
        used = {i.instance_id for i in instances.values()}
        candidate = 0
        while str(candidate) in used:
            candidate += 1
        instance_id = str(candidate)
    else:
        instance_id = default_instance_id(instance.key, service.name)
    return instance if instance.instance_id == instance_id else replace(instance, instance_id=instance_id)


def patched(instance: Instance, patch: PatchInstance) -> Instance:
    """`instance` with the fields `patch` gives (the others as they are)."""
    given: dict[str, Any] = {
        "weight": patch.weight,
        "healthy": patch.healthy,
        "enabled": patch.enabled,
        "metadata": None if patch.metadata is None else freeze(patch.metadata),
        "app": patch.app,
    }
    return replace(instance, **{name: value for name, value in given.items() if value is not None})


def merge_metadata(instance: Instance, metadata: Mapping[str, str], remove: bool, limits: RegistryLimits) -> Instance:
    """`instance` with `metadata` merged in (or, with `remove`, those keys removed); Rejected when
    the result is over max_instance_metadata_bytes."""
    merged = dict(instance.metadata)
    if remove:
        for name in metadata:
            merged.pop(name, None)
    else:
        merged.update(metadata)
        limit = limits.max_instance_metadata_bytes
        size = metadata_size(merged) if limit else 0
        if size > limit:
            raise Rejected(
                400,
                f"metadata of instance {instance.key.datum_key()} would be {size} bytes, "
                f"over the limit of {limit} (max_instance_metadata_bytes)",
            )
    return replace(instance, metadata=freeze(merged))


@dataclass(frozen=True, slots=True)
class Applied:
    """What a command did: its answer `value`, and the new snapshot when the service changed
    (`deleted` instead when the command deleted the service); `touched` names the instances it
    added, replaced or removed (none for a change of the service's own settings).

    Instance writes answer the instance as stored (with its id); a light beat on an unknown
    instance answers None; metadata batches the updated instance names; the health checker's
    verdicts answer whether they changed anything; a cluster update answers the config stored;
    a manual health change the instance as stored, or None when no instance matched.
    """

    value: Any = None
    changed: Service | None = None
    deleted: ServiceKey | None = None
    touched: tuple[InstanceKey, ...] = ()


class BatchApplied(NamedTuple):
    """What one WriteBatch did: an Outcome per command, in order; the latest state of every
    service it changed (each once, naming every instance the batch touched in it); how many
    commands of each type were applied and refused; and the commands that changed something,
    each with the instances it touched, in order (for the log and the health counters)."""

    outcomes: tuple[Outcome, ...]
    changes: tuple[ServiceChange, ...]
    applied: Mapping[type, int]
    refused: Mapping[type, int]
    effective: tuple[tuple[Command, tuple[InstanceKey, ...]], ...]


class RegistryCore:
    """The service map `namespace -> grouped name -> Service` and the rules that change it.

    Runs on the registry actor's thread. `namespaces` and the counters may be read from any
    thread: only whole values are ever assigned.
    """

    def __init__(self, limits: RegistryLimits = NO_LIMITS) -> None:
        self.limits = limits
        self.namespaces: dict[str, dict[str, Service]] = {}
        self.service_count = 0
        self.instance_count = 0
        # The revision each deleted service's deletion had, so a service made again carries on
        # from there and replicas can order a deletion against states sent before it.
        self.tombstones: dict[ServiceKey, int] = {}
        # While a batch is open: its services' unpublished states, and how many of them are
        # new services, by namespace (for max_services_per_namespace).
        self._batch: dict[ServiceKey, Service] | None = None
        self._created_in_batch: dict[str, int] = {}

    def service(self, key: ServiceKey) -> Service | None:
        """The published snapshot of a service, or None. Any thread."""
        services = self.namespaces.get(key.namespace)
        return services.get(key.name) if services is not None else None

    def begin_batch(self) -> None:
        """From now until `end_batch`, changes are kept back and published together: readers see
        only whole batches' states of a service. Registry actor's thread."""
        self._batch = {}
        self._created_in_batch = {}

    def end_batch(self) -> None:
        """Publish every service the batch changed, in its latest state."""
        batch, self._batch = self._batch, None
        self._created_in_batch = {}
        for snapshot in (batch or {}).values():
            self._store(snapshot)

    def _current(self, key: ServiceKey) -> Service | None:
        """The latest state of a service as the writer sees it (the open batch's, if any)."""
        if self._batch is not None:
            pending = self._batch.get(key)
            if pending is not None:
                return pending
        return self.service(key)

    def apply_batch(self, commands: Iterable[Command], now_ms: int) -> BatchApplied:
        """Apply `commands` in order as one batch (readers see its end state only). A refused
        command is its own outcome and the batch goes on; any other error propagates."""
        outcomes: list[Outcome] = []
        changes: dict[ServiceKey, Service | None] = {}
        touched: dict[ServiceKey, tuple[InstanceKey, ...]] = {}
        applied_counts: dict[type, int] = {}
        refused_counts: dict[type, int] = {}
        effective: list[tuple[Command, tuple[InstanceKey, ...]]] = []
        self.begin_batch()
        try:
            for command in commands:
                kind = type(command)
                try:
                    applied = self.apply(command, now_ms)
                except Rejected as refusal:
                    refused_counts[kind] = refused_counts.get(kind, 0) + 1
                    outcomes.append(Refused(refusal.status, refusal.message))
                    continue
                applied_counts[kind] = applied_counts.get(kind, 0) + 1
                outcomes.append(Ok(applied.value))
                if applied.changed is not None:
                    key = applied.changed.key
                    changes[key] = applied.changed
                    earlier = touched.get(key)
                    touched[key] = applied.touched if earlier is None else earlier + applied.touched
                    effective.append((command, applied.touched))
                elif applied.deleted is not None:
                    changes[applied.deleted] = None
                    effective.append((command, ()))
        finally:
            self.end_batch()
        return BatchApplied(
            tuple(outcomes),
            tuple(ServiceChange(k, v, None if v is None else frozenset(touched[k])) for k, v in changes.items()),
            applied_counts,
            refused_counts,
            tuple(effective),
        )

    def apply_replicated_batch(self, states: Iterable[ReplicatedState], force: bool) -> tuple[ServiceChange, ...]:
        """`apply_replicated` each state; answers the services that changed, latest state each."""
        changed: dict[ServiceKey, Service | None] = {}
        for state in states:
            applied = self.apply_replicated(state, force)
            if applied.changed is not None:
                changed[applied.changed.key] = applied.changed
            elif applied.deleted is not None:
                changed[applied.deleted] = None
        return tuple(ServiceChange(k, v) for k, v in changed.items())

    def load_snapshot(self, services: Iterable[Service]) -> tuple[ServiceChange, ...]:
        """Replace the whole map with a peer's snapshot; answers every service now held and every
        one that went away, as changes."""
        held, gone = self.replace_all(services)
        return (*(ServiceChange(s.key, s) for s in held), *(ServiceChange(k, None) for k in gone))

    def current_changes(self) -> tuple[ServiceChange, ...]:
        """Every current service as a change (what a new watcher starts from)."""
        return tuple(ServiceChange(s.key, s) for s in self.all_services())

    def apply(self, command: Command, now_ms: int) -> Applied:
        """Apply one command at wall-clock time `now_ms`; raise Rejected for a refused one."""
        match command:
            case RegisterInstance(service, instance):
                return self._put_instance(service, instance, now_ms)
            case UpdateInstance(service, instance, must_exist):
                if must_exist:
                    self._existing_instance(service, instance.key)
                return self._put_instance(service, instance, now_ms)
            case DeregisterInstance(service, key):
                return self._remove_instance(service, key, now_ms)
            case PatchInstance():
                return self._patch_instance(command, now_ms)
            case BeatInstance(service, key, reregister):
                return self._beat(service, key, reregister, now_ms)
            case MarkUnhealthy(service, key):
                found = self._instance_or_none(service, key)
                if found is None or not found.healthy or found.marked:
                    return Applied(value=False)
                applied = self._put_instance(service, replace(found, healthy=False), now_ms)
                return Applied(value=True, changed=applied.changed, touched=applied.touched)
            case ExpireInstance(service, key):
                found = self._instance_or_none(service, key)
                if found is None or found.marked:
                    return Applied(value=False)
                removed = self._remove_instance(service, key, now_ms)
                return Applied(value=True, changed=removed.changed, touched=removed.touched)
            case CreateService() | UpdateService() | DeleteService() | UpdateCluster():
                raise Rejected(500, f"{type(command).__name__} goes through Raft, not the registry")
            case RemoveEmptyService(service, revision):
                empty = self._current(service)
                if empty is None or empty.instances or empty.revision != revision or empty.definition is not None:
                    return Applied(value=False)
                return replace(self._delete_service(service), value=True)
            case UpdateMetadataBatch():
                return self._update_metadata_batch(command, now_ms)
            case SetInstanceHealth():
                return self._set_instance_health(command, now_ms)
            case _:
                assert_never(command)

    # -- instances -------------------------------------------------------------------------

    def _put_instance(self, service_key: ServiceKey, instance: Instance, now_ms: int) -> Applied:
        if not instance.ephemeral:
            raise Rejected(500, "a persistent instance goes through Raft, not the registry")
        current = self._current(service_key)
        if current is None:
            self._make_room_for_service(service_key)
            current = Service(key=service_key, revision=self._first_revision(service_key))
        key = instance.key
        previous = current.instances.get(key)
        if previous is None:
            refusal = instances_limit_refusal(self.limits, service_key, len(current.instances))
            if refusal is not None:
                raise refusal
        instance = assign_instance_id(service_key, current.instances, instance, previous)
        if previous == instance:
            return Applied(value=previous)
        snapshot = self._next_instances(current, current.instances.set(key, instance), now_ms)
        self._stage(snapshot)
        return Applied(instance, snapshot, touched=(key,))

    def _remove_instance(self, service_key: ServiceKey, key: InstanceKey, now_ms: int) -> Applied:
        current = self._current(service_key)
        if current is None or key not in current.instances:
            return Applied()
        snapshot = self._next_instances(current, current.instances.delete(key), now_ms)
        self._stage(snapshot)
        return Applied(changed=snapshot, touched=(key,))

    def _patch_instance(self, patch: PatchInstance, now_ms: int) -> Applied:
        current = self._existing_service(patch.service, "instance not found")
        found = current.instances.get(InstanceKey(patch.ip, patch.port, patch.cluster, True))
        if found is None:
            raise Rejected(400, "instance not found")
        return self._put_instance(patch.service, patched(found, patch), now_ms)

    def _beat(self, service_key: ServiceKey, key: InstanceKey, reregister: Instance | None, now_ms: int) -> Applied:
        current = self._current(service_key)
        found = current.instances.get(key) if current is not None else None
        if found is None:
            return Applied(value=None) if reregister is None else self._put_instance(service_key, reregister, now_ms)
        if found.healthy or found.marked or not found.ephemeral:  # see health.beat_outcome
            return Applied(value=found)
        return self._put_instance(service_key, replace(found, healthy=True), now_ms)

    def _update_metadata_batch(self, command: UpdateMetadataBatch, now_ms: int) -> Applied:
        current = self._current(command.service)
        if current is None:
            return Applied(value=())
        if command.kind is not None:
            chosen = (
                [i for i in in_order(current.instances.values()) if i.ephemeral] if command.kind == "ephemeral" else []
            )
        else:
            chosen = [current.instances[k] for k in command.targets if k.ephemeral and k in current.instances]
        if not chosen:
            return Applied(value=())
        draft = current.instances.mutate()
        updated = []
        for instance in chosen:
            draft[instance.key] = merge_metadata(instance, command.metadata, command.remove, self.limits)
            updated.append(f"{instance.key.datum_key()}:ephemeral")
        snapshot = self._next_instances(current, draft.finish(), now_ms)
        self._stage(snapshot)
        return Applied(value=tuple(updated), changed=snapshot, touched=tuple(i.key for i in chosen))

    # -- health by hand ---------------------------------------------------------------

    def _set_instance_health(self, command: SetInstanceHealth, now_ms: int) -> Applied:
        """Nacos's HealthController rule: only a cluster whose checker is NONE takes a manual
        health; the ephemeral instance at ip:port there gets it (the edge sends the command to
        Raft instead when a persistent one is there)."""
        service_key, cluster = command.service, command.cluster
        current = self._current(service_key)
        if current is None:
            raise Rejected(404, f"service {service_key.name} is not found!")
        if not current.has_cluster(cluster):
            raise Rejected(404, f"cluster {cluster} is not found in service {service_key.name}!")
        if current.cluster_config(cluster).health_checker_type != NONE_CHECKER:
            raise Rejected(400, f"health check is still working, service: {service_key.name}")
        found = current.instances.get(InstanceKey(command.ip, command.port, cluster, True))
        if found is not None:
            return self._put_instance(service_key, replace(found, healthy=command.healthy), now_ms)
        return Applied(value=None)

    # -- helpers ---------------------------------------------------------------------------

    def _instance_or_none(self, service_key: ServiceKey, key: InstanceKey) -> Instance | None:
        current = self._current(service_key)
        return current.instances.get(key) if current is not None else None

    def _make_room_for_service(self, key: ServiceKey) -> None:
        """Refuse a new service in a namespace that holds max_services_per_namespace already;
        else count it, if a batch is open, until the batch publishes it."""
        namespace = key.namespace
        services = self.namespaces.get(namespace)
        held = (len(services) if services is not None else 0) + self._created_in_batch.get(namespace, 0)
        refusal = services_limit_refusal(self.limits, namespace, held)
        if refusal is not None:
            raise refusal
        if self._batch is not None:
            self._created_in_batch[namespace] = self._created_in_batch.get(namespace, 0) + 1

    def _delete_service(self, key: ServiceKey, revision: int | None = None) -> Applied:
        pending = self._batch.pop(key, None) if self._batch is not None else None
        published = self.service(key)
        if pending is not None and published is None:
            self._created_in_batch[key.namespace] -= 1
        if published is not None:
            del self.namespaces[key.namespace][key.name]
            if not self.namespaces[key.namespace]:
                del self.namespaces[key.namespace]
            self.service_count -= 1
            self.instance_count -= len(published.instances)
        gone = pending or published
        assert gone is not None
        self._remember_deletion(key, gone.revision + 1 if revision is None else revision)
        return Applied(deleted=key)

    def _remember_deletion(self, key: ServiceKey, revision: int) -> None:
        previous = self.tombstones.pop(key, 0)  # popped and set again: the newest goes last
        self.tombstones[key] = max(revision, previous)
        if len(self.tombstones) > MAX_TOMBSTONES:
            del self.tombstones[next(iter(self.tombstones))]

    def _first_revision(self, key: ServiceKey) -> int:
        """Where a new service's revisions start: after its last deletion's, if remembered."""
        return self.tombstones.pop(key, 0)

    def _existing_service(self, key: ServiceKey, message: str) -> Service:
        found = self._current(key)
        if found is None:
            raise Rejected(400, message)
        return found

    def _existing_instance(self, service_key: ServiceKey, key: InstanceKey) -> Instance:
        service = self._existing_service(
            service_key, f"service not found, namespace: {service_key.namespace}, service: {service_key.name}"
        )
        found = service.instances.get(key)
        if found is None:
            raise Rejected(400, f"instance not exist: {key.datum_key()}")
        return found

    @staticmethod
    def _next(current: Service, now_ms: int, **changes: Any) -> Service:
        """`current` with `changes`, stamped with the next revision and a monotone modified time
        (one copy per write: the actor makes one per command)."""
        revision, modified_ms = current.revision + 1, max(now_ms, current.modified_ms + 1)
        return replace(current, revision=revision, modified_ms=modified_ms, **changes)

    @staticmethod
    def _next_instances(current: Service, instances: Map[InstanceKey, Instance], now_ms: int) -> Service:
        """`_next(current, now_ms, instances=instances)` built directly: the instance writes'
        path, at half the cost of dataclasses.replace."""
        return Service(
            key=current.key,
            instances=instances,
            protect_threshold=current.protect_threshold,
            metadata=current.metadata,
            selector=current.selector,
            explicit=current.explicit,
            revision=current.revision + 1,
            modified_ms=max(now_ms, current.modified_ms + 1),
            clusters=current.clusters,
            definition=current.definition,
        )

    def _publish(self, snapshot: Service) -> Applied:
        """Make a snapshot the service's state (see `_stage`); answers it as the change."""
        self._stage(snapshot)
        return Applied(changed=snapshot)

    def _stage(self, snapshot: Service) -> None:
        """Make a snapshot the service's state: at once, or at the end of the open batch."""
        if self._batch is not None:
            self._batch[snapshot.key] = snapshot
        else:
            self._store(snapshot)

    def _store(self, snapshot: Service) -> None:
        """Swap a snapshot into the map (the only place the map changes, bar service deletion)."""
        services = self.namespaces.get(snapshot.key.namespace)
        if services is None:
            services = self.namespaces[snapshot.key.namespace] = {}
        previous = services.get(snapshot.key.name)
        if previous is None:
            self.service_count += 1
            self.instance_count += len(snapshot.instances)
        else:
            self.instance_count += len(snapshot.instances) - len(previous.instances)
        services[snapshot.key.name] = snapshot

    # -- replication -----------------------------------------------------------------------

    def apply_replicated(self, state: ReplicatedState, force: bool) -> Applied:
        """Take a service state a peer sent; only its ephemeral half counts (the persistent half
        is Raft's: ours is kept). A newer revision replaces ours, an older or equal one is
        ignored; with `force` (a verify repair from the owner) it replaces ours whatever its
        version. A Tombstone deletes; a Dropped deletes only at its stamp (a service with a
        persistent half loses only its ephemeral one). `value` answers whether anything changed;
        `touched` is left empty (any instance may differ)."""
        current = self._current(state.key)
        if isinstance(state, Dropped):
            if current is None or stamp_of(current) != state.stamp:
                return Applied(value=False)
            if current.definition is not None:
                return replace(self._publish(persistent_half_only(current.definition, 0)), value=True)
            return replace(self._delete_service(state.key), value=True)
        if isinstance(state, Tombstone):
            if current is None:
                self._remember_deletion(state.key, state.revision)
                return Applied(value=False)
            if not force and current.revision >= state.revision:
                return Applied(value=False)
            if current.definition is not None:
                self._remember_deletion(state.key, state.revision)
                return replace(self._publish(persistent_half_only(current.definition, state.revision)), value=True)
            return replace(self._delete_service(state.key, state.revision), value=True)
        # A tombstone at T deleted a state older than T; the service made again starts at T
        # (CreateService) or later, and one never deleted may be at revision 0.
        floor = current.revision if current is not None else self.tombstones.get(state.key, 0) - 1
        if not force and state.revision <= floor:
            return Applied(value=False)
        if current is not None and stamp_of(current) == stamp_of(state):
            return Applied(value=False)
        self.tombstones.pop(state.key, None)
        return replace(self._publish(with_definition(state, current.definition if current else None)), value=True)

    # -- the persistent half ---------------------------------------------------------------

    def apply_definitions(self, changes: Iterable[DefinitionChange]) -> tuple[ServiceChange, ...]:
        """Merge each service's new persistent half (committed through Raft) into its snapshot,
        in order; answers every service that changed, latest state each. The ephemeral half and
        its stamp (revision, modified_ms) are left as they are: Distro compares only those."""
        changed: dict[ServiceKey, Service | None] = {}
        touched: dict[ServiceKey, frozenset[InstanceKey] | None] = {}
        for change in changes:
            key = change.key
            current = self._current(key)
            result = self._merge_definition(current, change)
            if result is _UNCHANGED:
                continue
            changed[key] = result if isinstance(result, Service) else None
            old = touched.get(key, frozenset())
            now = frozenset(change.touched)
            if change.definition is None and current is not None and current.definition is not None:
                now = frozenset(current.definition.instances)
            touched[key] = None if old is None else old | now
        return tuple(ServiceChange(k, v, None if v is None else touched[k]) for k, v in changed.items())

    def load_definitions(self, definitions: Iterable[Definition]) -> tuple[ServiceChange, ...]:
        """Make `definitions` every service's persistent half (a Raft snapshot): the services
        that have none there lose theirs. Answers every service that changed."""
        given = {definition.key: definition for definition in definitions}
        changes = [
            DefinitionChange(s.key, None)
            for s in self.all_services()
            if s.definition is not None and s.key not in given
        ]
        changes.extend(
            DefinitionChange(key, definition)
            for key, definition in given.items()
            if (current := self.service(key)) is None or current.definition != definition
        )
        return tuple(ServiceChange(change.key, change.snapshot, None) for change in self.apply_definitions(changes))

    def _merge_definition(self, current: Service | None, change: DefinitionChange) -> Service | object | None:
        """The service after `change`: its new snapshot, None when it is gone, or _UNCHANGED."""
        definition = change.definition
        if definition is not None:
            if current is not None and current.definition is definition:
                return _UNCHANGED
            if current is None:
                # Made again: its ephemeral stamp carries on after its last deletion's, as one
                # made by a registration does, so no peer takes its next states for older ones.
                current = Service(key=change.key, revision=self._first_revision(change.key))
            return self._publish(with_definition(current, definition)).changed
        if current is None:
            return _UNCHANGED
        if current.definition is None and not change.deleted_service:
            return _UNCHANGED
        ephemeral = without_definition(current)
        if ephemeral.instances or (ephemeral.revision > 0 and not change.deleted_service):
            return self._publish(ephemeral).changed
        self._delete_service(change.key)
        return None

    def state_of(self, key: ServiceKey) -> Service | Tombstone:
        """What to replicate for a service: its snapshot, or a tombstone when it is gone. Any
        thread (the distro actor reads it while the registry writes)."""
        found = self.service(key)
        if found is not None:
            return found
        return Tombstone(key, self.tombstones.get(key, 0))

    def replace_all(self, services: Iterable[Service]) -> tuple[list[Service], list[ServiceKey]]:
        """Replace every ephemeral half with a peer's snapshot, keeping each persistent half;
        answers the services now held and the keys that went away (for the watchers)."""
        definitions = {s.key: s.definition for s in self.all_services() if s.definition is not None}
        before = {s.key for s in self.all_services()}
        merged = [with_definition(service, definitions.pop(service.key, None)) for service in services]
        merged.extend(persistent_half_only(definition, 0) for definition in definitions.values())
        self.load(merged)
        now = list(self.all_services())
        held = {s.key for s in now}
        return now, [key for key in before if key not in held]

    # -- whole-map views (for snapshots to disk and peers) ---------------------------------

    def all_services(self) -> Iterable[Service]:
        """Every snapshot, namespace by namespace."""
        for services in list(self.namespaces.values()):
            yield from list(services.values())

    def load(self, services: Iterable[Service]) -> None:
        """Replace the whole map with `services` (at start-up, before any reader)."""
        self.namespaces = {}
        self.service_count = 0
        self.instance_count = 0
        self.tombstones = {}
        for service in services:
            self._publish(service)


_UNCHANGED = object()


def with_definition(service: Service, definition: Definition | None) -> Service:
    """`service`'s ephemeral half (its ephemeral instances, revision and modified time) joined
    with `definition` as its persistent half (none: the defaults)."""
    instances = service.instances
    previous = service.definition
    if previous is definition and (definition is not None or _ephemeral_only(service)):
        return service
    draft = instances.mutate()
    if previous is not None:
        for key in previous.instances:
            if definition is None or key not in definition.instances:
                del draft[key]
    else:
        for key in [k for k in instances if not k.ephemeral]:
            del draft[key]
    if definition is not None:
        for key, instance in definition.instances.items():
            draft[key] = instance
    if definition is None:
        return Service(
            key=service.key, instances=draft.finish(), revision=service.revision, modified_ms=service.modified_ms
        )
    return Service(
        key=service.key,
        instances=draft.finish(),
        protect_threshold=definition.protect_threshold,
        metadata=definition.metadata,
        selector=definition.selector,
        explicit=definition.explicit,
        revision=service.revision,
        modified_ms=service.modified_ms,
        clusters=definition.clusters,
        definition=definition,
    )


def without_definition(service: Service) -> Service:
    """`service` with only its ephemeral half."""
    return with_definition(service, None)


def persistent_half_only(definition: Definition, revision: int) -> Service:
    """A service held only by its persistent half, its ephemeral stamp at `revision`."""
    return with_definition(Service(key=definition.key, revision=revision), definition)


def _has_persistent(instances: Map[InstanceKey, Instance]) -> bool:
    return any(not key.ephemeral for key in instances)


def _ephemeral_only(service: Service) -> bool:
    """Whether `service` holds nothing of a persistent half: no persistent instance, and the
    default settings (a peer's state carries the settings of its own persistent half)."""
    return (
        not service.explicit
        and not service.clusters
        and not service.metadata
        and service.protect_threshold == 0.0
        and service.selector == NO_SELECTOR
        and not _has_persistent(service.instances)
    )


def definition_of(service: Service) -> Definition | None:
    """The persistent half a service read from a data file carries (settings that differ from
    the defaults, configured clusters, persistent instances), or None when it has none."""
    if _ephemeral_only(service):
        return None
    return Definition(
        key=service.key,
        instances=Map((k, v) for k, v in service.instances.items() if not k.ephemeral),
        protect_threshold=service.protect_threshold,
        metadata=service.metadata,
        selector=service.selector,
        explicit=service.explicit,
        clusters=service.clusters,
        modified_ms=service.modified_ms,
    )


class RegistryView:
    """The registry as every thread but its writer sees it: published snapshots only, no way to
    write. Any thread (a single-key lookup and whole-value reads are atomic under the GIL)."""

    __slots__ = ("_core", "all_services", "service", "state_of")

    def __init__(self, core: RegistryCore) -> None:
        self._core = core
        self.service = core.service
        self.state_of = core.state_of
        self.all_services = core.all_services

    @property
    def namespaces(self) -> Mapping[str, Mapping[str, Service]]:
        """namespace -> grouped name -> snapshot; copy a namespace's dict before iterating it."""
        return self._core.namespaces

    def services_in(self, namespace: str) -> int:
        """How many services a namespace holds."""
        services = self._core.namespaces.get(namespace)
        return len(services) if services is not None else 0

    @property
    def service_count(self) -> int:
        return self._core.service_count

    @property
    def instance_count(self) -> int:
        return self._core.instance_count
