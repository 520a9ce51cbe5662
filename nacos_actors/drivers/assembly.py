"""Which drivers a node runs and how they are wired: the same for a real node (nacos_actors.node
starts each in an actor) and for the cluster simulation (tests/sim runs them on one thread)."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import ip_network

from nacos_actors.beats import BeatLog
from nacos_actors.core.consensus import RaftBoard
from nacos_actors.core.definitions import DefinitionCore
from nacos_actors.core.distro import DistroConfig, DistroCore
from nacos_actors.core.health import HealthConfig, HealthCore
from nacos_actors.core.members import MemberBoard, MemberConfig, MemberCore, standalone_view
from nacos_actors.core.probes import ProbeConfig, ProbeCore
from nacos_actors.core.push import PushBoard
from nacos_actors.core.registry import RegistryCore, RegistryLimits, RegistryView
from nacos_actors.drivers.distro import DistroDriver
from nacos_actors.drivers.health import HealthDriver
from nacos_actors.drivers.members import MemberDriver
from nacos_actors.drivers.outbox import Driver, Outbox
from nacos_actors.drivers.probe import ProbeDriver
from nacos_actors.drivers.push import PushCores, PushDriver
from nacos_actors.drivers.raft import RaftDriver, RaftDriverConfig
from nacos_actors.drivers.registry import RegistryDriver
from nacos_actors.messages import DISTRO, HEALTH, PROBE, PUSH, RAFT, REGISTRY, ActorName, PollRaft, Watch
from nacos_actors.metrics import NodeMetrics
from nacos_actors.settings import Settings


@dataclass(frozen=True)
class NodeDrivers:
    """One node's drivers (push only when push is on; members and distro only in a cluster) and
    the member board the front reads the cluster's view from."""

    registry: RegistryDriver
    raft: RaftDriver
    health: HealthDriver
    probe: ProbeDriver
    push: PushDriver | None
    distro: DistroDriver | None
    members: MemberDriver | None
    member_board: MemberBoard

    def in_start_order(self) -> list[Driver]:
        """Dependencies first: everything a driver tells at start exists before it."""
        chosen: list[Driver | None] = [
            self.registry,
            self.raft,
            self.health,
            self.probe,
            self.push,
            self.distro,
            self.members,
        ]
        return [driver for driver in chosen if driver is not None]

    def first_messages(self) -> list[tuple[ActorName, object]]:
        """What to tell once every driver runs: the registry learns its watchers (each is then
        told every current service; the prober, when probes are on, only what Raft changes);
        the Raft driver starts ticking its group."""
        watchers: list[ActorName] = [HEALTH]
        if self.push is not None:
            watchers.append(PUSH)
        if self.distro is not None:
            watchers.append(DISTRO)
        watches = [Watch(watcher) for watcher in watchers]
        # The prober looks at persistent instances and cluster checkers only, which only Raft
        # changes: it is spared every ephemeral write (and every change when probes are off).
        if self.probe.core.config.enabled:
            watches.append(Watch(PROBE, persistent_only=True))
        return [*((REGISTRY, watch) for watch in watches), (RAFT, PollRaft())]


def health_config(settings: Settings) -> HealthConfig:
    return HealthConfig(
        check_beats=settings.health_check_enabled,
        expire_instances=settings.expire_instances,
        clean_empty_services=settings.empty_service_auto_clean,
        empty_service_ttl_ms=settings.empty_service_ttl_ms,
    )


def probe_config(settings: Settings) -> ProbeConfig:
    """The probe core's settings from the node's."""
    return ProbeConfig(
        enabled=settings.health_check_enabled,
        interval_ms=settings.health_probe_interval_ms,
        jitter_ms=settings.health_probe_jitter_ms,
        timeout_ms=settings.health_probe_timeout_ms,
        check_times=settings.health_check_times,
        max_in_flight=settings.health_probe_max_in_flight,
        networks=tuple(ip_network(network) for network in settings.health_probe_networks),
    )


def raft_driver_config(settings: Settings, leader_addresses: Mapping[str, str]) -> RaftDriverConfig:
    """The Raft driver's settings; `leader_addresses` maps each member's Raft node id to its
    member address."""
    return RaftDriverConfig(
        proposal_timeout_ms=settings.raft_proposal_timeout_ms,
        leader_addresses=dict(leader_addresses),
        durable=settings.data_dir is not None,
    )


def registry_limits(settings: Settings) -> RegistryLimits:
    """The registry core's limits from the node's settings."""
    return RegistryLimits(
        max_instances_per_service=settings.max_instances_per_service,
        max_services_per_namespace=settings.max_services_per_namespace,
        max_instance_metadata_bytes=settings.max_instance_metadata_bytes,
    )


def build_drivers(
    settings: Settings,
    core: RegistryCore,
    beats: BeatLog,
    outbox: Outbox,
    metrics: NodeMetrics,
    now_ms: int,
    push_cores: PushCores | None = None,
    push_board: PushBoard | None = None,
    raft_board: RaftBoard | None = None,
    raft_config: RaftDriverConfig | None = None,
    probe_random: Callable[[], float] | None = None,
) -> NodeDrivers:
    """The drivers of a node with `settings` around `core`, reaching the world through `outbox`.
    A cluster member judges no health and probes nothing until it is UP (its view then says
    what it owns). The Raft driver has no group yet: the caller attaches one (its library binds
    a port). `probe_random` spreads the probes (a fresh generator when None)."""
    registry = RegistryDriver(core, outbox, metrics)
    raft = RaftDriver(
        DefinitionCore(registry_limits(settings)),
        outbox,
        raft_board if raft_board is not None else RaftBoard(),
        metrics.raft,
        raft_config if raft_config is not None else raft_driver_config(settings, {}),
    )
    checker = HealthCore(health_config(settings))
    prober = ProbeCore(probe_config(settings), probe_random if probe_random is not None else random.Random().random)
    probe = ProbeDriver(prober, outbox, metrics.probes)
    push = None
    if push_cores is not None:
        published = push_board if push_board is not None else PushBoard()
        push = PushDriver(push_cores, published, outbox, metrics, RegistryView(core).service)
    if settings.standalone:
        board = MemberBoard(standalone_view(settings.self_address))
        return NodeDrivers(registry, raft, HealthDriver(checker, beats, outbox), probe, push, None, None, board)
    checker.set_owner(lambda key: False, now_ms)
    prober.set_owner(lambda key: False, now_ms)
    me = settings.self_address
    peers = tuple(a for a in settings.members if a != me)
    distro_config = DistroConfig(
        sync_window_ms=settings.distro_sync_window_ms,
        retry_delay_ms=settings.distro_retry_delay_ms,
        verify_interval_ms=settings.distro_verify_interval_ms,
        quarantine_max_ms=settings.distro_quarantine_max_ms,
    )
    distro = DistroDriver(DistroCore(me, peers, distro_config, now_ms), RegistryView(core), outbox, metrics.cluster)
    member_config = MemberConfig(settings.member_report_interval_ms, settings.member_fail_threshold)
    member_core = MemberCore(me, settings.members, member_config, now_ms)
    board = MemberBoard(member_core.view)
    members = MemberDriver(member_core, board, outbox, metrics.cluster)
    return NodeDrivers(registry, raft, HealthDriver(checker, beats, outbox), probe, push, distro, members, board)
