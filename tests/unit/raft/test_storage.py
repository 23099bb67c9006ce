"""Raft storage: both implementations keep the same contract (docs/DESIGN.md section 2).

The SQLite-only tests at the end corrupt the file behind the storage's back,
as a crash mid-write or a bad disk would.
"""

from __future__ import annotations

import logging
import sqlite3

import pytest

from actors.raft.messages import ENTRY_CONF, ENTRY_NOOP, ConfState, Entry, HardState, Snapshot
from actors.raft.storage import CorruptStorage, MemoryStorage, Storage, StorageUnavailable, StoredState
from actors.sqlite_storage import SqliteStorage

CONF = ConfState(voters=("c1-r0", "c1-r1", "c1-r2"))


def entries(first: int, last: int, term: int) -> list[Entry]:
    return [Entry(index=i, term=term, data=f"cmd{i}@{term}".encode()) for i in range(first, last + 1)]


def snapshot(index: int, term: int, data: bytes = b"image") -> Snapshot:
    return Snapshot(index=index, term=term, conf=CONF, data=data)


class Disk:
    """Opens a storage and reopens it as a restarting replica would: the
    SQLite file is reopened; the memory storage object is kept, being the disk."""

    def __init__(self, kind: str, tmp_path) -> None:
        self.kind = kind
        self.path = tmp_path / "c1-r0.db"
        self.storage: Storage = MemoryStorage() if kind == "memory" else SqliteStorage(self.path)

    def reopen(self) -> Storage:
        self.storage.close()
        if self.kind == "sqlite":
            self.storage = SqliteStorage(self.path)
        return self.storage


@pytest.fixture(params=["memory", "sqlite"])
def disk(request, tmp_path):
    disk = Disk(request.param, tmp_path)
    yield disk
    disk.storage.close()


def test_a_fresh_storage_is_empty(disk):
    store = disk.storage
    assert store.load() == StoredState(hard_state=HardState(), snapshot=None, entries=())
    assert (store.first_index(), store.last_index()) == (1, 0)


def test_a_saved_batch_comes_back_after_reopening(disk):
    batch = [
        Entry(index=1, term=1, kind=ENTRY_NOOP),
        Entry(index=2, term=1, data=b"\x00\xffbinary"),
        Entry(index=3, term=1, kind=ENTRY_CONF, data=b'{"op":"remove"}'),
    ]
    disk.storage.save(hard_state=HardState(term=1, voted_for="c1-r0", commit=2), entries=batch)
    store = disk.reopen()
    assert store.load() == StoredState(
        hard_state=HardState(term=1, voted_for="c1-r0", commit=2), snapshot=None, entries=tuple(batch)
    )
    assert (store.first_index(), store.last_index()) == (1, 3)


def test_hard_state_persists_across_reopen_including_no_vote(disk):
    disk.storage.save(hard_state=HardState(term=4, voted_for="c1-r2"))
    disk.storage.save(hard_state=HardState(term=5, voted_for=None))
    assert disk.reopen().hard_state() == HardState(term=5, voted_for=None)


def test_appending_truncates_a_conflicting_suffix(disk):
    store = disk.storage
    store.save(entries=entries(1, 5, term=1))
    # A new leader of term 2 overwrites from index 3 (Raft paper 5.3).
    store.save(entries=entries(3, 4, term=2))
    assert disk.reopen().entries() == tuple(entries(1, 2, term=1) + entries(3, 4, term=2))
    assert disk.storage.last_index() == 4


def test_an_append_that_would_leave_a_gap_is_refused_and_changes_nothing(disk):
    store = disk.storage
    store.save(hard_state=HardState(term=1), entries=entries(1, 2, term=1))
    with pytest.raises(ValueError, match="gap"):
        store.save(hard_state=HardState(term=2), entries=entries(4, 5, term=2))
    with pytest.raises(ValueError, match="contiguous"):
        store.append([Entry(index=3, term=2), Entry(index=5, term=2)])
    assert store.load() == StoredState(hard_state=HardState(term=1), snapshot=None, entries=tuple(entries(1, 2, term=1)))


def test_a_received_snapshot_matching_the_log_keeps_the_suffix_after_it(disk):
    store = disk.storage
    store.save(entries=entries(1, 6, term=2))
    store.save(snapshot=snapshot(4, term=2), hard_state=HardState(term=2, commit=4))
    state = disk.reopen().load()
    assert state.snapshot == snapshot(4, term=2)
    assert state.entries == tuple(entries(5, 6, term=2))
    assert (disk.storage.first_index(), disk.storage.last_index()) == (5, 6)


def test_a_received_snapshot_not_matching_the_log_drops_the_whole_log(disk):
    store = disk.storage
    store.save(entries=entries(1, 6, term=2))
    store.save(snapshot=snapshot(4, term=3))
    assert disk.reopen().load().entries == ()
    assert (disk.storage.first_index(), disk.storage.last_index()) == (5, 4)


def test_a_received_snapshot_past_the_log_drops_it_and_entries_follow_it(disk):
    store = disk.storage
    store.save(entries=entries(1, 3, term=1))
    store.save(snapshot=snapshot(10, term=2), entries=entries(11, 12, term=2), hard_state=HardState(term=2, commit=10))
    state = disk.reopen().load()
    assert state.snapshot == snapshot(10, term=2)
    assert state.entries == tuple(entries(11, 12, term=2))
    assert state.hard_state == HardState(term=2, commit=10)


def test_a_snapshot_older_than_the_stored_one_is_refused(disk):
    store = disk.storage
    store.save(snapshot=snapshot(10, term=2))
    with pytest.raises(ValueError, match="older"):
        store.save(snapshot=snapshot(5, term=2))
    with pytest.raises(ValueError, match="older"):
        store.compact(snapshot(5, term=2))
    assert store.snapshot() == snapshot(10, term=2)


def test_compaction_drops_the_entries_the_snapshot_covers(disk):
    store = disk.storage
    store.save(entries=entries(1, 4, term=1) + entries(5, 8, term=2))
    store.compact(snapshot(6, term=2, data=b"state@6"))
    state = disk.reopen().load()
    assert state.snapshot == snapshot(6, term=2, data=b"state@6")
    assert state.entries == tuple(entries(7, 8, term=2))
    # Entries keep flowing after compaction, and a second one moves on.
    disk.storage.save(entries=entries(9, 9, term=2))
    disk.storage.compact(snapshot(9, term=2, data=b"state@9"))
    assert disk.reopen().load().entries == ()
    assert (disk.storage.first_index(), disk.storage.last_index()) == (10, 9)


def test_compaction_must_agree_with_the_log(disk):
    store = disk.storage
    store.save(entries=entries(1, 4, term=1))
    with pytest.raises(ValueError, match="past the last"):
        store.compact(snapshot(5, term=1))
    with pytest.raises(ValueError, match="differs"):
        store.compact(snapshot(3, term=2))
    assert store.entries() == tuple(entries(1, 4, term=1))
    assert store.snapshot() is None


def test_a_large_snapshot_round_trips(disk):
    image = bytes(range(256)) * 4096  # 1 MiB
    disk.storage.save(snapshot=snapshot(7, term=3, data=image))
    assert disk.reopen().snapshot() == snapshot(7, term=3, data=image)


def test_a_batch_is_atomic_when_the_save_fails_midway(disk, monkeypatch):
    store = disk.storage
    store.save(hard_state=HardState(term=1, voted_for="c1-r1", commit=2), entries=entries(1, 3, term=1))
    before = store.load()

    def crash(hard_state):
        raise OSError("simulated crash after the snapshot and entries were written")

    # The hard state is written last in a batch, after the snapshot and the
    # entries: failing there proves the earlier writes are undone.
    monkeypatch.setattr(store, "_write_hard_state", crash)
    # SQLite's storage reports the failure as StorageUnavailable: nothing took effect.
    with pytest.raises((OSError, StorageUnavailable), match="simulated crash"):
        store.save(
            snapshot=snapshot(2, term=1),
            entries=entries(3, 5, term=2),
            hard_state=HardState(term=2, voted_for=None, commit=4),
        )
    monkeypatch.undo()
    assert store.load() == before
    assert disk.reopen().load() == before


def test_a_full_disk_is_reported_as_storage_unavailable_and_the_next_save_works(tmp_path, monkeypatch):
    store = SqliteStorage(tmp_path / "c1-r0.db")
    store.save(hard_state=HardState(term=1, voted_for="c1-r1", commit=2), entries=entries(1, 3, term=1))
    before = store.load()

    def full(entries):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "_write_entries", full)
    with pytest.raises(StorageUnavailable) as failed:
        store.save(entries=entries(4, 5, term=1))
    assert failed.value.reason == "disk full"
    monkeypatch.undo()
    assert store.load() == before
    store.save(entries=entries(4, 5, term=1))  # space came back
    assert store.last_index() == 5
    store.close()


def test_stored_values_do_not_change_when_the_caller_mutates_its_buffers(disk):
    # A careless caller's mutable buffers, changed after they were stored.
    data = bytearray(b"command")
    batch = [Entry(index=1, term=1, data=data), Entry(index=2, term=1)]
    disk.storage.save(entries=batch)
    data[:] = b"CHANGED"
    batch.append(Entry(index=3, term=1))
    assert disk.storage.entries() == (Entry(index=1, term=1, data=b"command"), Entry(index=2, term=1))

    voters = ["c1-r0"]
    disk.storage.compact(Snapshot(index=1, term=1, conf=ConfState(voters=voters), data=data))
    voters.append("c1-r9")
    data[:] = b"AGAIN!!"
    state = disk.reopen().load()
    assert state.snapshot == Snapshot(index=1, term=1, conf=ConfState(voters=("c1-r0",)), data=b"CHANGED")
    assert state.entries == (Entry(index=2, term=1),)


def test_loaded_entries_cannot_alias_the_stored_log(disk):
    disk.storage.save(entries=entries(1, 2, term=1))
    loaded = disk.storage.load().entries
    disk.storage.save(entries=entries(2, 3, term=2))
    assert loaded == tuple(entries(1, 2, term=1))
    assert disk.storage.entries() == tuple(entries(1, 1, term=1) + entries(2, 3, term=2))


# ---------------------------------------------------------------------------
# SQLite: damage on disk
# ---------------------------------------------------------------------------


def tamper(path, statement: str, *args) -> None:
    """Change the file behind the storage's back, leaving the checksums as they were."""
    db = sqlite3.connect(path)
    with db:
        db.execute(statement, args)
    db.close()


def test_a_corrupted_tail_row_is_discarded_while_earlier_rows_survive(tmp_path, caplog):
    path = tmp_path / "c1-r0.db"
    with SqliteStorage(path) as store:
        store.save(hard_state=HardState(term=1, commit=5), entries=entries(1, 6, term=1))
    tamper(path, "UPDATE log SET data = ? WHERE idx = 5", b"torn")
    with caplog.at_level(logging.WARNING, logger="raftline.storage"):
        store = SqliteStorage(path)
    with store:
        state = store.load()
        assert state.entries == tuple(entries(1, 4, term=1))
        assert store.last_index() == 4
        # Commit may not point past the log that is left; term and vote stay.
        assert state.hard_state == HardState(term=1, commit=4)
    assert "index 5" in caplog.text and "checksum" in caplog.text
    # The discarded rows are gone from the file, not just hidden.
    with SqliteStorage(path) as store:
        assert store.entries() == tuple(entries(1, 4, term=1))


def test_a_gap_in_the_log_ends_it(tmp_path):
    path = tmp_path / "c1-r0.db"
    with SqliteStorage(path) as store:
        store.save(entries=entries(1, 6, term=1))
    tamper(path, "DELETE FROM log WHERE idx = 3")
    with SqliteStorage(path) as store:
        assert store.load().entries == tuple(entries(1, 2, term=1))


def test_a_corrupted_term_in_a_row_is_detected(tmp_path):
    path = tmp_path / "c1-r0.db"
    with SqliteStorage(path) as store:
        store.save(entries=entries(1, 3, term=1))
    tamper(path, "UPDATE log SET term = 2 WHERE idx = 3")
    with SqliteStorage(path) as store:
        assert store.load().entries == tuple(entries(1, 2, term=1))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE hard_state SET term = term + 1",
        "UPDATE hard_state SET voted_for = 'c1-r2'",
        "UPDATE hard_state SET voted_for = NULL",
    ],
)
def test_a_corrupted_hard_state_is_a_hard_error(tmp_path, statement):
    path = tmp_path / "c1-r0.db"
    with SqliteStorage(path) as store:
        store.save(hard_state=HardState(term=3, voted_for="c1-r1"), entries=entries(1, 2, term=3))
    tamper(path, statement)
    with pytest.raises(CorruptStorage, match="hard state"):
        with SqliteStorage(path) as store:
            store.load()


def test_a_corrupted_snapshot_is_a_hard_error(tmp_path):
    path = tmp_path / "c1-r0.db"
    with SqliteStorage(path) as store:
        store.save(snapshot=snapshot(4, term=1))
    tamper(path, "UPDATE snapshot SET data = ?", b"imagf")
    with pytest.raises(CorruptStorage, match="snapshot"):
        with SqliteStorage(path) as store:
            store.load()


def test_without_fsync_data_still_survives_a_reopen(tmp_path):
    path = tmp_path / "c1-r0.db"
    with SqliteStorage(path, fsync=False) as store:
        store.save(hard_state=HardState(term=2, voted_for="c1-r0", commit=1), entries=entries(1, 2, term=2))
    with SqliteStorage(path) as store:
        assert store.load() == StoredState(
            hard_state=HardState(term=2, voted_for="c1-r0", commit=1), snapshot=None, entries=tuple(entries(1, 2, term=2))
        )


def test_the_file_uses_write_ahead_logging(tmp_path):
    path = tmp_path / "c1-r0.db"
    SqliteStorage(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


class _RecordingConnection:
    """Wraps a sqlite3 connection, recording the statements it executes."""

    def __init__(self, db):
        self._db = db
        self.statements: list[str] = []

    def execute(self, sql, *args):
        self.statements.append(sql)
        return self._db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._db, name)


def test_a_save_that_only_moves_the_commit_index_is_not_synced(tmp_path):
    path = tmp_path / "raft.db"
    storage = SqliteStorage(path, fsync=True)
    storage.save(hard_state=HardState(term=2, voted_for="a", commit=0), entries=(Entry(index=1, term=2),))
    recorder = storage._db = _RecordingConnection(storage._db)
    storage.save(hard_state=HardState(term=2, voted_for="a", commit=1))
    pragmas = [sql for sql in recorder.statements if "synchronous" in sql]
    assert pragmas == ["PRAGMA synchronous=NORMAL", "PRAGMA synchronous=FULL"]
    assert recorder.statements[-1] == "PRAGMA synchronous=FULL"
    recorder.statements.clear()
    storage.save(hard_state=HardState(term=3, voted_for=None, commit=1))  # a new term must be durable
    assert not any("synchronous" in sql for sql in recorder.statements)
    storage.close()
    assert SqliteStorage(path, fsync=True).load().hard_state == HardState(term=3, voted_for=None, commit=1)
