"""Checkers that judge recorded histories: pure functions, no I/O, no clock.

Rules and invariants:
- Input is what clients observed; a checker never trusts the store's own
  bookkeeping. Output is a CheckResult: a valid flag and human-readable
  violations naming the transactions involved.
- `check_serializable` builds the conflict graph of the committed
  transactions (Adya's direct serialization graph over versions):
    wr: the writer of the version T read -> T;
    ww: each version's writer -> the writer of the next version of that key,
        versions ordered by their writers' stamps;
    rw: T, which read version v -> the writer of the version after v.
  The history is serializable in timestamp order iff the graph has no cycle
  and every edge goes from a lower stamp to a higher one. A read of a
  version no committed transaction wrote (an aborted or invented write) is a
  violation too; the zero stamp, "never written", is always readable.
- Near-linear, for histories of 100,000 operations: one pass to index
  versions (sorting each key's versions), one pass to build edges, one
  iterative depth-first search for a cycle.
- `check_list_append` judges a recorded list-append history (clerk/history.py)
  the way Elle does (Kingsbury and Alvaro, VLDB 2020): each key's version
  order is its longest read, which every other read must be a prefix of;
  ww/wr/rw edges follow from it; each strongly connected component yields
  one short cycle named by the weakest edges that close it (G0: ww only,
  G1c: ww+wr, G-single: exactly one rw, G2: more). Non-cyclic anomalies
  (aborted and intermediate reads, duplicates, incompatible orders, internal
  inconsistency, garbage reads) need no graph. Appended values are unique
  per key, as Elle requires of its generator.
- `check_linearizable` checks each key's register on its own
  (P-compositionality, Herlihy and Wing), by the Wing-Gong search with
  Lowe's memoization of (linearized set, state). An `info` operation may
  take effect at any point after its invoke, or never; a `fail` one never did.
- Every graph walk is iterative: histories are far deeper than Python's stack.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Collection, Iterable, Mapping, Sequence

from actors.messages import ZERO_STAMP, Stamp
from clerk.history import HistoryError, Operation


@dataclass(frozen=True, kw_only=True, slots=True)
class CheckResult:
    """A checker's verdict.

    Fields:
        valid: True when no violation was found.
        violations: one human-readable line per violation, a cycle first
            (at most the checker's `limit`, then a line counting the rest).
        cycle: txids of one dependency cycle, when one was found.
        anomalies: every anomaly found, uncapped, for the checkers of
            recorded histories (empty for `check_bank`, `check_serializable`).
    """

    valid: bool
    violations: list[str]
    cycle: tuple[str, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()


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


@dataclass(frozen=True, kw_only=True, slots=True)
class CommittedTxn:
    """A committed transaction as its client saw it.

    Fields:
        txid: its id, unique in the history.
        stamp: its `(ts, txid)` stamp; the version of every key it wrote.
        reads: key -> version read (ZERO_STAMP for a missing key), as
            returned by the store, not the transaction's own buffered writes.
        writes: keys it wrote or deleted.
    """

    txid: str
    stamp: Stamp
    reads: Mapping[str, Stamp]
    writes: Collection[str]


class _Violations:
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


def check_bank(reads: Iterable[Mapping[str, int | None]], total: int, *, limit: int = 20) -> CheckResult:
    """Every whole-bank read (account -> balance, None when missing) sums to
    `total` and shows no negative or missing balance."""
    found = _Violations(limit)
    for number, balances in enumerate(reads):
        missing = sorted(account for account, balance in balances.items() if balance is None)
        if missing:
            found.add(f"read {number}: accounts missing: {', '.join(missing)}")
        negative = sorted(
            (account, balance) for account, balance in balances.items() if balance is not None and balance < 0
        )
        for account, balance in negative:
            found.add(f"read {number}: account {account} has a negative balance {balance}")
        seen = sum(balance for balance in balances.values() if balance is not None)
        if seen != total:
            found.add(f"read {number}: balances sum to {seen}, expected {total}")
    return found.result()


def check_serializable(committed: Iterable[CommittedTxn], *, limit: int = 20) -> CheckResult:
    """Whether the committed transactions are conflict-serializable in stamp order."""
    found = _Violations(limit)
    txns: list[CommittedTxn] = []
    by_stamp: dict[Stamp, int] = {}
    seen_txids: set[str] = set()
    for txn in committed:
        if txn.txid in seen_txids or txn.stamp in by_stamp:
            found.add(f"{txn.txid} appears twice (txid or stamp {txn.stamp} repeated); judged once")
            continue
        seen_txids.add(txn.txid)
        by_stamp[txn.stamp] = len(txns)
        txns.append(txn)

    # Each key's versions in stamp order, and where each version sits.
    versions: dict[str, list[Stamp]] = {}
    for txn in txns:
        for key in txn.writes:
            versions.setdefault(key, []).append(txn.stamp)
    position: dict[str, dict[Stamp, int]] = {}
    for key, stamps in versions.items():
        stamps.sort()
        position[key] = {stamp: index for index, stamp in enumerate(stamps)}

    edges: list[list[tuple[int, str]]] = [[] for _ in txns]

    def add_edge(source: int, target: int, label: str) -> None:
        if source == target:
            return
        edges[source].append((target, label))
        if txns[source].stamp > txns[target].stamp:
            found.add(
                f"edge against timestamp order: {txns[source].txid} {txns[source].stamp}"
                f" -{label}-> {txns[target].txid} {txns[target].stamp}"
            )

    for key, stamps in versions.items():
        for earlier, later in zip(stamps, stamps[1:]):
            add_edge(by_stamp[earlier], by_stamp[later], f"ww {key!r}")
    for reader, txn in enumerate(txns):
        for key, version in txn.reads.items():
            stamps = versions.get(key, [])
            if version == ZERO_STAMP:
                following = 0
            elif version in position.get(key, {}):
                add_edge(by_stamp[version], reader, f"wr {key!r}")
                following = position[key][version] + 1
            else:
                found.add(f"{txn.txid} read {key!r} at version {version}, which no committed transaction wrote")
                continue
            if following < len(stamps):
                add_edge(reader, by_stamp[stamps[following]], f"rw {key!r}")

    cycle = _find_cycle(edges)
    if not cycle:
        return found.result()
    return found.result(
        headline="cycle: " + " ".join(_cycle_text(txns, cycle)),
        cycle=tuple(txns[node].txid for node, _ in cycle),
    )


def _cycle_text(txns: list[CommittedTxn], cycle: list[tuple[int, str]]) -> list[str]:
    parts = [txns[cycle[0][0]].txid]
    for (_, label), (node, _) in zip(cycle, cycle[1:] + cycle[:1]):
        parts.append(f"-{label}-> {txns[node].txid}")
    return parts


def _find_cycle(edges: list[list[tuple[int, str]]]) -> list[tuple[int, str]]:
    """One cycle as (node, label of the edge leaving it) pairs, or [] when acyclic.

    Iterative depth-first search: meeting a node that is still on the current
    path closes a cycle made of the path from that node onwards.
    """
    unvisited, on_path, done = 0, 1, 2
    color = [unvisited] * len(edges)
    for root in range(len(edges)):
        if color[root] != unvisited:
            continue
        path: list[tuple[int, str]] = []  # (node, label of the edge taken from it)
        where: dict[int, int] = {}  # node on the path -> its position in `path`
        frames = [(root, iter(edges[root]))]
        color[root] = on_path
        where[root] = 0
        path.append((root, ""))
        while frames:
            node, successors = frames[-1]
            step = next(successors, None)
            if step is None:
                frames.pop()
                path.pop()
                del where[node]
                color[node] = done
                continue
            target, label = step
            path[-1] = (node, label)
            if color[target] == on_path:
                return path[where[target]:]
            if color[target] == unvisited:
                color[target] = on_path
                where[target] = len(path)
                path.append((target, ""))
                frames.append((target, iter(edges[target])))
    return []


def _verdict(anomalies: list[Anomaly], limit: int) -> CheckResult:
    found = _Violations(limit)
    for anomaly in anomalies:
        found.add(anomaly.line())
    result = found.result()
    return CheckResult(valid=result.valid, violations=result.violations, anomalies=tuple(anomalies))


def _bad(operation: Operation, message: str) -> HistoryError:
    return HistoryError(f"{operation.describe()}: {message}", line=operation.line or None)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


# -- list-append ------------------------------------------------------------------------

# Dependency kinds, as bits so that one edge can carry several.
WW, WR, RW, REALTIME, PROCESS = 1, 2, 4, 8, 16
DATA = WW | WR | RW
ORDER = REALTIME | PROCESS
_KIND_NAMES = {WW: "ww", WR: "wr", RW: "rw", REALTIME: "realtime", PROCESS: "process"}
# How many rw edges of one component are tried as the single rw edge of a
# G-single cycle before settling for G2: each try is a breadth-first search.
G_SINGLE_TRIES = 64


def _micro_ops(operation: Operation) -> list[tuple[str, Any, Any]]:
    """The (f, key, value) micro-ops of a txn: its observed ones when ok, else as invoked."""
    if operation.f != "txn":
        raise _bad(operation, f"a list-append history holds txn operations, not {operation.f!r}")
    invoked = operation.invoke_value
    if not isinstance(invoked, list):
        raise _bad(operation, "a txn's value must be a list of micro-ops")
    chosen = invoked
    if operation.type == "ok":
        chosen = operation.result_value
        if not isinstance(chosen, list) or len(chosen) != len(invoked):
            raise _bad(operation, "an ok txn's value must list the same micro-ops as its invoke")
    ops = []
    for position, micro in enumerate(chosen):
        if not (isinstance(micro, list) and len(micro) == 3 and micro[0] in ("append", "r") and _is_scalar(micro[1])):
            raise _bad(operation, f"micro-op {position} must be [\"append\", key, value] or [\"r\", key, list]")
        f, key, value = micro
        if invoked[position][:2] != micro[:2]:
            raise _bad(operation, f"micro-op {position} differs from its invoke")
        if f == "append" and not _is_scalar(value):
            raise _bad(operation, f"micro-op {position} appends {json.dumps(value)}, which is not an int or string")
        if f == "r" and operation.type == "ok":
            # Elle reads a nil list as empty: the key was never appended to.
            value = [] if value is None else value
            if not isinstance(value, list) or not all(_is_scalar(element) for element in value):
                raise _bad(operation, f"micro-op {position} must read a list of ints or strings")
        ops.append((f, key, value))
    return ops


def _internal_anomaly(operation: Operation, ops: list[tuple[str, Any, Any]]) -> Anomaly | None:
    """A read that disagrees with what the txn itself read or appended before."""
    known: dict[Any, list] = {}  # key -> the whole list, once the txn has read it
    appended: dict[Any, list] = {}  # key -> the txn's own appends, before any read of it
    for f, key, value in ops:
        if f == "append":
            (known[key] if key in known else appended.setdefault(key, [])).append(value)
            continue
        if key in known:
            expected = known[key]
            if value != expected:
                return Anomaly(
                    name="internal",
                    detail=f"{operation.describe()} read key {key!r} as {value} after it had seen {expected}",
                    operations=(operation,),
                )
        elif key in appended:
            own = appended.pop(key)
            if value[len(value) - len(own):] != own:
                return Anomaly(
                    name="internal",
                    detail=f"{operation.describe()} read key {key!r} as {value}, missing its own appends {own}",
                    operations=(operation,),
                )
        known[key] = list(value)
    return None


class _AppendHistory:
    """A list-append history indexed for the checks: writers, reads, version orders."""

    def __init__(self, operations: Sequence[Operation]) -> None:
        self.ops = list(operations)
        self.micro = [_micro_ops(operation) for operation in self.ops]
        self.writer: dict[tuple[Any, Any], int] = {}  # (key, element) -> position of its appender
        self.last_append: dict[tuple[int, Any], Any] = {}  # (position, key) -> its final append to key
        for position, ops in enumerate(self.micro):
            for f, key, value in ops:
                if f != "append":
                    continue
                if (key, value) in self.writer:
                    other = self.ops[self.writer[key, value]]
                    raise _bad(
                        self.ops[position],
                        f"appends {value!r} to key {key!r} again, as {other.describe()} did;"
                        " list-append needs unique appended values per key",
                    )
                self.writer[key, value] = position
                self.last_append[position, key] = value
        # (reader position, key, list read) for every read of an ok txn.
        self.reads = [
            (position, key, value)
            for position, ops in enumerate(self.micro)
            if self.ops[position].type == "ok"
            for f, key, value in ops
            if f == "r"
        ]


def check_list_append(
    operations: Iterable[Operation], *, realtime: bool = False, process_order: bool = False, limit: int = 20
) -> CheckResult:
    """Whether a list-append history is serializable, naming each anomaly found.

    `realtime` adds an edge from each operation to every one invoked after it
    completed (strict serializability); `process_order` one from each
    operation to its process's next (a per-client session order). Cycles
    that need those edges get a "-realtime" or "-process" suffix.
    """
    history = _AppendHistory(list(operations))
    anomalies: list[Anomaly] = []
    for position, operation in enumerate(history.ops):
        if operation.type == "ok":
            internal = _internal_anomaly(operation, history.micro[position])
            if internal:
                anomalies.append(internal)
    anomalies += _read_anomalies(history)
    orders, order_anomalies = _version_orders(history)
    anomalies += order_anomalies
    graph = _dependency_graph(history, orders, realtime=realtime, process_order=process_order)
    anomalies += _cycle_anomalies(history, graph)
    return _verdict(anomalies, limit)


def _read_anomalies(history: _AppendHistory) -> list[Anomaly]:
    """Duplicates, garbage, aborted (G1a) and intermediate (G1b) reads."""
    ops, writer = history.ops, history.writer
    found = []
    for reader, key, read in history.reads:
        operation = ops[reader]
        if len(set(read)) != len(read):
            twice = sorted((element for element, times in Counter(read).items() if times > 1), key=str)
            found.append(
                Anomaly(
                    name="duplicate-elements",
                    detail=f"{operation.describe()} read key {key!r} with {twice} more than once: {read}",
                    operations=(operation,),
                )
            )
        garbage = [element for element in read if (key, element) not in writer]
        if garbage:
            found.append(
                Anomaly(
                    name="garbage-read",
                    detail=f"{operation.describe()} read {garbage} in key {key!r}, which no operation appended",
                    operations=(operation,),
                )
            )
        aborted = [writer[key, element] for element in read if (key, element) in writer]
        aborted = sorted({source for source in aborted if ops[source].type == "fail" and source != reader})
        if aborted:
            found.append(
                Anomaly(
                    name="G1a",
                    detail=f"{operation.describe()} read key {key!r} = {read}, which holds elements appended by"
                    f" failed {', '.join(ops[source].describe() for source in aborted)}",
                    operations=(operation, *(ops[source] for source in aborted)),
                )
            )
        if read and (key, read[-1]) in writer:
            source = writer[key, read[-1]]
            final = history.last_append[source, key]
            if source != reader and ops[source].type != "fail" and final != read[-1]:
                found.append(
                    Anomaly(
                        name="G1b",
                        detail=f"{operation.describe()} read key {key!r} = {read}, ending in {read[-1]!r}, an"
                        f" intermediate append of {ops[source].describe()}, whose final append was {final!r}",
                        operations=(operation, ops[source]),
                    )
                )
    return found


def _version_orders(history: _AppendHistory) -> tuple[dict[Any, list], list[Anomaly]]:
    """Each key's version order (its longest read), and keys whose reads disagree.

    A read that is not a prefix of the longest one is left out of the
    dependency graph: what it observed fits no single order.
    """
    longest: dict[Any, tuple[int, list]] = {}
    for reader, key, read in history.reads:
        if key not in longest or len(read) > len(longest[key][1]):
            longest[key] = (reader, read)
    found = []
    reported: set = set()
    for reader, key, read in history.reads:
        source, order = longest[key]
        if key in reported or order[: len(read)] == read:
            continue
        reported.add(key)
        found.append(
            Anomaly(
                name="incompatible-order",
                detail=f"key {key!r}: {history.ops[reader].describe()} read {read}, which is not a prefix of"
                f" {order} read by {history.ops[source].describe()}",
                operations=(history.ops[reader], history.ops[source]),
            )
        )
    return {key: order for key, (_, order) in longest.items()}, found


class _Graph:
    """Edges between operation positions, each with a bitmask of dependency kinds."""

    def __init__(self, size: int) -> None:
        self.out: list[dict[int, int]] = [{} for _ in range(size)]
        self.why: dict[tuple[int, int, int], Any] = {}  # (source, target, kind) -> the key behind it

    def add(self, source: int, target: int, kind: int, key: Any = None) -> None:
        if source == target:
            return
        successors = self.out[source]
        if not successors.get(target, 0) & kind:
            successors[target] = successors.get(target, 0) | kind
            self.why[source, target, kind] = key


def _dependency_graph(
    history: _AppendHistory, orders: dict[Any, list], *, realtime: bool, process_order: bool
) -> _Graph:
    ops, writer = history.ops, history.writer
    graph = _Graph(len(ops))

    def committed_writer(key: Any, element: Any) -> int | None:
        # Failed writers are G1a's business; they are no node of the graph.
        source = writer.get((key, element))
        return None if source is None or ops[source].type == "fail" else source

    for key, order in orders.items():
        previous = None
        for element in order:
            current = committed_writer(key, element)
            if previous is not None and current is not None:
                graph.add(previous, current, WW, key)
            previous = current
    for reader, key, read in history.reads:
        order = orders[key]
        if order[: len(read)] != read:
            continue
        if read:
            source = committed_writer(key, read[-1])
            if source is not None:
                graph.add(source, reader, WR, key)
        if len(read) < len(order):
            following = committed_writer(key, order[len(read)])
            if following is not None:
                graph.add(reader, following, RW, key)
    if realtime:
        _add_realtime_edges(ops, graph)
    if process_order:
        last_ok: dict[int, int] = {}
        for position, operation in enumerate(ops):
            if operation.type == "fail":
                continue
            if operation.process in last_ok:
                graph.add(last_ok[operation.process], position, PROCESS)
            if operation.type == "ok":
                last_ok[operation.process] = position
    return graph


def _add_realtime_edges(ops: list[Operation], graph: _Graph) -> None:
    """An edge from A to B whenever A completed before B was invoked, up to transitivity.

    Sweeping invokes and completions in time order, `frontier` holds the
    completed operations no later-completed one is known to follow; an invoke
    links from each of them, and a completion retires the ones its own invoke
    linked from, since they now reach what follows through it. Its size stays
    near the number of concurrent operations. Equal times count as concurrent.
    """
    boundaries = []
    for position, operation in enumerate(ops):
        if operation.type == "fail":
            continue
        boundaries.append((operation.start, 0, position))
        if operation.end is not None:
            boundaries.append((operation.end, 1, position))
    boundaries.sort()
    frontier: set[int] = set()
    linked_from: dict[int, list[int]] = {}
    for _, is_completion, position in boundaries:
        if is_completion:
            frontier.difference_update(linked_from.pop(position, ()))
            frontier.add(position)
        else:
            linked_from[position] = list(frontier)
            for source in frontier:
                graph.add(source, position, REALTIME)


def _components(nodes: Iterable[int], out: list[dict[int, int]], mask: int, inside: set[int] | None) -> list[list[int]]:
    """Tarjan's strongly connected components with more than one node, over
    edges carrying a kind in `mask` and (when given) staying `inside` a node set.
    Iterative, with an explicit stack of (node, successor iterator)."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    found = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        frames = [(root, iter(out[root].items()))]
        while frames:
            node, successors = frames[-1]
            descended = False
            for target, kinds in successors:
                if not kinds & mask or (inside is not None and target not in inside):
                    continue
                if target not in index:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    frames.append((target, iter(out[target].items())))
                    descended = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            if descended:
                continue
            frames.pop()
            if frames:
                parent = frames[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def _shortest_path(
    out: list[dict[int, int]], start: int, goal: int, mask: int, inside: set[int]
) -> list[tuple[int, int]] | None:
    """Breadth-first: the fewest-edge path from start to goal (a cycle when they
    are the same node) over edges of kinds in `mask` staying `inside`, as
    (node, kind of the edge taken from it) pairs ending before goal; None when
    there is none. Each edge is named by its weakest kind: ww, wr, rw, order."""
    parent: dict[int, tuple[int, int] | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target, kinds in out[node].items():
            kind = kinds & mask
            if not kind or target not in inside:
                continue
            taken = kind & -kind
            if target == goal:
                path = [(node, taken)]
                while (step := parent[node]) is not None:
                    node, taken = step
                    path.append(step)
                return path[::-1]
            if target not in parent:
                parent[target] = (node, taken)
                queue.append(target)
    return None


def _cycle_with(out: list[dict[int, int]], component: set[int], mask: int) -> list[tuple[int, int]] | None:
    """A short cycle inside `component` using only edges of kinds in `mask`."""
    inner = _components(sorted(component), out, mask, component)
    if not inner:
        return None
    start = min(inner[0])
    return _shortest_path(out, start, start, mask, set(inner[0]))


def _single_rw_cycle(out: list[dict[int, int]], component: set[int], others: int) -> list[tuple[int, int]] | None:
    """A cycle with exactly one rw edge: an rw edge A -> B and a path back from
    B to A over ww, wr (and the `others` kinds) edges."""
    tries = 0
    for source in sorted(component):
        for target, kinds in out[source].items():
            if target not in component or not kinds & RW or kinds & (WW | WR | others):
                continue
            back = _shortest_path(out, target, source, WW | WR | others, component)
            if back is not None:
                return [(source, RW)] + back
            tries += 1
            if tries >= G_SINGLE_TRIES:
                return None
    return None


def _find_named_cycle(out: list[dict[int, int]], component: set[int]) -> list[tuple[int, int]] | None:
    """The cycle of the component with the weakest edges: data edges before
    order edges, then ww alone, ww+wr, a single rw, any rw."""
    for others in (0, ORDER):
        cycle = (
            _cycle_with(out, component, WW | others)
            or _cycle_with(out, component, WW | WR | others)
            or _single_rw_cycle(out, component, others)
            or _cycle_with(out, component, DATA | others)
        )
        if cycle:
            return cycle
    return None


def _cycle_name(cycle: list[tuple[int, int]]) -> str:
    kinds = [kind for _, kind in cycle]
    rw = kinds.count(RW)
    name = "G2" if rw > 1 else "G-single" if rw == 1 else "G1c" if WR in kinds else "G0"
    if REALTIME in kinds:
        return name + "-realtime"
    return name + "-process" if PROCESS in kinds else name


def _cycle_anomalies(history: _AppendHistory, graph: _Graph) -> list[Anomaly]:
    """One short cycle per strongly connected component, named by its weakest closing edges."""
    found = []
    for members in _components(range(len(graph.out)), graph.out, DATA | ORDER, None):
        cycle = _find_named_cycle(graph.out, set(members))
        if cycle:
            found.append(_cycle_anomaly(history, graph, _cycle_name(cycle), cycle))
    return found


def _cycle_anomaly(history: _AppendHistory, graph: _Graph, name: str, cycle: list[tuple[int, int]]) -> Anomaly:
    ops = history.ops
    parts = [ops[cycle[0][0]].describe()]
    for (node, kind), (following, _) in zip(cycle, cycle[1:] + cycle[:1]):
        key = graph.why.get((node, following, kind))
        label = _KIND_NAMES[kind] + ("" if key is None else f" {key!r}")
        parts.append(f"-{label}-> {ops[following].describe()}")
    return Anomaly(name=name, detail="cycle " + " ".join(parts), operations=tuple(ops[node] for node, _ in cycle))


# -- bank ---------------------------------------------------------------------------------


def check_bank_history(
    operations: Iterable[Operation], total: int, accounts: int | Collection[str], *, limit: int = 20
) -> CheckResult:
    """Every ok read of a bank history shows every account, no negative
    balance and balances summing to `total`.

    `accounts` is the account names, or their count N for names "0".."N-1"
    (JSON object keys are strings). Transfers are checked for shape only:
    what they did shows in the reads.
    """
    names = {str(number) for number in range(accounts)} if isinstance(accounts, int) else set(accounts)
    anomalies = []
    for operation in operations:
        if operation.f == "transfer":
            value = operation.invoke_value
            if not (isinstance(value, dict) and {"from", "to", "amount"} <= value.keys()):
                raise _bad(operation, 'a transfer\'s value must be {"from": A, "to": B, "amount": N}')
            continue
        if operation.f != "read":
            raise _bad(operation, f"a bank history holds transfer and read operations, not {operation.f!r}")
        if operation.type != "ok":
            continue
        balances = operation.result_value
        if not isinstance(balances, dict) or not all(
            balance is None or (isinstance(balance, int) and not isinstance(balance, bool))
            for balance in balances.values()
        ):
            raise _bad(operation, "an ok read's value must map each account to an integer balance (or null)")
        missing = sorted(names - {account for account, balance in balances.items() if balance is not None})
        if missing:
            anomalies.append(
                Anomaly(name="missing-account", detail=f"{operation.describe()} lacks {missing}", operations=(operation,))
            )
        unexpected = sorted(balances.keys() - names)
        if unexpected:
            anomalies.append(
                Anomaly(
                    name="unexpected-account",
                    detail=f"{operation.describe()} shows accounts {unexpected} the bank does not have",
                    operations=(operation,),
                )
            )
        negative = {account: balance for account, balance in balances.items() if balance is not None and balance < 0}
        if negative:
            anomalies.append(
                Anomaly(
                    name="negative-balance",
                    detail=f"{operation.describe()} shows negative balances {negative}",
                    operations=(operation,),
                )
            )
        seen = sum(balance for balance in balances.values() if balance is not None)
        if seen != total:
            anomalies.append(
                Anomaly(
                    name="wrong-total",
                    detail=f"{operation.describe()} sums to {seen}, expected {total}",
                    operations=(operation,),
                )
            )
    return _verdict(anomalies, limit)


# -- linearizability ------------------------------------------------------------------------

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
        raise _bad(operation, f"a register history holds read, write and cas operations, not {operation.f!r}")
    invoked, result = operation.invoke_value, operation.result_value
    key = None
    if isinstance(invoked, dict) and "key" in invoked:
        key = invoked["key"]
        if not _is_scalar(key):
            raise _bad(operation, "a register key must be an int or a string")
        invoked = invoked.get("value")
        if isinstance(result, dict) and "key" in result:
            result = result.get("value")
    if operation.f == "cas" and not (isinstance(invoked, list) and len(invoked) == 2):
        raise _bad(operation, "a cas value must be [old, new]")
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
    limit: int = 20,
    max_states: int = MAX_SEARCH_STATES,
) -> CheckResult:
    """Whether each key's register history is linearizable (initial value null).

    read returns the value; write sets it; cas [old, new] sets new only when
    the value is old (an ok cas did; a failed one did nothing). Each key is
    searched on its own; every key that cannot be linearized is reported
    with the operation the search got stuck at and what preceded it. A key
    whose search outgrows `max_states` is reported "undetermined": the
    checker could not decide, which is not a pass.
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
    anomalies = []
    for key, ops in by_key.items():
        anomaly = _linearize(key, ops, max_states)
        if anomaly:
            anomalies.append(anomaly)
    return _verdict(anomalies, limit)


def _linearize(key: Any, ops: list[_RegisterOp], max_states: int) -> Anomaly | None:
    """Wing and Gong's search with Lowe's memoization, over one key's operations.

    Entries (calls and returns) sit in a linked list in time order, calls
    first at equal times (touching operations count as concurrent); an info
    operation returns after everything. The search linearizes the first call
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
                    return Anomaly(
                        name="undetermined",
                        detail=f"key {key!r}: gave up after exploring {max_states} states of {len(ops)} operations",
                        operations=(),
                    )
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
