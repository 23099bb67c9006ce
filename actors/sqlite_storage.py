"""SqliteStorage: the durable implementation of the Raft `Storage` seam
(actors/raft/storage.py, whose rules it keeps), one SQLite file per replica.

It does I/O (stdlib `sqlite3`, the file system, logging), so it lives here,
beside the shell that opens it, and not in the pure actors/raft package.

Rules (docs/DESIGN.md section 2):
- Each write method is one SQLite `BEGIN IMMEDIATE` transaction, in WAL
  mode. With `fsync=True` (`synchronous=FULL`) a transaction is on disk
  before the call returns, so the shell may send what depends on it; with
  `fsync=False` (`synchronous=NORMAL`) it survives a process crash but the
  last transactions may be lost on power loss. A save that only moves the
  commit index is never synced: the leader teaches the commit index again.
- Every log row, the hard state and the snapshot carry a CRC32. On opening,
  the log is scanned: the first row that fails its checksum or breaks
  contiguity ends it, and it and every later row are deleted and logged (a
  torn tail), and the stored commit index is lowered to fit. A checksum
  failure anywhere else, or in the log after opening, raises
  `CorruptStorage`: the replica must not start from it.
- A failure outside the process (no space left, an I/O error, a file that
  cannot be opened) raises `StorageUnavailable`, with the transaction rolled
  back: nothing of the call took effect, and it may succeed later.
- Given its actor's `Metrics`, it observes how long each save took
  (`raftline_fsync_duration_seconds`; docs/DESIGN.md section 14), except
  the unsynced ones that only move the commit index. With `fsync=False`
  that is every save, none of them synced.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sqlite3
import struct
import time
import zlib
from typing import Iterator, Sequence

from actors.metrics import Metrics
from actors.raft.messages import ConfState, Entry, HardState, Snapshot
from actors.raft.storage import CorruptStorage, Storage, StorageUnavailable


def logger() -> logging.Logger:
    """Looked up at each use: Thespian replaces the logging tree of an actor's
    process after this module was imported."""
    return logging.getLogger("raftline.storage")


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


@contextlib.contextmanager
def _unavailable_on_failure(path: str) -> Iterator[None]:
    """SQLite's and the OS's own failures as StorageUnavailable."""
    try:
        yield
    except (sqlite3.OperationalError, OSError) as error:
        text = str(error)
        full = "full" in text or getattr(error, "errno", None) == errno.ENOSPC
        raise StorageUnavailable("disk full" if full else f"{path}: {text}") from error


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
    """Durable storage in one SQLite file (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True, metrics: Metrics | None = None) -> None:
        self.path = os.fspath(path)
        self._fsync = fsync
        self._metrics = metrics
        self._depth = 0
        with _unavailable_on_failure(self.path):
            # isolation_level=None: the module issues no implicit BEGIN/COMMIT;
            # `_transaction` controls every transaction boundary itself.
            self._db = sqlite3.connect(self.path, isolation_level=None)
        try:
            with _unavailable_on_failure(self.path):
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
        if hard_state is None and not entries and snapshot is None:
            return  # nothing to write, so no transaction to time
        commit_only = (
            self._fsync
            and hard_state is not None
            and not entries
            and snapshot is None
            and self._same_term_and_vote(hard_state)
        )
        if not commit_only:
            started = time.perf_counter()
            super().save(hard_state=hard_state, entries=entries, snapshot=snapshot)
            if self._metrics is not None:
                self._metrics.observe("raftline_fsync_duration_seconds", time.perf_counter() - started)
            return
        with _unavailable_on_failure(self.path):
            self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            super().save(hard_state=hard_state)
        finally:
            with _unavailable_on_failure(self.path):
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
                logger().warning("%s: discarded a torn log tail of %d rows from index %d (%s)", self.path, dropped, expected, reason)
                hard_state = self._read_hard_state()
                if hard_state.commit > expected - 1:
                    self._write_hard_state(
                        HardState(term=hard_state.term, voted_for=hard_state.voted_for, commit=expected - 1)
                    )
                    logger().warning("%s: commit index lowered from %d to %d", self.path, hard_state.commit, expected - 1)
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
        with _unavailable_on_failure(self.path):
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
