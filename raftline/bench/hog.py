"""`bench --hog`: a busy loop on one core while a workload runs, so a run
shows how much a system slows down when it must share the machine (the
performance issue's target: raftline's slowdown no worse than etcd's)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

HOG_CORE = 0
"""The core the busy loop is pinned to, when the platform can pin."""

# Spins until its parent is gone: a bench killed outright leaves no hog behind.
BUSY_LOOP = """\
import os
parent = os.getppid()
while os.getppid() == parent:
    for _ in range(1_000_000):
        pass
"""


@contextmanager
def cpu_hog() -> Iterator[int]:
    """A busy-loop process pinned to HOG_CORE for the block; yields its PID,
    and ends it (and waits for it) on the way out."""
    process = subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdin=subprocess.DEVNULL)
    try:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(process.pid, {HOG_CORE})
        yield process.pid
    finally:
        process.kill()
        process.wait()
