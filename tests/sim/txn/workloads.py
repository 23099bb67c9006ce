"""Workloads of the transaction simulator, and the driver that runs one clerk's share.

Rules:
- A workload only plans: `plan(rng)` names the keys a transaction reads and
  the keys it writes; `write_values(plan, values, rng)` decides what to write
  from what was read. All randomness is the rng it is handed.
- `uniform`: one to four keys out of many, so transactions rarely meet.
  `hotkey`: most keys from a handful, so they meet all the time. Both mix
  read-only, read-modify-write and blind-write transactions.
  `bank`: transfers between two accounts (read both, write both, never below
  zero) and whole-bank read-only audits; an account never written holds the
  opening balance, so the total is known without a set-up phase.
- A `ClerkDriver` runs one clerk's sequence: read phase (`ClerkCore.read`),
  then `commit` with the versions read and a fresh timestamp from its own
  clock (clerk/timestamps.py, as the Clerk actor), a short pause, the next. Every commit
  and its outcome goes to the shared list of ClerkRecords. Half the
  read-only plans run as one `ClerkCore.get` instead (as `Store.get`): a
  get refused (Aborted or Moved) is recorded as aborted and read again the
  slower way, under a fresh txid, as the Store does.
- A driver outlives its clerk: when the clerk dies the transaction in flight
  is recorded as abandoned (the ground truth says what became of it) and the
  driver carries on with a fresh clerk.
- A commit refused because a slot moved (`Moved`: the attempt was aborted
  everywhere) is recorded as aborted and committed again, as the Clerk actor
  does, with the same reads and writes under a fresh txid and timestamp once
  the clerk's map is newer than the attempt's (or `moved_wait_ticks` later);
  after `max_moved_retries` retries the last refusal stands (its reason says
  "unavailable", as the Clerk actor's error would).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from actors.messages import ReadResult
from clerk.core import Aborted, ClerkCore, Committed, Completion, Failed, Moved, ReadDone
from clerk.timestamps import MICROSECONDS, HybridClock
from raftline.workloads import OPENING_BALANCE
from tests.sim.txn.truth import ABANDONED, ABORTED, COMMITTED, FAILED, Bank, ClerkRecord

SIM_WORKLOADS = ("uniform", "hotkey", "bank")


@dataclass(frozen=True, kw_only=True, slots=True)
class TxnPlan:
    """What one transaction touches.

    Fields:
        reads: keys read first; their versions go with the commit.
        writes: keys written (read ones, or blind writes).
        audit: a whole-bank read, whose balances the bank check judges.
    """

    reads: tuple[str, ...]
    writes: tuple[str, ...] = ()
    audit: bool = False


class Workload(Protocol):
    """What a ClerkDriver asks of a workload."""

    name: str

    def plan(self, rng: random.Random) -> TxnPlan: ...

    def write_values(self, plan: TxnPlan, values: dict[str, ReadResult], rng: random.Random) -> dict[str, Any]: ...


class KeysWorkload:
    """`uniform` (no hot keys) and `hotkey` (`hot_share` of picks among `hot` keys)."""

    def __init__(self, name: str, *, keys: int = 200, hot: int = 0, hot_share: float = 0.0) -> None:
        self.name = name
        self.cold = tuple(f"u{number:02d}" for number in range(keys))
        self.hot = tuple(f"h{number}" for number in range(hot))
        self.hot_share = hot_share

    def _pick(self, rng: random.Random) -> str:
        if self.hot and rng.random() < self.hot_share:
            return rng.choice(self.hot)
        return rng.choice(self.cold)

    def plan(self, rng: random.Random) -> TxnPlan:
        keys = tuple(sorted({self._pick(rng) for _ in range(rng.randint(1, 4))}))
        roll = rng.random()
        if roll < 0.2:
            return TxnPlan(reads=keys)
        if roll < 0.3:
            return TxnPlan(reads=(), writes=keys)
        written = tuple(key for key in keys if rng.random() < 0.6) or keys[:1]
        return TxnPlan(reads=keys, writes=written)

    def write_values(self, plan: TxnPlan, values: dict[str, ReadResult], rng: random.Random) -> dict[str, Any]:
        """Increment what was read; a blind write sets a random number."""
        return {
            key: (values[key].value or 0) + 1 if key in values else rng.randint(0, 999) for key in plan.writes
        }


class BankWorkload:
    """Transfers and audits over `bank.accounts`."""

    name = "bank"

    def __init__(self, bank: Bank, *, audit_share: float = 0.25) -> None:
        self.bank = bank
        self.audit_share = audit_share

    def plan(self, rng: random.Random) -> TxnPlan:
        if rng.random() < self.audit_share:
            return TxnPlan(reads=self.bank.accounts, audit=True)
        pair = tuple(sorted(rng.sample(self.bank.accounts, 2)))
        return TxnPlan(reads=pair, writes=pair)

    def balances(self, values: dict[str, ReadResult]) -> dict[str, int]:
        return {key: self.bank.balance(result.exists, result.value) for key, result in values.items()}

    def write_values(self, plan: TxnPlan, values: dict[str, ReadResult], rng: random.Random) -> dict[str, Any]:
        if not plan.writes:
            return {}
        balances = self.balances(values)
        source, target = rng.sample(plan.writes, 2)
        amount = rng.randint(0, min(10, balances[source]))
        return {source: balances[source] - amount, target: balances[target] + amount}


def make_workload(name: str) -> Workload:
    if name == "uniform":
        return KeysWorkload("uniform")
    if name == "hotkey":
        return KeysWorkload("hotkey", hot=3, hot_share=0.8)
    if name == "bank":
        return BankWorkload(Bank(accounts=tuple(f"acct{number}" for number in range(8)), opening=OPENING_BALANCE))
    raise ValueError(f"unknown workload {name!r}; choose from {', '.join(SIM_WORKLOADS)}")


class ClerkDriver:
    """Runs one clerk's transactions, one at a time (see the module rules)."""

    def __init__(
        self,
        *,
        workload: Workload,
        rng: random.Random,
        clock: Callable[[], float],
        max_clock_offset: float,
        records: list[ClerkRecord],
        max_pause_ticks: int = 3,
        moved_wait_ticks: int = 20,
        max_moved_retries: int = 12,
    ) -> None:
        self.workload = workload
        self.rng = rng
        self.clock = clock
        self.max_clock_offset = max_clock_offset
        self.timestamps = HybridClock()
        self.records = records
        self.max_pause_ticks = max_pause_ticks
        self.moved_wait_ticks = moved_wait_ticks
        self.max_moved_retries = max_moved_retries
        self.moved = 0
        self.active = True
        self.read_failures = 0
        self._core: ClerkCore | None = None
        self._clerk = ""
        self._started = 0
        self._op = 0
        self._plan: TxnPlan | None = None
        self._txid = ""
        self._ts = 0
        self._began = 0
        self._held = False  # committed, answered once the clock is past the timestamp
        self._balances: dict[str, int] | None = None
        self._committing = False
        self._getting = False  # a ClerkCore.get in flight
        self._next_start = 0
        # The commit to run again after a Moved: (reads, writes), the map
        # epoch it was refused under, and when to retry regardless.
        self._reads: dict = {}
        self._writes: dict = {}
        self._again: tuple[dict, dict] | None = None
        self._again_epoch = 0
        self._again_at = 0
        self._retries = 0

    @property
    def busy(self) -> bool:
        """A transaction is in flight."""
        return self._plan is not None

    @property
    def txid(self) -> str:
        """The transaction in flight ("" when idle)."""
        return self._txid

    def attach(self, core: ClerkCore, clerk: str, now: int) -> None:
        """Drive a fresh clerk; if the previous one died mid-transaction, that
        transaction is abandoned."""
        if self._committing:
            self._record(ABANDONED, "its clerk died")
        self._reset(now)
        self._core = core
        self._clerk = clerk
        self._started = 0

    def tick(self, now: int) -> None:
        """Retry a moved commit once the map is newer; else start the next
        transaction when idle, active and the pause is over."""
        if self._core is None:
            return
        if self._held:
            self._acknowledge(now)
            return
        if self._again is not None:
            if self._core.moved_past(self._again_epoch) or now >= self._again_at:
                reads, writes = self._again
                self._again = None
                self._send_commit(reads, writes)
            return
        if self.busy or not self.active or now < self._next_start:
            return
        self._started += 1
        self._began = now
        self._op += 1
        self._plan = self.workload.plan(self.rng)
        self._txid = f"{self._clerk}/{self._started}"
        if not self._plan.writes and self.rng.random() < 0.5:
            self._getting = True
            self._ts = self.timestamps.take(self.clock(), ())
            self._core.get(self._op, txid=self._txid, ts=self._ts, keys=list(self._plan.reads))
        else:
            self._core.read(self._op, list(self._plan.reads))

    def handle(self, completion: Completion, now: int) -> None:
        if completion.op != self._op or self._plan is None:
            raise AssertionError(f"{self._clerk}: completion of op {completion.op} while op {self._op} is current")
        plan = self._plan
        match completion:
            case ReadDone(values=values) if self._getting:
                # A get is read and checked at once: committed.
                self._getting = False
                if plan.audit:
                    self._balances = self.workload.balances(values)
                self._held = True
                self._acknowledge(now)
            case Aborted(reason=reason) | Moved(reason=reason) if self._getting:
                self._getting = False
                self._record(ABORTED, f"get: {reason}")
                self._txid = f"{self._clerk}/{self._started}.read"
                self._op += 1
                self._core.read(self._op, list(plan.reads))
            case ReadDone(values=values) if not self._committing:
                self._commit(plan, values)
            case Failed() if not self._committing:
                self.read_failures += 1
                self._reset(now)
            case Committed():
                self._held = True
                self._acknowledge(now)
            case Aborted(reason=reason):
                self._record(ABORTED, reason)
                self._reset(now)
            case Moved(epoch=epoch, reason=reason):
                self.moved += 1
                if self._retries == self.max_moved_retries:
                    self._record(ABORTED, f"moved: {reason}; unavailable after {self._retries} retries")
                    self._reset(now)
                    return
                self._record(ABORTED, f"moved: {reason}")
                self._retries += 1
                self._committing = False
                self._again = (self._reads, self._writes)
                self._again_epoch = epoch
                self._again_at = now + self.moved_wait_ticks
            case Failed(reason=reason):
                self._record(FAILED, reason)
                self._reset(now)
            case _:
                raise AssertionError(f"{self._clerk}: unexpected completion {completion!r}")

    def _commit(self, plan: TxnPlan, values: dict[str, ReadResult]) -> None:
        writes = self.workload.write_values(plan, values, self.rng)
        if plan.audit:
            self._balances = self.workload.balances(values)
        self._send_commit({key: result.version for key, result in values.items()}, writes)

    def _send_commit(self, reads: dict, writes: dict) -> None:
        """Commit under a fresh timestamp; a retry after a Moved also under a fresh txid."""
        if self._retries:
            self._txid = f"{self._clerk}/{self._started}.{self._retries}"
        self._reads, self._writes = reads, writes
        self._ts = self.timestamps.take(self.clock(), reads.values())
        self._op += 1
        self._committing = True
        self._core.commit(self._op, txid=self._txid, ts=self._ts, reads=reads, writes=writes)

    def _acknowledge(self, now: int) -> None:
        """Commit wait, as the Clerk's: the commit counts as answered only once
        this clerk's clock has passed its timestamp by the largest offset."""
        if self.clock() * MICROSECONDS > self._ts + self.max_clock_offset * MICROSECONDS:
            self._record(COMMITTED, "", acked=now)
            self._reset(now)

    def _record(self, outcome: str, reason: str, acked: int = 0) -> None:
        plan = self._plan
        self.records.append(
            ClerkRecord(
                txid=self._txid,
                ts=self._ts,
                reads=plan.reads,
                writes=plan.writes,
                outcome=outcome,
                reason=reason,
                balances=self._balances,
                began=self._began,
                acked=acked,
            )
        )

    def _reset(self, now: int) -> None:
        self._plan = None
        self._txid = ""
        self._balances = None
        self._committing = False
        self._getting = False
        self._held = False
        self._again = None
        self._retries = 0
        self._next_start = now + self.rng.randint(0, self.max_pause_ticks)
