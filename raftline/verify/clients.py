"""A verify client process, recording every operation as a history; started by raftline/verify:

    python3 -m raftline.verify.clients SPEC.json

Rules and invariants:
- Each client is its own OS process with its own Store and clerk. It writes
  its own history file (raftline/check/history.py format), one event per
  line, flushed as it goes, so a client killed with SIGKILL leaves every
  event it recorded; only a last line without its newline can be torn.
- `time` is `time.monotonic_ns()`: one system-wide clock on this host, so
  the runner can merge the files of every client by time.
- Every operation is one transaction attempt (a register read is one
  `Store.get`), recorded invoke -> completion:
  committed -> `ok`; TransactionAborted, or the workload giving up before
  commit (GiveUp) -> `fail` (nothing it wrote is visible anywhere);
  Unavailable or any other raftline error -> `info` (the outcome is unknown).
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from clerk.client import connect
from clerk.errors import RaftlineError, TransactionAborted
from raftline.check.history import Event, format_event
from raftline.harness import PROGRESS_INTERVAL
from raftline.workloads import GiveUp, apply_verify_operation, verify_generator


class Recorder:
    """Writes one process's events to its history file, flushing each line."""

    def __init__(self, out: TextIO, process: int, clock: Callable[[], int] = time.monotonic_ns):
        self.out = out
        self.process = process
        self.clock = clock

    def record(self, kind: str, f: str, value: Any) -> None:
        event = Event(process=self.process, type=kind, f=f, value=value, time=self.clock())
        self.out.write(format_event(event) + "\n")
        self.out.flush()


def run_one(store, workload: str, recorder: Recorder, f: str, value: Any, prefix: str = "") -> str:
    """Invoke, attempt once, record the completion; returns its type."""
    recorder.record("invoke", f, value)
    txn = None
    try:
        if workload == "register" and f == "read":
            # The way applications read one key: Store.get, one logged read
            # (and a transaction of its own when that meets a writer).
            result = {"key": value["key"], "value": store.get(value["key"])}
        else:
            txn = store.transaction()
            result = apply_verify_operation(workload, txn, f, value, prefix)
            txn.commit()
    except (GiveUp, TransactionAborted):
        if txn is not None:
            txn.abort()
        recorder.record("fail", f, value)
        return "fail"
    except RaftlineError:
        recorder.record("info", f, value)
        return "info"
    recorder.record("ok", f, result)
    return "ok"


def client_main(spec_path: str) -> int:
    """Connect, print "ready CLERK_PID", wait for "go START_NS DEADLINE_NS" on
    stdin (the run's common start, for key rotation, and its end; monotonic
    ns), run operations until the deadline, print "done N" and exit.

    The spec holds: admin, workload, process, seed, prefix (of every key),
    history (its file)."""
    spec = json.loads(Path(spec_path).read_text())
    generator = verify_generator(spec["workload"], random.Random(spec["seed"]), spec["process"], spec["prefix"])
    store = connect(admin=spec["admin"], secret_file=spec["secret_file"])
    try:
        store.get("verify-warmup")  # the clerk has its map and knows the leaders
        print(f"ready {store.clerk_pid}", flush=True)
        word, *times = sys.stdin.readline().split()
        if word != "go" or len(times) != 2:
            return 1
        start_ns, deadline_ns = int(times[0]), int(times[1])
        operations = 0
        reported = time.monotonic()
        with open(spec["history"], "a", encoding="utf-8") as out:
            recorder = Recorder(out, spec["process"])
            while time.monotonic_ns() < deadline_ns:
                f, value = generator.next((time.monotonic_ns() - start_ns) / 1e9)
                run_one(store, spec["workload"], recorder, f, value, spec["prefix"])
                operations += 1
                if time.monotonic() - reported >= PROGRESS_INTERVAL:
                    reported = time.monotonic()
                    print(f"ops {operations}", flush=True)
        print(f"done {operations}", flush=True)
        return 0
    finally:
        store.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 -m raftline.verify.clients SPEC.json (started by raftline verify)")
    sys.exit(client_main(sys.argv[1]))
