"""The bank invariant: every whole-bank read shows every account, no negative
balance, and balances summing to the money the bank opened with."""

from __future__ import annotations

from typing import Collection, Iterable, Mapping

from raftline.check.history import Operation, malformed
from raftline.check.result import DEFAULT_LIMIT, Anomaly, CheckResult, Violations, verdict


def check_bank(reads: Iterable[Mapping[str, int | None]], total: int, *, limit: int = DEFAULT_LIMIT) -> CheckResult:
    """Every whole-bank read (account -> balance, None when missing) sums to
    `total` and shows no negative or missing balance."""
    found = Violations(limit)
    for number, balances in enumerate(reads):
        missing = sorted(account for account, balance in balances.items() if balance is None)
        if missing:
            found.add(f"read {number}: accounts missing: {', '.join(missing)}")
        negative = sorted(
            (account, balance) for account, balance in balances.items() if balance is not None and balance < 0
        )
        for account, balance in negative:
            found.add(f"read {number}: account {account} has a negative balance {balance}")
        seen = sum(balance for balance in balances.values() if balance is not None)
        if seen != total:
            found.add(f"read {number}: balances sum to {seen}, expected {total}")
    return found.result()


def check_bank_history(
    operations: Iterable[Operation], total: int, accounts: int | Collection[str], *, limit: int = DEFAULT_LIMIT
) -> CheckResult:
    """Every ok read of a bank history shows every account, no negative
    balance and balances summing to `total`.

    `accounts` is the account names, or their count N for names "0".."N-1"
    (JSON object keys are strings). Transfers are checked for shape only:
    what they did shows in the reads.
    """
    names = {str(number) for number in range(accounts)} if isinstance(accounts, int) else set(accounts)
    anomalies = []
    checked = 0
    for operation in operations:
        checked += 1
        if operation.f == "transfer":
            value = operation.invoke_value
            if not (isinstance(value, dict) and {"from", "to", "amount"} <= value.keys()):
                raise malformed(operation, 'a transfer\'s value must be {"from": A, "to": B, "amount": N}')
            continue
        if operation.f != "read":
            raise malformed(operation, f"a bank history holds transfer and read operations, not {operation.f!r}")
        if operation.type != "ok":
            continue
        balances = operation.result_value
        if not isinstance(balances, dict) or not all(
            balance is None or (isinstance(balance, int) and not isinstance(balance, bool))
            for balance in balances.values()
        ):
            raise malformed(operation, "an ok read's value must map each account to an integer balance (or null)")
        missing = sorted(names - {account for account, balance in balances.items() if balance is not None})
        if missing:
            anomalies.append(
                Anomaly(name="missing-account", detail=f"{operation.describe()} lacks {missing}", operations=(operation,))
            )
        unexpected = sorted(balances.keys() - names)
        if unexpected:
            anomalies.append(
                Anomaly(
                    name="unexpected-account",
                    detail=f"{operation.describe()} shows accounts {unexpected} the bank does not have",
                    operations=(operation,),
                )
            )
        negative = {account: balance for account, balance in balances.items() if balance is not None and balance < 0}
        if negative:
            anomalies.append(
                Anomaly(
                    name="negative-balance",
                    detail=f"{operation.describe()} shows negative balances {negative}",
                    operations=(operation,),
                )
            )
        seen = sum(balance for balance in balances.values() if balance is not None)
        if seen != total:
            anomalies.append(
                Anomaly(
                    name="wrong-total",
                    detail=f"{operation.describe()} sums to {seen}, expected {total}",
                    operations=(operation,),
                )
            )
    return verdict(anomalies, limit, checked=checked)

