"""Where a validated write goes: the registry (ephemeral data, replicated by Distro) or Raft
(persistent instances, service settings and clusters), and what the edge checks first.

Pure. The HTTP edge calls `route_write` on the event loop with the service as this member
sees it. Raft's core cannot see ephemeral instances, so the checks that need the whole
service (does it exist, does it hold ephemeral instances, does the cluster exist, would one
more instance or service, or a metadata batch split between both stores, pass a limit) are
made here, as Nacos 2.x makes them before it proposes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from nacos_actors.core.registry import (
    NO_LIMITS,
    RegistryLimits,
    Rejected,
    instances_limit_refusal,
    merge_metadata,
    services_limit_refusal,
)
from nacos_actors.messages import (
    BeatInstance,
    Command,
    CreateService,
    DeleteService,
    DeregisterInstance,
    ExpireInstance,
    MarkUnhealthy,
    PatchInstance,
    PersistentCommand,
    RegisterInstance,
    RemoveEmptyService,
    SetInstanceHealth,
    UpdateCluster,
    UpdateInstance,
    UpdateMetadataBatch,
    UpdateService,
)
from nacos_actors.model import InstanceKey, Service, ServiceKey


class Routed(NamedTuple):
    """The part of a write for the registry and the part for Raft (either may be None; a
    metadata batch naming both kinds of instance has both, answered together)."""

    registry: Command | None
    raft: PersistentCommand | None


def route_write(
    command: Command, current: Service | None, limits: RegistryLimits = NO_LIMITS, services_held: int = 0
) -> Routed:
    """Split `command` between the registry and Raft; raise Rejected for what the whole
    service refuses (`current` is the service as this member sees it, `services_held` how many
    services its namespace holds: the limits count both halves, which Raft's core cannot)."""
    match command:
        case RegisterInstance(service, instance) | UpdateInstance(service, instance, _):
            if instance.ephemeral:
                return Routed(command, None)
            if isinstance(command, UpdateInstance) and command.must_exist and current is None:
                # Worded as the registry words it for an ephemeral instance.
                raise Rejected(400, f"service not found, namespace: {service.namespace}, service: {service.name}")
            _check_room(limits, service, instance.key, current, services_held)
            return Routed(None, command)
        case DeregisterInstance(_, key):
            return Routed(command, None) if key.ephemeral else Routed(None, command)
        case PatchInstance(service, ip, port, cluster, ephemeral):
            if ephemeral is None:
                found = current is not None and InstanceKey(ip, port, cluster, True) in current.instances
                ephemeral = found or current is None
                command = replace(command, ephemeral=ephemeral)
            return Routed(command, None) if ephemeral else Routed(None, command)
        case BeatInstance(service, key, reregister):
            # A beat never changes a persistent instance that is there (the registry answers it
            # as it is); one that is not is registered from the beat, through Raft.
            if key.ephemeral or reregister is None or (current is not None and key in current.instances):
                return Routed(command, None)
            _check_room(limits, service, key, current, services_held)
            return Routed(None, RegisterInstance(service, reregister))
        case MarkUnhealthy() | ExpireInstance() | RemoveEmptyService():
            return Routed(command, None)
        case CreateService(service):
            if current is not None:
                raise Rejected(400, f"specified service already exists, serviceName : {service.name}")
            _check_room(limits, service, None, current, services_held)
            return Routed(None, command)
        case UpdateService(service):
            if current is None:
                raise Rejected(400, f"service {service.name} not found!")
            return Routed(None, command)
        case DeleteService(service):
            if current is None:
                raise Rejected(400, f"specified service not exist, serviceName : {service.name}")
            if any(key.ephemeral for key in current.instances):
                raise Rejected(
                    400, f"Service {service.name} is not empty, can't be delete. Please unregister instance first"
                )
            return Routed(None, command)
        case UpdateCluster(service):
            if current is None:
                raise Rejected(400, f"service not found:{service.name}")
            return Routed(None, command)
        case SetInstanceHealth(service, ip, port, cluster):
            if current is None:
                raise Rejected(404, f"service {service.name} is not found!")
            if not current.has_cluster(cluster):
                raise Rejected(404, f"cluster {cluster} is not found in service {service.name}!")
            if InstanceKey(ip, port, cluster, False) in current.instances:
                return Routed(None, command)
            return Routed(command, None)
        case UpdateMetadataBatch(kind=kind, targets=targets):
            if kind == "persist":
                return Routed(None, command)
            if kind == "ephemeral":
                return Routed(command, None)
            fleeting = tuple(k for k in targets if k.ephemeral)
            persistent = tuple(k for k in targets if not k.ephemeral)
            if fleeting and persistent and current is not None and not command.remove:
                # Both parts are answered together: a merge past the metadata limit in either
                # refuses the whole batch here, before the other part is applied.
                for key in targets:
                    target = current.instances.get(key)
                    if target is not None:
                        merge_metadata(target, command.metadata, False, limits)
            return Routed(
                replace(command, targets=fleeting) if fleeting or not persistent else None,
                replace(command, targets=persistent) if persistent else None,
            )
        case _:
            raise AssertionError(f"unrouted write {type(command).__name__}")


def _check_room(
    limits: RegistryLimits, service: ServiceKey, key: InstanceKey | None, current: Service | None, services_held: int
) -> None:
    """Refuse a persistent write that would add a service past max_services_per_namespace, or
    the instance `key` past max_instances_per_service, counting both halves."""
    if current is None:
        refusal = services_limit_refusal(limits, service.namespace, services_held)
    elif key is not None and key not in current.instances:
        refusal = instances_limit_refusal(limits, service, len(current.instances))
    else:
        refusal = None
    if refusal is not None:
        raise refusal
