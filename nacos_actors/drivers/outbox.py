"""What a driver may ask of the world, and the shape every driver has.

A driver is called on one thread at a time (its actor's, or the simulation's) with one message
and the time; it decides nothing about the domain itself (its core does) and reaches the world
only through its Outbox: messages to other drivers by name, requests to peers, datagrams, server
requests on gRPC streams, health probes, and the moment it wants to be woken with a Tick.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol

from nacos_actors.core.probing import ProbeTarget
from nacos_actors.core.push import Datagram
from nacos_actors.core.streams import StreamPush
from nacos_actors.messages import ActorName, PeerCall


class Outbox(Protocol):
    """Carries out a driver's effects. Called on the driver's thread; never blocks."""

    def tell(self, actor: ActorName, message: object) -> None:
        """Deliver `message` to the driver named `actor` (dropped when it has stopped)."""

    def call_peer(self, call: PeerCall) -> None:
        """Make the request; its outcome comes back as a PeerAnswered to `call.reply_to`."""

    def send_datagrams(self, datagrams: Sequence[Datagram]) -> None:
        """Send UDP datagrams from the push socket; errors are counted, not raised."""

    def send_to_streams(self, pushes: Sequence[StreamPush]) -> None:
        """Write server requests on gRPC clients' streams (the connection layer, on the loop,
        drops those whose connection is gone)."""

    def start_probes(self, probes: Sequence[ProbeTarget]) -> None:
        """Run health probes on the loop; each one's ProbeResult comes back to the probe driver
        in a ProbesFinished (a probe the loop cannot run ends as an error result)."""

    def wake_at(self, actor: ActorName, deadline_ms: int | None) -> None:
        """Tell `actor` a Tick at wall-clock `deadline_ms` (replacing any earlier wish; None:
        nothing is due)."""


class Driver(Protocol):
    """One concern's driver: `handle` takes every message its actor receives, with the time."""

    NAME: ClassVar[ActorName]

    def handle(self, message: object, now_ms: int) -> object:
        """Feed `message` (never a Ping: the actor answers those) to the core and carry out its effects."""

    def start(self, now_ms: int) -> None:
        """The actor started: ask for a first wake-up if the core wants one."""

    def stop(self) -> None:
        """The actor stops: answer whatever still waits on this driver."""
