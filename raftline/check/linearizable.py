"""The register linearizability checker.

Rules and invariants:
- Each key's register is checked on its own (P-compositionality, Herlihy and
  Wing), by the Wing-Gong search with Lowe's memoization of (linearized set,
  state).
- An `info` operation may take effect at any point after its invoke, or
  never; a `fail` one never did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from raftline.check.history import Operation, is_scalar, malformed
from raftline.check.result import DEFAULT_LIMIT, Anomaly, CheckResult, verdict

REGISTER_FUNCTIONS = ("read", "write", "cas")


def _frozen(value: Any) -> Any:
    """A JSON value as a hashable one, so register states can be memoized."""
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    if isinstance(value, dict):
        return tuple(sorted((key, _frozen(item)) for key, item in value.items()))
    return value


def _register_key(operation: Operation) -> tuple[Any, Any, Any]:
    """(key, argument, result) of a register operation. A value that is an
    object with a "key" names its register and carries the payload in
    "value"; any other value is the payload of the one register, key None."""
    if operation.f not in REGISTER_FUNCTIONS:
        raise malformed(operation, f"a register history holds read, write and cas operations, not {operation.f!r}")
    invoked, result = operation.invoke_value, operation.result_value
    key = None
    if isinstance(invoked, dict) and "key" in invoked:
        key = invoked["key"]
        if not is_scalar(key):
            raise malformed(operation, "a register key must be an int or a string")
        invoked = invoked.get("value")
        if isinstance(result, dict) and "key" in result:
            result = result.get("value")
    if operation.f == "cas" and not (isinstance(invoked, list) and len(invoked) == 2):
        raise malformed(operation, "a cas value must be [old, new]")
    return key, invoked, result


@dataclass(frozen=True, kw_only=True, slots=True)
class _RegisterOp:
    """A register operation ready for the search.

    Fields:
        operation: the recorded operation.
        f: "read", "write" or "cas".
        argument: the written value, [old, new], or for a read the value it returned (frozen).
        required: True when it must be linearized (ok); False when it may never have happened (info).
    """

    operation: Operation
    f: str
    argument: Any
    required: bool


def _register_step(state: Any, op: _RegisterOp) -> tuple[bool, Any]:
    """Whether op can take effect on the register holding `state`, and the state after."""
    if op.f == "read":
        return state == op.argument, state
    if op.f == "write":
        return True, op.argument
    old, new = op.argument
    return state == old, new


class _Entry:
    """A call or return in the doubly linked list the search lifts entries out of."""

    __slots__ = ("op", "is_call", "match", "prev", "next")

    def __init__(self, op: int, is_call: bool) -> None:
        self.op = op
        self.is_call = is_call
        self.match: _Entry | None = None
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


# States one key's search may explore before it gives up. The search is
# exponential in the worst case: an info operation stays pending to the end,
# so each one can double what a failing search must rule out.
MAX_SEARCH_STATES = 500_000


def check_linearizable(
    operations: Iterable[Operation],
    model: str = "register",
    *,
    limit: int = DEFAULT_LIMIT,
    max_states: int = MAX_SEARCH_STATES,
) -> CheckResult:
    """Whether each key's register history is linearizable (initial value null).

    read returns the value; write sets it; cas [old, new] sets new only when
    the value is old (an ok cas did; a failed one did nothing). Each key is
    searched on its own; every key that cannot be linearized is reported
    with the operation the search got stuck at and what preceded it. A key
    whose search outgrows `max_states` is left undetermined (the result says
    which and how to raise the limit): not a pass, and not a violation.
    """
    if model != "register":
        raise ValueError(f"unknown model {model!r}: only 'register' is supported")
    by_key: dict[Any, list[_RegisterOp]] = {}
    for operation in operations:
        key, argument, result = _register_key(operation)
        if operation.type == "fail" or (operation.type == "info" and operation.f == "read"):
            continue  # it did nothing, or nothing can be learned from it
        if operation.f == "read":
            argument = result
        by_key.setdefault(key, []).append(
            _RegisterOp(operation=operation, f=operation.f, argument=_frozen(argument), required=operation.type == "ok")
        )
    anomalies, undetermined = [], []
    checked = 0
    for key, ops in by_key.items():
        checked += len(ops)
        try:
            anomaly = _linearize(key, ops, max_states)
        except _GaveUp:
            undetermined.append(f"key {key!r}: the search gave up after exploring {max_states} states of"
                                f" {len(ops)} operations (raise the limit with --max-states)")
            continue
        if anomaly:
            anomalies.append(anomaly)
    return verdict(anomalies, limit, checked=checked, undetermined=undetermined)


class _GaveUp(Exception):
    """One key's search outgrew its state limit."""


def _linearize(key: Any, ops: list[_RegisterOp], max_states: int) -> Anomaly | None:
    """Wing and Gong's search with Lowe's memoization, over one key's operations.

    Entries (calls and returns) sit in a linked list in history order; an
    info operation returns after everything. The search linearizes the first call
    it can, lifting it and its return out of the list; meeting a return means
    that operation was not linearized in time, so it backtracks. A
    (linearized set, state) pair already explored is never explored again.
    """
    timed = []
    for number, op in enumerate(ops):
        end = op.operation.end
        timed.append((op.operation.start, 0, number, True))
        timed.append((end, 1, number, False) if end is not None else (float("inf"), 1, number, False))
    timed.sort()
    head = _Entry(-1, False)
    calls: dict[int, _Entry] = {}
    last = head
    for _, _, number, is_call in timed:
        entry = _Entry(number, is_call)
        if is_call:
            calls[number] = entry
        else:
            calls[number].match = entry
        entry.prev, last.next = last, entry
        last = entry

    def lift(call: _Entry) -> None:
        for entry in (call, call.match):
            entry.prev.next = entry.next
            if entry.next:
                entry.next.prev = entry.prev

    def unlift(call: _Entry) -> None:
        for entry in (call.match, call):
            entry.prev.next = entry
            if entry.next:
                entry.next.prev = entry

    remaining = sum(op.required for op in ops)
    state: Any = None
    linearized = 0
    explored: set[tuple[int, Any]] = set()
    stack: list[tuple[_Entry, Any]] = []  # (lifted call, state before it)
    deepest: tuple[int, int, list[int], Any] = (-1, -1, [], None)  # (depth, stuck op, last linearized, state)
    entry = head.next
    while remaining:
        if entry.is_call:
            op = ops[entry.op]
            possible, after = _register_step(state, op)
            bit = 1 << entry.op
            if possible and (linearized | bit, after) not in explored:
                if len(explored) >= max_states:
                    raise _GaveUp
                explored.add((linearized | bit, after))
                stack.append((entry, state))
                state, linearized = after, linearized | bit
                remaining -= op.required
                lift(entry)
                entry = head.next
            else:
                entry = entry.next
            continue
        if len(stack) > deepest[0]:
            deepest = (len(stack), entry.op, [call.op for call, _ in stack[-3:]], state)
        if not stack:
            break
        call, state = stack.pop()
        linearized &= ~(1 << call.op)
        remaining += ops[call.op].required
        unlift(call)
        entry = call.next
    if not remaining:
        return None
    _, stuck, before, held = deepest
    witness = [ops[number].operation for number in before] + [ops[stuck].operation]
    shown = "null" if held is None else json.dumps(held)
    after_text = f"after {', '.join(op.describe() for op in witness[:-1])}" if before else "at the start"
    return Anomaly(
        name="nonlinearizable",
        detail=f"key {key!r}: {witness[-1].describe()} cannot take effect {after_text}, with the register at {shown}",
        operations=tuple(witness),
    )
