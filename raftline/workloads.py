"""The workloads bench, verify and demo run: what each client does, drawn from a seeded rng.

Rules and invariants:
- Generators draw only from the `random.Random` they are handed: a seed
  replays a client's choice of operations. Nothing here talks to a system:
  an operation runs inside a transaction its caller opens and commits.
- bank, in every tool: accounts are named "0".."N-1" (JSON object keys are
  strings, so a recorded whole-bank read names them the same way) and live
  in keys `<prefix>bank-<name>`. Each opens with OPENING_BALANCE, so the
  bank's total is OPENING_BALANCE x N. A transfer reads both accounts in one
  round and moves money only when the source covers the amount.
- bench (BENCH_WORKLOADS): every operation is a function of a transaction.
  put and get touch one key of `bench-NNNNN`; txn increments two keys on two
  clusters when the system has two; bank transfers; mixed is get or put by
  the read ratio.
- verify (VERIFY_WORKLOADS): operations are data, `(f, value)`, recorded in
  a history and then applied inside a transaction. Every key starts with the
  run's prefix, so a run on a system that already holds data starts from
  empty lists and null registers.
  - list-append: lists are JSON arrays, appended by read-then-write inside
    the transaction; values are `process * VALUES_PER_PROCESS + counter`,
    unique per key. Keys rotate every KEY_ROTATION_SECONDS (from the run's
    common start) so no list outgrows the value size limit in a long run.
  - rw-register: transactions of 1-4 micro-ops `["r", key, None]` /
    `["w", key, value]` over a few keys, values unique per key as
    list-append's; a read records the whole value (null: never written).
  - bank: transfers `{"from", "to", "amount"}` and whole-bank reads.
  - register: `{"key": k, "value": v}` per operation, cas `[old, new]`; the
    initial value of every register is null (never written).
  An operation the workload itself gives up on (a cas whose old value
  differs, a transfer the source cannot cover) raises GiveUp before commit.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

from actors.keyspace import slot_of

BENCH_WORKLOADS = ("put", "get", "txn", "bank", "mixed")
VERIFY_WORKLOADS = ("list-append", "rw-register", "bank", "register")

OPENING_BALANCE = 100
"""Every account's balance before the first transfer, in every tool."""
MAX_TRANSFER = 10
"""The largest transfer of bench and demo."""
BENCH_KEYS = 1000
"""Keys a bench workload draws from unless told otherwise; bank draws from BENCH_ACCOUNTS accounts."""
BENCH_ACCOUNTS = 10

VERIFY_ACCOUNTS = 5
VERIFY_MAX_TRANSFER = 5
APPEND_KEYS = 8
MAX_MICRO_OPS = 4
KEY_ROTATION_SECONDS = 20
"""list-append keys in use change this often: lists stay far below the 32 KB value limit."""
VALUES_PER_PROCESS = 1_000_000
REGISTER_KEYS = 4
REGISTER_VALUES = 5


class GiveUp(Exception):
    """The workload abandons this operation before commit."""


# -- bank ---------------------------------------------------------------------------------------


def bank_accounts(count: int) -> list[str]:
    return [str(number) for number in range(count)]


def bank_key(account: str, prefix: str = "") -> str:
    return f"{prefix}bank-{account}"


def bank_keys(count: int, prefix: str = "") -> list[str]:
    return [bank_key(account, prefix) for account in bank_accounts(count)]


def transfer(txn, source: str, target: str, amount: int) -> bool:
    """Move `amount` from key `source` to key `target` when the source holds
    that much; whether it moved."""
    balances = txn.get_many([source, target])
    held = balances[source] or 0
    if held < amount:
        return False
    txn.put(source, held - amount)
    txn.put(target, (balances[target] or 0) + amount)
    return True


def bank_total(store, keys: list[str]) -> int:
    """The money in the accounts at `keys`, read in one transaction."""
    with store.transaction() as txn:
        return sum(balance or 0 for balance in txn.get_many(keys).values())


# -- bench: operations as functions of a transaction ---------------------------------------------


def bench_keys(workload: str, count: int | None = None) -> list[str]:
    """The keys a bench workload draws from: bank accounts, else `bench-NNNNN`."""
    if workload == "bank":
        return bank_keys(count or BENCH_ACCOUNTS)
    return [f"bench-{index:05d}" for index in range(count or BENCH_KEYS)]


@dataclass(frozen=True, slots=True)
class PlainGet:
    """A bench operation outside any transaction: `store.get(key)`, as an
    application reads one key (raftline: one logged read; etcd: one range)."""

    key: str


class BenchGenerator:
    """One bench client's operations over `keys`; `slots` names each slot's
    cluster, so that txn can pick keys on two clusters."""

    def __init__(
        self, workload: str, rng: random.Random, *, keys: list[str], slots: list[str], value_size: int, read_ratio: float
    ):
        self.workload = workload
        self.rng = rng
        self.keys = keys
        self.value = "v" * value_size
        self.read_ratio = read_ratio
        by_cluster: dict[str, list[str]] = {}
        for key in keys:
            by_cluster.setdefault(slots[slot_of(key, len(slots))], []).append(key)
        self.keys_by_cluster = list(by_cluster.values())

    def next(self) -> Callable[[Any], Any] | PlainGet:
        """The next operation: a function of a transaction, or a PlainGet."""
        workload = self.workload
        if workload == "mixed":
            workload = "get" if self.rng.random() < self.read_ratio else "put"
        key = self.rng.choice(self.keys)
        if workload == "put":
            return lambda txn: txn.put(key, self.value)
        if workload == "get":
            return PlainGet(key)
        if workload == "txn":
            return self.read_modify_write(self.two_keys_on_two_clusters())
        source, target = self.rng.sample(self.keys, 2)
        amount = self.rng.randint(1, MAX_TRANSFER)
        return lambda txn: transfer(txn, source, target, amount)

    def two_keys_on_two_clusters(self) -> tuple[str, str]:
        if len(self.keys_by_cluster) < 2:
            return tuple(self.rng.sample(self.keys, 2))
        first, second = self.rng.sample(self.keys_by_cluster, 2)
        return self.rng.choice(first), self.rng.choice(second)

    @staticmethod
    def read_modify_write(keys: tuple[str, ...]) -> Callable[[Any], None]:
        def body(txn) -> None:
            for key, value in txn.get_many(keys).items():
                txn.put(key, (value if isinstance(value, int) else 0) + 1)

        return body


# -- verify: operations as data, for a history ----------------------------------------------------


class MicroOpGenerator:
    """Transactions of 1-4 micro-ops: `["r", key, None]` or a write of a value
    unique per key (`WRITE`, `process * VALUES_PER_PROCESS + counter`), half
    and half; subclasses name the write and choose the keys."""

    WRITE = ""

    def __init__(self, rng: random.Random, process: int, *, prefix: str = "", keys: int):
        self.rng = rng
        self.process = process
        self.prefix = prefix
        self.keys = keys
        self.counter = 0

    def next(self, elapsed_s: float) -> tuple[str, Any]:
        micro_ops = []
        for _ in range(self.rng.randint(1, MAX_MICRO_OPS)):
            key = self.key(elapsed_s)
            if self.rng.random() < 0.5:
                micro_ops.append(["r", key, None])
            else:
                self.counter += 1
                micro_ops.append([self.WRITE, key, self.process * VALUES_PER_PROCESS + self.counter])
        return "txn", micro_ops

    def key(self, elapsed_s: float) -> str:
        raise NotImplementedError


class ListAppendGenerator(MicroOpGenerator):
    """list-append: `["append", key, value]` writes; keys rotate every KEY_ROTATION_SECONDS."""

    WRITE = "append"

    def __init__(self, rng: random.Random, process: int, *, prefix: str = "", keys: int = APPEND_KEYS):
        super().__init__(rng, process, prefix=prefix, keys=keys)

    def key(self, elapsed_s: float) -> str:
        generation = int(elapsed_s // KEY_ROTATION_SECONDS)
        return f"{self.prefix}la-{generation * self.keys + self.rng.randrange(self.keys)}"


class RwRegisterGenerator(MicroOpGenerator):
    """rw-register: `["w", key, value]` writes over a few keys."""

    WRITE = "w"

    def __init__(self, rng: random.Random, process: int, *, prefix: str = "", keys: int = REGISTER_KEYS):
        super().__init__(rng, process, prefix=prefix, keys=keys)

    def key(self, elapsed_s: float) -> str:
        return f"{self.prefix}rw-{self.rng.randrange(self.keys)}"


class BankGenerator:
    """Transfers `{"from", "to", "amount"}` and whole-bank reads, half and half."""

    def __init__(self, rng: random.Random, *, accounts: int = VERIFY_ACCOUNTS):
        self.rng = rng
        self.accounts = bank_accounts(accounts)

    def next(self, elapsed_s: float) -> tuple[str, Any]:
        if self.rng.random() < 0.5:
            return "read", None
        source, target = self.rng.sample(self.accounts, 2)
        return "transfer", {"from": source, "to": target, "amount": self.rng.randint(1, VERIFY_MAX_TRANSFER)}


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


def verify_generator(workload: str, rng: random.Random, process: int, prefix: str = ""):
    if workload == "list-append":
        return ListAppendGenerator(rng, process, prefix=prefix)
    if workload == "rw-register":
        return RwRegisterGenerator(rng, process, prefix=prefix)
    if workload == "bank":
        return BankGenerator(rng)
    if workload == "register":
        return RegisterGenerator(rng, prefix=prefix)
    raise ValueError(f"unknown workload {workload!r} (one of {', '.join(VERIFY_WORKLOADS)})")


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


def apply_rw_register(txn, micro_ops: list) -> list:
    """The micro-ops with each read's observed value filled in."""
    completed = []
    for kind, key, argument in micro_ops:
        if kind == "r":
            completed.append(["r", key, txn.get(key)])
        else:
            txn.put(key, argument)
            completed.append(["w", key, argument])
    return completed


def apply_bank(txn, f: str, value: Any, prefix: str) -> Any:
    if f == "read":
        return {account: txn.get(bank_key(account, prefix)) for account in bank_accounts(VERIFY_ACCOUNTS)}
    source, target = bank_key(value["from"], prefix), bank_key(value["to"], prefix)
    if not transfer(txn, source, target, value["amount"]):
        raise GiveUp(f"account {value['from']} holds less than {value['amount']}")
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


def apply_verify_operation(workload: str, txn, f: str, value: Any, prefix: str = "") -> Any:
    """Run the operation's body in `txn`; its `ok` value (commit is the caller's)."""
    if workload == "list-append":
        return apply_list_append(txn, value)
    if workload == "rw-register":
        return apply_rw_register(txn, value)
    if workload == "bank":
        return apply_bank(txn, f, value, prefix)
    return apply_register(txn, f, value)
