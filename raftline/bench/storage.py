"""What one `SqliteStorage.save` costs, with and without fsync.

Run: python3 -m raftline.bench.storage [--dir DIR] [--seconds S]

Each save is one Raft batch as a follower persists it: N entries of 100
bytes plus the hard state. The file lives in DIR (default: the system's temp
directory); a RAM-backed DIR makes fsync look free, so point it at the disk
the data directory will use. Every cell stops after --seconds or 400 saves.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from actors.raft.messages import Entry, HardState
from actors.sqlite_storage import SqliteStorage
from raftline.bench.measure import percentile

ENTRY_BYTES = 100
BATCH_SIZES = (1, 10, 100)
MAX_SAVES = 400
WARMUP_SAVES = 5


def time_saves(path: Path, *, fsync: bool, batch: int, seconds: float, rng: random.Random) -> list[float]:
    """Latencies in seconds of consecutive saves of `batch` entries each."""
    latencies: list[float] = []
    with SqliteStorage(path, fsync=fsync) as storage:
        next_index = 1
        deadline = time.perf_counter() + seconds
        for count in range(WARMUP_SAVES + MAX_SAVES):
            entries = [Entry(index=next_index + i, term=1, data=rng.randbytes(ENTRY_BYTES)) for i in range(batch)]
            hard_state = HardState(term=1, voted_for="c1-r0", commit=next_index - 1)
            started = time.perf_counter()
            storage.save(hard_state=hard_state, entries=entries)
            finished = time.perf_counter()
            next_index += batch
            if count >= WARMUP_SAVES:
                latencies.append(finished - started)
                if finished > deadline:
                    break
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(prog="python3 -m raftline.bench.storage", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="where to put the database files (default: temp directory)")
    parser.add_argument("--seconds", type=float, default=0.5, help="time budget per cell (default 0.5)")
    args = parser.parse_args()

    rng = random.Random(7)
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        print(f"SqliteStorage.save latency, {ENTRY_BYTES}-byte entries, files in {scratch}")
        print(f"{'fsync':>5} {'batch':>5} {'saves':>5} {'median ms':>10} {'p99 ms':>8} {'entries/s':>10}")
        for fsync in (True, False):
            for batch in BATCH_SIZES:
                path = Path(scratch) / f"fsync-{fsync}-batch-{batch}.db"
                latencies = sorted(time_saves(path, fsync=fsync, batch=batch, seconds=args.seconds, rng=rng))
                median = statistics.median(latencies)
                print(
                    f"{'on' if fsync else 'off':>5} {batch:>5} {len(latencies):>5} "
                    f"{median * 1e3:>10.3f} {percentile(latencies, 0.99) * 1e3:>8.3f} {batch / median:>10.0f}"
                )


if __name__ == "__main__":
    main()
