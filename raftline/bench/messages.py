"""Messages per committed operation, for all actors together (servers,
coordinator, clerks), from the metrics every actor sends with its status
(docs/DESIGN.md section 14).

A message is counted once, by its sender; the application's own requests to
its clerk (ClerkRead, ClerkGet, ClerkCommit: the application is not an actor) are
counted by the clerk that received them. The bench's status probes are not
the workload's cost and are left out. An actor restarted between the two
samples counts from 0 again, so its counts after are taken whole.
"""

from __future__ import annotations

from collections import Counter

from raftline.metrics import snapshots

APPLICATION_REQUESTS = frozenset({"ClerkRead", "ClerkGet", "ClerkCommit"})
STATUS_PROBES = frozenset({
    "StatusRequest", "StatusReply", "ReplicaStatusRequest", "ReplicaStatusReply",
    "ClerkMetricsRequest", "ClerkMetricsReply",
})
KINDS_SHOWN = 6


def message_counts(status: dict) -> dict[tuple[str, str, str], float]:
    """(cluster, replica, message kind) -> messages counted so far, for every actor in `status`."""
    counts = {}
    for (cluster, replica), snapshot in snapshots(status):
        for name, kinds in (("raftline_messages_sent_total", None),
                            ("raftline_messages_received_total", APPLICATION_REQUESTS)):
            for series in snapshot.get(name, ()):
                kind = series["labels"]["kind"]
                if kind not in STATUS_PROBES and (kinds is None or kind in kinds):
                    counts[(cluster, replica, kind)] = series["value"]
    return counts


def messages_per_op(before: dict, after: dict, ops: int) -> dict:
    """{"total": messages per committed op, "by_kind": the commonest kinds per op}
    between two `message_counts`; empty when nothing committed or no actor counted."""
    if not ops or not after:
        return {}
    by_kind: Counter = Counter()
    for key, count in after.items():
        earlier = before.get(key, 0)
        by_kind[key[2]] += count - earlier if count >= earlier else count
    return {
        "total": round(sum(by_kind.values()) / ops, 1),
        "by_kind": {kind: round(count / ops, 2) for kind, count in by_kind.most_common(KINDS_SHOWN)},
    }
