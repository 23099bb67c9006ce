"""A bench client process, started by raftline/bench/measure.py:

    python3 -m raftline.bench.client SPEC.json

It connects, warms up, prints "ready", waits for "go" on stdin, runs its
workload until its deadline (or SIGINT), writes one record per operation to the spec's
result file, prints "done N", then keeps its clerk until stdin closes, so
the driver can read every process's CPU time before anything exits.

The spec holds: admin and secret_file (or etcd: etcd's client URLs, for
--versus etcd), workload, duration, keys, slots (each slot's cluster),
value_size, read_ratio, retries, seed, result.
"""

from __future__ import annotations

import json
import random
import signal
import sys
import time
from pathlib import Path

from clerk.client import connect, retry_delay
from clerk.errors import RaftlineError, TransactionAborted
from raftline.harness import PROGRESS_INTERVAL
from raftline.workloads import BenchGenerator


def run_operation(store, body, retries: int) -> tuple[str, int, int]:
    """(outcome, attempts, hops) of one operation, retried on conflict."""
    hops_before = store.total_hops
    for attempt in range(1, retries + 2):
        txn = store.transaction()
        try:
            body(txn)
            txn.commit()
            return "ok", attempt, store.total_hops - hops_before
        except TransactionAborted:
            time.sleep(retry_delay(attempt))
        except RaftlineError:
            return "failed", attempt, store.total_hops - hops_before
    return "aborted", retries + 1, store.total_hops - hops_before


def client_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    generator = BenchGenerator(
        spec["workload"],
        random.Random(spec["seed"]),
        keys=spec["keys"],
        slots=spec["slots"],
        value_size=spec["value_size"],
        read_ratio=spec["read_ratio"],
    )
    if "etcd" in spec:  # --versus etcd: the same workload on etcd's endpoints
        from raftline.bench.etcd import EtcdStore

        store = EtcdStore(spec["etcd"])
    else:
        store = connect(admin=spec["admin"], secret_file=spec["secret_file"])
    try:
        store.get(spec["keys"][0])  # warm up: the clerk has its map and knows the leaders
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 1
        records = []
        began = time.monotonic()
        deadline = began + spec["duration"]
        reported = began
        try:
            while time.monotonic() < deadline:
                body = generator.next()
                start = time.monotonic()
                outcome, attempts, hops = run_operation(store, body, spec["retries"])
                records.append([round(start - began, 6), round(time.monotonic() - start, 6), outcome, attempts, hops])
                if time.monotonic() - reported >= PROGRESS_INTERVAL:
                    reported = time.monotonic()
                    print(f"ops {len(records)}", flush=True)
        except KeyboardInterrupt:
            # Ctrl-C reaches every client with the driver: stop, and hand over what
            # was done (the operation it cut short is left out); once is enough.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        Path(spec["result"]).write_text(json.dumps(records))
        print(f"done {len(records)}", flush=True)
        sys.stdin.read()  # keep the clerk until the driver has read every process's CPU time
        return 0
    finally:
        store.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 -m raftline.bench.client SPEC.json (started by raftline bench)")
    sys.exit(client_main(sys.argv[1]))
