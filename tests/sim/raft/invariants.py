"""The Raft safety properties (paper, figure 3), checked incrementally.

Rules:
- The checker sees what the harness sees: every `Ready` a replica emits (what
  it persists, commits and applies) and each replica's role and term after
  every step. It keeps a mirror of each replica's stored log, so it judges
  the durable state, which is what survives crashes.
- Each property is checked when the state it is about changes, so checking
  after every step costs only the work that step did:
  * Election Safety: at most one leader per term, over all time.
  * Leader Append-Only: a leader's Ready never truncates or replaces its log.
  * Log Matching: every stored entry is recorded under (index, term) with its
    content and the term of the entry before it; two logs holding the same
    (index, term) therefore agree on that entry and, by induction, on every
    earlier retained one. `check_logs_match` confirms it pairwise.
  * Leader Completeness: an entry committed by term C is in the log of every
    leader of a term after C, checked when a leader first appears and when
    an entry is first seen committed.
  * State Machine Safety: a global index -> entry table of what was applied;
    applies are contiguous, and restored snapshots agree with the table.
- Beyond figure 3, the promise the proofs rest on (docs/DESIGN.md section 2):
  Persist Before Send. A vote, a candidacy and an acknowledged match index
  are sent only once the term, vote and entries they vouch for are durable,
  and no message carries a term newer than the durable one. Checked on each
  message against the mirror, which already holds the message's own Ready.
- Lease Safety (docs/DESIGN.md section 4, "Lease reads"): while a leader
  holds an unexpired lease, as it would compute it from `lease_basis`, no
  replica leads a later term. Checked after every step, against the time of
  the step.
- A broken property raises `Violation(invariant, detail)`; the harness adds
  the step, time and seed.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.raft.messages import AppendLogReply, Entry, HardState, Snapshot, VoteReply, VoteRequest

ELECTION_SAFETY = "Election Safety"
LEADER_APPEND_ONLY = "Leader Append-Only"
LOG_MATCHING = "Log Matching"
LEADER_COMPLETENESS = "Leader Completeness"
STATE_MACHINE_SAFETY = "State Machine Safety"
PERSIST_BEFORE_SEND = "Persist Before Send"
READY_CONTRACT = "Ready Contract"
DURABILITY = "Durability"
LEASE_SAFETY = "Lease Safety"
LIVENESS = "Liveness"
NODE_ERROR = "Node Error"


class Violation(Exception):
    """A broken property; `invariant` names it, `detail` says what was seen."""

    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail


class LogMirror:
    """What one replica's storage holds (hard state, snapshot point, log),
    rebuilt from the Readys it persisted.

    Follows the storage contract: a received snapshot keeps the entries after
    it only when the log holds the snapshot's last entry; a compaction drops
    the entries it covers.
    """

    def __init__(
        self, hard_state: HardState = HardState(), snapshot: Snapshot | None = None, entries: tuple[Entry, ...] = ()
    ) -> None:
        self.hard_state = hard_state
        self.snapshot_index = snapshot.index if snapshot else 0
        self.snapshot_term = snapshot.term if snapshot else 0
        self.entries: list[Entry] = list(entries)

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)

    def term_at(self, index: int) -> int | None:
        """Term at `index`: the snapshot's at its own index, None where not retained."""
        if index == self.snapshot_index:
            return self.snapshot_term
        entry = self.entry_at(index)
        return entry.term if entry else None

    def entry_at(self, index: int) -> Entry | None:
        offset = index - self.snapshot_index - 1
        if 0 <= offset < len(self.entries):
            return self.entries[offset]
        return None

    def install_snapshot(self, snapshot: Snapshot) -> None:
        if self.term_at(snapshot.index) == snapshot.term and snapshot.index <= self.last_index:
            del self.entries[: snapshot.index - self.snapshot_index]
        else:
            self.entries.clear()
        self.snapshot_index, self.snapshot_term = snapshot.index, snapshot.term

    def compact(self, snapshot: Snapshot) -> None:
        del self.entries[: snapshot.index - self.snapshot_index]
        self.snapshot_index, self.snapshot_term = snapshot.index, snapshot.term

    def write(self, entries: tuple[Entry, ...]) -> None:
        """Append `entries` after truncating the log at the first one."""
        del self.entries[entries[0].index - self.snapshot_index - 1 :]
        self.entries.extend(entries)


@dataclass(frozen=True, kw_only=True, slots=True)
class Committed:
    """An entry first seen committed.

    Fields:
        term, kind, data: the entry.
        commit_term: the observer's term when it was first seen committed;
            the entry was committed by a leader of this term or an earlier one.
        seen_by: the replica that first reported it committed.
    """

    term: int
    kind: str
    data: bytes
    commit_term: int
    seen_by: str


class RaftChecker:
    """Global history of one simulated cluster and the checks on it."""

    def __init__(self) -> None:
        self.mirrors: dict[str, LogMirror] = {}
        self.leader_of_term: dict[int, str] = {}
        self.roles: dict[str, tuple[str, int]] = {}
        self.leases: dict[str, tuple[int, float]] = {}  # leader -> (term, when its lease runs out)
        self._written: dict[tuple[int, int], tuple[str, bytes, int, str]] = {}
        self.committed: dict[int, Committed] = {}
        self._commit_seen: dict[str, int] = {}
        self.applied: dict[int, tuple[int, str, bytes, str]] = {}

    # -- replicas coming and going ------------------------------------------

    def start(self, node: str, hard_state: HardState, snapshot: Snapshot | None, entries: tuple[Entry, ...]) -> None:
        """A replica starts, fresh or from what its storage returned."""
        self.mirrors[node] = LogMirror(hard_state, snapshot, entries)
        self._commit_seen[node] = max(hard_state.commit, snapshot.index if snapshot else 0)
        self.roles.pop(node, None)

    def stop(self, node: str) -> None:
        self.roles.pop(node, None)
        self.leases.pop(node, None)

    def check_restart(
        self, node: str, hard_state: HardState, snapshot: Snapshot | None, entries: tuple[Entry, ...]
    ) -> None:
        """What storage returns after a crash is what the replica persisted."""
        mirror = self.mirrors[node]
        if hard_state != mirror.hard_state:
            raise Violation(DURABILITY, f"{node} restarted with {hard_state!r}, persisted {mirror.hard_state!r}")
        if (snapshot.index if snapshot else 0, snapshot.term if snapshot else 0) != (
            mirror.snapshot_index,
            mirror.snapshot_term,
        ):
            raise Violation(DURABILITY, f"{node} restarted with snapshot {snapshot!r}, persisted {mirror.snapshot_index}")
        if tuple(entries) != tuple(mirror.entries):
            raise Violation(
                DURABILITY, f"{node} restarted with {len(entries)} log entries, persisted {len(mirror.entries)}"
            )

    # -- what a Ready persists ----------------------------------------------

    def persist(
        self,
        node: str,
        *,
        is_leader: bool,
        hard_state: HardState | None,
        snapshot: Snapshot | None,
        entries: tuple[Entry, ...],
    ) -> None:
        """Check and mirror one Ready's durable part; `is_leader`: the node leads after the step."""
        mirror = self.mirrors[node]
        if hard_state is not None:
            if hard_state.term < mirror.hard_state.term:
                raise Violation(
                    READY_CONTRACT, f"{node} term goes back from {mirror.hard_state.term} to {hard_state.term}"
                )
            if hard_state.term == mirror.hard_state.term and mirror.hard_state.voted_for not in (
                None,
                hard_state.voted_for,
            ):
                raise Violation(
                    ELECTION_SAFETY,
                    f"{node} changes its vote in term {hard_state.term} from {mirror.hard_state.voted_for} "
                    f"to {hard_state.voted_for}",
                )
            mirror.hard_state = hard_state
        if snapshot is not None:
            if is_leader:
                raise Violation(LEADER_APPEND_ONLY, f"leader {node} installs a snapshot at {snapshot.index}")
            if snapshot.index < mirror.snapshot_index:
                raise Violation(
                    READY_CONTRACT, f"{node} installs snapshot {snapshot.index} older than its {mirror.snapshot_index}"
                )
            self._check_snapshot_point(node, snapshot.index, snapshot.term)
            mirror.install_snapshot(snapshot)
        if not entries:
            return
        start = entries[0].index
        if any(later.index != earlier.index + 1 for earlier, later in zip(entries, entries[1:])):
            raise Violation(READY_CONTRACT, f"{node} Ready entries are not contiguous from {start}")
        if not mirror.snapshot_index < start <= mirror.last_index + 1:
            raise Violation(
                READY_CONTRACT,
                f"{node} Ready entries start at {start}, outside ({mirror.snapshot_index}, {mirror.last_index + 1}]",
            )
        if is_leader and start <= mirror.last_index:
            raise Violation(
                LEADER_APPEND_ONLY, f"leader {node} overwrites its log from index {start} (last {mirror.last_index})"
            )
        # start - 1 lies in [snapshot_index, last_index], so its term is known.
        prev_term = mirror.term_at(start - 1)
        for entry in entries:
            self._record_written(node, entry, prev_term)
            prev_term = entry.term
        commit = self._commit_seen[node]
        replaced = [mirror.entry_at(i) for i in range(start, min(commit, mirror.last_index) + 1)]
        mirror.write(entries)
        for old in replaced:
            if mirror.entry_at(old.index) != old:
                raise Violation(
                    STATE_MACHINE_SAFETY,
                    f"{node} replaces committed {old!r} (its commit is {commit}) with {mirror.entry_at(old.index)!r}",
                )

    def _record_written(self, node: str, entry: Entry, prev_term: int) -> None:
        key = (entry.index, entry.term)
        seen = self._written.get(key)
        if seen is None:
            self._written[key] = (entry.kind, entry.data, prev_term, node)
            return
        kind, data, seen_prev_term, first = seen
        if (kind, data) != (entry.kind, entry.data):
            raise Violation(
                LOG_MATCHING,
                f"index {entry.index} term {entry.term}: {first} stored {kind}:{data!r}, {node} stores "
                f"{entry.kind}:{entry.data!r}",
            )
        if seen_prev_term != prev_term:
            raise Violation(
                LOG_MATCHING,
                f"index {entry.index} term {entry.term} follows term {seen_prev_term} on {first} "
                f"but term {prev_term} on {node}",
            )

    def check_sent(self, node: str, to: str, message: object) -> None:
        """`node` sends `message` to `to`: what it vouches for must be durable."""
        durable = self.mirrors[node].hard_state
        if isinstance(message, VoteRequest):
            if not message.pre_vote and (durable.term, durable.voted_for) != (message.term, node):
                raise Violation(
                    PERSIST_BEFORE_SEND, f"{node} asks for votes in term {message.term} with durable {durable!r}"
                )
            return
        if isinstance(message, VoteReply) and message.pre_vote:
            return  # a pre-vote answer carries the probed term and records nothing
        if isinstance(message, VoteReply) and message.granted and (durable.term, durable.voted_for) != (message.term, to):
            raise Violation(
                PERSIST_BEFORE_SEND, f"{node} grants its term-{message.term} vote to {to} with durable {durable!r}"
            )
        if message.term > durable.term:
            raise Violation(
                PERSIST_BEFORE_SEND, f"{node} sends {type(message).__name__} of term {message.term}, durable {durable.term}"
            )
        if isinstance(message, AppendLogReply) and message.success:
            last = self.mirrors[node].last_index
            if message.match_index > last:
                raise Violation(
                    PERSIST_BEFORE_SEND, f"{node} acknowledges index {message.match_index} but stores up to {last}"
                )

    def compact(self, node: str, snapshot: Snapshot, applied: int) -> None:
        mirror = self.mirrors[node]
        if snapshot.index != applied:
            raise Violation(READY_CONTRACT, f"{node} compact() returned index {snapshot.index}, applied {applied}")
        if mirror.term_at(snapshot.index) != snapshot.term:
            raise Violation(
                LOG_MATCHING,
                f"{node} snapshot at {snapshot.index} has term {snapshot.term}, log has "
                f"{mirror.term_at(snapshot.index)}",
            )
        mirror.compact(snapshot)

    def _check_snapshot_point(self, node: str, index: int, term: int) -> None:
        committed = self.committed.get(index)
        if committed is not None and committed.term != term:
            raise Violation(
                STATE_MACHINE_SAFETY,
                f"{node} snapshot at {index} has term {term}, committed entry there has term {committed.term}",
            )

    # -- commit and leadership ----------------------------------------------

    def commit(self, node: str, commit: int, term: int) -> None:
        """`node` reports (in a Ready's hard state) commit index `commit` in `term`."""
        mirror = self.mirrors[node]
        seen = self._commit_seen[node]
        if commit <= seen:
            return
        if commit > mirror.last_index:
            raise Violation(READY_CONTRACT, f"{node} commits {commit} beyond its last index {mirror.last_index}")
        for index in range(max(seen, mirror.snapshot_index) + 1, commit + 1):
            entry = mirror.entry_at(index)
            known = self.committed.get(index)
            if known is None:
                self.committed[index] = Committed(
                    term=entry.term, kind=entry.kind, data=entry.data, commit_term=term, seen_by=node
                )
                self._check_leaders_hold(index)
            elif (known.term, known.kind, known.data) != (entry.term, entry.kind, entry.data):
                raise Violation(
                    STATE_MACHINE_SAFETY,
                    f"index {index}: {known.seen_by} committed term {known.term} {known.data!r}, "
                    f"{node} commits term {entry.term} {entry.data!r}",
                )
        self._commit_seen[node] = commit

    def _check_leaders_hold(self, index: int) -> None:
        committed = self.committed[index]
        for leader, (role, term) in sorted(self.roles.items()):
            if role == "leader" and term > committed.commit_term:
                self._check_holds(leader, term, index, committed)

    def _check_holds(self, leader: str, term: int, index: int, committed: Committed) -> None:
        mirror = self.mirrors[leader]
        if index < mirror.snapshot_index:
            return
        if mirror.term_at(index) != committed.term:
            raise Violation(
                LEADER_COMPLETENESS,
                f"leader {leader} of term {term} lacks index {index} (term {committed.term}) committed "
                f"by term {committed.commit_term}; it holds term {mirror.term_at(index)}",
            )

    def observe_role(self, node: str, role: str, term: int) -> None:
        """The role and term of `node` after a step."""
        previous = self.roles.get(node)
        self.roles[node] = (role, term)
        if role != "leader" or previous == (role, term):
            return
        holder = self.leader_of_term.setdefault(term, node)
        if holder != node:
            raise Violation(ELECTION_SAFETY, f"two leaders in term {term}: {holder} and {node}")
        for index in sorted(self.committed):
            committed = self.committed[index]
            if committed.commit_term < term:
                self._check_holds(node, term, index, committed)

    def observe_lease(self, node: str, term: int, lease_until: float | None, now: float) -> None:
        """The lease `node` holds after a step (None: none), then Lease Safety
        at time `now` over every replica."""
        if lease_until is None:
            self.leases.pop(node, None)
        else:
            self.leases[node] = (term, lease_until)
        newest = max((term for role, term in self.roles.values() if role == "leader"), default=0)
        for holder, (held_term, until) in self.leases.items():
            if held_term < newest and until > now:
                raise Violation(
                    LEASE_SAFETY,
                    f"{holder} holds its term-{held_term} lease until {until} while term {newest} has a leader",
                )

    # -- the state machine --------------------------------------------------

    def apply(self, node: str, entry: Entry, applied_before: int) -> None:
        if entry.index != applied_before + 1:
            raise Violation(STATE_MACHINE_SAFETY, f"{node} applies index {entry.index} after {applied_before}")
        if entry.index > self._commit_seen[node]:
            raise Violation(
                STATE_MACHINE_SAFETY, f"{node} applies index {entry.index} beyond its commit {self._commit_seen[node]}"
            )
        stored = self.mirrors[node].entry_at(entry.index)
        if stored is not None and stored != entry:
            raise Violation(STATE_MACHINE_SAFETY, f"{node} applies {entry!r} but stores {stored!r}")
        self._record_applied(node, entry.index, entry.term, entry.kind, entry.data)

    def _record_applied(self, node: str, index: int, term: int, kind: str, data: bytes) -> None:
        seen = self.applied.get(index)
        if seen is None:
            self.applied[index] = (term, kind, data, node)
        elif seen[:3] != (term, kind, data):
            raise Violation(
                STATE_MACHINE_SAFETY,
                f"index {index}: {seen[3]} applied term {seen[0]} {seen[2]!r}, {node} applies term {term} {data!r}",
            )

    def restore(self, node: str, snapshot: Snapshot, commands: dict[int, bytes], applied_before: int) -> None:
        """`node` replaces its state machine with `commands` from `snapshot`."""
        if snapshot.index < applied_before:
            raise Violation(
                STATE_MACHINE_SAFETY, f"{node} restores snapshot {snapshot.index}, rolling back applied {applied_before}"
            )
        for index, data in commands.items():
            seen = self.applied.get(index)
            if seen is not None and seen[2] != data:
                raise Violation(
                    STATE_MACHINE_SAFETY,
                    f"{node} restores {data!r} at index {index} from a snapshot; {seen[3]} applied {seen[2]!r}",
                )
        self._commit_seen[node] = max(self._commit_seen[node], snapshot.index)

    # -- whole-history checks -----------------------------------------------

    def check_logs_match(self, nodes: list[str]) -> None:
        """Pairwise Log Matching over the retained logs of `nodes`."""
        for i, a in enumerate(nodes):
            for b in nodes[i + 1 :]:
                self._check_pair(a, b)

    def _check_pair(self, a: str, b: str) -> None:
        log_a, log_b = self.mirrors[a], self.mirrors[b]
        low = max(log_a.snapshot_index, log_b.snapshot_index)
        high = min(log_a.last_index, log_b.last_index)
        # The highest index where the terms agree; below it everything must.
        for index in range(high, low, -1):
            if log_a.term_at(index) == log_b.term_at(index):
                for below in range(index, low, -1):
                    if log_a.entry_at(below) != log_b.entry_at(below):
                        raise Violation(
                            LOG_MATCHING,
                            f"{a} and {b} agree at index {index} term {log_a.term_at(index)} but differ at "
                            f"{below}: {log_a.entry_at(below)!r} vs {log_b.entry_at(below)!r}",
                        )
                return
