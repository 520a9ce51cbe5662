"""The last beat time of each instance, kept off the registry's write path.

A beat on a healthy instance changes nothing a client can see, so it costs no registry write
and no mailbox message: the event loop thread, the only writer, records the time here. Other
threads (the health checker) may read single entries; a single-key dict read is atomic.
"""

from __future__ import annotations

from nacos_actors.model import InstanceKey, ServiceKey


class BeatLog:
    """Last beat (wall-clock ms) per (service, instance). Written only on the event loop thread."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[tuple[ServiceKey, InstanceKey], int] = {}

    def record(self, service: ServiceKey, key: InstanceKey, now_ms: int) -> None:
        self._last[(service, key)] = now_ms

    def forget(self, service: ServiceKey, key: InstanceKey) -> None:
        self._last.pop((service, key), None)

    def last(self, service: ServiceKey, key: InstanceKey) -> int | None:
        return self._last.get((service, key))

    def __len__(self) -> int:
        return len(self._last)
