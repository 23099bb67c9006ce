"""The versioned table: each key's committed value with its write and read stamps.

Rules and invariants (docs/DESIGN.md section 3):
- A stamp is `(ts, txid)`, compared as a pair, so stamps are unique.
  ZERO_STAMP means "never written" and sorts below every transaction.
- A key's version is `wts`, the stamp of the transaction that wrote its
  current value. Installs only move `wts` forward: an install at or below the
  current `wts` raises TableInvariantBroken (validation should have refused it).
- `rts` is the largest stamp of a transaction that committed (or passed a
  read-only check) after reading the key; it only grows. Reads of missing keys
  raise it too, so a key can carry an `rts` without ever having had a value.
- A delete installs a tombstone: the key reads as missing, with the
  tombstone's stamp as its version. Tombstones are never purged (the design
  allows a purge once both stamps are at or below the threshold; keeping them
  is simpler): so a key's stamps never move back, versions stay unique, and
  a read of "missing" at the zero stamp cannot validate against a key that
  was written and deleted since.
- `counter` counts committed writes (deletes included), 0 = never written. It
  is for people to read; validation uses stamps only.
- The table installs what it is told: deciding whether it may is validator.py's job.
- Slot moves (docs/DESIGN.md section 6) bypass those three ways on purpose: `put`
  copies a key's state exactly as another cluster held it, and `drop_slot`
  forgets a slot's keys, tombstones included. With `slot_count` > 0 the table
  indexes keys by slot, so a move never scans the whole table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from actors.keyspace import slot_of
from actors.messages import ZERO_STAMP, Stamp


class TableInvariantBroken(AssertionError):
    """An install that would move a key's version back: the validator let through
    a write it must refuse, so this code is wrong.

    Raised, not recorded like the machine's `violations`, on purpose. Those are
    bad inputs, refused before anything changes; this is found mid-install,
    inside a committed transaction that can be neither undone nor completed
    correctly. Every replica replays the entry and crashes again, so the
    cluster stops until the bug is fixed instead of serving a history that is
    not serializable."""


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyState:
    """One key of the table.

    Fields:
        value: the committed JSON value (None when missing).
        wts: the key's version: the stamp of the transaction that wrote it.
        rts: the largest stamp of a validated reader of the key.
        counter: committed writes so far, for display.
        tombstone: True when the last committed write was a delete.
    """

    value: Any = None
    wts: Stamp = ZERO_STAMP
    rts: Stamp = ZERO_STAMP
    counter: int = 0
    tombstone: bool = False

    @property
    def exists(self) -> bool:
        return self.wts != ZERO_STAMP and not self.tombstone


NEVER_WRITTEN = KeyState()


class VersionedTable:
    """Keys -> KeyState, with the only three ways a transaction may change the
    state, and the two ways a slot move may."""

    def __init__(self, slot_count: int = 0) -> None:
        self._keys: dict[str, KeyState] = {}
        self._slot_count = slot_count
        # slot -> its keys (a dict for insertion order; sorted when read).
        self._by_slot: dict[int, dict[str, None]] = {}

    def get(self, key: str) -> KeyState:
        return self._keys.get(key, NEVER_WRITTEN)

    def __len__(self) -> int:
        return len(self._keys)

    def install(self, key: str, value: Any, stamp: Stamp) -> None:
        self._install(key, stamp, value=value, tombstone=False)

    def install_tombstone(self, key: str, stamp: Stamp) -> None:
        self._install(key, stamp, value=None, tombstone=True)

    def raise_rts(self, key: str, stamp: Stamp) -> None:
        state = self.get(key)
        if stamp > state.rts:
            self._set(key, replace(state, rts=stamp))

    def _install(self, key: str, stamp: Stamp, *, value: Any, tombstone: bool) -> None:
        state = self.get(key)
        if stamp <= state.wts:
            raise TableInvariantBroken(
                f"install of {key!r} at {stamp} over the newer version {state.wts}"
            )
        self._set(key, replace(state, value=value, wts=stamp, counter=state.counter + 1, tombstone=tombstone))

    def put(self, key: str, state: KeyState) -> None:
        """A key copied from the cluster a slot moves from, stamps and all."""
        self._set(key, state)

    def keys_in(self, slot: int) -> list[str]:
        """The keys of `slot` (tombstones and read-only keys included), sorted."""
        return sorted(self._by_slot.get(slot, ()))

    def drop_slot(self, slot: int) -> None:
        """Forget every key of `slot`: the slot moved to another cluster."""
        for key in self._by_slot.pop(slot, ()):
            del self._keys[key]

    def _set(self, key: str, state: KeyState) -> None:
        if self._slot_count and key not in self._keys:
            self._by_slot.setdefault(slot_of(key, self._slot_count), {})[key] = None
        self._keys[key] = state

    def dump(self) -> list[list[Any]]:
        """Plain rows, sorted by key so equal tables dump equally."""
        return [
            [key, state.value, state.wts, state.rts, state.counter, state.tombstone]
            for key, state in sorted(self._keys.items())
        ]

    @classmethod
    def load(cls, rows: list[list[Any]], slot_count: int = 0) -> VersionedTable:
        table = cls(slot_count)
        for key, value, wts, rts, counter, tombstone in rows:
            table._set(key, KeyState(value=value, wts=wts, rts=rts, counter=counter, tombstone=tombstone))
        return table
