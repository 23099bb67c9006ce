"""Bank transfers that keep running while a test reconfigures or kills parts
of a system: shared by the reconfiguration and multi-host tests."""

from __future__ import annotations

import random
import threading
import time

from clerk import TransactionAborted, connect

ACCOUNTS = [f"acct-{number:02d}" for number in range(16)]


class Transfers(threading.Thread):
    """Random transfers between accounts, each a transaction retried on abort,
    until stopped; records the slowest commit and anything unexpected."""

    def __init__(self, cluster, seed: int):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self.committed = 0
        self.slowest = 0.0
        self.errors: list[str] = []

    def run(self) -> None:
        with connect(admin=self.cluster.admin) as store:

            @store.transactional(retries=50)
            def transfer(txn, source: str, target: str, amount: int) -> None:
                balance = txn.get(source)
                if balance >= amount:
                    txn.put(source, balance - amount)
                    txn.put(target, txn.get(target) + amount)

            while not self.stopping.is_set():
                source, target = self.rng.sample(ACCOUNTS, 2)
                began = time.monotonic()
                try:
                    transfer(source, target, self.rng.randint(1, 20))
                except TransactionAborted:
                    continue  # fifty aborts in a row under contention: counted as progress lost, not an error
                except Exception as error:  # anything else is a failure the test reports
                    self.errors.append(f"{type(error).__name__}: {error}")
                    return
                self.slowest = max(self.slowest, time.monotonic() - began)
                self.committed += 1


def total(store) -> int:
    with store.transaction() as txn:
        return sum(txn.get(account) for account in ACCOUNTS)
