"""What the dashboard derives from successive status dicts: throughput,
commit latency percentiles and leader changes over the last few minutes.

Pure: the caller passes each status with the times it was taken (`now` from
a monotonic clock for rates, `wall` in Unix seconds for display), so the
derivations are plain functions of status dicts. Each point's rates and
percentiles cover the last RATE_SECONDS, as Prometheus's rate() over a range:
a clerk's snapshot is the one it sent after the round before, not in step
with the polls, so one second's deltas would alternate between nothing and a
burst. Metrics absent from a
status (an older actor, or one that did not answer) give no value, never 0:
the charts show a gap rather than a false idle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from actors.metrics import DURATION_BUCKETS

APPLIED = "raftline_applied_entries_total"
CLIENT_OPERATIONS = "raftline_client_operations_total"
CLIENT_DURATION = "raftline_client_operation_duration_seconds"
COORDINATOR = "coordinator"  # the coordinator group's name in leader changes
WINDOW_SECONDS = 300.0
RATE_SECONDS = 5.0
MAX_LEADER_CHANGES = 100


def counter_delta(previous: float | None, current: float) -> float:
    """How much a counter grew; a counter below its previous value was reset
    by a restart and counted from 0 since, as Prometheus's rate() takes it."""
    if previous is None or current < previous:
        return current
    return current - previous


def series_key(sample: dict) -> tuple:
    return tuple(sorted(sample["labels"].items()))


def counter_values(snapshot: dict, name: str) -> dict[tuple, float] | None:
    """A snapshot's series of counter `name`, by labels; None if it has none."""
    series = snapshot.get(name)
    return None if series is None else {series_key(sample): sample["value"] for sample in series}


def leader_applied(status: dict) -> dict[str, tuple[str, float]]:
    """cluster -> (its leader, the leader's applied-entries counter), for clusters whose leader reports it."""
    found = {}
    for name, cluster in status.get("clusters", {}).items():
        leader = cluster.get("leader")
        metrics = cluster["replicas"].get(leader or "", {}).get("metrics") or {}
        values = counter_values(metrics, APPLIED)
        if values:
            found[name] = (leader, sum(values.values()))
    return found


def replica_applied(status: dict) -> dict[str, float]:
    """replica -> its applied-entries counter, for every replica that reports it."""
    found = {}
    for cluster in status.get("clusters", {}).values():
        for replica, info in cluster["replicas"].items():
            values = counter_values(info.get("metrics") or {}, APPLIED)
            if values:
                found[replica] = sum(values.values())
    return found


def applied_entries(previous: dict, current: dict) -> float | None:
    """Entries the clusters applied between two statuses: the sum of each
    cluster leader's growth, measured on the leader's own counter (each
    replica counts its own); None when no leader reports the counter."""
    leaders = leader_applied(current)
    if not leaders:
        return None
    before = replica_applied(previous)
    return sum(counter_delta(before.get(leader), value) for leader, value in leaders.values())


def clerk_counters(status: dict, name: str) -> dict[tuple, float]:
    """(clerk, labels) -> value of counter `name` over every clerk."""
    found = {}
    for clerk, snapshot in status.get("clerk_metrics", {}).items():
        for key, value in (counter_values(snapshot, name) or {}).items():
            found[(clerk, key)] = value
    return found


def client_operations(previous: dict, current: dict) -> float | None:
    """Requests the clerks answered between two statuses; None when no clerk reports the counter."""
    now = clerk_counters(current, CLIENT_OPERATIONS)
    if not now:
        return None
    before = clerk_counters(previous, CLIENT_OPERATIONS)
    # A clerk that appeared since started from 0.
    return sum(counter_delta(before.get(key, 0), value) for key, value in now.items())


def clerk_histograms(status: dict, name: str) -> dict[tuple, dict]:
    found = {}
    for clerk, snapshot in status.get("clerk_metrics", {}).items():
        for sample in snapshot.get(name, ()):
            found[(clerk, series_key(sample))] = sample
    return found


def duration_buckets(previous: dict, current: dict) -> list[int] | None:
    """The clerks' operation durations observed between two statuses, as
    per-bucket counts (actors.metrics.DURATION_BUCKETS, then one above them);
    None when no clerk reports the histogram."""
    now = clerk_histograms(current, CLIENT_DURATION)
    if not now:
        return None
    before = clerk_histograms(previous, CLIENT_DURATION)
    total = [0] * (len(DURATION_BUCKETS) + 1)
    for key, sample in now.items():
        earlier = before.get(key)
        reset = earlier is None or sample["count"] < earlier["count"]
        for index, count in enumerate(sample["buckets"]):
            total[index] += count if reset else count - earlier["buckets"][index]
    return total


def percentile(buckets: list[int], q: float) -> float | None:
    """The `q` quantile (0..1) of per-bucket counts, in seconds, interpolated
    linearly inside its bucket as Prometheus's histogram_quantile does (the
    last bucket, above every bound, reads as the highest bound); None without
    observations."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            if index == len(DURATION_BUCKETS):
                return DURATION_BUCKETS[-1]
            low = DURATION_BUCKETS[index - 1] if index else 0.0
            return low + (DURATION_BUCKETS[index] - low) * (rank - seen) / count
        seen += count
    return DURATION_BUCKETS[-1]


def leaders(status: dict) -> dict[str, tuple[str | None, int]]:
    """group -> (its leader, term): every cluster, and the coordinator group."""
    found = {name: (cluster.get("leader"), cluster.get("term", 0)) for name, cluster in status.get("clusters", {}).items()}
    coordinator = status.get("coordinator")
    if coordinator:
        found[COORDINATOR] = (coordinator.get("leader"), coordinator.get("term", 0))
    return found


@dataclass
class History:
    """The dashboard's memory: one point per status after the first, and the
    leader changes seen, both over the last WINDOW_SECONDS; and the last poll's
    error, if it failed.

    Fields:
        points: {"time", "seconds", "applied_per_s", "client_ops_per_s", "p50_ms", "p99_ms"} per poll,
            over the `seconds` since the earliest status of the last RATE_SECONDS.
        leader_changes: {"time", "group", "old", "new", "term"}, newest last.
        known_leaders: group -> the last leader seen (a group without one keeps its last).
        status, updated: the latest status and when it came (Unix seconds).
        error, error_time: the last poll's failure, until a poll succeeds.
        recent: (now, status) of the polls of the last RATE_SECONDS, oldest first.
    """

    points: list[dict] = field(default_factory=list)
    leader_changes: list[dict] = field(default_factory=list)
    known_leaders: dict[str, str] = field(default_factory=dict)
    status: dict | None = None
    updated: float | None = None
    error: str | None = None
    error_time: float | None = None
    recent: list[tuple[float, dict]] = field(default_factory=list)

    def observe(self, status: dict, now: float, wall: float) -> None:
        """Take in a status polled at `now` (monotonic) and `wall` (Unix seconds)."""
        self.leader_changes.extend(leader_changes(self.known_leaders, status, wall, first=not self.recent))
        if self.recent:
            then, earlier = self.recent[0]
            self.points.append(point(earlier, status, now - then, wall))
        # The next point's range starts at the earliest status of the last RATE_SECONDS (after a gap, the last).
        self.recent = [(then, shown) for then, shown in self.recent if then > now - RATE_SECONDS] or self.recent[-1:]
        self.recent.append((now, status))
        self.status, self.updated, self.error, self.error_time = status, wall, None, None
        self.forget(wall)

    def failed(self, message: str, wall: float) -> None:
        """A poll failed: shown until one succeeds; the history is kept."""
        self.error, self.error_time = message, wall
        self.forget(wall)

    def forget(self, wall: float) -> None:
        self.points = [p for p in self.points if p["time"] > wall - WINDOW_SECONDS]
        self.leader_changes = [c for c in self.leader_changes if c["time"] > wall - WINDOW_SECONDS]
        del self.leader_changes[:-MAX_LEADER_CHANGES]

    def state(self) -> dict:
        """What /state.json serves: plain JSON types, its lists copied (the poller goes on appending)."""
        return {"status": self.status, "updated": self.updated, "error": self.error, "error_time": self.error_time,
                "points": list(self.points), "leader_changes": list(self.leader_changes),
                "window_seconds": WINDOW_SECONDS}


def point(previous: dict, current: dict, seconds: float, wall: float) -> dict:
    """Rates and latency percentiles over the `seconds` between two statuses."""
    seconds = max(seconds, 1e-3)
    applied = applied_entries(previous, current)
    operations = client_operations(previous, current)
    buckets = duration_buckets(previous, current)
    p50, p99 = (percentile(buckets, 0.5), percentile(buckets, 0.99)) if buckets else (None, None)
    return {"time": wall, "seconds": round(seconds, 3),
            "applied_per_s": None if applied is None else round(applied / seconds, 2),
            "client_ops_per_s": None if operations is None else round(operations / seconds, 2),
            "p50_ms": None if p50 is None else round(p50 * 1000, 2),
            "p99_ms": None if p99 is None else round(p99 * 1000, 2)}


def leader_changes(known: dict[str, str], status: dict, wall: float, *, first: bool) -> list[dict]:
    """The changes of leader `status` shows against `known` (updated in place).
    A group without a leader is no change until one is elected; the first
    status only sets what is known, and a group seen later for the first time
    (an added cluster) shows its first leader with `old` None."""
    changes = []
    for group, (leader, term) in sorted(leaders(status).items()):
        if leader is None or known.get(group) == leader:
            continue
        if not first:
            changes.append({"time": wall, "group": group, "old": known.get(group), "new": leader, "term": term})
        known[group] = leader
    return changes
