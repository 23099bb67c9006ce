"""RaftNode: the Raft consensus core as a pure state machine.

Inputs: `step(message)`, `tick()`, `propose(data)`, `propose_conf_change(change)`,
`transfer_leadership(to)`, `compact(index, data)`, `observe_time(now)`.
Output: `ready()` -> `Ready`; the caller persists, sends, applies, then
`advance(ready)`.  No clock (time is `tick()`), no I/O, no global randomness
(an injected `random.Random`), no Thespian.

Rules and invariants:
- Term handling happens once, in `step`, before the message reaches the
  role's step function (`_step_follower`, `_step_candidate`, `_step_leader`),
  which `_become_*` swaps (the structure of etcd-io/raft). Everything but
  the inputs, `ready`/`advance` and the read-only views is private.
- Persist before send: a message in a `Ready` depends only on state handed
  over for persisting by that `Ready` or an earlier one (term and vote,
  entries, snapshot). Between `ready()` and `advance()` the caller calls
  nothing else on the node.
- The leader tracks each follower in a `Progress`, which owns the rules of
  what it is sent and when (actors/raft/progress.py: probe, replicate and
  snapshot states, one data message in flight, heartbeats only when due)
  and every change to its fields: the node decides from the log and the
  membership, then tells the Progress what happened.
- Batching (thesis 10.2.1): sends are built when the caller asks for
  `ready()`, so every entry proposed since goes in one message, up to
  `max_batch_bytes`.
- Elections: PreVote (thesis 9.6) keeps a replica that was cut off from
  raising its term; a replica that heard from a live leader within
  `election_min` ticks ignores (pre)vote requests unless they come from a
  leadership transfer (thesis 4.2.3), so a rejoining replica cannot depose a
  healthy leader.
- Repair is follower-driven: a follower that finds a gap before an
  AppendLog (a probe beyond its log) asks with RepairLogRequest; the leader
  answers with a RepairLogReply of the missing entries, or of the snapshot, chunk
  by chunk, when they were compacted away. A follower whose log conflicts
  answers with a hint instead (paper 5.3, end) and the leader probes there.
- A leader counts itself toward commit only for entries it has persisted,
  and counts replicas only for entries of its own term (paper 5.4.2).
- Membership takes effect when its entry is appended and reverts when it is
  truncated (thesis 4.1, actors/raft/membership.py); a replica that is not
  a voter never campaigns.
- The leader's lease (docs/DESIGN.md section 4, "Lease reads"): each
  AppendLog carries the time the caller last observed (`observe_time`), each
  answer echoes it, and `lease_basis` is the latest such time a quorum of
  voters has echoed. A voter that heard from the leader at or after that time
  ignores elections for `election_min` ticks, and a tick is never shorter
  than the caller's tick, so no other leader can be elected before
  `lease_basis` plus `RaftConfig.lease_ticks` of real time. That holds only
  while no transfer bypasses the voters' refusal, so a leader that began a
  transfer has no lease for the rest of its term; and a replica restarted
  with a term, which no longer knows whom it heard from, ignores elections
  for its first `election_min` ticks. The node never reads a clock: the
  caller turns the basis into a lease.
- CheckQuorum counts answers over windows of `election_min` ticks, the same
  span for which followers protect a live leader from elections, so a
  cut-off leader steps down within two windows. A leadership transfer is
  abandoned after `election_max` ticks, a full election timeout.
- Caller errors raise `RaftError` (`NotLeader`, `ConfChangeBusy`: retry
  elsewhere or later) or `ValueError` (a malformed request); a broken Raft
  invariant raises `InvariantViolation` (an `AssertionError`: crash, restart
  from storage).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal, Sequence

from actors.raft.log import InvariantViolation, RaftLog
from actors.raft.membership import ConfHistory, check_conf_change, quorum
from actors.raft.messages import (
    CONF_REMOVE,
    ENTRY_COMMAND,
    ENTRY_CONF,
    ENTRY_NOOP,
    RAFT_MESSAGES,
    AppendLog,
    AppendLogReply,
    ConfChange,
    ConfState,
    Entry,
    HardState,
    RaftMessage,
    RepairLogReply,
    RepairLogRequest,
    Snapshot,
    SnapshotChunk,
    TimeoutNow,
    VoteReply,
    VoteRequest,
)
from actors.raft.progress import Progress

Role = Literal["follower", "pre_candidate", "candidate", "leader"]
FOLLOWER: Role = "follower"
PRE_CANDIDATE: Role = "pre_candidate"
CANDIDATE: Role = "candidate"
LEADER: Role = "leader"


class RaftError(Exception):
    """A caller error: the request cannot be served here or now (retry elsewhere or later)."""


class NotLeader(RaftError):
    """This replica is not the leader; `leader` is the best known leader id, or None."""

    def __init__(self, leader: str | None):
        super().__init__(f"not the leader (leader hint: {leader})")
        self.leader = leader


class ConfChangeBusy(RaftError):
    """A membership change is already in flight, or the leader has not yet
    committed an entry of its own term (thesis 4.1 and the leader-no-op fix)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SoftState:
    """Volatile view of who leads, reported when it changes.

    Fields:
        role: FOLLOWER, PRE_CANDIDATE, CANDIDATE or LEADER.
        leader: the known leader's id, or None.
        term: the current term.
    """

    role: Role
    leader: str | None
    term: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Ready:
    """Everything the caller must do, in this order of duty.

    Fields:
        soft_state: new role/leader/term when it changed since the last Ready, else None.
        hard_state: persist when not None (changed since the last Ready).
        snapshot: a snapshot received from the leader: persist it (dropping the
            log it covers), then restore the state machine from `snapshot.data`.
        entries: append to stable storage; `entries[0].index` first truncates
            any stored entry at or after that index.
        messages: `(to, message)` pairs to send only after the above is durable.
        committed_entries: apply to the state machine, in order.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    snapshot: Snapshot | None = None
    entries: tuple[Entry, ...] = ()
    messages: tuple[tuple[str, RaftMessage], ...] = ()
    committed_entries: tuple[Entry, ...] = ()


MAX_BATCH_BYTES = 48_000
"""The default `RaftConfig.max_batch_bytes`: also the largest command one entry
holds, which a clerk checks before it sends one (clerk/core.py)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RaftConfig:
    """Tunables, in logical ticks and bytes.

    Fields:
        id: this replica's id, e.g. "c1-r0".
        election_min, election_max: the election timeout is drawn uniformly
            from [election_min, election_max] ticks after each reset.
        heartbeat_ticks: a leader sends a heartbeat to a follower it has sent
            nothing for this many ticks.
        max_batch_bytes: cap on the summed `len(entry.data)` of one AppendLog
            or RepairLogReply, counting 32 bytes more per entry for its encoding
            (at least one entry is always sent; a command longer than this
            is refused by `propose`).
        max_snapshot_chunk: bytes of snapshot data per RepairLogReply chunk.
        pre_vote: run PreVote before becoming a candidate (thesis 9.6).
        check_quorum: a leader that has not heard from a quorum within an
            election timeout steps down, and voters ignore vote requests while
            they have a live leader (thesis 6.2, 4.2.3).
    """

    id: str
    election_min: int = 6
    election_max: int = 12
    heartbeat_ticks: int = 2
    max_batch_bytes: int = MAX_BATCH_BYTES
    max_snapshot_chunk: int = 48_000
    pre_vote: bool = True
    check_quorum: bool = True

    @property
    def lease_ticks(self) -> int:
        """How many ticks past `RaftNode.lease_basis` no other leader can be
        elected: a voter ignores elections for `election_min` ticks after it
        heard from the leader, and the first of them may come at once."""
        return self.election_min - 1


@dataclass(slots=True)
class _IncomingSnapshot:
    """A snapshot being received chunk by chunk from the leader of `leader_term`
    (kept in memory only: after a restart the leader's next chunk mismatches
    and the transfer starts over)."""

    leader_term: int
    index: int
    term: int
    conf: ConfState
    data: bytearray = field(default_factory=bytearray)


def _check_config(config: RaftConfig) -> None:
    if not 1 <= config.election_min <= config.election_max:
        raise ValueError(f"need 1 <= election_min <= election_max, got {config.election_min}, {config.election_max}")
    if not 1 <= config.heartbeat_ticks < config.election_min:
        raise ValueError(f"need 1 <= heartbeat_ticks < election_min, got {config.heartbeat_ticks}")
    if config.max_batch_bytes < 1 or config.max_snapshot_chunk < 1:
        raise ValueError("max_batch_bytes and max_snapshot_chunk must be positive")


class RaftNode:
    """One replica's Raft state machine (see the module docstring)."""

    def __init__(
        self,
        config: RaftConfig,
        *,
        rng: random.Random,
        hard_state: HardState = HardState(),
        snapshot: Snapshot | None = None,
        entries: Sequence[Entry] = (),
        initial_conf: ConfState = ConfState(),
    ) -> None:
        """Restore from what storage returned; `initial_conf` is used only when
        neither the snapshot nor the log carries a membership (a fresh cluster).
        A replica whose membership does not include it never campaigns.

        Conf entries are changes relative to the membership before them, so a
        replica that joins later must be given the cluster's founding
        membership as `initial_conf` too: until the log is first compacted
        the leader sends it the log from index 1, not a snapshot.

        `applied` starts at the snapshot's index: the first `Ready` hands
        back the committed entries after it for the caller to apply again.
        """
        _check_config(config)
        base_index = snapshot.index if snapshot is not None else 0
        if entries and entries[0].index != base_index + 1:
            raise ValueError(f"entries start at {entries[0].index}, not right after the snapshot at {base_index}")
        self._config = config
        self._rng = rng
        self._log = RaftLog(
            snapshot_index=base_index,
            snapshot_term=snapshot.term if snapshot is not None else 0,
            entries=entries,
        )
        self._confs = ConfHistory(index=base_index, conf=snapshot.conf if snapshot is not None else initial_conf)
        for entry in entries:
            if entry.kind == ENTRY_CONF:
                self._confs.append(entry.index, ConfChange.decode(entry.data))
        if hard_state.commit > self._log.last_index:
            raise ValueError(f"commit {hard_state.commit} is past the last entry {self._log.last_index}")
        self._snapshot = snapshot
        self._term = hard_state.term
        self._voted_for = hard_state.voted_for
        self._commit = max(hard_state.commit, base_index)
        self._applied = base_index
        self._stable = self._log.last_index
        self._received_snapshot: Snapshot | None = None
        self._incoming: _IncomingSnapshot | None = None
        self._outbox: list[tuple[str, RaftMessage]] = []
        self._progress: dict[str, Progress] = {}
        self._votes: dict[str, bool] = {}
        self._transferee: str | None = None
        self._transfer_begun = False
        self._transfer_elapsed = 0
        self._election_elapsed = 0
        self._clock: float | None = None
        # Before it crashed this replica may have heard from a leader that
        # still counts on it (the lease), so it starts by ignoring elections.
        self._restart_quiet_ticks = config.election_min if hard_state.term > 0 else 0
        self._randomized_timeout = config.election_max
        self._campaigns = 0
        self._role: Role = FOLLOWER
        self._leader: str | None = None
        self._step_role = self._step_follower
        self._become_follower(self._term, None)
        self._reported_hard = hard_state
        self._reported_soft = self._soft_state()

    # -- read-only views -------------------------------------------------------

    @property
    def id(self) -> str:
        return self._config.id

    @property
    def term(self) -> int:
        return self._term

    @property
    def role(self) -> Role:
        return self._role

    @property
    def leader(self) -> str | None:
        return self._leader

    @property
    def commit(self) -> int:
        return self._commit

    @property
    def applied(self) -> int:
        """Last index handed to the caller to apply (advanced by `advance`)."""
        return self._applied

    @property
    def last_index(self) -> int:
        return self._log.last_index

    @property
    def first_index(self) -> int:
        """First index still in the log; below it only the snapshot remains."""
        return self._log.first_index

    @property
    def conf(self) -> ConfState:
        """The membership in force (the one after the last appended conf entry)."""
        return self._confs.current

    @property
    def snapshot(self) -> Snapshot | None:
        """The latest snapshot, taken here (`compact`) or received from a leader."""
        return self._snapshot

    @property
    def progress(self) -> dict[str, int]:
        """Leader only: match index of every follower and learner (empty otherwise),
        e.g. to promote a learner once it has caught up (thesis 4.2.1)."""
        return {peer: progress.match for peer, progress in self._progress.items()}

    @property
    def transferee(self) -> str | None:
        """Leader only: the replica leadership is being handed to, or None."""
        return self._transferee

    @property
    def lease_basis(self) -> float | None:
        """Leader only: the latest `observe_time` value a quorum of voters has
        echoed (this leader counting as the time it last observed), so no
        other leader can be elected before it plus `RaftConfig.lease_ticks`;
        None off the leader, before a quorum answered, without observed
        time, once a leadership transfer began this term, or without
        CheckQuorum (whose voters make no such promise)."""
        if not self._config.check_quorum or self._role != LEADER or self._transfer_begun or self._clock is None:
            return None
        voters = self._confs.current.voters
        answered = (self._clock if voter == self.id else self._progress[voter].answered_sent_at for voter in voters)
        heard = sorted((sent_at for sent_at in answered if sent_at is not None), reverse=True)
        needed = quorum(voters)
        return heard[needed - 1] if len(heard) >= needed else None

    @property
    def campaigns(self) -> int:
        """Elections this node started since it was created, for metrics: each
        pre-vote, and each real vote not following a won pre-vote."""
        return self._campaigns

    # -- roles ---------------------------------------------------------------------

    def _become_follower(self, term: int, leader: str | None) -> None:
        self._reset(term)
        self._role = FOLLOWER
        self._leader = leader
        self._step_role = self._step_follower

    def _become_pre_candidate(self) -> None:
        """PreVote (thesis 9.6): ask whether an election could be won before
        disturbing anyone; term and vote stay as they are."""
        self._reset(self._term)
        self._role = PRE_CANDIDATE
        self._step_role = self._step_candidate

    def _become_candidate(self) -> None:
        """Paper 5.2: a new term, a vote for itself."""
        self._reset(self._term + 1)
        self._voted_for = self.id
        self._role = CANDIDATE
        self._step_role = self._step_candidate

    def _become_leader(self) -> None:
        if self._role != CANDIDATE:
            raise InvariantViolation(f"{self.id} became leader from {self._role}")
        self._reset(self._term)
        self._role = LEADER
        self._leader = self.id
        self._step_role = self._step_leader
        # The first probes ask about the entry before the no-op, which the
        # followers in step hold, so they answer at once without a repair.
        self._progress = {peer: Progress(next=self._log.last_index + 1) for peer in self._peers()}
        # Paper 5.4.2 and thesis 3.6.2: earlier terms' entries commit only
        # under an entry of this term, so append one at once; it also makes
        # membership changes safe again (the leader-no-op fix, thesis 4.1).
        self._append_new(ENTRY_NOOP, b"")

    def _reset(self, term: int) -> None:
        if term < self._term:
            raise InvariantViolation(f"term would go back from {self._term} to {term}")
        if term != self._term:
            self._term = term
            self._voted_for = None
        self._leader = None
        self._election_elapsed = 0
        # Paper 5.2: randomized timeouts make split votes rare.
        self._randomized_timeout = self._rng.randint(self._config.election_min, self._config.election_max)
        self._votes = {}
        self._progress = {}
        self._transferee = None
        self._transfer_begun = False

    # -- time ----------------------------------------------------------------------

    def tick(self) -> None:
        """One logical tick of the caller's clock."""
        if self._restart_quiet_ticks:
            self._restart_quiet_ticks -= 1
        if self._role == LEADER:
            self._tick_leader()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self._election_elapsed += 1
        if self._election_elapsed >= self._randomized_timeout and self._promotable():
            self._campaign(pre_vote=self._config.pre_vote)

    def _tick_leader(self) -> None:
        config = self._config
        self._election_elapsed += 1
        if self._transferee is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= config.election_max:
                # Thesis 3.10: a transfer that has not completed within an
                # election timeout is aborted and the leader serves again.
                self._transferee = None
        if self._election_elapsed >= config.election_min:
            self._election_elapsed = 0
            # CheckQuorum (thesis 6.2): a leader cut off from a quorum steps
            # down so its clients look for the real leader.
            if config.check_quorum and not self._quorum_active():
                self._become_follower(self._term, None)
                return
            for progress in self._progress.values():
                progress.reset_recent_active()
        for progress in self._progress.values():
            progress.tick(last_index=self._log.last_index, heartbeat_ticks=config.heartbeat_ticks)

    def observe_time(self, now: float) -> None:
        """The caller's monotonic clock, in seconds, before an input: carried by
        the AppendLogs built from now on (`lease_basis`)."""
        self._clock = now

    def _quorum_active(self) -> bool:
        voters = self._confs.current.voters
        active = sum(1 for voter in voters if voter == self.id or self._progress[voter].recent_active)
        return active >= quorum(voters)

    # -- elections -------------------------------------------------------------------

    def _promotable(self) -> bool:
        return self.id in self._confs.current.voters

    def _campaign(self, *, pre_vote: bool, transfer: bool = False) -> None:
        if pre_vote or self._role != PRE_CANDIDATE:  # a won pre-vote goes on with the same election
            self._campaigns += 1
        if pre_vote:
            self._become_pre_candidate()
            term = self._term + 1
        else:
            self._become_candidate()
            term = self._term
        self._votes[self.id] = True
        for voter in self._confs.current.voters:
            if voter != self.id:
                self._send(
                    voter,
                    VoteRequest(
                        term=term,
                        candidate=self.id,
                        last_index=self._log.last_index,
                        last_term=self._log.last_term,
                        pre_vote=pre_vote,
                        transfer=transfer,
                    ),
                )
        self._poll()

    def _poll(self) -> None:
        voters = self._confs.current.voters
        granted = sum(1 for voter in voters if self._votes.get(voter) is True)
        rejected = sum(1 for voter in voters if self._votes.get(voter) is False)
        if granted >= quorum(voters):
            if self._role == PRE_CANDIDATE:
                self._campaign(pre_vote=False)
            else:
                self._become_leader()
        elif len(voters) - rejected < quorum(voters):
            self._become_follower(self._term, None)

    def _in_lease(self) -> bool:
        """Thesis 4.2.3 with CheckQuorum: while a live leader is known (heard
        from within the minimum election timeout) a replica ignores requests
        to elect another, so a rejoining or removed replica cannot depose it."""
        if not self._config.check_quorum:
            return False
        if self._role == LEADER or self._restart_quiet_ticks:
            return True
        return self._leader is not None and self._election_elapsed < self._config.election_min

    def _handle_vote_request(self, message: VoteRequest) -> None:
        """Paper 5.2 and 5.4.1; a pre-vote (thesis 9.6) is answered as the real
        vote would be, but records nothing."""
        can_vote = (
            self._voted_for == message.candidate
            or (self._voted_for is None and self._leader is None)
            or (message.pre_vote and message.term > self._term)
        )
        if can_vote and self._log.is_up_to_date(message.last_index, message.last_term):
            self._send(message.candidate, VoteReply(term=message.term, voter=self.id, granted=True, pre_vote=message.pre_vote))
            if not message.pre_vote:
                self._voted_for = message.candidate
                self._election_elapsed = 0
        else:
            self._send(
                message.candidate, VoteReply(term=self._term, voter=self.id, granted=False, pre_vote=message.pre_vote)
            )

    # -- stepping messages ------------------------------------------------------------------

    def step(self, message: RaftMessage) -> None:
        """Handle one message from another replica."""
        if not isinstance(message, RAFT_MESSAGES):
            raise TypeError(f"not a Raft message: {message!r}")
        if message.term > self._term:
            if isinstance(message, VoteRequest):
                if not message.transfer and self._in_lease():
                    return
                if not message.pre_vote:
                    self._become_follower(message.term, None)
            elif isinstance(message, VoteReply) and message.pre_vote and message.granted:
                pass  # a granted pre-vote carries the probed term, which is not ours yet
            elif isinstance(message, (AppendLog, RepairLogReply, TimeoutNow)):
                self._become_follower(message.term, message.leader)
            else:
                self._become_follower(message.term, None)
        elif message.term < self._term:
            self._answer_stale(message)
            return
        if isinstance(message, VoteRequest):
            self._handle_vote_request(message)
        else:
            self._step_role(message)

    def _answer_stale(self, message: RaftMessage) -> None:
        """Most messages from an older term are dropped (paper 5.1). Two get an
        answer carrying the current term, since with PreVote and CheckQuorum
        nothing else would teach it to their sender: an old leader, and a
        pre-candidate still behind the current term."""
        if isinstance(message, (AppendLog, RepairLogReply)):
            self._send(message.leader, AppendLogReply(term=self._term, follower=self.id, success=False))
        elif isinstance(message, VoteRequest) and message.pre_vote:
            self._send(message.candidate, VoteReply(term=self._term, voter=self.id, granted=False, pre_vote=True))

    def _step_follower(self, message: RaftMessage) -> None:
        if isinstance(message, (AppendLog, RepairLogReply)):
            self._leader = message.leader
            self._election_elapsed = 0
            if isinstance(message, RepairLogReply) and message.snapshot is not None:
                self._handle_snapshot_chunk(message)
            else:
                self._handle_append(message)
        elif isinstance(message, TimeoutNow):
            # Thesis 3.10: the leader handed over; skip PreVote, since the
            # cluster is known to be healthy and the voters must not ignore it.
            if self._promotable():
                self._campaign(pre_vote=False, transfer=True)
        # Anything else reaching a follower answers a role it no longer has.

    def _step_candidate(self, message: RaftMessage) -> None:
        if isinstance(message, (AppendLog, RepairLogReply)):
            # Paper 5.2: a leader of this term exists; accept it.
            self._become_follower(message.term, message.leader)
            self._step_follower(message)
        elif isinstance(message, VoteReply) and message.pre_vote == (self._role == PRE_CANDIDATE):
            expected = self._term + 1 if self._role == PRE_CANDIDATE else self._term
            if message.granted and message.term != expected:
                return
            if message.voter in self._confs.current.voters:
                self._votes[message.voter] = message.granted
                self._poll()

    def _step_leader(self, message: RaftMessage) -> None:
        if isinstance(message, AppendLogReply):
            self._handle_append_reply(message)
        elif isinstance(message, RepairLogRequest):
            self._handle_repair_request(message)
        elif isinstance(message, (AppendLog, RepairLogReply)):
            raise InvariantViolation(f"two leaders in term {self._term}: {self.id} and {message.leader}")

    # -- follower: replication ------------------------------------------------------------------

    def _handle_append(self, message: AppendLog | RepairLogReply) -> None:
        """AppendEntries (paper 5.3), for AppendLog and entry-carrying RepairLogReply."""
        log = self._log
        if message.prev_index > log.last_index:
            if isinstance(message, AppendLog):
                # A gap: this replica missed entries (it slept, or was cut off).
                self._send(message.leader, RepairLogRequest(term=self._term, follower=self.id, last_index=log.last_index))
            else:
                self._send_rejection(message.leader, hint_index=log.last_index + 1, hint_term=0, sent_at=None)
            return
        sent_at = message.sent_at if isinstance(message, AppendLog) else None
        last_new = message.prev_index + len(message.entries)
        if message.prev_index <= self._commit:
            # Committed entries are in every later leader's log (Leader
            # Completeness, paper 5.4.3): skip the ones the message repeats,
            # after checking the ones still retained agree.
            repeated = message.entries[: self._commit - message.prev_index]
            known_prev_term = log.term(message.prev_index)
            if log.find_conflict(repeated) is not None or known_prev_term not in (None, message.prev_term):
                raise InvariantViolation(f"{self.id}: {message.leader} sent entries conflicting with committed ones")
            entries = message.entries[self._commit - message.prev_index :]
        elif log.match_term(message.prev_index, message.prev_term):
            entries = message.entries
        else:
            # Paper 5.3 (end): name the conflicting term and where it starts,
            # so the leader skips the whole term in one round trip.
            conflict_term = log.term(message.prev_index)
            assert conflict_term is not None  # prev_index is past the commit, hence retained
            hint_index = log.first_index_of_term(message.prev_index, floor=self._commit + 1)
            self._send_rejection(message.leader, hint_index=hint_index, hint_term=conflict_term, sent_at=sent_at)
            return
        self._append_from_leader(entries)
        self._commit_to(min(message.commit, last_new))
        self._send(
            message.leader,
            AppendLogReply(
                term=self._term,
                follower=self.id,
                success=True,
                match_index=max(last_new, self._commit),
                sent_at=sent_at,
            ),
        )

    def _append_from_leader(self, entries: Sequence[Entry]) -> None:
        conflict = self._log.find_conflict(entries)
        if conflict is None:
            return
        if conflict <= self._log.last_index:
            self._log.truncate(conflict)
            self._confs.truncate(conflict)
            self._stable = min(self._stable, conflict - 1)
        self._append(entries[conflict - entries[0].index :])

    def _commit_to(self, index: int) -> None:
        if index > self._commit:
            self._commit = index

    def _send_rejection(self, leader: str, *, hint_index: int, hint_term: int, sent_at: float | None) -> None:
        self._send(
            leader,
            AppendLogReply(
                term=self._term,
                follower=self.id,
                success=False,
                hint_index=hint_index,
                hint_term=hint_term,
                sent_at=sent_at,
            ),
        )

    def _handle_snapshot_chunk(self, message: RepairLogReply) -> None:
        """InstallSnapshot (paper 7, figure 13), one acknowledged chunk at a time."""
        chunk = message.snapshot
        assert chunk is not None  # routed here only for snapshot-carrying RepairLogs
        if chunk.index <= self._commit or self._log.match_term(chunk.index, chunk.term):
            # Figure 13, step 6: the log already holds the snapshot's last
            # entry, so the snapshot is not needed; only the commit moves.
            self._incoming = None
            self._commit_to(chunk.index)
            self._send(
                message.leader,
                AppendLogReply(term=self._term, follower=self.id, success=True, match_index=self._commit),
            )
            return
        incoming = self._incoming
        # Only this leader's bytes may be joined: another leader's image of
        # the same index need not be byte-identical.
        if incoming is None or (incoming.leader_term, incoming.index) != (self._term, chunk.index):
            incoming = None
            if chunk.offset == 0:
                incoming = _IncomingSnapshot(leader_term=self._term, index=chunk.index, term=chunk.term, conf=chunk.conf)
            self._incoming = incoming
        if incoming is None or chunk.offset != len(incoming.data):
            # A lost, repeated or restarted chunk: say where to resume.
            received = len(incoming.data) if incoming is not None else 0
            self._send(
                message.leader,
                AppendLogReply(term=self._term, follower=self.id, success=False, snapshot_offset=received),
            )
            return
        incoming.data.extend(chunk.data)
        if not chunk.done:
            self._send(
                message.leader,
                AppendLogReply(term=self._term, follower=self.id, success=True, snapshot_offset=len(incoming.data)),
            )
            return
        self._incoming = None
        self._install_snapshot(
            Snapshot(index=incoming.index, term=incoming.term, conf=incoming.conf, data=bytes(incoming.data))
        )
        self._send(
            message.leader,
            AppendLogReply(term=self._term, follower=self.id, success=True, match_index=chunk.index),
        )

    def _install_snapshot(self, snapshot: Snapshot) -> None:
        """Figure 13, steps 7-8: the snapshot replaces the whole log; the caller
        persists it and restores its state machine from it (Ready.snapshot)."""
        self._log.restore(snapshot.index, snapshot.term)
        self._confs.restore(snapshot.index, snapshot.conf)
        self._commit = snapshot.index
        self._applied = snapshot.index
        self._stable = snapshot.index
        self._snapshot = snapshot
        self._received_snapshot = snapshot

    # -- leader: replication ---------------------------------------------------------------------

    def _handle_append_reply(self, message: AppendLogReply) -> None:
        progress = self._progress.get(message.follower)
        if progress is None:
            return
        progress.mark_recent_active()
        if message.sent_at is not None:
            progress.answered_append_sent_at(message.sent_at)
        if message.success and message.snapshot_offset:
            progress.snapshot_chunk_acked(message.snapshot_offset)
        elif message.success:
            if progress.maybe_update(message.match_index):
                self._advance_commit()
                if message.follower == self._transferee and message.match_index == self._log.last_index:
                    self._send_timeout_now(message.follower)
        elif message.hint_index:
            progress.reject(self._back_off_target(progress, message), self._log.first_index)
        elif progress.snapshot_index:
            # Only an out-of-place chunk is refused without a hint.
            progress.snapshot_chunk_refused(message.snapshot_offset)

    def _back_off_target(self, progress: Progress, message: AppendLogReply) -> int:
        """Where to probe a follower that rejected: paper 5.3 (end), skip past
        its whole conflicting term. If this log holds that term, the entries
        through its last one match (Log Matching), so resend after them;
        otherwise resend from where the follower's run of that term starts."""
        if message.hint_term:
            index = self._log.last_index_with_term_at_most(message.hint_term, progress.next - 1)
            if index is not None and self._log.term(index) == message.hint_term:
                return index + 1
        return message.hint_index

    def _handle_repair_request(self, message: RepairLogRequest) -> None:
        progress = self._progress.get(message.follower)
        if progress is None:
            return
        progress.mark_recent_active()
        progress.repair_requested(message.last_index)

    def _advance_commit(self) -> None:
        """Advance the commit index to the highest index a quorum of voters
        holds, if that entry is of this term (paper 5.4.2; figure 8 shows why
        older terms' entries must not be counted)."""
        voters = self._confs.current.voters
        matches = sorted(
            (self._stable if voter == self.id else self._progress[voter].match for voter in voters), reverse=True
        )
        index = matches[quorum(voters) - 1]
        if index > self._commit and self._log.term(index) == self._term:
            self._commit = index
            if self._confs.last_change_index <= index:
                self._track_members()

    def _bcast_append(self) -> None:
        for peer, progress in self._progress.items():
            self._send_append_if_due(peer, progress)

    def _owes_a_follower(self) -> bool:
        # has_ready runs after every input: read the log's end once, not per follower.
        last_index, heartbeat_ticks = self._log.last_index, self._config.heartbeat_ticks
        return any(
            not progress.is_paused(last_index=last_index, heartbeat_ticks=heartbeat_ticks)
            for progress in self._progress.values()
        )

    def _send_append_if_due(self, peer: str, progress: Progress) -> None:
        """Send what `peer` lacks in one message (thesis 10.2.1 batching), the
        next snapshot chunk, or else a heartbeat when one is due (paper 5.2)."""
        log = self._log
        if progress.is_paused(last_index=log.last_index, heartbeat_ticks=self._config.heartbeat_ticks):
            return
        owed = progress.owed(first_index=log.first_index, last_index=log.last_index)
        if owed == "heartbeat":
            self._send_heartbeat(peer, progress)
        elif owed == "snapshot_chunk":
            self._send_snapshot_chunk(peer, progress)
        else:
            entries = log.slice(progress.next, log.last_index + 1, self._config.max_batch_bytes)
            kind = RepairLogReply if progress.repair else AppendLog
            self._send_append(peer, kind, progress.next - 1, entries)
            progress.sent_data(entries[-1].index)

    def _send_heartbeat(self, peer: str, progress: Progress) -> None:
        """An empty AppendLog asking whether `peer` holds the entry before
        `next`. It carries the commit index, which the follower takes only as
        far as that entry, which it has then verified."""
        log = self._log
        prev_index = progress.sent_heartbeat(first_index=log.first_index, last_index=log.last_index)
        self._send_append(peer, AppendLog, prev_index, ())

    def _send_append(
        self, peer: str, kind: type[AppendLog] | type[RepairLogReply], prev_index: int, entries: tuple[Entry, ...]
    ) -> None:
        prev_term = self._log.term(prev_index)
        assert prev_term is not None  # prev_index >= the compaction point
        fields = dict(term=self._term, leader=self.id, prev_index=prev_index, prev_term=prev_term, entries=entries,
                      commit=self._commit)
        if kind is AppendLog:
            self._send(peer, AppendLog(**fields, sent_at=self._clock))
        else:
            self._send(peer, RepairLogReply(**fields))

    def _send_snapshot_chunk(self, peer: str, progress: Progress) -> None:
        """Paper 7: the entries it needs were compacted away; send the snapshot
        in chunks of `max_snapshot_chunk` bytes, the next after each answer."""
        snapshot = self._snapshot
        assert snapshot is not None  # entries below the first index exist only in a snapshot
        progress.become_snapshot(snapshot.index)
        offset = progress.snapshot_offset
        data = snapshot.data[offset : offset + self._config.max_snapshot_chunk]
        chunk = SnapshotChunk(
            index=snapshot.index,
            term=snapshot.term,
            conf=snapshot.conf,
            offset=offset,
            data=data,
            done=offset + len(data) >= len(snapshot.data),
        )
        self._send(peer, RepairLogReply(term=self._term, leader=self.id, snapshot=chunk, commit=self._commit))
        progress.sent_data(snapshot.index)

    # -- proposals and membership --------------------------------------------------------------

    def propose(self, data: bytes) -> int:
        """Append a command; returns its log index. Raises NotLeader."""
        self._check_accepting()
        if len(data) > self._config.max_batch_bytes:
            raise ValueError(f"a command of {len(data)} bytes exceeds max_batch_bytes {self._config.max_batch_bytes}")
        return self._append_new(ENTRY_COMMAND, data)

    def propose_conf_change(self, change: ConfChange) -> int:
        """Append a single-replica membership change (thesis 4.1); returns its index.

        Raises ConfChangeBusy while an earlier change is uncommitted or this
        leader has not yet committed an entry of its term (the leader-no-op
        fix), NotLeader off the leader, ValueError for a change that does not
        fit the membership.

        Removing the leader itself (thesis 4.2.2) does not proceed here: the
        leader starts handing leadership to the most up-to-date other voter
        and raises NotLeader naming it, so the caller retries the removal
        there."""
        self._check_accepting()
        if self._log.term(self._commit) != self._term or self._confs.last_change_index > self._commit:
            raise ConfChangeBusy("a membership change or this leader's first entry is not committed yet")
        check_conf_change(self._confs.current, change)
        if change.op == CONF_REMOVE and change.replica == self.id:
            successor = min(
                (voter for voter in self._confs.current.voters if voter != self.id),
                key=lambda voter: (-self._progress[voter].match, voter),
            )
            self.transfer_leadership(successor)
            raise NotLeader(successor)
        return self._append_new(ENTRY_CONF, change.encode())

    def transfer_leadership(self, to: str) -> None:
        """Leader only: bring `to` up to date, then send it TimeoutNow (thesis
        3.10). Proposals are refused meanwhile (NotLeader naming `to`); the
        transfer is abandoned after an election timeout."""
        if self._role != LEADER:
            raise NotLeader(self._leader)
        if to == self.id or to == self._transferee:
            return
        if to not in self._confs.current.voters:
            raise ValueError(f"{to} is not a voter")
        self._transferee = to
        self._transfer_begun = True
        self._transfer_elapsed = 0
        if self._progress[to].match == self._log.last_index:
            self._send_timeout_now(to)

    def _send_timeout_now(self, to: str) -> None:
        self._send(to, TimeoutNow(term=self._term, leader=self.id))

    def _check_accepting(self) -> None:
        if self._role != LEADER:
            raise NotLeader(self._leader)
        if self._transferee is not None:
            raise NotLeader(self._transferee)

    def _append_new(self, kind: str, data: bytes) -> int:
        index = self._log.last_index + 1
        self._append((Entry(index=index, term=self._term, kind=kind, data=data),))
        return index

    def _append(self, entries: Sequence[Entry]) -> None:
        self._log.append(entries)
        changed = False
        for entry in entries:
            if entry.kind == ENTRY_CONF:
                self._confs.append(entry.index, ConfChange.decode(entry.data))
                changed = True
        if changed and self._role == LEADER:
            self._track_members()
            # Removing a slow voter can shrink the quorum to what is replicated.
            self._advance_commit()

    def _track_members(self) -> None:
        """A membership change took effect on the leader, or committed.

        New members get the log at once. A removed replica keeps getting it
        until its removal commits, so it learns it was removed and stops
        campaigning (thesis 4.2.3); it no longer counts toward any quorum."""
        peers = self._peers()
        for peer in peers:
            self._progress.setdefault(peer, Progress(next=self._log.last_index + 1))
        if self._confs.last_change_index <= self._commit:
            for peer in [peer for peer in self._progress if peer not in peers]:
                del self._progress[peer]

    def _peers(self) -> tuple[str, ...]:
        conf = self._confs.current
        return tuple(replica for replica in conf.voters + conf.learners if replica != self.id)

    # -- compaction ----------------------------------------------------------------------------

    def compact(self, index: int, data: bytes) -> Snapshot:
        """The application snapshotted its state at applied `index`: record it
        as the node's snapshot and drop the in-memory log up to `index`. The
        caller persists the returned Snapshot (storage.compact)."""
        if index > self._applied:
            raise ValueError(f"cannot compact to {index}: only {self._applied} is applied")
        if index <= self._log.snapshot_index:
            raise ValueError(f"already compacted to {self._log.snapshot_index}")
        term = self._log.term(index)
        assert term is not None  # snapshot_index < index <= applied <= last_index
        snapshot = Snapshot(index=index, term=term, conf=self._confs.at(index), data=data)
        self._log.compact(index)
        self._confs.compact(index)
        self._snapshot = snapshot
        return snapshot

    # -- Ready ---------------------------------------------------------------------------------

    def has_ready(self) -> bool:
        return (
            self._soft_state() != self._reported_soft
            or self._hard_state() != self._reported_hard
            or self._received_snapshot is not None
            or self._log.last_index > self._stable
            or bool(self._outbox)
            or self._commit > self._applied
            or (self._role == LEADER and self._owes_a_follower())
        )

    def ready(self) -> Ready:
        """What to persist, send and apply now (see `Ready`); hand it back
        through `advance` once done, calling nothing else in between."""
        if self._role == LEADER:
            self._bcast_append()
        soft_state = self._soft_state()
        hard_state = self._hard_state()
        log = self._log
        return Ready(
            soft_state=soft_state if soft_state != self._reported_soft else None,
            hard_state=hard_state if hard_state != self._reported_hard else None,
            snapshot=self._received_snapshot,
            entries=log.slice(self._stable + 1, log.last_index + 1) if log.last_index > self._stable else (),
            messages=tuple(self._outbox),
            committed_entries=log.slice(self._applied + 1, self._commit + 1) if self._commit > self._applied else (),
        )

    def advance(self, ready: Ready) -> None:
        """The caller persisted, sent and applied `ready`."""
        if ready.soft_state is not None:
            self._reported_soft = ready.soft_state
        if ready.hard_state is not None:
            self._reported_hard = ready.hard_state
        if ready.snapshot is not None:
            self._received_snapshot = None
        if ready.entries:
            self._stable = ready.entries[-1].index
        del self._outbox[: len(ready.messages)]
        if ready.committed_entries:
            self._applied = ready.committed_entries[-1].index
        if self._role == LEADER and ready.entries:
            self._advance_commit()

    def _soft_state(self) -> SoftState:
        return SoftState(role=self._role, leader=self._leader, term=self._term)

    def _hard_state(self) -> HardState:
        return HardState(term=self._term, voted_for=self._voted_for, commit=self._commit)

    def _send(self, to: str, message: RaftMessage) -> None:
        self._outbox.append((to, message))
