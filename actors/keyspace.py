"""Where a key lives: the slot rule every process shares.

A key lives in slot `crc32(utf-8 key) mod slots`: the same in every process,
on every machine and in every Python run (never `hash()`, which is salted per
process). Servers use it to know which keys a slot move carries, clerks to
route a key to the cluster that owns its slot, the coordinator to plan moves.
"""

from __future__ import annotations

import zlib


def slot_of(key: str, slots: int) -> int:
    """The slot of `key` among `slots` slots; stable across processes and runs."""
    if not isinstance(key, str):
        raise TypeError(f"keys are strings, got {type(key).__name__}")
    if slots < 1:
        raise ValueError(f"slots must be at least 1, got {slots}")
    return zlib.crc32(key.encode("utf-8")) % slots
