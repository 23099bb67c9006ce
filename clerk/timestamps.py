"""Commit timestamps, taken by each clerk from its own clock (docs/DESIGN.md
section 4, "Timestamps").

A hybrid logical clock: a commit's timestamp is the largest of
- the clerk's clock, in whole microseconds of Unix time;
- one above the timestamp of every version the transaction read;
- one above the clerk's previous timestamp.

Why this is enough: a transaction's stamp is `(ts, txid)`, unique whatever
the ts, and validation serializes in stamp order, so a timestamp that is
too low costs an abort, never a non-serializable result. Real-time order
also needs the commit wait the session adds (ClerkSession): no commit is
answered before every clock has passed its timestamp.

Pure: the caller passes the time in.
"""

from __future__ import annotations

from collections.abc import Iterable

from actors.messages import Stamp

MICROSECONDS = 1_000_000


class HybridClock:
    """One clerk's timestamps: strictly increasing, above every version read."""

    def __init__(self) -> None:
        self._last = 0

    def take(self, unix_seconds: float, versions_read: Iterable[Stamp] = ()) -> int:
        """A timestamp for a commit at `unix_seconds` that read `versions_read`."""
        floor = max((version[0] for version in versions_read), default=0)
        ts = max(int(unix_seconds * MICROSECONDS), floor + 1, self._last + 1)
        self._last = ts
        return ts
