"""Where a validated write goes: the registry (ephemeral data, replicated by Distro) or Raft
(persistent instances, service settings and clusters), and what the edge checks first.

Pure. The HTTP edge calls `route_write` on the event loop with the service as this member
sees it. Raft's core cannot see ephemeral instances, so the checks that need the whole
service (does it exist, does it hold ephemeral instances, does the cluster exist) are made
here, as Nacos 2.x makes them before it proposes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from nacos_actors.core.registry import Rejected
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
from nacos_actors.model import InstanceKey, Service


class Routed(NamedTuple):
    """The part of a write for the registry and the part for Raft (either may be None; a
    metadata batch naming both kinds of instance has both, answered together)."""

    registry: Command | None
    raft: PersistentCommand | None


def route_write(command: Command, current: Service | None) -> Routed:
    """Split `command` between the registry and Raft; raise Rejected for what the whole
    service refuses (`current` is the service as this member sees it)."""
    match command:
        case RegisterInstance(_, instance) | UpdateInstance(_, instance, _):
            return Routed(command, None) if instance.ephemeral else Routed(None, command)
        case DeregisterInstance(_, key):
            return Routed(command, None) if key.ephemeral else Routed(None, command)
        case PatchInstance(service, ip, port, cluster, ephemeral):
            if ephemeral is None:
                found = current is not None and InstanceKey(ip, port, cluster, True) in current.instances
                ephemeral = found or current is None
                command = replace(command, ephemeral=ephemeral)
            return Routed(command, None) if ephemeral else Routed(None, command)
        case BeatInstance(service, key, reregister):
            if key.ephemeral or reregister is None:
                return Routed(command, None)
            return Routed(None, RegisterInstance(service, reregister))
        case MarkUnhealthy() | ExpireInstance() | RemoveEmptyService():
            return Routed(command, None)
        case CreateService(service):
            if current is not None:
                raise Rejected(400, f"specified service already exists, serviceName : {service.name}")
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
            return Routed(
                replace(command, targets=fleeting) if fleeting or not persistent else None,
                replace(command, targets=persistent) if persistent else None,
            )
        case _:
            raise AssertionError(f"unrouted write {type(command).__name__}")
