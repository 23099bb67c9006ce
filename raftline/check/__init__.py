"""`raftline check HISTORY --model M`: judge a recorded history (docs/DESIGN.md section 8).

Prints "valid", or "INVALID: N anomalies" and one line per anomaly (or the
verdict as JSON with --json). Exit status 0 when valid, 1 when invalid, 2
when the file cannot be read or is not a history: one line on stderr naming
the line at fault, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from raftline.check.bank import check_bank_history
from raftline.check.elle import check_list_append
from raftline.check.history import HistoryError, Operation, read_operations
from raftline.check.linearizable import check_linearizable
from raftline.check.result import DEFAULT_LIMIT, CheckResult

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_NO_VERDICT = 2
"""No verdict: the history could not be read (check) or the run that records it failed (verify)."""
MODELS = ("list-append", "bank", "register")
HELP = "judge a recorded history (JSON Lines) against a model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("history", metavar="HISTORY", help="JSON Lines history, one event per line")
    parser.add_argument("--model", required=True, choices=MODELS, help="what the history exercised")
    parser.add_argument("--total", type=int, help="bank: the money in the bank, conserved by every transfer")
    parser.add_argument("--accounts", type=int, help='bank: the number of accounts, named "0".."N-1"')
    parser.add_argument(
        "--realtime", action="store_true", help="list-append: also require real-time order (strict serializability)"
    )
    parser.add_argument(
        "--process-order", action="store_true", help="list-append: also require each process's own order"
    )
    parser.add_argument("--limit", type=int, default=50, help="print at most this many anomalies (default 50)")
    parser.add_argument("--json", action="store_true", help="print the verdict as one JSON object")


def judge(
    model: str,
    operations: list[Operation],
    *,
    total: int | None = None,
    accounts: int | None = None,
    realtime: bool = False,
    process_order: bool = False,
    limit: int = DEFAULT_LIMIT,
) -> CheckResult:
    """The verdict of `model`'s checker; `total` and `accounts` are the bank's,
    `realtime` and `process_order` list-append's extra orders."""
    if model == "list-append":
        return check_list_append(operations, realtime=realtime, process_order=process_order, limit=limit)
    if model == "bank":
        return check_bank_history(operations, total, accounts, limit=limit)
    return check_linearizable(operations, "register", limit=limit)


def verdict_json(result: CheckResult, model: str, operations: int) -> dict:
    return {
        "model": model,
        "valid": result.valid,
        "operations": operations,
        "anomalies": [
            {
                "name": anomaly.name,
                "detail": anomaly.detail,
                "operations": [
                    {
                        "index": operation.index,
                        "process": operation.process,
                        "type": operation.type,
                        "f": operation.f,
                        "value": operation.result_value if operation.type == "ok" else operation.invoke_value,
                        "line": operation.line,
                    }
                    for operation in anomaly.operations
                ],
            }
            for anomaly in result.anomalies
        ],
    }


def run(args: argparse.Namespace) -> int:
    """Judge the history `args` (from add_arguments) names and print the verdict; the exit status."""
    if args.model == "bank" and (args.total is None or args.accounts is None):
        print("raftline check: the bank model needs --total and --accounts", file=sys.stderr)
        return EXIT_NO_VERDICT
    try:
        with open(args.history, encoding="utf-8") as lines:
            operations = read_operations(lines)
        result = judge(
            args.model,
            operations,
            total=args.total,
            accounts=args.accounts,
            realtime=args.realtime,
            process_order=args.process_order,
            limit=args.limit,
        )
    except OSError as error:
        print(f"raftline check: cannot read {args.history}: {error.strerror}", file=sys.stderr)
        return EXIT_NO_VERDICT
    except UnicodeDecodeError:
        print(f"raftline check: {args.history} is not UTF-8 text", file=sys.stderr)
        return EXIT_NO_VERDICT
    except HistoryError as error:
        print(f"raftline check: {args.history} {error}", file=sys.stderr)
        return EXIT_NO_VERDICT
    if args.json:
        print(json.dumps(verdict_json(result, args.model, len(operations))))
    elif result.valid:
        print("valid")
    else:
        print(f"INVALID: {len(result.anomalies)} anomalies")
        for line in result.violations:
            print(f"  {line}")
    return EXIT_VALID if result.valid else EXIT_INVALID
