"""What every checker returns: a verdict, and the anomalies behind it."""

from __future__ import annotations

from dataclasses import dataclass

from raftline.check.history import Operation

DEFAULT_LIMIT = 20
"""Violation lines a verdict spells out; the rest are counted on one more line."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CheckResult:
    """A checker's verdict.

    Fields:
        valid: True when the history was checked whole and no violation was found.
        violations: one human-readable line per violation, a cycle first
            (at most the checker's `limit`, then a line counting the rest).
        cycle: txids of one dependency cycle, when one was found.
        anomalies: every anomaly found, uncapped, for the checkers of
            recorded histories (empty for `check_bank`, `check_serializable`).
        undetermined: why part of the history could not be decided (a search
            limit hit, and how to raise it); no anomaly found and this set
            means neither valid nor invalid.
        checked: how many operations were judged (0: nothing was checked).
    """

    valid: bool
    violations: list[str]
    cycle: tuple[str, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()
    undetermined: tuple[str, ...] = ()
    checked: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class Anomaly:
    """One thing wrong with a recorded history.

    Fields:
        name: its class, e.g. "G0", "G1a", "G-single", "incompatible-order",
            "wrong-total", "nonlinearizable".
        detail: one human-readable line: the cycle, the elements or the values.
        operations: the operations involved, in the order `detail` names them.
    """

    name: str
    detail: str
    operations: tuple[Operation, ...] = ()

    def line(self) -> str:
        return f"{self.name}: {self.detail}"



class Violations:
    """Collects violation lines, keeping the first `limit` and counting the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lines: list[str] = []
        self.dropped = 0

    def add(self, line: str) -> None:
        if len(self.lines) < self.limit:
            self.lines.append(line)
        else:
            self.dropped += 1

    def result(self, *, headline: str = "", cycle: tuple[str, ...] = ()) -> CheckResult:
        lines = ([headline] if headline else []) + self.lines
        if self.dropped:
            lines.append(f"... and {self.dropped} more")
        return CheckResult(valid=not lines, violations=lines, cycle=cycle)


def verdict(anomalies: list[Anomaly], limit: int, *, checked: int, undetermined: list[str] = ()) -> CheckResult:
    """The verdict on a recorded history of `checked` operations: its anomalies,
    the first `limit` spelled out; valid only when nothing was left undecided."""
    found = Violations(limit)
    for anomaly in anomalies:
        found.add(anomaly.line())
    result = found.result()
    return CheckResult(valid=result.valid and not undetermined, violations=result.violations,
                       anomalies=tuple(anomalies), undetermined=tuple(undetermined), checked=checked)
