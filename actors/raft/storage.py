"""Raft's durable state: log, hard state and snapshot, behind hashicorp/raft-style seams.

The Raft core never touches storage (DESIGN.md sections 2 and 10): the shell
persists each `Ready` with one `Storage.save` call, then sends and applies.

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
import json
import logging
import os
import sqlite3
import struct
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

from actors.raft.messages import ConfState, Entry, HardState, Snapshot

logger = logging.getLogger(__name__)


class CorruptStorage(Exception):
    """Durable state failed its checks where no safe recovery exists; the
    replica must not start from it (an operator has to intervene)."""


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


class LogStore(Protocol):
    """The log after the snapshot."""

    def first_index(self) -> int:
        """Index the stored log starts at: the snapshot's index + 1."""

    def last_index(self) -> int:
        """Index of the last stored entry, or the snapshot's when there is none."""

    def entries(self) -> tuple[Entry, ...]:
        """Every stored entry, in index order."""

    def append(self, entries: Sequence[Entry]) -> None:
        """Store contiguous entries, first dropping every stored entry at or
        after `entries[0].index` (a conflicting suffix, paper 5.3)."""


class StableStore(Protocol):
    """The hard state: term, vote and commit index."""

    def hard_state(self) -> HardState: ...

    def set_hard_state(self, hard_state: HardState) -> None: ...


class SnapshotStore(Protocol):
    """The latest snapshot; writing one also drops the log it covers."""

    def snapshot(self) -> Snapshot | None: ...

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """A snapshot received from the leader (paper 7, figure 13)."""

    def compact(self, snapshot: Snapshot) -> None:
        """A snapshot this replica took of its own applied state."""


class Storage(ABC):
    """One replica's durable state: a `LogStore`, `StableStore` and
    `SnapshotStore` sharing one transaction, so a whole `Ready` is atomic.

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


# ---------------------------------------------------------------------------
# In memory
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# SQLite
# ---------------------------------------------------------------------------

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE log (
    idx  INTEGER PRIMARY KEY,
    term INTEGER NOT NULL,
    kind TEXT    NOT NULL,
    data BLOB    NOT NULL,
    crc  INTEGER NOT NULL
);
CREATE TABLE hard_state (
    id        INTEGER PRIMARY KEY CHECK (id = 0),
    term      INTEGER NOT NULL,
    voted_for TEXT,
    commit_index INTEGER NOT NULL,
    crc       INTEGER NOT NULL
);
CREATE TABLE snapshot (
    id       INTEGER PRIMARY KEY CHECK (id = 0),
    idx      INTEGER NOT NULL,
    term     INTEGER NOT NULL,
    voters   TEXT    NOT NULL,
    learners TEXT    NOT NULL,
    data     BLOB    NOT NULL,
    crc      INTEGER NOT NULL
);
"""


def _text_field(text: str | None) -> bytes:
    """Length-prefixed, so adjacent fields cannot run into each other in a checksum."""
    if text is None:
        return struct.pack(">i", -1)
    raw = text.encode()
    return struct.pack(">i", len(raw)) + raw


def _entry_crc(index: int, term: int, kind: str, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(struct.pack(">qq", index, term) + _text_field(kind)))


def _hard_state_crc(term: int, voted_for: str | None, commit: int) -> int:
    return zlib.crc32(struct.pack(">qq", term, commit) + _text_field(voted_for))


def _snapshot_crc(index: int, term: int, voters: str, learners: str, data: bytes) -> int:
    header = struct.pack(">qq", index, term) + _text_field(voters) + _text_field(learners)
    return zlib.crc32(data, zlib.crc32(header))


class SqliteStorage(Storage):
    """Durable storage in one SQLite file per replica (stdlib `sqlite3`, WAL mode).

    Each write method is one SQLite transaction. With `fsync=True`
    (`synchronous=FULL`) a transaction is on disk before the call returns, so
    the shell may send what depends on it; with `fsync=False`
    (`synchronous=NORMAL`) it survives a process crash but the last
    transactions may be lost on power loss.

    Every log row, the hard state and the snapshot carry a CRC32. On opening,
    the log is scanned: the first row that fails its checksum or breaks
    contiguity ends it, and it and every later row are deleted and logged (a
    torn tail). A checksum failure anywhere else, or in the log after opening,
    raises `CorruptStorage`.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = os.fspath(path)
        self._fsync = fsync
        self._depth = 0
        # isolation_level=None: the module issues no implicit BEGIN/COMMIT;
        # `_transaction` controls every transaction boundary itself.
        self._db = sqlite3.connect(self.path, isolation_level=None)
        try:
            self._open(fsync)
            self._discard_torn_tail()
        except BaseException:
            self._db.close()
            raise

    def _open(self, fsync: bool) -> None:
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise CorruptStorage(f"{self.path}: cannot enable WAL journaling (got {mode!r})")
        self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        with self._transaction():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                # executescript would commit the open transaction; run the
                # statements one by one inside it instead.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            elif version != _SCHEMA_VERSION:
                raise CorruptStorage(f"{self.path}: unknown storage schema version {version}")

    def save(
        self,
        *,
        hard_state: HardState | None = None,
        entries: Sequence[Entry] = (),
        snapshot: Snapshot | None = None,
    ) -> None:
        """As `Storage.save`, except that a save that only moves the commit
        index is not synced: the commit index is safe to lose (relearned from
        the leader), so a leader answering a client after an entry commits
        pays no second fsync. The next synced write makes it durable too."""
        commit_only = (
            self._fsync
            and hard_state is not None
            and not entries
            and snapshot is None
            and self._same_term_and_vote(hard_state)
        )
        if not commit_only:
            super().save(hard_state=hard_state, entries=entries, snapshot=snapshot)
            return
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            super().save(hard_state=hard_state)
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    def _same_term_and_vote(self, hard_state: HardState) -> bool:
        stored = self._read_hard_state()
        return (stored.term, stored.voted_for) == (hard_state.term, hard_state.voted_for)

    def _discard_torn_tail(self) -> None:
        """Crash recovery: keep the log up to the first bad row; make the hard
        state's commit index fit what is left (losing commit is safe: it is
        relearned from the leader)."""
        with self._transaction():
            expected = self.first_index()
            rows = self._db.execute("SELECT idx, term, kind, data, crc FROM log ORDER BY idx").fetchall()
            for index, term, kind, data, crc in rows:
                if index != expected:
                    reason = f"expected index {expected}, found {index}"
                elif _entry_crc(index, term, kind, data) != crc:
                    reason = "checksum mismatch"
                else:
                    expected += 1
                    continue
                dropped = self._db.execute("DELETE FROM log WHERE idx >= ?", (expected,)).rowcount
                logger.warning("%s: discarded a torn log tail of %d rows from index %d (%s)", self.path, dropped, expected, reason)
                hard_state = self._read_hard_state()
                if hard_state.commit > expected - 1:
                    self._write_hard_state(
                        HardState(term=hard_state.term, voted_for=hard_state.voted_for, commit=expected - 1)
                    )
                    logger.warning("%s: commit index lowered from %d to %d", self.path, hard_state.commit, expected - 1)
                return

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        # IMMEDIATE takes the write lock now, so a transaction never fails
        # halfway for want of it.
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (a disk error, say) can leave the transaction
            # open; roll it back so the next one can begin.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0

    def close(self) -> None:
        self._db.close()

    def _read_hard_state(self) -> HardState:
        row = self._db.execute("SELECT term, voted_for, commit_index, crc FROM hard_state").fetchone()
        if row is None:
            return HardState()
        term, voted_for, commit, crc = row
        if _hard_state_crc(term, voted_for, commit) != crc:
            raise CorruptStorage(f"{self.path}: the hard state fails its checksum; term and vote are unknown")
        return HardState(term=term, voted_for=voted_for, commit=commit)

    def _read_snapshot(self) -> Snapshot | None:
        row = self._db.execute("SELECT idx, term, voters, learners, data, crc FROM snapshot").fetchone()
        if row is None:
            return None
        index, term, voters, learners, data, crc = row
        if _snapshot_crc(index, term, voters, learners, data) != crc:
            raise CorruptStorage(f"{self.path}: the snapshot at index {index} fails its checksum")
        conf = ConfState(voters=tuple(json.loads(voters)), learners=tuple(json.loads(learners)))
        return Snapshot(index=index, term=term, conf=conf, data=data)

    def _read_snapshot_position(self) -> tuple[int, int] | None:
        # Every append asks where the log starts: read the position only, not
        # a snapshot blob that may be megabytes long.
        return self._db.execute("SELECT idx, term FROM snapshot").fetchone()

    def _read_entries(self) -> tuple[Entry, ...]:
        entries = []
        rows = self._db.execute("SELECT idx, term, kind, data, crc FROM log ORDER BY idx").fetchall()
        for index, term, kind, data, crc in rows:
            if _entry_crc(index, term, kind, data) != crc:
                raise CorruptStorage(f"{self.path}: log entry {index} fails its checksum")
            entries.append(Entry(index=index, term=term, kind=kind, data=data))
        return tuple(entries)

    def _read_last_entry_index(self) -> int | None:
        return self._db.execute("SELECT MAX(idx) FROM log").fetchone()[0]

    def _read_entry_term(self, index: int) -> int | None:
        row = self._db.execute("SELECT term FROM log WHERE idx = ?", (index,)).fetchone()
        return row[0] if row is not None else None

    def _write_hard_state(self, hard_state: HardState) -> None:
        term, voted_for, commit = hard_state.term, hard_state.voted_for, hard_state.commit
        self._db.execute(
            "INSERT OR REPLACE INTO hard_state (id, term, voted_for, commit_index, crc) VALUES (0, ?, ?, ?, ?)",
            (term, voted_for, commit, _hard_state_crc(term, voted_for, commit)),
        )

    def _write_snapshot(self, snapshot: Snapshot) -> None:
        voters = json.dumps(list(snapshot.conf.voters))
        learners = json.dumps(list(snapshot.conf.learners))
        self._db.execute(
            "INSERT OR REPLACE INTO snapshot (id, idx, term, voters, learners, data, crc) VALUES (0, ?, ?, ?, ?, ?, ?)",
            (
                snapshot.index,
                snapshot.term,
                voters,
                learners,
                snapshot.data,
                _snapshot_crc(snapshot.index, snapshot.term, voters, learners, snapshot.data),
            ),
        )

    def _write_entries(self, entries: tuple[Entry, ...]) -> None:
        self._db.executemany(
            "INSERT INTO log (idx, term, kind, data, crc) VALUES (?, ?, ?, ?, ?)",
            (
                (entry.index, entry.term, entry.kind, entry.data, _entry_crc(entry.index, entry.term, entry.kind, entry.data))
                for entry in entries
            ),
        )

    def _delete_entries_from(self, index: int) -> None:
        self._db.execute("DELETE FROM log WHERE idx >= ?", (index,))

    def _delete_entries_through(self, index: int) -> None:
        self._db.execute("DELETE FROM log WHERE idx <= ?", (index,))
