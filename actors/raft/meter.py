"""RaftMeter: one RaftNode's counters and gauges, recorded into its actor's
`actors.metrics.Metrics` (docs/DESIGN.md section 14).

Whoever drives a node's Ready loop (a database server's Replica, a
coordinator replica's CoordinatorGroup) hands the meter each Ready it has
saved and each RepairLogReply it steps. Everything is read from what that
caller already sees, so the node itself keeps only one counter (its
campaigns, which no Ready shows one by one).

Rules:
- Pure: no clock, no Thespian, no I/O.
- At most one `Metrics.count` per metric per Ready: the hot path pays per
  Ready, not per entry or per message.
- A Ready counts once it is saved: a caller whose save failed hands the
  same entries back in a later Ready.
"""

from __future__ import annotations

from actors.metrics import Metrics
from actors.raft.messages import AppendLog, RepairLogReply, RepairLogRequest
from actors.raft.node import LEADER, RaftNode, Ready


class RaftMeter:
    """Counts what one node's Ready loop does; see the module docstring."""

    def __init__(self, metrics: Metrics, node: RaftNode) -> None:
        self._metrics = metrics
        self._node = node
        self._commit = node.commit
        self._campaigns = node.campaigns
        self._leader = node.leader
        """The last leader known (None only before the first)."""

    def saved(self, ready: Ready) -> None:
        """`ready` was saved: its entries, messages and commit index count."""
        node, count = self._node, self._metrics.count
        if ready.entries and node.role == LEADER:
            # A leader's log grows only by its own appends (no-op, commands, membership changes).
            count("raftline_proposals_total", len(ready.entries))
        if node.commit > self._commit:
            count("raftline_committed_entries_total", node.commit - self._commit)
            self._commit = node.commit
        if ready.committed_entries:
            count("raftline_applied_entries_total", len(ready.committed_entries))
        if node.campaigns != self._campaigns:
            count("raftline_elections_total", node.campaigns - self._campaigns)
            self._campaigns = node.campaigns
        soft = ready.soft_state
        if soft is not None and soft.leader is not None and soft.leader != self._leader:
            if self._leader is not None:
                count("raftline_leader_changes_total")
            self._leader = soft.leader
        if ready.messages:
            self._count_messages(ready)

    def _count_messages(self, ready: Ready) -> None:
        appends = appended = repairs = snapshots = 0
        for _, message in ready.messages:
            kind = type(message)
            if kind is AppendLog or kind is RepairLogReply:
                if message.entries:
                    # Heartbeats are left out: entries per message is the batch size.
                    appends += 1
                    appended += len(message.entries)
                elif kind is RepairLogReply and message.snapshot is not None and message.snapshot.offset == 0:
                    snapshots += 1
            elif kind is RepairLogRequest:
                repairs += 1
        count = self._metrics.count
        if appends:
            count("raftline_append_messages_total", appends)
            count("raftline_appended_entries_total", appended)
        if repairs:
            count("raftline_log_repair_requests_total", repairs)
        if snapshots:
            count("raftline_snapshots_sent_total", snapshots)

    def repaired(self, message: RepairLogReply) -> None:
        """A RepairLogReply reached this replica: the entries it carries count."""
        if message.entries:
            self._metrics.count("raftline_log_repair_entries_total", len(message.entries))

    def set_gauges(self, applied: int) -> None:
        """The node's position now; `applied` is the caller's (its state machine's) applied index."""
        node, set_gauge = self._node, self._metrics.set
        set_gauge("raftline_term", node.term)
        set_gauge("raftline_is_leader", 1 if node.role == LEADER else 0)
        set_gauge("raftline_commit_index", node.commit)
        set_gauge("raftline_applied_index", applied)
        set_gauge("raftline_last_index", node.last_index)
