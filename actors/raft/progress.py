"""Progress: the leader's view of one follower or learner, and every
transition of that view (etcd-io/raft's tracker/progress.go).

Rules and invariants:
- Every change to a Progress happens here, through a method named for the
  event (an answer, a rejection, a send, a tick); `RaftNode` reads fields
  and calls methods, never writes a field. The node owns what needs the log
  or the membership (the back-off target, the snapshot to send); this class
  owns what follows from it.
- Three states (docs/DESIGN.md section 2):
  PROBE: it is new, the leader is new, or a message to it went unanswered
  for `2 * heartbeat_ticks` ticks (delivery is at-most-once, with no failure
  notice). It gets heartbeats, which ask where its log stands, and one
  RepairLogReply (`repair`) when it asks for one or when what it needs was
  compacted away.
  REPLICATE: it answers, so it gets the log from `next = match + 1`.
  SNAPSHOT: the entries it needs were compacted away, so it gets the
  leader's snapshot, chunk by chunk, until it acknowledges the snapshot's
  index.
  A successful answer moves PROBE to REPLICATE, or back to SNAPSHOT while a
  snapshot transfer is pending: a transfer paused by a lost message resumes
  from the offset the follower acknowledged, not from the start.
- Flow control (docs/DESIGN.md section 2): at most one message carrying
  entries or a snapshot chunk is unanswered (`inflight`), and nothing else
  goes to it meanwhile. Heartbeats carry no entries and do not hold the slot.
- A heartbeat (an empty AppendLog) goes only after `heartbeat_ticks` ticks
  with no message to it, so a quiet cluster sends only heartbeats and their
  answers, and a busy one none; a follower that sleeps costs one heartbeat
  per `heartbeat_ticks`, never repeated large resends.
- `next` never drops below `match + 1`, and `match` never decreases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ProgressState = Literal["probe", "replicate", "snapshot"]
PROBE: ProgressState = "probe"
REPLICATE: ProgressState = "replicate"
SNAPSHOT: ProgressState = "snapshot"

OwedMessage = Literal["entries", "snapshot_chunk", "heartbeat"]
"""What an unpaused follower is sent next (see `Progress.owed`)."""


@dataclass(slots=True)
class Progress:
    """The leader's view of one follower or learner (paper figure 2: nextIndex,
    matchIndex), with etcd's probe/replicate/snapshot states.

    Fields:
        next: in REPLICATE, the first index to send; it moves only on an
            answer. In PROBE, one past the index a heartbeat asks about: the
            leader's last index, except in a probe sent at once
            (`probe_due`), which asks where `next` was set with it.
        match: highest index known to be replicated there.
        state: PROBE, REPLICATE or SNAPSHOT (see the module docstring).
        inflight: an AppendLog or RepairLogReply carrying entries or a snapshot
            chunk is unanswered (never more than one).
        inflight_index: the last index that message carries (the snapshot's
            index for a chunk): an answer matching it frees the slot, while
            an earlier heartbeat's answer does not.
        idle_ticks: ticks since the last message to it; from `heartbeat_ticks`
            on a heartbeat is due, so a busy follower gets none.
        probe_due: send a heartbeat now, not on the schedule: the follower
            is new, or answered and the probe point moved.
        repair: send a RepairLogReply now: it asked (RepairLogRequest), or the entries
            it needs were compacted away and it must get the snapshot.
        recent_active: it sent something in the current check-quorum window.
        snapshot_index: index of the snapshot being sent to it, 0 when none;
            kept through PROBE so that a paused transfer can resume.
        snapshot_offset: bytes of that snapshot it has acknowledged.
        answered_sent_at: the latest `sent_at` of an AppendLog it answered,
            None before its first answer to this leader (the leader's lease).
    """

    next: int
    match: int = 0
    state: ProgressState = PROBE
    inflight: bool = False
    inflight_index: int = 0
    idle_ticks: int = 0
    probe_due: bool = True
    repair: bool = False
    recent_active: bool = False
    snapshot_index: int = 0
    snapshot_offset: int = 0
    answered_sent_at: float | None = None

    # -- states --------------------------------------------------------------

    def become_probe(self, last_index: int) -> None:
        """It stopped answering: ask about the leader's last entry, and let
        its answer (RepairLogRequest or a hint) say where to go on. A snapshot
        in transit stays recorded so that the transfer can resume."""
        self.state = PROBE
        self.next = last_index + 1
        self.inflight = False
        self.repair = False

    def become_replicate(self) -> None:
        """It answered with success: send it the log from just past `match`,
        or, while a snapshot transfer is pending, the rest of that snapshot."""
        self.state = SNAPSHOT if self.snapshot_index else REPLICATE
        self.next = self.match + 1
        self.probe_due = False

    def become_snapshot(self, index: int) -> None:
        """A chunk of the snapshot at `index` is about to go out: a new
        snapshot (or a newer one replacing the one in transit) starts from
        offset 0; the same one resumes where it was acknowledged."""
        self.state = SNAPSHOT
        if self.snapshot_index != index:
            self.snapshot_index = index
            self.snapshot_offset = 0

    # -- answers -------------------------------------------------------------

    def mark_recent_active(self) -> None:
        """It sent something: it counts as active in this check-quorum window."""
        self.recent_active = True

    def answered_append_sent_at(self, sent_at: float) -> None:
        """It answered an AppendLog sent at `sent_at`, so it heard from this
        leader no earlier than then (the basis of the leader's lease)."""
        if self.answered_sent_at is None or sent_at > self.answered_sent_at:
            self.answered_sent_at = sent_at

    def reset_recent_active(self) -> None:
        """A new check-quorum window begins."""
        self.recent_active = False

    def maybe_update(self, match: int) -> bool:
        """A successful answer: it holds the log through `match`. Frees the
        slot if the answer covers the message in flight, ends a snapshot
        transfer it covers, and leaves PROBE. Returns whether `match` moved
        up (so the commit index may move too; etcd's MaybeUpdate)."""
        if self.inflight and match >= self.inflight_index:
            self.inflight = False
        if self.snapshot_index and match >= self.snapshot_index:
            self.snapshot_index = 0
            self.snapshot_offset = 0
        advanced = match > self.match
        if advanced:
            self.match = match
            self.next = max(self.next, match + 1)
        self.become_replicate()
        return advanced

    def reject(self, target: int, first_index: int) -> None:
        """Its log conflicts at the probed index (or is short of a RepairLogReply):
        move `next` back toward `target`, strictly back but never below
        `match + 1`, then probe there at once, since it is answering; or,
        when the entries from `next` were compacted away (below
        `first_index`), send the snapshot at once (etcd's MaybeDecrTo)."""
        self.inflight = False
        self.state = PROBE
        self.next = max(self.match + 1, min(target, self.next - 1))
        self.repair = self.next < first_index
        self.probe_due = not self.repair

    def snapshot_chunk_acked(self, offset: int) -> None:
        """It holds the first `offset` bytes of the snapshot in transit: the
        next chunk goes from there. An old or repeated answer changes nothing."""
        if not self.snapshot_index or offset <= self.snapshot_offset:
            return
        self.snapshot_offset = offset
        self.inflight = False
        self.become_replicate()

    def snapshot_chunk_refused(self, offset: int) -> None:
        """It refused a chunk out of place (one was lost, or it restarted) and
        holds `offset` bytes: resend from there at once, since it is answering."""
        self.snapshot_offset = offset
        self.inflight = False
        self.repair = True

    def repair_requested(self, held_last_index: int) -> None:
        """It found a gap after `held_last_index` and asked for what it lacks
        (RepairLogRequest): send it at once. A message in flight answers it
        already; if that was lost, its expiry leads to a new probe and a new
        request."""
        if self.inflight:
            return
        self.next = max(self.match + 1, min(self.next, held_last_index + 1))
        self.repair = True

    # -- sends and time ------------------------------------------------------

    def is_paused(self, *, last_index: int, heartbeat_ticks: int) -> bool:
        """Whether nothing goes to it now: a message is in flight, or it is
        owed nothing yet (no new entries to replicate, no probe or repair
        due, and a heartbeat not yet due)."""
        if self.inflight:
            return True
        if self.state == SNAPSHOT or self.repair or self.probe_due or self.idle_ticks >= heartbeat_ticks:
            return False
        return not (self.state == REPLICATE and self.next <= last_index)

    def owed(self, *, first_index: int, last_index: int) -> OwedMessage:
        """What to send it when it is not paused: data (entries from `next`,
        or a snapshot chunk when they were compacted away or a transfer is
        pending) in REPLICATE and SNAPSHOT, or as a repair; otherwise a
        heartbeat."""
        if self.state == SNAPSHOT:
            return "snapshot_chunk"
        if (self.state == REPLICATE or self.repair) and (self.snapshot_index or self.next <= last_index):
            return "snapshot_chunk" if self.snapshot_index or self.next < first_index else "entries"
        return "heartbeat"

    def sent_data(self, through: int) -> None:
        """A message carrying entries through index `through`, or a chunk of
        the snapshot at `through`, went to it: it holds the one slot until
        an answer covers `through`."""
        self.inflight = True
        self.inflight_index = through
        self._sent()

    def sent_heartbeat(self, *, first_index: int, last_index: int) -> int:
        """A heartbeat goes to it now; returns the index it asks about
        (`next - 1`). On the schedule a probe asks about the leader's last
        entry, so a follower that missed any finds its gap whatever it last
        said; so does any probe whose point was compacted away."""
        if (self.state == PROBE and not self.probe_due) or self.next < first_index:
            self.next = last_index + 1
        self._sent()
        return self.next - 1

    def _sent(self) -> None:
        self.idle_ticks = 0
        self.probe_due = False
        self.repair = False

    def tick(self, *, last_index: int, heartbeat_ticks: int) -> None:
        """One more tick with nothing sent to it. A message in flight that has
        gone unanswered for `2 * heartbeat_ticks` ticks was lost, or it stopped
        answering; sending it more would be lost the same way, so probe."""
        self.idle_ticks += 1
        if self.inflight and self.idle_ticks >= 2 * heartbeat_ticks:
            self.become_probe(last_index)
