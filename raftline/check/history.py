"""Recorded client histories (Jepsen's format): JSON Lines events and the operations paired from them.

Rules and invariants:
- One event per line: `{"process": P, "type": "invoke"|"ok"|"fail"|"info",
  "f": F, "value": V, "time": NS}`. Lines come in the order things happened,
  and that order alone is real time, as in Jepsen: an operation precedes
  another when its completion's line comes before the other's invoke.
  `time` (nanoseconds) is for people; it may go backwards (Jepsen's own
  histories do) and is never used to order anything. Blank lines are skipped.
- Each process has at most one outstanding operation: an `invoke` opens it,
  the next `ok`, `fail` or `info` of that process (same `f`) completes it.
- `ok` means it happened and `value` is what the client observed; `fail`
  means it definitely did not happen; `info` means the outcome is unknown:
  the operation may take effect at any time after its invoke, or never, so
  its end is open (`end is None`). An invoke never completed before the
  history ends is an `info` operation too.
- A malformed line is the caller's error: `HistoryError` names its line and
  what is wrong. Pure: no clock, no I/O beyond the streams it is handed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Sequence, TextIO

EVENT_TYPES = ("invoke", "ok", "fail", "info")


class HistoryError(ValueError):
    """A history that is not in the format: a caller error, never a verdict."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.line = line


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """One line of a history.

    Fields:
        process: the client process (thread) that acted.
        type: "invoke", "ok", "fail" or "info".
        f: the operation's name, e.g. "txn", "read", "transfer".
        value: the argument on invoke; the observed result on ok.
        time: when it happened, in nanoseconds.
    """

    process: int
    type: str
    f: str
    value: Any
    time: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Operation:
    """An invoke paired with its completion.

    Fields:
        index: position in the list of operations, in invoke order.
        process: the client process that ran it.
        f: the operation's name.
        invoke_value: the argument it was invoked with.
        result_value: the value its completion carried (None when it has none).
        type: "ok", "fail" or "info" (outcome unknown).
        start: its invoke's position among the history's events (real-time order).
        end: its completion's position; None for an info operation, which may
            take effect at any time after `start`.
        line: the history line of its invoke (0 when not read from a file).
    """

    index: int
    process: int
    f: str
    invoke_value: Any
    result_value: Any
    type: str
    start: int
    end: int | None
    line: int = 0

    def describe(self) -> str:
        """A short human-readable name: `op 12 (process 3, ok txn [...])`."""
        shown = self.result_value if self.type == "ok" else self.invoke_value
        return f"op {self.index} (process {self.process}, {self.type} {self.f} {json.dumps(shown)})"


def malformed(operation: Operation, message: str) -> HistoryError:
    """The error for an operation a model cannot read, naming it and its line."""
    return HistoryError(f"{operation.describe()}: {message}", line=operation.line or None)


def is_scalar(value: Any) -> bool:
    """Whether `value` can be a key or a list element: an int or a string (JSON true and false are not ints)."""
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def txn_micro_ops(operation: Operation, model: str, write: str) -> list[tuple[str, Any, Any]]:
    """The (f, key, value) micro-ops of a transactional model's txn, as
    Elle's: its observed ones when ok, else as invoked; each `["r", key, v]`
    or `[write, key, v]` with an int or string key, matching its invoke.
    Their values are the model's to check."""
    if operation.f != "txn":
        raise malformed(operation, f"a {model} history holds txn operations, not {operation.f!r}")
    invoked = operation.invoke_value
    if not isinstance(invoked, list):
        raise malformed(operation, "a txn's value must be a list of micro-ops")
    chosen = operation.result_value if operation.type == "ok" else invoked
    if not isinstance(chosen, list) or len(chosen) != len(invoked):
        raise malformed(operation, "an ok txn's value must list the same micro-ops as its invoke")
    ops = []
    for position, micro in enumerate(chosen):
        if not (isinstance(micro, list) and len(micro) == 3 and micro[0] in (write, "r") and is_scalar(micro[1])):
            raise malformed(operation, f"micro-op {position} must be [\"{write}\", key, value] or [\"r\", key, value]")
        if invoked[position][:2] != micro[:2]:
            raise malformed(operation, f"micro-op {position} differs from its invoke")
        ops.append(tuple(micro))
    return ops


def parse_event(text: str, *, line: int | None = None) -> Event:
    """One history line as an Event; HistoryError says what is wrong with it."""
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise HistoryError(f"not JSON ({error.msg} at column {error.colno})", line=line) from None
    if not isinstance(raw, dict):
        raise HistoryError("an event must be a JSON object", line=line)
    missing = [name for name in ("process", "type", "f", "value", "time") if name not in raw]
    if missing:
        raise HistoryError(f"missing field(s): {', '.join(missing)}", line=line)
    process, kind, f, when = raw["process"], raw["type"], raw["f"], raw["time"]
    # bool is an int subclass in Python; true/false are not process ids or times.
    if not isinstance(process, int) or isinstance(process, bool):
        raise HistoryError(f"process must be an integer, not {json.dumps(process)}", line=line)
    if kind not in EVENT_TYPES:
        raise HistoryError(f"type must be one of {', '.join(EVENT_TYPES)}, not {json.dumps(kind)}", line=line)
    if not isinstance(f, str) or not f:
        raise HistoryError(f"f must be a non-empty string, not {json.dumps(f)}", line=line)
    if not isinstance(when, int) or isinstance(when, bool) or when < 0:
        raise HistoryError(f"time must be a non-negative integer (ns), not {json.dumps(when)}", line=line)
    return Event(process=process, type=kind, f=f, value=raw["value"], time=when)


def read_numbered(lines: Iterable[str]) -> list[tuple[int, Event]]:
    """(line number, Event) for each non-blank line."""
    return [(number, parse_event(text, line=number)) for number, text in enumerate(lines, start=1) if text.strip()]


def read_history(lines: Iterable[str]) -> list[Event]:
    """The events of a JSON Lines history (a file object or any iterable of lines)."""
    return [event for _, event in read_numbered(lines)]


def format_event(event: Event) -> str:
    """One history line, without its newline."""
    return json.dumps(
        {"process": event.process, "type": event.type, "f": event.f, "value": event.value, "time": event.time}
    )


def write_history(events: Iterable[Event], out: TextIO) -> None:
    """Write events as JSON Lines to a text stream."""
    for event in events:
        out.write(format_event(event) + "\n")


def pair_operations(events: Sequence[Event], lines: Sequence[int] | None = None) -> list[Operation]:
    """Operations in invoke order, each invoke paired with its process's next completion.

    `lines` gives each event's line number for error messages (default: its
    position, counted from 1). Invokes still open at the end become `info`.
    """
    numbers = lines if lines is not None else range(1, len(events) + 1)
    operations: list[Operation | None] = []
    open_by_process: dict[int, tuple[int, Event, int, int]] = {}  # process -> (slot, invoke, line, position)
    for position, (event, number) in enumerate(zip(events, numbers)):
        if event.type == "invoke":
            if event.process in open_by_process:
                _, pending, pending_line, _ = open_by_process[event.process]
                raise HistoryError(
                    f"process {event.process} invokes {event.f} while its {pending.f} from line"
                    f" {pending_line} is still outstanding",
                    line=number,
                )
            open_by_process[event.process] = (len(operations), event, number, position)
            operations.append(None)
            continue
        if event.process not in open_by_process:
            raise HistoryError(
                f"{event.type} for process {event.process}, which has no outstanding operation", line=number
            )
        slot, invoke, invoke_line, invoked_at = open_by_process.pop(event.process)
        if event.f != invoke.f:
            raise HistoryError(
                f"{event.type} {event.f} does not match process {event.process}'s invoke of {invoke.f}"
                f" on line {invoke_line}",
                line=number,
            )
        operations[slot] = Operation(
            index=slot,
            process=event.process,
            f=invoke.f,
            invoke_value=invoke.value,
            result_value=event.value,
            type=event.type,
            start=invoked_at,
            end=None if event.type == "info" else position,
            line=invoke_line,
        )
    for slot, invoke, invoke_line, invoked_at in open_by_process.values():
        operations[slot] = Operation(
            index=slot,
            process=invoke.process,
            f=invoke.f,
            invoke_value=invoke.value,
            result_value=None,
            type="info",
            start=invoked_at,
            end=None,
            line=invoke_line,
        )
    return [operation for operation in operations if operation is not None]


def read_operations(lines: Iterable[str]) -> list[Operation]:
    """Read a JSON Lines history and pair it into operations."""
    numbered = read_numbered(lines)
    return pair_operations([event for _, event in numbered], [number for number, _ in numbered])
