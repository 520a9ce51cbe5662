"""RegistryActor: the single writer of the service map."""

from __future__ import annotations

import logging
from time import monotonic_ns, perf_counter
from typing import Any, Callable, assert_never

import pykka

from nacos_actors.actors.base import NodeActor
from nacos_actors.clock import wall_clock_ms
from nacos_actors.core.registry import RegistryCore, Rejected
from nacos_actors.logs import event
from nacos_actors.messages import (
    ApplyReplicated,
    Command,
    DeregisterInstance,
    ExpireInstance,
    LoadSnapshot,
    MarkUnhealthy,
    Ping,
    RegisterInstance,
    RegistryMessage,
    RemoveEmptyService,
    ServiceChange,
    ServicesChanged,
    SetInstanceHealth,
    UpdateCluster,
    Watch,
    WriteBatch,
)
from nacos_actors.metrics import HEALTH_REMOVED, HEALTH_UNHEALTHY, NodeMetrics
from nacos_actors.model import InstanceKey, Service, ServiceKey
from nacos_actors.settings import join_host_port

log = logging.getLogger(__name__)


class RegistryActor(NodeActor):
    """Applies each WriteBatch to the RegistryCore on this actor's thread and answers its reply.

    A refused command (Rejected) is answered as that command's outcome and the batch goes on;
    anything else is a bug: the whole reply fails, and the error is logged, counted
    (nacos_exception_total{name="actorFailed"}) and reported through `on_fatal`, which stops
    the node so a supervisor restarts it rather than leaving it half alive.

    After each batch that changed something it tells every watcher (the health checker, the
    pusher) one ServicesChanged with the latest snapshot of each changed service.

    Records into `metrics`: each command by type and outcome, each batch's size, each message's
    handling time, health transitions, and (at scrape time) this actor's mailbox depth. Logs one
    line per register, deregister, expiry and empty-service removal that changed the registry.
    """

    NAME = "registry"

    def __init__(
        self,
        core: RegistryCore,
        on_fatal: Callable[[BaseException], None],
        metrics: NodeMetrics,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        super().__init__(metrics, on_fatal, clock, timed=False)
        self.core = core
        self._writes = metrics.write_counters()
        self._batch_size = metrics.write_batch_size
        self._batch_seconds = metrics.message_seconds(self.NAME, WriteBatch)
        self._health = metrics.health_transitions
        self._replicated = metrics.replicated_services
        self._replicated_seconds = metrics.message_seconds(self.NAME, ApplyReplicated)
        self._watchers: list[pykka.ActorRef[Any]] = []

    def on_receive(self, message: Any) -> Any:
        received: RegistryMessage = message  # what may arrive here; mypy checks the match covers it
        match received:
            case WriteBatch(commands, reply):
                started = perf_counter()
                now_ms = self._clock()
                outcomes: list[Any] = []
                changes: dict[ServiceKey, Service | None] = {}
                touched: dict[ServiceKey, tuple[InstanceKey, ...]] = {}
                # Counted here and added once per batch: a prometheus inc takes a lock.
                applied_counts: dict[type, int] = {}
                rejected_counts: dict[type, int] = {}
                self.core.begin_batch()
                try:
                    for command in commands:
                        kind = type(command)
                        try:
                            applied = self.core.apply(command, now_ms)
                        except Rejected as refusal:
                            rejected_counts[kind] = rejected_counts.get(kind, 0) + 1
                            outcomes.append(refusal)
                            continue
                        except BaseException as error:
                            reply.fail(error)
                            raise
                        applied_counts[kind] = applied_counts.get(kind, 0) + 1
                        outcomes.append(applied.value)
                        if applied.changed is not None:
                            key = applied.changed.key
                            changes[key] = applied.changed
                            earlier = touched.get(key)
                            touched[key] = applied.touched if earlier is None else earlier + applied.touched
                            self._note_change(command, applied.touched)
                        elif applied.deleted is not None:
                            changes[applied.deleted] = None
                            self._note_change(command, ())
                finally:
                    self.core.end_batch()
                    self._count_writes(applied_counts, rejected_counts)
                reply.resolve(tuple(outcomes))
                if changes and self._watchers:
                    told = ServicesChanged(
                        tuple(
                            ServiceChange(k, v, None if v is None else frozenset(touched[k]))
                            for k, v in changes.items()
                        ),
                        monotonic_ns(),
                    )
                    self._tell_watchers(told)
                self._batch_size.observe(len(commands))
                self._batch_seconds.observe(perf_counter() - started)
                return None
            case ApplyReplicated(states, force, reply):
                started = perf_counter()
                changed: dict[ServiceKey, Service | None] = {}
                for state in states:
                    try:
                        applied = self.core.apply_replicated(state, force)
                    except BaseException as error:
                        reply.fail(error)
                        raise
                    if applied.changed is not None:
                        changed[applied.changed.key] = applied.changed
                    elif applied.deleted is not None:
                        changed[applied.deleted] = None
                reply.resolve((len(changed),))
                self._replicated.inc(len(changed))
                if changed and self._watchers:
                    replicated = tuple(ServiceChange(k, v) for k, v in changed.items())
                    self._tell_watchers(ServicesChanged(replicated, monotonic_ns(), replicated=True))
                self._replicated_seconds.observe(perf_counter() - started)
                return None
            case LoadSnapshot(services, reply):
                held, gone = self.core.replace_all(services)
                reply.resolve((len(held),))
                loaded = (*(ServiceChange(s.key, s) for s in held), *(ServiceChange(k, None) for k in gone))
                if loaded and self._watchers:
                    self._tell_watchers(ServicesChanged(loaded, monotonic_ns(), replicated=True))
                log.info(
                    "loaded %d services, %d instances from a peer",
                    self.core.service_count,
                    self.core.instance_count,
                    extra=event("load_snapshot", services=self.core.service_count, instances=self.core.instance_count),
                )
                return None
            case Watch(watcher):
                self._watchers.append(watcher)
                current = tuple(ServiceChange(s.key, s) for s in self.core.all_services())
                # Not a local change: Distro must not send the whole registry to every peer.
                watcher.tell(ServicesChanged(current, monotonic_ns(), replicated=True))
                return None
            case Ping():
                return "pong"
            case _:
                assert_never(received)

    def _tell_watchers(self, told: ServicesChanged) -> None:
        for watcher in list(self._watchers):
            try:
                watcher.tell(told)
            except pykka.ActorDeadError:  # stopped before us (the lifecycle stops in reverse)
                self._watchers.remove(watcher)

    def _count_writes(self, applied: dict[type, int], rejected: dict[type, int]) -> None:
        for kind, count in applied.items():
            self._writes[kind][0].inc(count)
        for kind, count in rejected.items():
            self._writes[kind][1].inc(count)

    def _note_change(self, command: Command, touched: tuple[InstanceKey, ...]) -> None:
        if isinstance(command, MarkUnhealthy):
            self._health[HEALTH_UNHEALTHY].inc()
        elif isinstance(command, ExpireInstance):
            self._health[HEALTH_REMOVED].inc()
        _log_change(command, touched)



def _log_change(command: Command, touched: tuple[InstanceKey, ...]) -> None:
    """One INFO line if `command` (which changed the registry, `touched` naming the instances it
    changed) is a register, deregister, health verdict, manual health change, cluster update or
    empty-service removal. Runs on the registry actor's thread.
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
