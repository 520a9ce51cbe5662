"""RegistryDriver: the single writer of the service map, around the RegistryCore."""

from __future__ import annotations

import logging
from time import monotonic_ns
from typing import ClassVar, assert_never

from nacos_actors.core.registry import RegistryCore
from nacos_actors.drivers.outbox import Outbox
from nacos_actors.logs import event
from nacos_actors.messages import (
    REGISTRY,
    ActorName,
    ApplyProbeVerdict,
    ApplyReplicated,
    Command,
    DefinitionsApplied,
    DefinitionsLoaded,
    DeregisterInstance,
    ExpireInstance,
    LoadSnapshot,
    MarkUnhealthy,
    PersistentCommand,
    RegisterInstance,
    RegistryMessage,
    RemoveEmptyService,
    ServicesChanged,
    SetInstanceHealth,
    UpdateCluster,
    Watch,
    WriteBatch,
)
from nacos_actors.metrics import HEALTH_REMOVED, HEALTH_UNHEALTHY, NodeMetrics
from nacos_actors.model import InstanceKey
from nacos_actors.settings import join_host_port

log = logging.getLogger(__name__)


class RegistryDriver:
    """Applies each WriteBatch to the RegistryCore and answers its reply with one Outcome per
    command; a refused command is its own outcome and the batch goes on. Anything else the core
    raises is a bug: the whole reply fails and the error propagates (the actor then stops the
    node). After each batch that changed something it tells every watcher one ServicesChanged
    with the latest snapshot of each changed service, before it answers the batch; a watcher of
    persistent halves only (the prober) hears only what Raft applied and loaded snapshots.

    Records each command by type and outcome, each batch's size, health transitions and
    replicated services; logs one line per register, deregister, expiry and empty-service
    removal that changed the registry. Runs on the registry actor's thread (or the simulation's).
    """

    NAME: ClassVar[ActorName] = REGISTRY

    def __init__(self, core: RegistryCore, outbox: Outbox, metrics: NodeMetrics) -> None:
        self.core = core
        self._outbox = outbox
        self._writes = metrics.write_counters()
        self._batch_size = metrics.write_batch_size
        self._health = metrics.health_transitions
        self._replicated = metrics.replicated_services
        self._watchers: list[ActorName] = []
        self._persistent_watchers: list[ActorName] = []

    def start(self, now_ms: int) -> None:
        pass

    def stop(self) -> None:
        pass

    def handle(self, message: object, now_ms: int) -> object:
        received: RegistryMessage = message  # type: ignore[assignment]  # what may arrive; the match covers it
        match received:
            case WriteBatch(commands, reply):
                try:
                    done = self.core.apply_batch(commands, now_ms)
                except BaseException as error:
                    reply.fail(error)
                    raise
                # Watchers first: whatever a client does once answered (a poll that subscribes)
                # reaches them after this change, never before it.
                if done.changes:
                    self._tell_watchers(ServicesChanged(done.changes, monotonic_ns()))
                # Counted before the answer too: a client that reads the metrics once answered
                # sees its write counted.
                for kind, count in done.applied.items():
                    self._writes[kind][0].inc(count)
                for kind, count in done.refused.items():
                    self._writes[kind][1].inc(count)
                self._batch_size.observe(len(commands))
                reply.resolve(done.outcomes)
                for command, touched in done.effective:
                    self._note_change(command, touched)
            case ApplyReplicated(states, force, reply):
                try:
                    changes = self.core.apply_replicated_batch(states, force)
                except BaseException as error:
                    reply.fail(error)
                    raise
                if changes:
                    self._tell_watchers(ServicesChanged(changes, monotonic_ns(), replicated=True))
                # Counted before the answer: whoever the answer wakes sees the count.
                self._replicated.inc(len(changes))
                reply.resolve(len(changes))
            case LoadSnapshot(services, reply):
                loaded = self.core.load_snapshot(services)
                if loaded:
                    self._tell_watchers(ServicesChanged(loaded, monotonic_ns(), replicated=True), persistent=True)
                reply.resolve(self.core.service_count)
                log.info(
                    "loaded %d services, %d instances from a peer",
                    self.core.service_count,
                    self.core.instance_count,
                    extra=event("load_snapshot", services=self.core.service_count, instances=self.core.instance_count),
                )
            case DefinitionsApplied(changes, answers):
                merged = self.core.apply_definitions(changes)
                # Raft applies every entry on every member: Distro must not send these on.
                if merged:
                    self._tell_watchers(ServicesChanged(merged, monotonic_ns(), replicated=True), persistent=True)
                for answer, outcome in answers:
                    answer.resolve(outcome)
            case DefinitionsLoaded(definitions):
                merged = self.core.load_definitions(definitions)
                if merged:
                    self._tell_watchers(ServicesChanged(merged, monotonic_ns(), replicated=True), persistent=True)
            case Watch(watcher, persistent_only):
                (self._persistent_watchers if persistent_only else self._watchers).append(watcher)
                # Not a local change: Distro must not send the whole registry to every peer.
                self._outbox.tell(
                    watcher, ServicesChanged(self.core.current_changes(), monotonic_ns(), replicated=True)
                )
            case _:
                assert_never(received)
        return None

    def _tell_watchers(self, told: ServicesChanged, persistent: bool = False) -> None:
        """Tell every watcher; the persistent-only ones only when `persistent` (the change came
        from Raft or a loaded snapshot)."""
        for watcher in self._watchers:
            self._outbox.tell(watcher, told)
        if persistent:
            for watcher in self._persistent_watchers:
                self._outbox.tell(watcher, told)

    def _note_change(self, command: Command, touched: tuple[InstanceKey, ...]) -> None:
        if isinstance(command, MarkUnhealthy):
            self._health[HEALTH_UNHEALTHY].inc()
        elif isinstance(command, ExpireInstance):
            self._health[HEALTH_REMOVED].inc()
        log_change(command, touched)


def log_change(command: Command | PersistentCommand, touched: tuple[InstanceKey, ...]) -> None:
    """One INFO line if `command` (which changed the registry, `touched` naming the instances it
    changed) is a register, deregister, health verdict, manual health change, probe verdict,
    cluster update or empty-service removal. Runs on the registry driver's thread, or on the
    Raft driver's for a persistent command this member proposed.
    """
    if not log.isEnabledFor(logging.INFO):
        return
    if isinstance(command, RegisterInstance):
        name, verb, key = "register", "registered", command.instance.key
    elif isinstance(command, DeregisterInstance):
        name, verb, key = "deregister", "deregistered", command.key
    elif isinstance(command, MarkUnhealthy):
        name, verb, key = "unhealthy", "marked unhealthy (beat timeout)", command.key
    elif isinstance(command, ExpireInstance):
        name, verb, key = "expire", "expired (delete timeout)", command.key
    elif isinstance(command, RemoveEmptyService):
        service = command.service
        log.info(
            "removed empty service %s (namespace %s)",
            service.name,
            service.namespace,
            extra=event("remove_empty_service", namespace=service.namespace, service=service.name),
        )
        return
    elif isinstance(command, SetInstanceHealth):
        name, verb = "set_health", "marked healthy by hand" if command.healthy else "marked unhealthy by hand"
        (key,) = touched
    elif isinstance(command, ApplyProbeVerdict):
        service = command.service
        health = "healthy" if command.healthy else "unhealthy"
        log.info(
            "%s in %s (namespace %s, cluster %s, persistent) marked %s by its %s probe",
            join_host_port(command.ip, command.port),
            service.name,
            service.namespace,
            command.cluster,
            health,
            command.checker,
            extra=event(
                "probe_verdict",
                namespace=service.namespace,
                service=service.name,
                ip=command.ip,
                port=command.port,
                cluster=command.cluster,
                healthy=command.healthy,
                checker=command.checker,
            ),
        )
        return
    elif isinstance(command, UpdateCluster):
        service = command.service
        log.info(
            "cluster %s of %s (namespace %s) now checked by %s",
            command.cluster,
            service.name,
            service.namespace,
            command.config.health_checker_type,
            extra=event(
                "update_cluster",
                namespace=service.namespace,
                service=service.name,
                cluster=command.cluster,
                checker=command.config.health_checker_type,
            ),
        )
        return
    else:
        return
    kind = "ephemeral" if key.ephemeral else "persistent"
    service = command.service
    log.info(
        "%s %s in %s (namespace %s, cluster %s, %s)",
        verb,
        join_host_port(key.ip, key.port),
        service.name,
        service.namespace,
        key.cluster,
        kind,
        extra=event(
            name,
            namespace=service.namespace,
            service=service.name,
            ip=key.ip,
            port=key.port,
            cluster=key.cluster,
            ephemeral=key.ephemeral,
        ),
    )
