"""A discrete-event scheduler and a simulated, faulty network.

Rules:
- Time is logical: an integer count of units, `TICK` units per Raft tick, so
  message delays can be fractions of a tick. No wall clock, no threads.
- Events due at the same time run in the order they were scheduled (a
  sequence number breaks ties): a run is a pure function of its seed.
- Every random choice is drawn from the one `random.Random` the network is
  given, in event order; nothing iterates over hash-ordered containers.
- A message is carried only if its link is up both when it is sent and when
  it arrives: a partition, an isolated or down endpoint, or a sleeping
  receiver loses it, as a frozen process's peers see their transmits time out.
- Message faults (delay, drop, duplicate, reorder) follow `FaultSwitches`; partitions
  and sleep are commands, issued by a scenario or by a chaos driver.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass
from typing import Callable, Sequence

from tests.sim.harness.fault_switches import FaultSwitches

TICK = 1000
"""Time units per logical tick."""
MIN_DELAY = 20
"""Fastest delivery, in time units."""
MAX_DELAY = 300
"""Slowest ordinary delivery, in time units (long delays come on top)."""


class Scheduler:
    """A priority queue of actions keyed by (time, scheduling order)."""

    def __init__(self) -> None:
        self.now = 0
        self._queue: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0

    def at(self, time: int, action: Callable[[], None]) -> None:
        if time < self.now:
            raise ValueError(f"cannot schedule in the past: {time} < now {self.now}")
        heapq.heappush(self._queue, (time, self._seq, action))
        self._seq += 1

    def after(self, delay: int, action: Callable[[], None]) -> None:
        self.at(self.now + delay, action)

    @property
    def next_time(self) -> int | None:
        """When the earliest scheduled action is due, or None."""
        return self._queue[0][0] if self._queue else None

    def run_next(self) -> bool:
        """Run the earliest action; False when nothing is scheduled."""
        if not self._queue:
            return False
        time, _, action = heapq.heappop(self._queue)
        self.now = time
        action()
        return True

    def run_until(self, time: int) -> None:
        """Run every action due at or before `time`, then set the clock to `time`."""
        while self._queue and self._queue[0][0] <= time:
            self.run_next()
        self.now = max(self.now, time)


@dataclass(kw_only=True)
class NetworkStats:
    """Counters since the network was built.

    Fields:
        sent: messages handed to `send`.
        delivered: messages handed to the receiver (duplicates count twice).
        dropped: messages lost, for any reason.
        duplicated: extra copies scheduled by the duplicate fault.
    """

    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0


Deliver = Callable[[str, str, object], None]


class Network:
    """Carries messages between named nodes with the faults switched on.

    `deliver(src, dst, message)` is called at the arrival time of every
    message that survives; `trace(line)`, when given, is told every send,
    loss and delivery.
    """

    def __init__(
        self,
        *,
        scheduler: Scheduler,
        rng: random.Random,
        faults: FaultSwitches,
        deliver: Deliver,
        trace: Callable[[str], None] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.rng = rng
        self.faults = faults
        self.stats = NetworkStats()
        self._deliver = deliver
        self._trace = trace or (lambda line: None)
        self._group: dict[str, int] | None = None
        self._isolated: set[str] = set()
        self._down: set[str] = set()
        self._asleep_until: dict[str, int] = {}
        self._last_arrival: dict[tuple[str, str], int] = {}

    # -- link state ---------------------------------------------------------

    def partition(self, groups: Sequence[Sequence[str]]) -> None:
        """Only nodes of one group can talk; a node named in no group talks to no one."""
        group: dict[str, int] = {}
        for number, members in enumerate(groups):
            for node in members:
                if node in group:
                    raise ValueError(f"{node} is in two partition groups")
                group[node] = number
        self._group = group
        self._trace(f"partition {' | '.join(','.join(sorted(g)) for g in groups)}")

    def place(self, node: str, beside: str) -> None:
        """Put a newly started node in the partition group of `beside`."""
        if self._group is not None and beside in self._group:
            self._group[node] = self._group[beside]

    def isolate(self, node: str) -> None:
        """Cut every link of `node` (6.824's disconnect), whatever the partition."""
        self._isolated.add(node)
        self._trace(f"isolate {node}")

    def rejoin(self, node: str) -> None:
        self._isolated.discard(node)
        self._trace(f"rejoin {node}")

    def isolated(self, node: str) -> bool:
        return node in self._isolated

    def heal(self) -> None:
        """End partitions and isolation (sleep and down nodes are unchanged)."""
        self._group = None
        self._isolated.clear()
        self._trace("heal")

    def connected(self, a: str, b: str) -> bool:
        if a in self._isolated or b in self._isolated:
            return False
        if self._group is None or a == b:
            return True
        return self._group.get(a, -1) == self._group.get(b, -2)

    @property
    def partitioned(self) -> bool:
        return self._group is not None or bool(self._isolated)

    # -- node state ---------------------------------------------------------

    def set_down(self, node: str, down: bool) -> None:
        """A down node (crashed) receives nothing until it is set up again."""
        if down:
            self._down.add(node)
        else:
            self._down.discard(node)

    def sleep(self, node: str, ticks: int) -> None:
        """Freeze `node` for `ticks` ticks: it receives nothing meanwhile."""
        until = self.scheduler.now + ticks * TICK
        self._asleep_until[node] = until
        self._trace(f"sleep {node} {ticks}")
        self.scheduler.at(until, lambda: self._wake_if_due(node, until))

    def wake(self, node: str) -> None:
        if self._asleep_until.pop(node, None) is not None:
            self._trace(f"wake {node}")

    def _wake_if_due(self, node: str, until: int) -> None:
        # A later sleep or an early wake supersedes this wake-up.
        if self._asleep_until.get(node) == until:
            self.wake(node)

    def asleep(self, node: str) -> bool:
        return node in self._asleep_until

    def available(self, node: str) -> bool:
        """Neither down nor asleep: the node ticks and receives."""
        return node not in self._down and node not in self._asleep_until

    # -- carrying messages --------------------------------------------------

    def send(self, src: str, dst: str, message: object) -> None:
        self.stats.sent += 1
        if not self.connected(src, dst):
            self._lose(src, dst, message, "cut")
            return
        if self.faults.drop and self.rng.random() < self.faults.drop_rate:
            self._lose(src, dst, message, "drop")
            return
        copies = 1
        if self.faults.duplicate and self.rng.random() < self.faults.dup_rate:
            copies = 2
            self.stats.duplicated += 1
        for _ in range(copies):
            arrival = self._arrival_time(src, dst)
            self._trace(f"send {src}->{dst} @{arrival} {message!r}")
            self.scheduler.at(arrival, lambda: self._arrive(src, dst, message))

    def _arrival_time(self, src: str, dst: str) -> int:
        arrival = self.scheduler.now + self.rng.randint(MIN_DELAY, MAX_DELAY)
        if self.faults.delay and self.rng.random() < self.faults.long_delay_rate:
            arrival += self.rng.randint(1, self.faults.long_delay_ticks * TICK)
        if not self.faults.reorder:
            # FIFO link: never arrive before a message sent earlier on it.
            arrival = max(arrival, self._last_arrival.get((src, dst), 0))
            self._last_arrival[(src, dst)] = arrival
        return arrival

    def _arrive(self, src: str, dst: str, message: object) -> None:
        if not self.connected(src, dst):
            self._lose(src, dst, message, "cut")
        elif not self.available(dst):
            self._lose(src, dst, message, "asleep" if self.asleep(dst) else "down")
        else:
            self.stats.delivered += 1
            self._deliver(src, dst, message)

    def _lose(self, src: str, dst: str, message: object, reason: str) -> None:
        self.stats.dropped += 1
        self._trace(f"lose {src}->{dst} {reason} {type(message).__name__}")


def random_groups(nodes: Sequence[str], rng: random.Random) -> list[list[str]]:
    """Split `nodes` into two or three non-empty groups at random."""
    order = sorted(nodes)
    rng.shuffle(order)
    count = 2 if len(order) < 5 or rng.random() < 0.7 else 3
    cuts = sorted(rng.sample(range(1, len(order)), count - 1))
    bounds = [0, *cuts, len(order)]
    return [order[bounds[i] : bounds[i + 1]] for i in range(count)]
