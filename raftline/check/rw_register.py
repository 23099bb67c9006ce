"""The rw-register checker, as Elle's `rw-register` (Kingsbury and Alvaro, VLDB 2020).

A history of transactions whose micro-ops read or write whole values:
`["r", key, value]` (null: never written) and `["w", key, value]`, each
written value unique per key, so a read names the write it saw.

Rules and invariants:
- Version orders cannot be read off a register as off a list; they are
  inferred from what holds in every serializable execution (Elle's
  initial-state and writes-follow-reads inferences):
  - the initial version (null) precedes every written value;
  - a txn that reads v and then writes v' to the same key installs v' after v.
  Were the history serializable, every inferred order would hold; so a cycle
  in the dependency graph built on them proves it is not.
- Edges (elle.py's kinds): wr from the writer of a value to each txn that
  read it; for each inferred order a < b of a key, ww from a's writer to b's
  and rw from each txn that read a to b's writer. Only a txn's external
  reads (before it wrote the key) and final writes count: its intermediate
  writes are visible only to itself, and another txn reading one is G1b.
- Non-cyclic anomalies: garbage reads (a value nobody wrote), G1a (written
  by a failed txn), G1b (an intermediate write), internal (a read that
  disagrees with what the txn itself read or wrote before).
- `realtime` and `process_order` add elle.py's order edges, as for list-append.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from raftline.check.elle import RW, WR, WW, DependencyGraph, add_order_edges, cycle_anomalies
from raftline.check.history import Operation, is_scalar, malformed, txn_micro_ops
from raftline.check.result import DEFAULT_LIMIT, Anomaly, CheckResult, verdict


def _micro_ops(operation: Operation) -> list[tuple[str, Any, Any]]:
    """The (f, key, value) micro-ops of a txn (history.txn_micro_ops), each
    value an int, a string or (read only) null."""
    ops = txn_micro_ops(operation, "rw-register", "w")
    for position, (f, _, value) in enumerate(ops):
        if (f == "w" or operation.type == "ok") and value is not None and not is_scalar(value):
            raise malformed(operation, f"micro-op {position} holds {json.dumps(value)}, not an int, string or null")
        if f == "w" and value is None:
            raise malformed(operation, f"micro-op {position} writes null, which stands for never written")
    return ops


def check_rw_register(
    operations: Iterable[Operation], *, realtime: bool = False, process_order: bool = False, limit: int = DEFAULT_LIMIT
) -> CheckResult:
    """Whether an rw-register history is serializable (strictly, with
    `realtime`), naming each anomaly found."""
    ops = list(operations)
    micro = [_micro_ops(operation) for operation in ops]
    writer: dict[tuple[Any, Any], int] = {}  # (key, value) -> position of its writer
    final: set[tuple[Any, Any]] = set()  # (key, value) of every txn's last write of a key
    for position, txn in enumerate(micro):
        last: dict[Any, Any] = {}
        for f, key, value in txn:
            if f != "w":
                continue
            if (key, value) in writer:
                other = ops[writer[key, value]]
                raise malformed(ops[position], f"writes {value!r} to key {key!r} again, as {other.describe()} did;"
                                " rw-register needs unique written values per key")
            writer[key, value] = position
            last[key] = value
        final |= set(last.items())
    anomalies: list[Anomaly] = []
    reads: list[tuple[int, Any, Any]] = []  # (reader, key, value) of every external read of an ok txn
    orders: set[tuple[Any, Any, Any]] = set()  # (key, earlier, later); None is the initial version
    for position, operation in enumerate(ops):
        if operation.type != "ok":
            continue
        internal, external, follows = _within(operation, micro[position])
        anomalies += internal
        reads += [(position, key, value) for key, value in external]
        orders |= follows
    for (key, value), source in writer.items():
        if (key, value) in final and ops[source].type != "fail":
            orders.add((key, None, value))
    anomalies += _read_anomalies(ops, reads, writer, final)
    graph = DependencyGraph(len(ops))

    def installed_by(key: Any, value: Any) -> int | None:
        source = writer.get((key, value))
        return source if source is not None and ops[source].type != "fail" and (key, value) in final else None

    readers: dict[tuple[Any, Any], list[int]] = {}
    for reader, key, value in reads:
        readers.setdefault((key, value), []).append(reader)
        source = installed_by(key, value) if value is not None else None
        if source is not None:
            graph.add(source, reader, WR, key)
    for key, earlier, later in orders:
        target = installed_by(key, later)
        if target is None:
            continue
        source = installed_by(key, earlier) if earlier is not None else None
        if source is not None:
            graph.add(source, target, WW, key)
        for reader in readers.get((key, earlier), ()):
            graph.add(reader, target, RW, key)
    add_order_edges(ops, graph, realtime=realtime, process_order=process_order)
    anomalies += cycle_anomalies(ops, graph)
    return verdict(anomalies, limit, checked=len(ops))


def _within(operation: Operation, txn: list[tuple[str, Any, Any]]):
    """One ok txn on its own: its internal anomalies, its external reads
    ((key, value) before it wrote the key), and the orders its
    writes-follow-reads imply ((key, read, written))."""
    anomalies: list[Anomaly] = []
    known: dict[Any, Any] = {}  # key -> what the txn last read or wrote there
    wrote: dict[Any, Any] = {}  # key -> the txn's last write there
    external: list[tuple[Any, Any]] = []
    for f, key, value in txn:
        if f == "r":
            if key in known and known[key] != value:
                before = "wrote" if key in wrote else "read"
                anomalies.append(Anomaly(
                    name="internal",
                    detail=f"{operation.describe()} read key {key!r} as {json.dumps(value)} after it {before}"
                    f" {json.dumps(known[key])}",
                    operations=(operation,),
                ))
            elif key not in wrote and key not in known:
                external.append((key, value))
            known[key] = value
            continue
        wrote[key] = value
        known[key] = value
    # Writes follow reads: what it installed comes after what it read first.
    read_first = dict(external)
    follows = {(key, read_first[key], written) for key, written in wrote.items() if key in read_first}
    return anomalies, external, follows


def _read_anomalies(ops: list[Operation], reads, writer, final) -> list[Anomaly]:
    """Garbage, aborted (G1a) and intermediate (G1b) reads."""
    found = []
    for reader, key, value in reads:
        if value is None:
            continue
        operation = ops[reader]
        source = writer.get((key, value))
        if source is None:
            found.append(Anomaly(name="garbage-read", operations=(operation,),
                                 detail=f"{operation.describe()} read {json.dumps(value)} in key {key!r},"
                                 " which no operation wrote"))
        elif ops[source].type == "fail":
            found.append(Anomaly(name="G1a", operations=(operation, ops[source]),
                                 detail=f"{operation.describe()} read key {key!r} = {json.dumps(value)}, written by"
                                 f" failed {ops[source].describe()}"))
        elif (key, value) not in final:
            found.append(Anomaly(name="G1b", operations=(operation, ops[source]),
                                 detail=f"{operation.describe()} read key {key!r} = {json.dumps(value)}, an"
                                 f" intermediate write of {ops[source].describe()}"))
    return found
