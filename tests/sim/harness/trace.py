"""A simulation run's trace: every event line, stamped with simulated time.

Two runs of one seed produce the same lines, so their digests are equal
(determinism tests); the last lines go into a violation's report.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import deque
from pathlib import Path

from tests.sim.harness.network import Scheduler


class Trace:
    def __init__(self, scheduler: Scheduler, keep: int | None = 40) -> None:
        self._scheduler = scheduler
        self._digest = hashlib.sha256()
        self._recent: deque[str] = deque(maxlen=keep)

    def __call__(self, line: str) -> None:
        stamped = f"{self._scheduler.now} {line}"
        self._digest.update(stamped.encode())
        self._digest.update(b"\n")
        self._recent.append(stamped)

    @property
    def digest(self) -> str:
        """SHA-256 of every line so far."""
        return self._digest.hexdigest()

    def tail(self) -> list[str]:
        """The last lines kept (every line when kept without limit), oldest first."""
        return list(self._recent)


def digests_under_hash_seeds(program: str, hash_seeds: tuple[str, ...] = ("1", "2")) -> set[str]:
    """What `program` prints (a run's digest) in a fresh interpreter per
    PYTHONHASHSEED: one digest means nothing depends on hash order."""
    root = Path(__file__).resolve().parents[3]  # the repository: tests/sim/harness/trace.py
    return {
        subprocess.run(
            [sys.executable, "-c", program],
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for hash_seed in hash_seeds
    }
