"""Counters, gauges and latency histograms of one actor, as plain data
(docs/DESIGN.md section 14).

An actor's core and shell record into one `Metrics`; the actor answers the
coordinator's status probe with `snapshot()` inside its status, so metrics
cost no message of their own. `raftline metrics` and the dashboard turn the
snapshots into the Prometheus text format (raftline/metrics.py), adding the
labels of the actor that kept them (`cluster`, `replica`).

Rules:
- Pure: no clock (callers pass durations in seconds), no Thespian, no I/O.
- Every name is declared once, in CATALOGUE, with its kind, help and its own
  label names; recording an undeclared name or other labels (or the labels
  in another order) raises, so a typo fails the first test that reaches it.
  A series is checked when it is first recorded; after that a count is two
  dictionary operations, since servers count every message. Names follow Prometheus
  conventions: the `raftline_` prefix, counters end in `_total`, durations
  are histograms in seconds.
- Counters only go up, from 0 at the actor's start (a restart resets them,
  as Prometheus expects of a process).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"

# Upper bounds in seconds: from a batched in-memory commit to a write stuck behind an election.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class Declared:
    """One metric's declaration.

    Fields:
        kind: COUNTER, GAUGE or HISTOGRAM.
        help: one line for operators (the exposition's HELP).
        labels: the metric's own label names, beyond the actor's.
    """

    kind: str
    help: str
    labels: tuple[str, ...] = ()


def _counter(help: str, *labels: str) -> Declared:
    return Declared(COUNTER, help, labels)


def _gauge(help: str, *labels: str) -> Declared:
    return Declared(GAUGE, help, labels)


def _histogram(help: str, *labels: str) -> Declared:
    return Declared(HISTOGRAM, help, labels)


CATALOGUE: dict[str, Declared] = {
    # Every actor: what its shell handed to and took from the transport.
    "raftline_messages_received_total": _counter("Messages this actor received, by message class.", "kind"),
    "raftline_messages_sent_total": _counter("Messages this actor sent, by message class.", "kind"),
    # Raft (database servers and coordinator replicas).
    "raftline_term": _gauge("The replica's current Raft term."),
    "raftline_is_leader": _gauge("1 while the replica is its group's Raft leader, else 0."),
    "raftline_commit_index": _gauge("The highest log index known committed."),
    "raftline_applied_index": _gauge("The highest log index applied to the state machine."),
    "raftline_last_index": _gauge("The replica's last log index."),
    "raftline_proposals_total": _counter("Log entries this replica proposed as leader."),
    "raftline_committed_entries_total": _counter("Log entries this replica learned were committed."),
    "raftline_applied_entries_total": _counter("Log entries this replica applied to its state machine."),
    "raftline_append_messages_total": _counter("AppendEntries messages this replica sent as leader."),
    "raftline_appended_entries_total": _counter("Log entries carried by the AppendEntries messages it sent."),
    "raftline_elections_total": _counter("Elections this replica started (pre-vote campaigns included)."),
    "raftline_leader_changes_total": _counter("Times this replica saw its group's leader change."),
    "raftline_log_repair_requests_total": _counter("Log repair requests this replica sent as a follower."),
    "raftline_log_repair_entries_total": _counter("Log entries this replica received by log repair."),
    "raftline_snapshots_sent_total": _counter("Snapshots this replica started sending as leader."),
    "raftline_fsync_duration_seconds": _histogram("How long each durable write of the log took."),
    # Transactions (database servers).
    "raftline_transactions_prepared_total": _counter("Transactions this replica's state machine prepared."),
    "raftline_transactions_committed_total": _counter("Transactions this replica's state machine committed."),
    "raftline_transactions_aborted_total": _counter(
        "Transactions this replica's state machine refused or aborted, by validation rule.", "rule"),
    "raftline_prepared_transactions": _gauge("Prepared transactions waiting for their decision."),
    "raftline_oldest_prepared_seconds": _gauge("Age of the oldest prepared transaction, in seconds."),
    "raftline_slot_moves_total": _counter("Slot moves this replica's cluster finished receiving."),
    "raftline_lease_reads_total": _counter(
        "Reads (gets and read-only transactions' checks) this replica answered from its lease as leader."),
    # The coordinator's acting replica.
    "raftline_server_restarts_total": _counter("Database servers the coordinator restarted."),
    "raftline_jobs_total": _counter("Reconfiguration jobs that ended, by kind and state.", "kind", "state"),
    # Clerks.
    "raftline_client_operations_total": _counter("Requests the clerk answered, by operation and outcome.",
                                                 "operation", "outcome"),
    "raftline_client_operation_duration_seconds": _histogram(
        "From a request's arrival at the clerk to its answer, by operation.", "operation"),
    "raftline_client_retries_total": _counter("Requests the clerk sent again (redirects, timeouts, new maps).",
                                              "operation"),
    "raftline_client_hops_total": _counter("Messages the clerk sent to servers for its requests, by operation.",
                                           "operation"),
}


class Metrics:
    """One actor's metrics. `count`, `set` and `observe` record; `snapshot()`
    returns plain JSON types:

        {name: [{"labels": {...}, "value": v}, ...]}                 counters, gauges
        {name: [{"labels": {...}, "buckets": [n, ...], "sum": s, "count": n}]}  histograms

    where `buckets[i]` counts observations at most DURATION_BUCKETS[i] and
    above the bound before it; the last one counts those above every bound.
    """

    def __init__(self) -> None:
        self._values: dict[tuple[str, tuple[str, ...]], float] = {}
        self._histograms: dict[tuple[str, tuple[str, ...]], list] = {}

    def count(self, name: str, amount: float = 1, **labels: str) -> None:
        key = (name, tuple(labels.values()))
        value = self._values.get(key)
        if value is None:
            self._label_values(name, COUNTER, labels)
            value = 0
        self._values[key] = value + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        self._values[(name, self._label_values(name, GAUGE, labels))] = value

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        key = (name, tuple(labels.values()))
        histogram = self._histograms.get(key)
        if histogram is None:
            self._label_values(name, HISTOGRAM, labels)
            histogram = self._histograms[key] = [[0] * (len(DURATION_BUCKETS) + 1), 0.0, 0]
        histogram[0][bisect_left(DURATION_BUCKETS, seconds)] += 1
        histogram[1] += seconds
        histogram[2] += 1

    def value(self, name: str, **labels: str) -> float:
        """A counter's or gauge's value (0 if never recorded)."""
        return self._values.get((name, self._label_values(name, CATALOGUE[name].kind, labels)), 0)

    def snapshot(self) -> dict:
        shown: dict[str, list] = {}
        for (name, values), value in sorted(self._values.items()):
            shown.setdefault(name, []).append({"labels": dict(zip(CATALOGUE[name].labels, values)), "value": value})
        for (name, values), (buckets, total, count) in sorted(self._histograms.items()):
            shown.setdefault(name, []).append({"labels": dict(zip(CATALOGUE[name].labels, values)),
                                               "buckets": list(buckets), "sum": total, "count": count})
        return shown

    @staticmethod
    def _label_values(name: str, kind: str, labels: dict) -> tuple[str, ...]:
        declared = CATALOGUE.get(name)
        if declared is None:
            raise KeyError(f"metric {name!r} is not declared in actors/metrics.py's CATALOGUE")
        if declared.kind != kind or tuple(labels) != declared.labels:
            raise ValueError(f"metric {name!r} is a {declared.kind} labelled {declared.labels} (in that order), "
                             f"not a {kind} labelled {tuple(labels)}")
        if not all(isinstance(value, str) for value in labels.values()):
            raise ValueError(f"metric {name!r}: label values are strings, got {labels!r}")
        return tuple(labels.values())
