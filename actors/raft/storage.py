"""The Storage seam: one replica's durable log, hard state and snapshot; and
MemoryStorage, for tests and the simulator.

The Raft core never touches storage (docs/DESIGN.md sections 2 and 10): the
shell persists each `Ready` with one `Storage.save` call, then sends and
applies. The durable implementation, SqliteStorage, does I/O and so lives
outside this pure package, in actors/sqlite_storage.py.

Why one object, not hashicorp/raft's LogStore, StableStore and SnapshotStore:
a Ready's snapshot, entries and hard state must commit in ONE transaction
(a commit index saved without the entries it counts, or entries without
the snapshot they follow, would be a state the replica was never in), so
the seam is one transactional store. `Storage` keeps the rules below once, on
top of a few primitives each implementation provides.

Rules and invariants:
- The stored log is exactly the entries after the stored snapshot: contiguous,
  starting at `snapshot.index + 1` (or 1 when there is no snapshot).
  `first_index()` is that start; `last_index()` is the last entry's index, or
  the snapshot's when the log is empty, so the next entry always goes at
  `last_index() + 1`.
- Every write method is one atomic transaction: after a crash a replica finds
  either all of a batch or none of it. `save` writes one whole `Ready` in the
  order the Raft paper requires of a receiver (figure 2): install a received
  snapshot, then append entries (truncating any conflicting suffix), then the
  hard state that may depend on them.
- Term and vote are never silently reset: a hard state that fails its check is
  `CorruptStorage`, because forgetting a vote breaks Election Safety (paper 5.2).
  A torn log tail found when reopening after a crash is discarded and logged:
  an entry not durably written was never acknowledged to a leader.
- Caller errors (a batch that would leave a gap, a snapshot older than the one
  stored) raise `ValueError` and leave storage unchanged.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterator, Sequence

from actors.raft.messages import ConfState, Entry, HardState, Snapshot


class CorruptStorage(Exception):
    """Durable state failed its checks where no safe recovery exists; the
    replica must not start from it (an operator has to intervene)."""


class StorageUnavailable(Exception):
    """A read or write failed for a reason outside the process (no space left,
    an I/O error): nothing of it took effect, and the same call may succeed
    later. `reason` says why, for people ("disk full", ...)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredState:
    """Everything a replica restarts from; the arguments `RaftNode` takes.

    Fields:
        hard_state: the last persisted term, vote and commit index.
        snapshot: the latest snapshot, or None.
        entries: the log after the snapshot, in index order.
    """

    hard_state: HardState
    snapshot: Snapshot | None
    entries: tuple[Entry, ...]


class Storage(ABC):
    """One replica's durable state: log, hard state and snapshot sharing one
    transaction, so a whole `Ready` is atomic.

    Subclasses provide the primitives (`_transaction` and the `_read_*`,
    `_write_*`, `_delete_*` methods); this class keeps the invariants of the
    module docstring on top of them.
    """

    # -- reads ---------------------------------------------------------------

    def load(self) -> StoredState:
        """What a restarting replica passes to `RaftNode`."""
        with self._transaction():
            return StoredState(
                hard_state=self.hard_state(),
                snapshot=self.snapshot(),
                entries=self.entries(),
            )

    def hard_state(self) -> HardState:
        return self._read_hard_state()

    def snapshot(self) -> Snapshot | None:
        return self._read_snapshot()

    def entries(self) -> tuple[Entry, ...]:
        return self._read_entries()

    def first_index(self) -> int:
        return self._snapshot_index() + 1

    def last_index(self) -> int:
        last = self._read_last_entry_index()
        return last if last is not None else self._snapshot_index()

    # -- writes --------------------------------------------------------------

    def save(
        self,
        *,
        hard_state: HardState | None = None,
        entries: Sequence[Entry] = (),
        snapshot: Snapshot | None = None,
    ) -> None:
        """Persist one `Ready` atomically: snapshot, then entries, then hard state.

        Each part is optional; a call with nothing to write writes nothing
        (no transaction, no fsync)."""
        if hard_state is None and not entries and snapshot is None:
            return
        with self._transaction():
            if snapshot is not None:
                self.install_snapshot(snapshot)
            if entries:
                self.append(entries)
            if hard_state is not None:
                self.set_hard_state(hard_state)

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the snapshot with one received from the leader. If the log
        holds the snapshot's last entry (same index and term) the entries after
        it are kept, else the whole log is dropped (paper 7, figure 13, steps 6-7)."""
        snapshot = _frozen_snapshot(snapshot)
        with self._transaction():
            stored = self._snapshot_index()
            if snapshot.index < stored:
                raise ValueError(f"snapshot at index {snapshot.index} is older than the stored one at {stored}")
            if self._read_term(snapshot.index) == snapshot.term:
                self._delete_entries_through(snapshot.index)
            else:
                self._delete_entries_from(0)
            self._write_snapshot(snapshot)

    def compact(self, snapshot: Snapshot) -> None:
        """Store a snapshot this replica took and drop the log entries it covers.

        The snapshot must cover only entries this log holds (it was taken of
        applied, hence stored, entries) and agree on the term at its index."""
        snapshot = _frozen_snapshot(snapshot)
        with self._transaction():
            stored = self._snapshot_index()
            if snapshot.index < stored:
                raise ValueError(f"snapshot at index {snapshot.index} is older than the stored one at {stored}")
            if snapshot.index > self.last_index():
                raise ValueError(f"snapshot at index {snapshot.index} is past the last stored index {self.last_index()}")
            stored_term = self._read_term(snapshot.index)
            if stored_term != snapshot.term:
                raise ValueError(
                    f"snapshot term {snapshot.term} at index {snapshot.index} differs from the stored term {stored_term}"
                )
            self._delete_entries_through(snapshot.index)
            self._write_snapshot(snapshot)

    def append(self, entries: Sequence[Entry]) -> None:
        entries = tuple(_frozen_entry(entry) for entry in entries)
        if not entries:
            return
        for before, after in zip(entries, entries[1:]):
            if after.index != before.index + 1:
                raise ValueError(f"entries are not contiguous: index {after.index} follows {before.index}")
        with self._transaction():
            start = entries[0].index
            if not self.first_index() <= start <= self.last_index() + 1:
                raise ValueError(
                    f"entries starting at index {start} do not fit the stored log "
                    f"[{self.first_index()}, {self.last_index()}]: they would leave a gap or rewrite the snapshot"
                )
            self._delete_entries_from(start)
            self._write_entries(entries)

    def set_hard_state(self, hard_state: HardState) -> None:
        with self._transaction():
            self._write_hard_state(hard_state)

    @abstractmethod
    def close(self) -> None:
        """Release the underlying resources; the object is unusable afterwards."""

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- primitives ----------------------------------------------------------

    def _snapshot_index(self) -> int:
        position = self._read_snapshot_position()
        return position[0] if position is not None else 0

    def _read_term(self, index: int) -> int | None:
        """Term of the stored entry at `index`, the snapshot's term at its own
        index, else None."""
        position = self._read_snapshot_position()
        if position is not None and position[0] == index:
            return position[1]
        return self._read_entry_term(index)

    @abstractmethod
    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        """A write transaction; nested uses join the outermost one. On an
        exception everything written inside it is undone."""

    @abstractmethod
    def _read_hard_state(self) -> HardState: ...

    @abstractmethod
    def _read_snapshot(self) -> Snapshot | None: ...

    @abstractmethod
    def _read_snapshot_position(self) -> tuple[int, int] | None:
        """(index, term) of the stored snapshot, without reading its data."""

    @abstractmethod
    def _read_entries(self) -> tuple[Entry, ...]: ...

    @abstractmethod
    def _read_last_entry_index(self) -> int | None: ...

    @abstractmethod
    def _read_entry_term(self, index: int) -> int | None: ...

    @abstractmethod
    def _write_hard_state(self, hard_state: HardState) -> None: ...

    @abstractmethod
    def _write_snapshot(self, snapshot: Snapshot) -> None: ...

    @abstractmethod
    def _write_entries(self, entries: tuple[Entry, ...]) -> None:
        """Store entries that directly follow the stored log."""

    @abstractmethod
    def _delete_entries_from(self, index: int) -> None:
        """Drop every stored entry at or after `index`."""

    @abstractmethod
    def _delete_entries_through(self, index: int) -> None:
        """Drop every stored entry at or before `index`."""


def _frozen_entry(entry: Entry) -> Entry:
    """An Entry whose data is immutable bytes, whatever buffer the caller passed."""
    if type(entry.data) is bytes:
        return entry
    return Entry(index=entry.index, term=entry.term, kind=entry.kind, data=bytes(entry.data))


def _frozen_snapshot(snapshot: Snapshot) -> Snapshot:
    """A Snapshot of immutable parts: bytes data, tuples of replica ids."""
    return Snapshot(
        index=snapshot.index,
        term=snapshot.term,
        conf=ConfState(voters=tuple(snapshot.conf.voters), learners=tuple(snapshot.conf.learners)),
        data=bytes(snapshot.data),
    )


class MemoryStorage(Storage):
    """Storage held in memory: for tests and the simulator.

    It plays the disk that survives a simulated crash: the simulator keeps this
    object when it drops a node and rebuilds the node from `load()`. Everything
    stored is copied into immutable values, so a caller mutating what it passed
    in cannot change what a later `load()` returns. Transactions are atomic
    (a failed batch leaves the previous state) but nothing outlives the process.
    """

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot: Snapshot | None = None
        # self._log[i] is the entry at index first_index() + i.
        self._log: list[Entry] = []
        self._committed_log: list[Entry] | None = None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        if self._committed_log is not None:
            yield
            return
        saved = (self._hard_state, self._snapshot)
        self._committed_log = self._log
        try:
            yield
        except BaseException:
            self._hard_state, self._snapshot = saved
            self._log = self._committed_log
            raise
        finally:
            self._committed_log = None

    def _writable_log(self) -> list[Entry]:
        # Copy on the first log write of a transaction, so a rollback only
        # has to put the committed list back.
        if self._log is self._committed_log:
            self._log = list(self._log)
        return self._log

    def close(self) -> None:
        """Nothing to release; the contents stay for the next `load()`, as a
        disk's would after its replica stopped."""

    def _read_hard_state(self) -> HardState:
        return self._hard_state

    def _read_snapshot(self) -> Snapshot | None:
        return self._snapshot

    def _read_snapshot_position(self) -> tuple[int, int] | None:
        return (self._snapshot.index, self._snapshot.term) if self._snapshot is not None else None

    def _read_entries(self) -> tuple[Entry, ...]:
        return tuple(self._log)

    def _read_last_entry_index(self) -> int | None:
        return self._log[-1].index if self._log else None

    def _read_entry_term(self, index: int) -> int | None:
        offset = index - self.first_index()
        if 0 <= offset < len(self._log):
            return self._log[offset].term
        return None

    def _write_hard_state(self, hard_state: HardState) -> None:
        self._hard_state = hard_state

    def _write_snapshot(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def _write_entries(self, entries: tuple[Entry, ...]) -> None:
        self._writable_log().extend(entries)

    def _delete_entries_from(self, index: int) -> None:
        del self._writable_log()[max(0, index - self.first_index()) :]

    def _delete_entries_through(self, index: int) -> None:
        del self._writable_log()[: max(0, index - self.first_index() + 1)]
