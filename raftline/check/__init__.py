"""`raftline check HISTORY --model M`: judge a recorded history (docs/DESIGN.md section 8).

Prints "valid" (saying so when the history held nothing to check), or
"INVALID: N anomalies" and one line per anomaly, or "UNDETERMINED" with the
limit a search hit and how to raise it (or the verdict as JSON with --json).
Exit status: 0 valid, 1 anomalies found, 2 no verdict: a wrong command line,
or a file that cannot be read or is not a history (one line on stderr naming
the line at fault, never a traceback), 3 undetermined.
"""

from __future__ import annotations

import argparse
import json
import sys

from raftline.check.bank import check_bank_history
from raftline.check.elle import check_list_append
from raftline.check.history import HistoryError, Operation, read_operations
from raftline.check.linearizable import MAX_SEARCH_STATES, check_linearizable
from raftline.check.result import DEFAULT_LIMIT, CheckResult
from raftline.check.rw_register import check_rw_register

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_NO_VERDICT = 2
"""No verdict: a wrong command line, a history that could not be read (check), or a run that failed (verify);
the first two are what every raftline command's exit status 2, bad usage or input, means."""
EXIT_UNDETERMINED = 3
"""The checker could not decide within its limits: neither valid nor invalid."""
MODELS = ("list-append", "rw-register", "bank", "register")
HELP = "judge a recorded history (JSON Lines) against a model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("history", metavar="HISTORY", help="JSON Lines history, one event per line")
    parser.add_argument("--model", required=True, choices=MODELS, help="what the history exercised")
    parser.add_argument("--total", type=int, help="bank: the money in the bank, conserved by every transfer")
    parser.add_argument("--accounts", type=int, help='bank: the number of accounts, named "0".."N-1"')
    parser.add_argument(
        "--realtime", action="store_true",
        help="list-append, rw-register: also require real-time order (strict serializability)"
    )
    parser.add_argument(
        "--process-order", action="store_true", help="list-append, rw-register: also require each process's own order"
    )
    parser.add_argument("--limit", type=int, default=50, help="print at most this many anomalies (default 50)")
    parser.add_argument("--max-states", type=int, default=MAX_SEARCH_STATES,
                        help=f"register: states one key's linearizability search may explore before it gives up"
                             f" as undetermined (default {MAX_SEARCH_STATES:,})")
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
    max_states: int = MAX_SEARCH_STATES,
) -> CheckResult:
    """The verdict of `model`'s checker; `total` and `accounts` are the bank's,
    `realtime` and `process_order` the transactional models' extra orders, `max_states`
    the register search's budget."""
    if model == "list-append":
        return check_list_append(operations, realtime=realtime, process_order=process_order, limit=limit)
    if model == "rw-register":
        return check_rw_register(operations, realtime=realtime, process_order=process_order, limit=limit)
    if model == "bank":
        return check_bank_history(operations, total, accounts, limit=limit)
    return check_linearizable(operations, "register", limit=limit, max_states=max_states)


def outcome(result: CheckResult) -> str:
    """"valid", "invalid" (anomalies found, proven) or "undetermined"."""
    if result.anomalies or (not result.valid and not result.undetermined):
        return "invalid"
    return "undetermined" if result.undetermined else "valid"


def exit_status(result: CheckResult) -> int:
    return {"valid": EXIT_VALID, "invalid": EXIT_INVALID, "undetermined": EXIT_UNDETERMINED}[outcome(result)]


def verdict_lines(result: CheckResult) -> list[str]:
    """The verdict for people: a headline, then one line per anomaly or per undecided part."""
    match outcome(result):
        case "valid":
            return ["valid" if result.checked else "valid: the history holds no operation, so nothing was checked"]
        case "undetermined":
            return ["UNDETERMINED: no anomaly found, but not everything could be decided",
                    *(f"  {line}" for line in result.undetermined)]
    count = len(result.anomalies) or len(result.violations)
    lines = [f"INVALID: {count} {'anomaly' if count == 1 else 'anomalies'}",
             *(f"  {line}" for line in result.violations)]
    return lines + [f"  undetermined: {line}" for line in result.undetermined]


def verdict_json(result: CheckResult, model: str, operations: int) -> dict:
    return {
        "model": model,
        "valid": result.valid,
        "outcome": outcome(result),
        "undetermined": list(result.undetermined),
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
            max_states=args.max_states,
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
    else:
        print("\n".join(verdict_lines(result)))
    return exit_status(result)
