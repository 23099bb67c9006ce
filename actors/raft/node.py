"""RaftNode: the Raft consensus core as a pure state machine.

API STUB — the public surface below is fixed (the storage, the simulator and
the server shell are written against it); the implementation is being built.

Inputs: `step(message)`, `tick()`, `propose(data)`, `propose_conf_change(change)`,
`transfer_leadership(to)`, `compact(index, data)`.
Output: `ready()` -> `Ready`; the caller persists, sends, applies, then
`advance(ready)`.  No clock (time is `tick()`), no I/O, no global randomness
(an injected `random.Random`), no Thespian.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from actors.messages import ConfChange, ConfState, Entry, RaftMessage, Snapshot

FOLLOWER = "follower"
PRE_CANDIDATE = "pre_candidate"
CANDIDATE = "candidate"
LEADER = "leader"


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
class HardState:
    """What must survive a crash before any dependent message is sent.

    Fields:
        term: the latest term this replica has seen.
        voted_for: the candidate it voted for in `term`, or None.
        commit: its commit index (an optimisation for restart; safe to lose).
    """

    term: int = 0
    voted_for: str | None = None
    commit: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class SoftState:
    """Volatile view of who leads, reported when it changes.

    Fields:
        role: FOLLOWER, PRE_CANDIDATE, CANDIDATE or LEADER.
        leader: the known leader's id, or None.
        term: the current term.
    """

    role: str
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


@dataclass(frozen=True, kw_only=True, slots=True)
class RaftConfig:
    """Tunables, in logical ticks and bytes.

    Fields:
        id: this replica's id, e.g. "c1-r0".
        election_min, election_max: the election timeout is drawn uniformly
            from [election_min, election_max] ticks after each reset.
        heartbeat_ticks: a leader sends heartbeats every this many ticks.
        max_batch_bytes: cap on the summed `len(entry.data)` of one AppendLog
            or RepairLog (at least one entry is always sent).
        max_snapshot_chunk: bytes of snapshot data per RepairLog chunk.
        pre_vote: run PreVote before becoming a candidate (thesis 9.6).
        check_quorum: a leader that has not heard from a quorum within an
            election timeout steps down, and voters ignore vote requests while
            they have a live leader (thesis 6.2, 4.2.3).
    """

    id: str
    election_min: int = 6
    election_max: int = 12
    heartbeat_ticks: int = 2
    max_batch_bytes: int = 48_000
    max_snapshot_chunk: int = 48_000
    pre_vote: bool = True
    check_quorum: bool = True


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
        A replica whose membership does not include it never campaigns."""
        raise NotImplementedError

    # Read-only views: id, term, role, leader, commit, applied, last_index,
    # conf (ConfState in force), progress (dict follower -> match index, leader only).

    def tick(self) -> None: ...

    def step(self, message: RaftMessage) -> None: ...

    def propose(self, data: bytes) -> int:
        """Append a command; returns its log index. Raises NotLeader."""
        raise NotImplementedError

    def propose_conf_change(self, change: ConfChange) -> int:
        """Raises NotLeader or ConfChangeBusy."""
        raise NotImplementedError

    def transfer_leadership(self, to: str) -> None:
        """Leader only: bring `to` up to date, then send it TimeoutNow."""
        raise NotImplementedError

    def compact(self, index: int, data: bytes) -> Snapshot:
        """The application snapshotted its state at applied `index`: record it
        as the node's snapshot and drop the in-memory log up to `index`. The
        caller persists the returned Snapshot (storage.compact)."""
        raise NotImplementedError

    def has_ready(self) -> bool: ...

    def ready(self) -> Ready: ...

    def advance(self, ready: Ready) -> None: ...
