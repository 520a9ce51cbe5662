"""CPU pinning: servers on CPU 1, wrk and this harness on CPU 0 (taskset), or not at all."""

from __future__ import annotations

import os


class Pinning:
    """Run's pinning: the taskset prefixes of server and load commands."""

    def set_pin(self, pin: str) -> None:
        self.pin = pin
        if pin == "on":
            self.server_prefix = ["taskset", "-c", "1"]
            self.load_prefix = ["taskset", "-c", "0"]
            os.sched_setaffinity(0, {0})
        else:
            self.server_prefix = []
            self.load_prefix = []
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))

    def pin_text(self) -> str:
        if self.pin == "on":
            return "pinned: servers (node, ceiling, etcd) `taskset -c 1`, wrk and this harness `taskset -c 0`"
        return "not pinned: servers, wrk and this harness scheduled freely over all CPUs"
