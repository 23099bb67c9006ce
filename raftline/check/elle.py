"""The list-append checker, Elle-style (Kingsbury and Alvaro, VLDB 2020).

Rules and invariants:
- Input is a recorded list-append history (raftline/check/history.py): what
  clients observed; the checker never trusts the store's own bookkeeping.
- Each key's version order is its longest read, which every other read must
  be a prefix of; ww/wr/rw edges follow from it. A committed append that no
  read observed comes after that whole order (see `_unobserved_appends`);
  each strongly connected
  component yields one short cycle named by the weakest edges that close it
  (G0: ww only, G1c: ww+wr, G-single: exactly one rw, G2: more).
- Non-cyclic anomalies (aborted and intermediate reads, duplicates,
  incompatible orders, internal inconsistency, future reads, garbage reads)
  need no graph.
- Appended values are unique per key, as Elle requires of its generator.
- Every graph walk is iterative: histories are far deeper than Python's stack.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from typing import Any, Iterable, Sequence

from raftline.check.history import Operation, is_scalar, malformed, txn_micro_ops
from raftline.check.result import DEFAULT_LIMIT, Anomaly, CheckResult, verdict

# Dependency kinds, as bits so that one edge can carry several.
WW, WR, RW, REALTIME, PROCESS = 1, 2, 4, 8, 16
DATA = WW | WR | RW
ORDER = REALTIME | PROCESS
_KIND_NAMES = {WW: "ww", WR: "wr", RW: "rw", REALTIME: "realtime", PROCESS: "process"}
# How many rw edges of one component are tried as the single rw edge of a
# G-single cycle before settling for G2: each try is a breadth-first search.
G_SINGLE_TRIES = 64


def _micro_ops(operation: Operation) -> list[tuple[str, Any, Any]]:
    """The (f, key, value) micro-ops of a txn (history.txn_micro_ops), a read's
    value a list (Elle reads a nil list as empty: never appended to)."""
    ops = []
    for position, (f, key, value) in enumerate(txn_micro_ops(operation, "list-append", "append")):
        if f == "append" and not is_scalar(value):
            raise malformed(operation, f"micro-op {position} appends {json.dumps(value)}, which is not an int or string")
        if f == "r" and operation.type == "ok":
            value = [] if value is None else value
            if not isinstance(value, list) or not all(is_scalar(element) for element in value):
                raise malformed(operation, f"micro-op {position} must read a list of ints or strings")
        ops.append((f, key, value))
    return ops


def _internal_anomaly(operation: Operation, ops: list[tuple[str, Any, Any]]) -> Anomaly | None:
    """A read that disagrees with what the txn itself read or appended before,
    or that holds an element the txn appends only later (a future read)."""
    known: dict[Any, list] = {}  # key -> the whole list, once the txn has read it
    appended: dict[Any, list] = {}  # key -> the txn's own appends, before any read of it
    for position, (f, key, value) in enumerate(ops):
        if f == "r":
            later = {element for g, other, element in ops[position + 1:] if g == "append" and other == key}
            future = [element for element in value if element in later]
            if future:
                return Anomaly(
                    name="future-read",
                    detail=f"{operation.describe()} read key {key!r} as {value}, holding {future}, which it"
                    " appends only afterwards",
                    operations=(operation,),
                )
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
                    raise malformed(
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
    operations: Iterable[Operation], *, realtime: bool = False, process_order: bool = False, limit: int = DEFAULT_LIMIT
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
    anomalies += cycle_anomalies(history.ops, graph)
    return verdict(anomalies, limit, checked=len(history.ops))


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


class DependencyGraph:
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
) -> DependencyGraph:
    ops, writer = history.ops, history.writer
    graph = DependencyGraph(len(ops))

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
    _unobserved_appends(history, orders, graph)
    add_order_edges(ops, graph, realtime=realtime, process_order=process_order)
    return graph


def add_order_edges(ops: list[Operation], graph: DependencyGraph, *, realtime: bool, process_order: bool) -> None:
    """Real-time edges (strict serializability) and each process's own order, when asked for."""
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


def _unobserved_appends(history: _AppendHistory, orders: dict[Any, list], graph: DependencyGraph) -> None:
    """Edges to committed appends that no read observed, as Elle infers them.

    Why that is sound: a key's value only grows at its end, every read
    returns a prefix of its final list, and a committed append is in that
    list. Had an unobserved append come before an element some read
    returned, that read would have returned it too. So each one follows
    every element of the longest read: a ww edge from the writer of its last
    element, and an rw edge from every txn that read that whole order (it
    saw a version the append came after). Their order among themselves is
    unknown, so they get no edge between them. A key no txn read gets none.
    """
    ops, writer = history.ops, history.writer
    observed = {(key, element) for key, order in orders.items() for element in order}
    readers_of_whole: dict[Any, list[int]] = {}
    for reader, key, read in history.reads:
        if read == orders[key]:
            readers_of_whole.setdefault(key, []).append(reader)
    for (key, element), source in writer.items():
        if key not in orders or (key, element) in observed or ops[source].type != "ok":
            continue
        order = orders[key]
        if order:
            last = writer.get((key, order[-1]))
            if last is not None and ops[last].type != "fail":
                graph.add(last, source, WW, key)
        for reader in readers_of_whole.get(key, ()):
            graph.add(reader, source, RW, key)


def _add_realtime_edges(ops: list[Operation], graph: DependencyGraph) -> None:
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


def cycle_anomalies(ops: list[Operation], graph: DependencyGraph) -> list[Anomaly]:
    """One short cycle per strongly connected component, named by its weakest closing edges."""
    found = []
    for members in _components(range(len(graph.out)), graph.out, DATA | ORDER, None):
        cycle = _find_named_cycle(graph.out, set(members))
        if cycle:
            found.append(_cycle_anomaly(ops, graph, _cycle_name(cycle), cycle))
    return found


def _cycle_anomaly(ops: list[Operation], graph: DependencyGraph, name: str, cycle: list[tuple[int, int]]) -> Anomaly:
    parts = [ops[cycle[0][0]].describe()]
    for (node, kind), (following, _) in zip(cycle, cycle[1:] + cycle[:1]):
        key = graph.why.get((node, following, kind))
        label = _KIND_NAMES[kind] + ("" if key is None else f" {key!r}")
        parts.append(f"-{label}-> {ops[following].describe()}")
    return Anomaly(name=name, detail="cycle " + " ".join(parts), operations=tuple(ops[node] for node, _ in cycle))

