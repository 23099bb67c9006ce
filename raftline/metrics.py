"""The whole system's metrics in the Prometheus text format (docs/DESIGN.md section 14).

Each actor keeps its own `actors.metrics.Metrics` and sends its snapshot with
the status the coordinator gathers; this module reads one status dict and
writes every snapshot in it, each series labelled with the actor that kept
it: `cluster` and `replica` for a database server, `cluster="coordinator"`
for the acting coordinator replica, `cluster="clerks"` and the clerk's name
as `replica` for a clerk. prometheus_client writes the format.
"""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from actors.metrics import CATALOGUE, COUNTER, DURATION_BUCKETS, GAUGE

SOURCE_LABELS = ("cluster", "replica")
COORDINATOR_CLUSTER = "coordinator"
CLERKS_CLUSTER = "clerks"
CONTENT_TYPE = CONTENT_TYPE_LATEST


def snapshots(status: dict) -> Iterator[tuple[tuple[str, str], dict]]:
    """(cluster, replica) and the metrics snapshot of every actor the status holds."""
    for cluster, info in sorted(status.get("clusters", {}).items()):
        for replica, shown in sorted(info["replicas"].items()):
            if shown.get("metrics"):
                yield (cluster, replica), shown["metrics"]
    coordinator = status.get("coordinator") or {}
    if coordinator.get("metrics"):
        yield (COORDINATOR_CLUSTER, coordinator["leader"]), coordinator["metrics"]
    for clerk, snapshot in sorted(status.get("clerk_metrics", {}).items()):
        yield (CLERKS_CLUSTER, clerk), snapshot


class _StatusCollector:
    def __init__(self, status: dict):
        self._status = status

    def collect(self):
        families = {}
        for source, snapshot in snapshots(self._status):
            for name, series in snapshot.items():
                declared = CATALOGUE.get(name)
                if declared is None:  # an actor of a newer raftline: skip what this one cannot describe
                    continue
                family = families.get(name)
                if family is None:
                    labels = [*SOURCE_LABELS, *declared.labels]
                    kind = {COUNTER: CounterMetricFamily, GAUGE: GaugeMetricFamily}.get(declared.kind,
                                                                                      HistogramMetricFamily)
                    family = families[name] = kind(name, declared.help, labels=labels)
                for sample in series:
                    values = [*source, *(sample["labels"][label] for label in declared.labels)]
                    if declared.kind in (COUNTER, GAUGE):
                        family.add_metric(values, sample["value"])
                    else:
                        family.add_metric(values, cumulative_buckets(sample["buckets"]), sample["sum"])
        yield from families.values()


def cumulative_buckets(counts: list[int]) -> list[tuple[str, float]]:
    """A snapshot's per-bucket counts as Prometheus's cumulative `le` buckets."""
    total, buckets = 0, []
    for bound, count in zip([*map(str, DURATION_BUCKETS), "+Inf"], counts):
        total += count
        buckets.append((bound, total))
    return buckets


def exposition(status: dict) -> str:
    """Every actor's metrics in `status`, in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatusCollector(status))
    return generate_latest(registry).decode()
