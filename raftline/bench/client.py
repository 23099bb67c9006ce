"""A bench client process, started by raftline/bench/measure.py:

    python3 -m raftline.bench.client SPEC.json

It runs `threads` clients, each a thread with its own store (on raftline,
the stores of one process share one clerk). It connects them, warms them
up, prints "ready", waits for "go" on stdin, runs the workload until the
deadline (or SIGINT), writes one record per operation to the spec's result
file, prints "done N", then keeps its clerk until stdin closes, so the
driver can read every process's CPU time before anything exits.

The spec holds: admin and secret_file (or etcd: etcd's client URLs, for
--versus etcd), workload, duration, keys, slots (each slot's cluster),
value_size, read_ratio, retries, threads, seed (its first thread's; the
next ones count up), result.
"""

from __future__ import annotations

import json
import random
import signal
import sys
import threading
import time
from pathlib import Path

from clerk.client import REQUEST_TIMEOUT, connect, retry_delay
from clerk.errors import RaftlineError, TransactionAborted
from raftline.harness import PROGRESS_INTERVAL
from raftline.workloads import BenchGenerator, PlainGet


def run_operation(store, body, retries: int) -> tuple[str, int, int]:
    """(outcome, attempts, hops) of one operation, retried on conflict. A
    PlainGet is one call: `store.get` retries on its own, so it counts as one
    attempt."""
    hops_before = store.total_hops
    if isinstance(body, PlainGet):
        try:
            store.get(body.key)
            outcome = "ok"
        except TransactionAborted:
            outcome = "aborted"
        except RaftlineError:
            outcome = "failed"
        return outcome, 1, store.total_hops - hops_before
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


class Worker(threading.Thread):
    """One client: its own store (sharing the process's clerk) and key choices,
    running operations from `go` until the deadline or `stop`."""

    def __init__(self, spec: dict, number: int, ready: threading.Barrier, go: threading.Event,
                 stop: threading.Event):
        super().__init__(name=f"client-{number}", daemon=True)
        self.spec, self.ready, self.go, self.stop = spec, ready, go, stop
        self.generator = BenchGenerator(spec["workload"], random.Random(spec["seed"] + number), keys=spec["keys"],
                                        slots=spec["slots"], value_size=spec["value_size"],
                                        read_ratio=spec["read_ratio"])
        self.store = None
        self.records: list[list] = []
        self.began = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.store = open_store(self.spec)
            self.store.get(self.spec["keys"][0])  # warm up: the clerk has its map and knows the leaders
        except Exception as error:  # the main thread reports it and exits non-zero
            self.error = error
            self.ready.abort()
            return
        self.ready.wait()
        self.go.wait()
        deadline = self.began + self.spec["duration"]
        while time.monotonic() < deadline and not self.stop.is_set():
            body = self.generator.next()
            start = time.monotonic()
            outcome, attempts, hops = run_operation(self.store, body, self.spec["retries"])
            self.records.append([round(start - self.began, 6), round(time.monotonic() - start, 6), outcome,
                                 attempts, hops])


def open_store(spec: dict):
    if "etcd" in spec:  # --versus etcd: the same workload on etcd's endpoints
        from raftline.bench.etcd import EtcdStore

        return EtcdStore(spec["etcd"])
    return connect(admin=spec["admin"], secret_file=spec["secret_file"])


def client_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    count = spec["threads"]
    ready, go, stop = threading.Barrier(count + 1), threading.Event(), threading.Event()
    workers = [Worker(spec, number, ready, go, stop) for number in range(count)]
    for worker in workers:
        worker.start()
    try:
        try:
            ready.wait()
        except threading.BrokenBarrierError:
            failed = next(worker.error for worker in workers if worker.error is not None)
            raise failed from None
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 1
        began = time.monotonic()
        for worker in workers:
            worker.began = began
        go.set()
        try:
            while any(worker.is_alive() for worker in workers):
                time.sleep(PROGRESS_INTERVAL)
                print(f"ops {sum(len(worker.records) for worker in workers)}", flush=True)
        except KeyboardInterrupt:
            # Ctrl-C reaches every client with the driver: stop, and hand over what
            # was done (operations in flight finish and count); once is enough.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            stop.set()
            for worker in workers:
                worker.join()
        records = [record for worker in workers for record in worker.records]
        Path(spec["result"]).write_text(json.dumps(records))
        print(f"done {len(records)}", flush=True)
        sys.stdin.read()  # keep the clerk until the driver has read every process's CPU time
        return 0
    finally:
        stop.set()
        go.set()
        for worker in workers:
            worker.join(timeout=REQUEST_TIMEOUT)
            if worker.store is not None:
                worker.store.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 -m raftline.bench.client SPEC.json (started by raftline bench)")
    sys.exit(client_main(sys.argv[1]))
