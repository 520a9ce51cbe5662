"""The last beat time of each instance, kept off the registry's write path.

A beat on a healthy instance changes nothing a client can see, so it costs no registry write
and no mailbox message: the event loop thread records the time here. The health actor reads
entries, gives an instance that appears without a beat on record the time it first saw it,
and forgets the instances that left. Every method is one dict operation (atomic under the
GIL), except `forget_if_before`, whose rare lost race only leaves an entry behind.
"""

from __future__ import annotations

from nacos_actors.model import InstanceKey, ServiceKey


class BeatLog:
    """Last beat (wall-clock ms) per (service, instance). Any thread; see the module docstring."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[tuple[ServiceKey, InstanceKey], int] = {}

    def record(self, service: ServiceKey, key: InstanceKey, now_ms: int) -> None:
        """A beat (or a register) at `now_ms`. Event loop thread."""
        self._last[(service, key)] = now_ms

    def record_if_absent(self, service: ServiceKey, key: InstanceKey, now_ms: int) -> None:
        """Start the clock of an instance that has no beat on record yet. Health actor."""
        self._last.setdefault((service, key), now_ms)

    def forget(self, service: ServiceKey, key: InstanceKey) -> None:
        """The instance was deregistered. Event loop thread."""
        self._last.pop((service, key), None)

    def forget_if_before(self, service: ServiceKey, key: InstanceKey, before_ms: int) -> None:
        """The instance left at `before_ms`: forget it unless it beat (re-registered) since."""
        last = self._last.get((service, key))
        if last is not None and last < before_ms:
            self._last.pop((service, key), None)

    def last(self, service: ServiceKey, key: InstanceKey) -> int | None:
        return self._last.get((service, key))

    def __len__(self) -> int:
        return len(self._last)
