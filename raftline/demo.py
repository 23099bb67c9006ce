"""`raftline demo`: a guided five-step tour on real processes.

Starts the topology in a temporary data directory on a free admin port, runs
a bank of concurrent transfers across clusters, puts a follower to sleep and
shows it repairing its log, kills a leader and shows the new one, checks that
the bank's total never changed, then stops everything.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from clerk.client import connect
from clerk.errors import RaftlineError, TransactionAborted
from coordinator.topology import topology_file
from raftline.harness import preload
from raftline.workloads import MAX_TRANSFER, OPENING_BALANCE, bank_keys, bank_total, transfer

ACCOUNTS = 12
WORKERS = 3
SLEEP_SECONDS = 3.0
HELP = "start, transact, sleep a replica and watch repair, kill a leader, stop"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-t", "--topology", metavar="FILE",
                        help="the topology to start, in a temporary data directory on a free admin port"
                             " (default ./topology.yaml, else the embedded default)")
    parser.add_argument("--keep", action="store_true", help="keep the demo's data directory")


def run(args) -> int:
    return run_demo(topology_file(args.topology), keep=args.keep)


class Bank:
    """Concurrent transfers between accounts, counted."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.accounts = bank_keys(ACCOUNTS)
        self.committed = 0
        self.aborted = 0
        self.failed = 0
        self.latencies: list[float] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def open(self) -> None:
        with connect(admin=self.cluster.admin) as store:
            preload(store, self.accounts, OPENING_BALANCE)

    def run(self) -> None:
        self.threads = [threading.Thread(target=self.worker, args=(seed,), daemon=True) for seed in range(WORKERS)]
        for thread in self.threads:
            thread.start()

    def worker(self, seed: int) -> None:
        rng = random.Random(seed)
        with connect(admin=self.cluster.admin) as store:
            while not self.stop.is_set():
                source, target = rng.sample(self.accounts, 2)
                amount = rng.randint(1, MAX_TRANSFER)
                began = time.perf_counter()
                try:
                    with store.transaction() as txn:
                        transfer(txn, source, target, amount)
                    outcome = "committed"
                except TransactionAborted:
                    outcome = "aborted"
                except RaftlineError:
                    outcome = "failed"
                with self.lock:
                    setattr(self, outcome, getattr(self, outcome) + 1)
                    if outcome == "committed":
                        self.latencies.append(time.perf_counter() - began)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def total(self) -> int:
        with connect(admin=self.cluster.admin) as store:
            return bank_total(store, self.accounts)


class TransferProgressLine:
    """A one-line progress bar on a terminal; periodic lines otherwise."""

    def __init__(self, bank: Bank):
        self.bank = bank
        self.tty = sys.stdout.isatty()
        self.last_line = 0.0

    def show(self, label: str) -> None:
        bank = self.bank
        line = (f"  [{label:<28}] {bank.committed:5d} committed, {bank.aborted:4d} aborted (conflicts), "
                f"{bank.failed} failed")
        if self.tty:
            print("\r" + line, end="", flush=True)
        elif time.monotonic() - self.last_line > 2.0:
            print(line, flush=True)
            self.last_line = time.monotonic()

    def wait(self, seconds: float, label: str, until=None) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.show(label)
            if until is not None and until():
                self.done(label)
                return True
            time.sleep(0.2)
        self.done(label)
        return until is None

    def done(self, label: str) -> None:
        self.show(label)
        if self.tty:
            print()


def run_demo(topology: str, keep: bool = False) -> int:
    from coordinator.system import start

    data_dir = Path(tempfile.mkdtemp(prefix="raftline-demo-"))
    print(f"1/5 starting {topology} on a free port, data in {data_dir}")
    began = time.monotonic()
    try:
        with start(topology, data_dir=data_dir, admin_port=0) as cluster:
            status = cluster.status()
            leaders = ", ".join(f"{name}: {c['leader']}" for name, c in status["clusters"].items())
            print(f"    up in {time.monotonic() - began:.1f} s at {cluster.admin}; leaders {leaders}")
            return tour(cluster, data_dir)
    finally:
        if keep:
            print(f"data kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def tour(cluster, data_dir: Path) -> int:
    bank = Bank(cluster)
    bank.open()
    expected = ACCOUNTS * OPENING_BALANCE
    print(f"2/5 bank: {ACCOUNTS} accounts x {OPENING_BALANCE} across every cluster; {WORKERS} clients transferring")
    bank.run()
    progress = TransferProgressLine(bank)
    progress.wait(3.0, "transfers")

    status = cluster.status()
    name, info = next(iter(status["clusters"].items()))
    sleeper = next(r for r in info["replicas"] if r != info["leader"])
    print(f"3/5 putting follower {sleeper} of {name} to sleep for {SLEEP_SECONDS:g} s while transfers go on")
    cluster.sleep(sleeper, SLEEP_SECONDS)
    progress.wait(SLEEP_SECONDS + 0.3, f"{sleeper} asleep")
    caught_up = progress.wait(15.0, f"{sleeper} repairing", until=lambda: _caught_up(cluster, name, sleeper))
    replica = cluster.status()["clusters"][name]["replicas"][sleeper]
    print(f"    {sleeper} {'caught up' if caught_up else 'still behind'}: "
          f"applied {replica['applied']}, commit {replica['commit']}")
    for line in _repair_lines(data_dir / sleeper / "server.log"):
        print(f"    log: {line}")

    status = cluster.status()
    victim_cluster = list(status["clusters"])[-1]
    victim = status["clusters"][victim_cluster]["leader"]
    print(f"4/5 killing {victim}, the leader of {victim_cluster} (kill -9)")
    killed_at = time.monotonic()
    cluster.kill(victim)
    elected = progress.wait(15.0, "electing", until=lambda: _new_leader(cluster, victim_cluster, victim))
    failover = time.monotonic() - killed_at
    new_leader = cluster.status()["clusters"][victim_cluster]["leader"]
    print(f"    {'new leader ' + str(new_leader) if elected else 'no new leader'} after {failover:.2f} s; "
          f"the coordinator restarts {victim}")
    progress.wait(2.0, "transfers")

    bank.finish()
    total = bank.total()
    latencies = sorted(bank.latencies)
    p50 = latencies[len(latencies) // 2] * 1000 if latencies else 0.0
    ok = total == expected
    print(f"5/5 bank total {total} (expected {expected}): {'conserved' if ok else 'VIOLATED'}")
    print(
        f"summary: {bank.committed} transfers committed, {bank.aborted} aborted by conflicts and retried, "
        f"{bank.failed} failed; p50 {p50:.1f} ms; failover {failover:.2f} s; stopping"
    )
    return 0 if ok and elected else 1


def _caught_up(cluster, name: str, replica: str) -> bool:
    info = cluster.status()["clusters"][name]
    leader = info["replicas"].get(info["leader"] or "", {})
    mine = info["replicas"][replica]
    return not mine["asleep"] and mine["alive"] and leader and mine["applied"] >= leader.get("commit", 0) - 2


def _new_leader(cluster, name: str, old: str) -> bool:
    leader = cluster.status()["clusters"][name]["leader"]
    return leader is not None and leader != old


def _repair_lines(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    wanted = ("sleeping", "woke", "gap", "repair")
    return [line for line in lines if any(word in line for word in wanted)][-4:]
