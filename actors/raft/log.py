"""RaftLog: a replica's in-memory log above its compaction point; and
`InvariantViolation`, the Raft package's error for a bug.

Rules and invariants:
- The log holds the entries after a compaction point `(snapshot_index,
  snapshot_term)`: contiguous, `entries[k].index == snapshot_index + 1 + k`,
  with terms never decreasing along the log (a leader only appends entries of
  its own term, and terms only grow; Raft paper 5.3).
- `term(i)` is known for `snapshot_index <= i <= last_index`; below the
  compaction point the log cannot tell (the caller must use the snapshot).
- Truncation never reaches the compaction point: compacted entries are
  committed, and a committed entry is never replaced (paper 5.4).
- The log is memory only: stable storage is written by the caller, from
  `Ready` (actors/raft/storage.py).
- A broken invariant is a bug in the caller (the node), not a caller error:
  it raises `InvariantViolation`, so the replica crashes and restarts from
  storage rather than continue from a corrupt state.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Iterable, Sequence

from actors.raft.messages import Entry

ENTRY_OVERHEAD_BYTES = 32
"""What one entry costs in a message beyond its data: a pickled Entry takes
about 22 bytes more than its payload (measured), rounded up so that a batch
of tiny entries stays as far under the 60 KB message limit as a large one."""


class InvariantViolation(AssertionError):
    """A Raft invariant would break: a bug in the node, never a caller error.

    Its policy is crash and restart from storage: nothing in the Raft
    package catches it, and the server shell exits on it, so the replica
    comes back from what was durable before the bad step rather than go on
    from a corrupt state. It is an AssertionError, as the node's own
    `assert`s are, so it is never mistaken for a caller error (`RaftError`,
    `ValueError`: retry elsewhere or later)."""


def _entry_term(entry: Entry) -> int:
    return entry.term


class RaftLog:
    """The log after the compaction point, held in memory.

    The node keeps the whole uncompacted log here (compaction keeps it
    bounded); stable storage is written only by the caller, from `Ready`.
    """

    def __init__(self, *, snapshot_index: int = 0, snapshot_term: int = 0, entries: Sequence[Entry] = ()) -> None:
        self._snapshot_index = snapshot_index
        self._snapshot_term = snapshot_term
        self._entries: list[Entry] = []
        self.append(entries)

    # -- views ---------------------------------------------------------------

    @property
    def snapshot_index(self) -> int:
        """Last index covered by the compaction point (0 when nothing was compacted)."""
        return self._snapshot_index

    @property
    def snapshot_term(self) -> int:
        return self._snapshot_term

    @property
    def first_index(self) -> int:
        """Index of the first retained entry (the next one when the log is empty)."""
        return self._snapshot_index + 1

    @property
    def last_index(self) -> int:
        return self._snapshot_index + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self._snapshot_term

    def term(self, index: int) -> int | None:
        """Term of the entry at `index`, or None when compacted away or beyond the log."""
        if index == self._snapshot_index:
            return self._snapshot_term
        if self._snapshot_index < index <= self.last_index:
            return self._entries[index - self._snapshot_index - 1].term
        return None

    def match_term(self, index: int, term: int) -> bool:
        """Whether the log holds an entry at `index` with `term` (the AppendEntries
        consistency check, paper 5.3)."""
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a log ending at (last_index, last_term) is at least as up to
        date as this one (the election restriction, paper 5.4.1)."""
        if last_term != self.last_term:
            return last_term > self.last_term
        return last_index >= self.last_index

    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> tuple[Entry, ...]:
        """Entries in [lo, hi); with `max_bytes`, stop before their summed size
        (`len(data) + ENTRY_OVERHEAD_BYTES` each) would exceed it, but always
        return at least one entry."""
        if lo < self.first_index or hi > self.last_index + 1 or lo > hi:
            raise InvariantViolation(f"slice [{lo}, {hi}) outside the log [{self.first_index}, {self.last_index}]")
        chosen = self._entries[lo - self.first_index : hi - self.first_index]
        if max_bytes is None:
            return tuple(chosen)
        size = 0
        for count, entry in enumerate(chosen):
            size += len(entry.data) + ENTRY_OVERHEAD_BYTES
            if size > max_bytes and count > 0:
                return tuple(chosen[:count])
        return tuple(chosen)

    def find_conflict(self, entries: Sequence[Entry]) -> int | None:
        """Index of the first of `entries` the log lacks or holds with another
        term, or None when the log already holds them all.

        Entries at or below the compaction point are committed, hence the same
        as the leader's, and are skipped."""
        for entry in entries:
            if entry.index <= self._snapshot_index:
                continue
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return None

    def first_index_of_term(self, index: int, floor: int) -> int:
        """First index, not below `floor`, of the run of entries sharing the
        term at `index`: the fast-backtracking hint a follower sends when it
        rejects (paper 5.3, end)."""
        term = self.term(index)
        if term is None or index <= self._snapshot_index:
            raise InvariantViolation(f"no retained entry at {index} to search its term")
        # Terms never decrease along the log, so the run starts at the first
        # entry whose term is at least `term`.
        first = self.first_index + bisect_left(self._entries, term, key=_entry_term)
        return max(first, floor, self.first_index)

    def last_index_with_term_at_most(self, term: int, hi: int) -> int | None:
        """Largest index `i <= hi` whose term is at most `term`, or None when
        that index lies below the compaction point (etcd's findConflictByTerm)."""
        hi = min(hi, self.last_index)
        if hi < self._snapshot_index:
            return None
        count = bisect_right(self._entries, term, key=_entry_term, hi=hi - self._snapshot_index)
        if count == 0 and self._snapshot_term > term:
            return None
        return self._snapshot_index + count

    # -- changes -------------------------------------------------------------

    def append(self, entries: Iterable[Entry]) -> None:
        """Append entries that continue the log exactly."""
        for entry in entries:
            if entry.index != self.last_index + 1:
                raise InvariantViolation(f"entry {entry.index} does not follow the last index {self.last_index}")
            if entry.term < self.last_term:
                raise InvariantViolation(
                    f"entry {entry.index} has term {entry.term} below the previous term {self.last_term}"
                )
            self._entries.append(entry)

    def truncate(self, index: int) -> None:
        """Drop every entry at or after `index` (a conflicting suffix, paper 5.3)."""
        if index <= self._snapshot_index:
            raise InvariantViolation(f"truncating at {index} would reach the compaction point {self._snapshot_index}")
        del self._entries[index - self.first_index :]

    def compact(self, index: int) -> None:
        """Move the compaction point to `index`, dropping the entries through it."""
        term = self.term(index)
        if term is None or index < self._snapshot_index:
            raise InvariantViolation(f"cannot compact to {index}: the log holds [{self.first_index}, {self.last_index}]")
        del self._entries[: index - self._snapshot_index]
        self._snapshot_index = index
        self._snapshot_term = term

    def restore(self, index: int, term: int) -> None:
        """Replace the whole log by an empty one after a received snapshot (paper 7)."""
        if index < self._snapshot_index:
            raise InvariantViolation(f"snapshot at {index} is older than the compaction point {self._snapshot_index}")
        self._entries.clear()
        self._snapshot_index = index
        self._snapshot_term = term
