"""One owner per data directory: a replica's or the coordinator's directory
is locked before its storage opens, and stays locked for the life of the
process that opened it.

Rules:
- The lock is `fcntl.flock` on `<directory>/LOCK`, which holds the owner's
  PID for people and error messages. The kernel drops the lock when its
  holder dies, even by SIGKILL, so a restart after a crash always gets it.
- A second process asking for a locked directory gets `DataDirInUse`, naming
  the directory and the holder's PID, and never touches the storage.
- `holder_of` only looks: it takes the lock and gives it back at once, for a
  caller that must refuse before starting anything.
- A forked child closes the lock files it inherited (without unlocking
  them): a lock lives as long as any copy of its descriptor, and Thespian
  forks each child actor from its parent, so a coordinator's servers would
  otherwise keep the coordinator's directory locked after it was killed.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

LOCK_FILE = "LOCK"

_held: list[IO[str]] = []
"""The lock files this process holds."""


def _close_inherited_locks() -> None:
    for lock in _held:
        lock.close()  # closes this copy only; the parent keeps its lock
    _held.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


class DataDirInUse(Exception):
    """Another process holds the data directory."""

    def __init__(self, directory: Path, holder: int | None):
        self.directory = directory
        self.holder = holder
        who = f"process {holder}" if holder else "another process"
        super().__init__(f"data directory {directory} is in use by {who}")


def lock_data_dir(directory: str | os.PathLike) -> IO[str]:
    """Lock `directory` (created if missing) for this process and return the
    open lock file: keep it open for as long as the directory is in use."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lock = open(directory / LOCK_FILE, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _recorded_holder(lock)
        lock.close()
        raise DataDirInUse(directory, holder) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    _held.append(lock)
    return lock


def holder_of(directory: str | os.PathLike) -> int | None:
    """The PID of the process holding `directory`, or None when it is free
    (0 when it is held but names no PID)."""
    path = Path(directory) / LOCK_FILE
    if not path.exists():
        return None
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _recorded_holder(lock) or 0
        fcntl.flock(lock, fcntl.LOCK_UN)
        return None


def _recorded_holder(lock: IO[str]) -> int | None:
    lock.seek(0)
    text = lock.read().strip()
    return int(text) if text.isdigit() else None
