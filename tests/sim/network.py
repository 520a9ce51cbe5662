"""A simulated clock and an in-memory network that can cut, isolate, drop, delay and reorder.

Everything runs on one thread in simulated integer milliseconds: `Scheduler` keeps a heap of
timed actions and jumps from one to the next; nothing sleeps and no real clock is read, so a
run is a pure function of its seed.

`Network.request` carries one request and its answer between two addresses, like one HTTP call
of the peer client: each leg is delayed at random (so messages overtake each other), may be
dropped, and is lost when the link is cut while it travels. The caller always learns exactly
one outcome: the `Answer`, or a `Failure` - at once-ish when nothing listens at the target (a
stopped or still starting node: connection refused), after the connect timeout when the link is cut at the start,
after the request's timeout when a leg was lost on the way.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

CLIENT = "client"
"""The address clients send from; they reach a node unless it is isolated from clients too."""

CONNECT_TIMEOUT_MS = 1000
"""A cut link fails a request after this long (the peer client's connect timeout is 1 s)."""


class EventBudgetExceeded(RuntimeError):
    """The simulation ran more events than its budget: something loops without making progress."""


class Scheduler:
    """Simulated time: `now` in ms, and actions due at later times, run in time order (FIFO among
    actions due at the same ms)."""

    def __init__(self, max_events: int = 2_000_000) -> None:
        self.now = 0
        self.events = 0
        self._max_events = max_events
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._sequence = itertools.count()

    def at(self, time_ms: int, action: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (max(time_ms, self.now), next(self._sequence), action))

    def after(self, delay_ms: int, action: Callable[[], None]) -> None:
        self.at(self.now + delay_ms, action)

    def run_until(self, end_ms: int) -> None:
        """Run every action due up to `end_ms`, then stand at `end_ms`."""
        heap = self._heap
        while heap and heap[0][0] <= end_ms:
            time_ms, _, action = heapq.heappop(heap)
            self.now = time_ms
            self.events += 1
            if self.events > self._max_events:
                raise EventBudgetExceeded(f"more than {self._max_events} events by t={time_ms} ms")
            action()
        self.now = max(self.now, end_ms)

    def run_for(self, duration_ms: int) -> None:
        self.run_until(self.now + duration_ms)


@dataclass(frozen=True, slots=True)
class Answer:
    """The target answered with an HTTP `status` and a `body` (bytes for peers, any value for clients)."""

    status: int
    body: Any = b""


@dataclass(frozen=True, slots=True)
class Failure:
    """No answer: `refused` when nothing listened at the target, else a timeout."""

    refused: bool


Outcome = Answer | Failure
Respond = Callable[[int, Any], None]


class Endpoint(Protocol):
    """Whatever listens at an address: a node (listening while its process runs and its HTTP
    server is open)."""

    @property
    def listening(self) -> bool: ...

    def receive(self, source: str, kind: str, body: Any, respond: Respond) -> None: ...


@dataclass
class NetworkStats:
    requests: int = 0
    dropped: int = 0
    lost_to_cuts: int = 0
    refused: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class Network:
    """Links between addresses and the faults on them. `heal` clears every fault."""

    def __init__(self, scheduler: Scheduler, rng: random.Random, min_delay_ms: int = 1, max_delay_ms: int = 25) -> None:
        self.scheduler = scheduler
        self.rng = rng
        self.min_delay_ms = min_delay_ms
        self.max_delay_ms = max_delay_ms
        self.endpoints: dict[str, Endpoint] = {}
        self.stats = NetworkStats()
        self._cut: set[frozenset[str]] = set()
        self._isolated: dict[str, bool] = {}  # address -> whether clients are cut off too
        self.drop_rate = 0.0
        self.extra_delay_ms = 0

    # -- faults ----------------------------------------------------------------------------

    def cut(self, a: str, b: str) -> None:
        """Cut the link between two addresses, both ways."""
        self._cut.add(frozenset((a, b)))

    def isolate(self, address: str, from_clients: bool = True) -> None:
        """Cut every link of a node to its peers (and to the clients when `from_clients`)."""
        self._isolated[address] = from_clients

    def heal(self) -> None:
        """Restore every link; no drops, no extra delay."""
        self._cut.clear()
        self._isolated.clear()
        self.drop_rate = 0.0
        self.extra_delay_ms = 0

    @property
    def faulty(self) -> bool:
        return bool(self._cut or self._isolated or self.drop_rate or self.extra_delay_ms)

    def connected(self, a: str, b: str) -> bool:
        if frozenset((a, b)) in self._cut:
            return False
        for one, other in ((a, b), (b, a)):
            if one in self._isolated and (other != CLIENT or self._isolated[one]):
                return False
        return True

    # -- carrying a request ----------------------------------------------------------------

    def delay(self) -> int:
        extra = self.rng.randint(0, self.extra_delay_ms) if self.extra_delay_ms else 0
        return self.rng.randint(self.min_delay_ms, self.max_delay_ms) + extra

    def request(
        self,
        source: str,
        target: str,
        kind: str,
        body: Any,
        timeout_ms: int,
        on_outcome: Callable[[Outcome], None],
        connect_timeout_ms: int = CONNECT_TIMEOUT_MS,
    ) -> None:
        """Send `body` to `target`'s `receive`; `on_outcome` runs once, with its answer or a failure."""
        scheduler, stats = self.scheduler, self.stats
        stats.requests += 1
        stats.by_kind[kind] = stats.by_kind.get(kind, 0) + 1
        started = scheduler.now
        done = False

        def finish(outcome: Outcome) -> None:
            nonlocal done
            if not done:
                done = True
                on_outcome(outcome)

        scheduler.at(started + timeout_ms, lambda: finish(Failure(refused=False)))
        if not self.connected(source, target):
            stats.lost_to_cuts += 1
            scheduler.at(started + min(timeout_ms, connect_timeout_ms), lambda: finish(Failure(refused=False)))
            return
        endpoint = self.endpoints.get(target)
        if endpoint is None or not endpoint.listening:
            stats.refused += 1
            scheduler.after(self.delay(), lambda: finish(Failure(refused=True)))
            return
        if self.drop_rate and self.rng.random() < self.drop_rate:
            stats.dropped += 1
            return  # the timeout answers

        def arrive() -> None:
            if done:
                return
            if not self.connected(source, target):
                stats.lost_to_cuts += 1
                return
            if not endpoint.listening:
                stats.refused += 1
                finish(Failure(refused=True))
                return
            answered = False

            def respond(status: int, answer: Any) -> None:
                nonlocal answered
                if answered or done:
                    return
                answered = True
                if self.drop_rate and self.rng.random() < self.drop_rate:
                    stats.dropped += 1
                    return

                def back() -> None:
                    if self.connected(source, target):
                        finish(Answer(status, answer))
                    else:
                        stats.lost_to_cuts += 1

                scheduler.after(self.delay(), back)

            endpoint.receive(source, kind, body, respond)

        scheduler.after(self.delay(), arrive)
