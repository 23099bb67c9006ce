"""Synthetic status dicts for the dashboard's tests, with metrics snapshots
made by actors.metrics.Metrics itself, so their format is the real one."""

from __future__ import annotations

from actors.metrics import Metrics

APPLIED = "raftline_applied_entries_total"
OPERATIONS = "raftline_client_operations_total"
DURATION = "raftline_client_operation_duration_seconds"


def replica(role: str = "follower", applied: int | None = None, **fields) -> dict:
    """A replica's status entry; with `applied`, a metrics snapshot holding that counter."""
    info = {"role": role, "term": 2, "commit": 9, "applied": 9, "last_index": 9, "alive": True, "asleep": False,
            "isolated": False, "failing": "", "host_down": False, "unreachable": False, "learner": False,
            "pid": 4242, "host": "local", **fields}
    if applied is not None:
        metrics = Metrics()
        metrics.count(APPLIED, applied)
        info["metrics"] = metrics.snapshot()
    return info


def clerk(operations: int = 0, durations: tuple[float, ...] = ()) -> dict:
    """A clerk's snapshot: `operations` committed puts, and one observation per duration."""
    metrics = Metrics()
    if operations:
        metrics.count(OPERATIONS, operations, operation="put", outcome="committed")
    for seconds in durations:
        metrics.observe(DURATION, seconds, operation="put")
    return metrics.snapshot()


def status(leaders: dict[str, str] | None = None, applied: dict[str, int] | None = None,
           clerks: dict[str, dict] | None = None, term: int = 2, **replica_fields: dict) -> dict:
    """Two clusters of three replicas, c1 led by c1-r0 and c2 by c2-r0 unless
    `leaders` says otherwise; `applied` gives replicas' applied-entries
    counters, `clerks` clerks' snapshots, `replica_fields` fields of named
    replicas (c1_r1={"asleep": True})."""
    leaders = {"c1": "c1-r0", "c2": "c2-r0", **(leaders or {})}
    applied = applied or {}
    clusters = {}
    for name in ("c1", "c2"):
        replicas = {}
        for index in range(3):
            rid = f"{name}-r{index}"
            fields = {"role": "leader" if leaders[name] == rid else "follower",
                      **replica_fields.get(rid.replace("-", "_"), {})}
            replicas[rid] = replica(applied=applied.get(rid), **fields)
        clusters[name] = {"leader": leaders[name], "term": term, "slots": list(range(8)), "replicas": replicas}
    shown = {"epoch": 1, "admin_pid": 100, "clerks": len(clerks or {}), "clusters": clusters, "hosts": {}, "jobs": [],
             "coordinator": {"leader": "coordinator-0", "term": 1, "commit": 5, "storage_failure": "",
                             "replicas": {f"coordinator-{n}": {"role": "leader" if n == 0 else "follower",
                                                               "pid": 200 + n, "lag": 0} for n in range(3)}}}
    if clerks is not None:
        shown["clerk_metrics"] = clerks
    return shown
