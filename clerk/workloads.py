"""Verification workloads: client processes that record every operation as a history.

    python3 -m clerk.workloads --client SPEC.json     (started by clerk/verify.py)

Rules and invariants:
- Each client is its own OS process with its own Store and clerk. It writes
  its own history file (clerk/history.py format), one event per line,
  flushed as it goes, so a client killed with SIGKILL leaves every event it
  recorded; only a last line without its newline can be torn.
- `time` is `time.monotonic_ns()`: one system-wide clock on this host, so
  the runner can merge the files of every client by time.
- Every operation is one transaction attempt, recorded invoke -> completion:
  committed -> `ok`; TransactionAborted -> `fail` (nothing it wrote is
  visible anywhere); Unavailable or any other raftline error -> `info`
  (the outcome is unknown). An operation the workload itself gives up on
  (a cas whose old value differs, a transfer the source cannot cover) is
  aborted before commit and recorded `fail`.
- Generators draw only from the `random.Random` they are handed: a seed
  replays a client's choice of operations.
- list-append: lists are JSON arrays, appended by read-then-write inside the
  transaction; values are `process * 1_000_000 + counter`, unique per key.
  Keys rotate every KEY_ROTATION_SECONDS (from the run's common start) so no
  list outgrows the value size limit in a long run.
- Every key starts with the run's prefix, so a run on a system that already
  holds data (--admin) starts from empty lists and null registers.
- bank: accounts "0".."N-1" in keys `<prefix>bank-<i>`; a read sees the whole bank.
- register: `{"key": k, "value": v}` per operation, cas `[old, new]`; the
  initial value of every register is null (never written).
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from clerk.history import Event, format_event

WORKLOADS = ("list-append", "bank", "register")
APPEND_KEYS = 8
MAX_MICRO_OPS = 4
KEY_ROTATION_SECONDS = 20
"""list-append keys in use change this often: lists stay far below the 32 KB value limit."""
VALUES_PER_PROCESS = 1_000_000
BANK_ACCOUNTS = 5
OPENING_BALANCE = 100
MAX_TRANSFER = 5
REGISTER_KEYS = 4
REGISTER_VALUES = 5
PROGRESS_INTERVAL = 0.2


class GiveUp(Exception):
    """The workload abandons this operation before commit: it is recorded `fail`."""


def bank_key(prefix: str, account: str) -> str:
    return f"{prefix}bank-{account}"


def bank_accounts(count: int = BANK_ACCOUNTS) -> list[str]:
    return [str(number) for number in range(count)]


# -- generators: what to invoke (pure, seeded) ------------------------------------------------


class ListAppendGenerator:
    """Transactions of 1-4 micro-ops `["r", key, None]` / `["append", key, value]`."""

    def __init__(self, rng: random.Random, process: int, *, prefix: str = "", keys: int = APPEND_KEYS):
        self.rng = rng
        self.process = process
        self.prefix = prefix
        self.keys = keys
        self.counter = 0

    def next(self, elapsed_s: float) -> tuple[str, Any]:
        generation = int(elapsed_s // KEY_ROTATION_SECONDS)
        micro_ops = []
        for _ in range(self.rng.randint(1, MAX_MICRO_OPS)):
            key = f"{self.prefix}la-{generation * self.keys + self.rng.randrange(self.keys)}"
            if self.rng.random() < 0.5:
                micro_ops.append(["r", key, None])
            else:
                self.counter += 1
                micro_ops.append(["append", key, self.process * VALUES_PER_PROCESS + self.counter])
        return "txn", micro_ops


class BankGenerator:
    """Transfers `{"from", "to", "amount"}` and whole-bank reads, half and half."""

    def __init__(self, rng: random.Random, *, accounts: int = BANK_ACCOUNTS):
        self.rng = rng
        self.accounts = bank_accounts(accounts)

    def next(self, elapsed_s: float) -> tuple[str, Any]:
        if self.rng.random() < 0.5:
            return "read", None
        source, target = self.rng.sample(self.accounts, 2)
        return "transfer", {"from": source, "to": target, "amount": self.rng.randint(1, MAX_TRANSFER)}


class RegisterGenerator:
    """Single-key read, write and cas over a few registers holding small integers."""

    def __init__(self, rng: random.Random, *, prefix: str = "", keys: int = REGISTER_KEYS):
        self.rng = rng
        self.prefix = prefix
        self.keys = keys

    def next(self, elapsed_s: float) -> tuple[str, Any]:
        key = f"{self.prefix}reg-{self.rng.randrange(self.keys)}"
        f = self.rng.choice(("read", "write", "cas"))
        if f == "read":
            return f, {"key": key, "value": None}
        if f == "write":
            return f, {"key": key, "value": self.rng.randrange(REGISTER_VALUES)}
        return f, {"key": key, "value": [self.rng.randrange(REGISTER_VALUES), self.rng.randrange(REGISTER_VALUES)]}


def make_generator(workload: str, rng: random.Random, process: int, prefix: str = ""):
    if workload == "list-append":
        return ListAppendGenerator(rng, process, prefix=prefix)
    if workload == "bank":
        return BankGenerator(rng)
    if workload == "register":
        return RegisterGenerator(rng, prefix=prefix)
    raise ValueError(f"unknown workload {workload!r} (one of {', '.join(WORKLOADS)})")


# -- applying an operation inside a transaction -----------------------------------------------


def apply_list_append(txn, micro_ops: list) -> list:
    """The micro-ops with each read's observed list filled in."""
    completed = []
    for kind, key, argument in micro_ops:
        current = txn.get(key) or []
        if kind == "r":
            completed.append(["r", key, list(current)])
        else:
            txn.put(key, [*current, argument])  # a new list: the transaction caches what it read
            completed.append(["append", key, argument])
    return completed


def apply_bank(txn, f: str, value: Any, prefix: str) -> Any:
    if f == "read":
        return {account: txn.get(bank_key(prefix, account)) for account in bank_accounts()}
    source, target, amount = bank_key(prefix, value["from"]), bank_key(prefix, value["to"]), value["amount"]
    balance = txn.get(source) or 0
    if balance < amount:
        raise GiveUp(f"account {value['from']} holds {balance} < {amount}")
    txn.put(source, balance - amount)
    txn.put(target, (txn.get(target) or 0) + amount)
    return value


def apply_register(txn, f: str, value: Any) -> Any:
    key = value["key"]
    if f == "read":
        return {"key": key, "value": txn.get(key)}
    if f == "write":
        txn.put(key, value["value"])
        return value
    old, new = value["value"]
    if txn.get(key) != old:
        raise GiveUp(f"{key} is not {old}")
    txn.put(key, new)
    return value


def apply_operation(workload: str, txn, f: str, value: Any, prefix: str = "") -> Any:
    """Run the operation's body in `txn`; its `ok` value (commit is the caller's)."""
    if workload == "list-append":
        return apply_list_append(txn, value)
    if workload == "bank":
        return apply_bank(txn, f, value, prefix)
    return apply_register(txn, f, value)


# -- recording ----------------------------------------------------------------------------


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
    from clerk.errors import RaftlineError, TransactionAborted

    recorder.record("invoke", f, value)
    txn = store.transaction()
    try:
        result = apply_operation(workload, txn, f, value, prefix)
        txn.commit()
    except (GiveUp, TransactionAborted):
        txn.abort()
        recorder.record("fail", f, value)
        return "fail"
    except RaftlineError:
        recorder.record("info", f, value)
        return "info"
    recorder.record("ok", f, result)
    return "ok"


# -- the client process --------------------------------------------------------------------


def client_main(spec_path: str) -> int:
    """Connect, print "ready", wait for "go START_NS DEADLINE_NS" on stdin (the
    run's common start, for key rotation, and its end; monotonic ns), run
    operations until the deadline, print "done N" and exit.

    The spec holds: admin, workload, process, seed, prefix (of every key),
    history (its file)."""
    from clerk.client import connect

    spec = json.loads(Path(spec_path).read_text())
    generator = make_generator(spec["workload"], random.Random(spec["seed"]), spec["process"], spec["prefix"])
    store = connect(admin=spec["admin"])
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "--client":
        print("usage: python3 -m clerk.workloads --client SPEC.json (started by raftline verify)", file=sys.stderr)
        return 2
    return client_main(argv[1])


if __name__ == "__main__":
    sys.exit(main())
