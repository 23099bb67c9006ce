"""Which faults a simulated run injects, each switchable on its own.

Rules:
- A `FaultSwitches` value is plain configuration: the network reads the message
  faults (delay, drop, duplicate, reorder); the chaos driver of the Raft
  harness reads the rest (partition, crash, sleep, snapshot, member).
- Scenario tests call `partition()`, `crash()` and so on directly whatever
  the switches say; the switches only govern what is injected at random.
- Names on the command line are the field names, except `dup` for
  `duplicate` and `member` for membership changes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

FAULT_NAMES = ("delay", "drop", "dup", "reorder", "partition", "crash", "sleep", "snapshot", "member")
"""Command-line names, in the order they are documented."""

_FIELD_OF_NAME = {"dup": "duplicate"}


@dataclass(frozen=True, kw_only=True)
class FaultSwitches:
    """Fault switches and the rates used when a switch is on.

    Fields:
        delay: some messages take long (up to `long_delay_ticks`) to arrive.
        drop: messages are lost with probability `drop_rate`.
        duplicate: messages are delivered twice with probability `dup_rate`.
        reorder: messages on one link may overtake each other; when off each
            link is FIFO.
        partition: the chaos driver splits the network into groups, isolates
            single replicas, and heals.
        crash: the chaos driver crashes replicas (losing volatile state) and
            restarts them from their storage.
        sleep: the chaos driver freezes replicas for a while: they neither
            tick nor receive, and messages to them are lost.
        snapshot: replicas compact their log every `snapshot_entries` applied
            entries (the harness decides the threshold).
        member: the chaos driver adds learners, promotes them and removes
            voters (the leader through a leadership transfer).
        drop_rate, dup_rate, long_delay_rate: per-message probabilities.
        long_delay_ticks: upper bound of a long delay, in ticks.
    """

    delay: bool = False
    drop: bool = False
    duplicate: bool = False
    reorder: bool = False
    partition: bool = False
    crash: bool = False
    sleep: bool = False
    snapshot: bool = False
    member: bool = False
    drop_rate: float = 0.08
    dup_rate: float = 0.05
    long_delay_rate: float = 0.05
    long_delay_ticks: int = 10

    @classmethod
    def none(cls) -> FaultSwitches:
        return cls()

    @classmethod
    def all(cls) -> FaultSwitches:
        return cls.parse("all")

    @classmethod
    def unreliable(cls) -> FaultSwitches:
        """The message faults only: delay, drop, duplicate, reorder."""
        return cls(delay=True, drop=True, duplicate=True, reorder=True)

    @classmethod
    def parse(cls, spec: str) -> FaultSwitches:
        """`all`, `none`, or a comma-separated list of FAULT_NAMES."""
        spec = spec.strip()
        if spec == "none":
            return cls()
        names = FAULT_NAMES if spec == "all" else tuple(n.strip() for n in spec.split(",") if n.strip())
        unknown = sorted(set(names) - set(FAULT_NAMES))
        if unknown:
            raise ValueError(f"unknown fault(s) {', '.join(unknown)}; choose from all, none, {', '.join(FAULT_NAMES)}")
        return cls(**{_FIELD_OF_NAME.get(name, name): True for name in names})

    def with_(self, **switches: bool) -> FaultSwitches:
        return replace(self, **switches)

    def describe(self) -> str:
        on = [name for name in FAULT_NAMES if getattr(self, _FIELD_OF_NAME.get(name, name))]
        return ",".join(on) if on else "none"

