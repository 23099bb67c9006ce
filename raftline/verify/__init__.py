"""`raftline verify`: a workload under faults on real processes, its history judged.

    raftline verify --workload list-append --duration 60 --clients 4 --faults all [--seed 3]

How a run works:
- It runs on a system of raftline/harness.py: its own (C clusters x R
  replicas in a temporary directory, on a free port) unless --admin names a
  running one. Every key carries a prefix unique to the run, so earlier data
  never shows in the history.
- Clients are processes (raftline/verify/clients.py), each with its own
  clerk and history file; they start together on "go" and stop at a common
  deadline.
- The fault scheduler (raftline/verify/faults.py) runs meanwhile. A client
  it kills is replaced by a new one with a new process number, as Jepsen
  does: the killed process's open operation is recorded `info` at the
  moment of the kill, and its process number is never reused.
- After the run the files are merged by time into one history (default
  `history.jsonl` in a new temporary directory, kept; the path is printed),
  and the checker of the workload's model (raftline/check) judges it.
- List-append and rw-register histories are judged for strict
  serializability (real-time edges), registers for linearizability, bank
  runs by the bank's invariant; the report says which.
- Exit status as `raftline check`'s, a documented contract (docs/DESIGN.md
  section 8): 0 valid, 1 invalid, 3 undetermined, 2 no verdict (a wrong
  command line, or the run itself failed; one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from coordinator.admin import parse_admin, secret_file_for
from raftline import check
from raftline.check.history import Event, HistoryError, Operation, pair_operations, parse_event, write_history
from raftline.check.result import CheckResult
from raftline.harness import (
    CLIENT_GRACE_SECONDS,
    DEFAULT_CLUSTERS,
    PROGRESS_INTERVAL,
    ClientHandle,
    ProgressBar,
    check_running,
    preload,
    start_client,
    stop_client,
    system_for_run,
    wait_until_connected,
)
from raftline.verify.faults import FAULT_KINDS, FaultScheduler, FaultUsageError, parse_faults
from raftline.workloads import OPENING_BALANCE, VERIFY_ACCOUNTS, VERIFY_WORKLOADS, bank_keys

CLIENT_MODULE = "raftline.verify.clients"
DEFAULT_REPLICAS = 3
HELP = "a workload under faults on real processes; its history checked (exit 0 valid)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add verify's arguments to `parser`, which already has --admin."""
    parser.add_argument("--workload", required=True, choices=VERIFY_WORKLOADS, help="what the clients run")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of workload (default 30)")
    parser.add_argument("--clients", type=int, default=4, help="client processes (default 4)")
    parser.add_argument(
        "--faults", default="none",
        help=f"none, all, or a comma-separated list of {','.join(FAULT_KINDS)} (default none)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seeds the clients' operations and the faults")
    parser.add_argument("--history", metavar="FILE", help="where to write the history (default: a new temp dir)")
    parser.add_argument(
        "--clusters",
        type=int,
        default=DEFAULT_CLUSTERS,
        help=f"clusters of a started system (default {DEFAULT_CLUSTERS})",
    )
    parser.add_argument(
        "--replicas", type=int, default=DEFAULT_REPLICAS, help=f"replicas per cluster (default {DEFAULT_REPLICAS})"
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object as the last line")


class VerifyUsageError(ValueError):
    """The verify command line is inconsistent."""


def check_arguments(args) -> tuple[str, ...]:
    """The fault kinds asked for; VerifyUsageError when an argument is out of range."""
    if args.clients < 1:
        raise VerifyUsageError(f"--clients must be at least 1, got {args.clients}")
    if not args.duration > 0:
        raise VerifyUsageError(f"--duration must be positive, got {args.duration:g}")
    if args.clusters < 1 or not 1 <= args.replicas <= 9:
        raise VerifyUsageError(
            f"--clusters must be >= 1 and --replicas within 1..9, got {args.clusters}, {args.replicas}"
        )
    try:
        return parse_faults(args.faults)
    except FaultUsageError as error:
        raise VerifyUsageError(str(error)) from None


# -- client processes ----------------------------------------------------------------------------


@dataclass(kw_only=True, slots=True)
class VerifyClient:
    """One client process of the run.

    Fields:
        handle: the process and what it reported; its number is its process
            number in the history, its `result` its own history file.
        killed: the fault scheduler is killing it or has killed it.
        killed_ns: when it was dead (monotonic ns), else None.
    """

    handle: ClientHandle
    killed: bool = False
    killed_ns: int | None = None


class ClientPool:
    """The run's client processes; `kill` may be called from the fault thread."""

    def __init__(self, *, admin: str, workload: str, seed: int, prefix: str, run_dir: Path):
        self.admin = admin
        self.workload = workload
        self.seed = seed
        self.prefix = prefix
        self.run_dir = run_dir
        self.start_ns = 0
        self.deadline_ns = 0
        self.clients: list[VerifyClient] = []
        self._lock = threading.Lock()

    def spawn(self) -> VerifyClient:
        with self._lock:
            number = len(self.clients)
            history = self.run_dir / f"client-{number}.jsonl"
            spec = {
                "admin": self.admin,
                "secret_file": os.fspath(secret_file_for(parse_admin(self.admin)[1])),
                "workload": self.workload,
                "process": number,
                "seed": self.seed * 1000 + number,
                "prefix": self.prefix,
                "history": os.fspath(history),
            }
            client = VerifyClient(handle=start_client(CLIENT_MODULE, number, spec, self.run_dir, history))
            self.clients.append(client)
            return client

    def start(self, count: int, duration: float) -> None:
        """Spawn `count` clients, wait until each is connected, then send "go"."""
        for _ in range(count):
            self.spawn()
        wait_until_connected([client.handle for client in self.clients])
        self.start_ns = time.monotonic_ns()
        self.deadline_ns = self.start_ns + int(duration * 1e9)
        for client in self.clients:
            self.go(client)

    def go(self, client: VerifyClient) -> None:
        # A replacement reads this once it has connected: the pipe keeps it.
        client.handle.send(f"go {self.start_ns} {self.deadline_ns}")

    def running(self) -> list[int]:
        with self._lock:
            return [c.handle.number for c in self.clients if not c.killed and not c.handle.done and c.handle.ready]

    def kill(self, number: int) -> None:
        """SIGKILL client `number` and its clerk actor, as when the client's
        machine dies: whatever transaction the clerk was running is left to
        the servers' recovery (docs/DESIGN.md section 4, step 5). Then start
        its replacement."""
        client = self.clients[number]
        client.killed = True  # first: its death must not read as a crash to check_running
        if client.handle.clerk_pid:
            try:
                os.kill(client.handle.clerk_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        client.handle.process.send_signal(signal.SIGKILL)
        client.handle.process.wait()
        client.killed_ns = time.monotonic_ns()  # after it died: it recorded nothing later
        if time.monotonic_ns() < self.deadline_ns:
            self.go(self.spawn())

    def check_running(self) -> None:
        check_running([client.handle for client in list(self.clients) if not client.killed])

    def finished(self) -> bool:
        return all(client.killed or client.handle.done for client in list(self.clients))

    def ops(self) -> int:
        return sum(client.handle.ops for client in list(self.clients))

    def stop(self) -> None:
        for client in list(self.clients):
            if not client.killed:
                stop_client(client.handle)


# -- histories -----------------------------------------------------------------------------------


def read_client_history(path: Path) -> list[Event]:
    """A client's events; a last line torn by SIGKILL (no newline) is dropped."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    complete = lines[:-1]  # the part after the last newline is empty, or torn
    return [parse_event(line, line=number) for number, line in enumerate(complete, start=1) if line.strip()]


def merge_histories(histories: list[tuple[list[Event], int | None]]) -> list[Event]:
    """Every client's events in time order. A client killed at `killed_ns`
    with an operation open gets that operation's `info` completion then."""
    events = []
    for client_events, killed_ns in histories:
        events += client_events
        if killed_ns is not None and client_events and client_events[-1].type == "invoke":
            opened = client_events[-1]
            events.append(
                Event(
                    process=opened.process,
                    type="info",
                    f=opened.f,
                    value=opened.value,
                    time=max(killed_ns, opened.time),
                )
            )
    return sorted(events, key=lambda event: event.time)  # stable: each process's own order is kept


CONSISTENCY = {
    "list-append": "strict serializability",
    "rw-register": "strict serializability",
    "bank": "the bank's invariant (every read sums to the total)",
    "register": "linearizability",
}
"""What verify judges each workload's history against."""


def judge(workload: str, operations: list[Operation]) -> CheckResult:
    """The verdict of the workload's model; a bank opened every account with
    OPENING_BALANCE. Transactional histories are judged with real-time edges:
    strict serializability, what users of etcd and FoundationDB rely on."""
    return check.judge(workload, operations, total=OPENING_BALANCE * VERIFY_ACCOUNTS, accounts=VERIFY_ACCOUNTS,
                       realtime=CONSISTENCY[workload] == "strict serializability")


# -- the run -------------------------------------------------------------------------------------


def run_clients(
    cluster, args, kinds: tuple[str, ...], prefix: str, run_dir: Path
) -> tuple[list[Event], FaultScheduler]:
    from clerk.client import connect

    if args.workload == "bank":
        with connect(admin=cluster.admin) as store:
            preload(store, bank_keys(VERIFY_ACCOUNTS, prefix), OPENING_BALANCE)
    pool = ClientPool(admin=cluster.admin, workload=args.workload, seed=args.seed, prefix=prefix, run_dir=run_dir)
    scheduler = FaultScheduler(
        cluster.admin, kinds, random.Random(args.seed), clients=pool.running, kill_client=pool.kill
    )
    try:
        pool.start(args.clients, args.duration)
        began = time.monotonic()
        scheduler.start()
        bar = ProgressBar(f"verify {args.workload}", args.duration)
        hard_deadline = began + args.duration + CLIENT_GRACE_SECONDS
        while not pool.finished() and time.monotonic() < hard_deadline:
            pool.check_running()
            if time.monotonic() - began >= args.duration:
                scheduler.stop()  # no fault after the deadline: let the last operations finish
            bar.show(time.monotonic() - began, pool.ops())
            time.sleep(PROGRESS_INTERVAL)
        scheduler.stop()
        bar.close(time.monotonic() - began, pool.ops())
        if not pool.finished():
            raise TimeoutError(f"clients still running {CLIENT_GRACE_SECONDS:g} s after the deadline")
    finally:
        scheduler.stop()
        pool.stop()
    histories = [(read_client_history(client.handle.result), client.killed_ns) for client in pool.clients]
    return merge_histories(histories), scheduler


def run(args) -> int:
    """Run what `args` (from add_arguments) asks and print the report; the
    exit status: 0 valid, 1 invalid, 3 undetermined, 2 no verdict (the run failed)."""
    from clerk.errors import RaftlineError

    try:
        kinds = check_arguments(args)
    except VerifyUsageError as error:
        print(f"raftline verify: {error}", file=sys.stderr)
        return check.EXIT_NO_VERDICT
    work = Path(tempfile.mkdtemp(prefix="raftline-verify-"))
    history_path = Path(args.history) if args.history else work / "history.jsonl"
    prefix = f"verify-{time.time_ns():x}-"
    try:
        with system_for_run(
            work / "system", admin=args.admin, clusters=args.clusters, replicas=args.replicas
        ) as cluster:
            run_dir = work / "clients"
            run_dir.mkdir()
            events, scheduler = run_clients(cluster, args, kinds, prefix, run_dir)
    except (RaftlineError, TimeoutError, RuntimeError, OSError, HistoryError) as error:
        shutil.rmtree(work, ignore_errors=True)
        print(f"raftline verify: {error}", file=sys.stderr)
        return check.EXIT_NO_VERDICT
    except KeyboardInterrupt:
        shutil.rmtree(work, ignore_errors=True)
        return 130
    finally:
        shutil.rmtree(work / "system", ignore_errors=True)
        shutil.rmtree(work / "clients", ignore_errors=True)
    history_path.parent.mkdir(parents=True, exist_ok=True)
    with open(history_path, "w", encoding="utf-8") as out:
        write_history(events, out)
    if args.history:
        shutil.rmtree(work, ignore_errors=True)
    operations = pair_operations(events)
    checked_at = time.perf_counter()
    result = judge(args.workload, operations)
    checker_s = time.perf_counter() - checked_at
    report = {
        **check.verdict_json(result, args.workload, len(operations)),
        "consistency": CONSISTENCY[args.workload],
        "workload": args.workload,
        "history": os.fspath(history_path),
        "clients": args.clients,
        "duration_s": args.duration,
        "seed": args.seed,
        "outcomes": {kind: sum(1 for op in operations if op.type == kind) for kind in ("ok", "fail", "info")},
        "faults": scheduler.counts(),
        "fault_log": [fault.describe() for fault in scheduler.injected],
        "fault_errors": scheduler.errors,
        "fault_notes": scheduler.notes(),
        "checker_s": round(checker_s, 3),
    }
    print(format_report(report, result))
    if args.json:
        print(json.dumps(report, sort_keys=True))
    return check.exit_status(result)


def format_report(report: dict, result: CheckResult) -> str:
    outcomes = report["outcomes"]
    faults = ", ".join(f"{kind} {count}" for kind, count in report["faults"].items()) or "none"
    lines = [
        f"verify {report['workload']}: {report['clients']} client(s), {report['duration_s']:g} s, "
        f"seed {report['seed']}",
        f"  history     {report['history']}",
        f"  operations  {report['operations']} (ok {outcomes['ok']}, fail {outcomes['fail']}, info {outcomes['info']})",
        f"  faults      {sum(report['faults'].values())} injected ({faults})",
        *[f"  note        {note}" for note in report.get("fault_notes", [])],
        f"  checker     {report['checker_s']:.3f} s",
        f"  checked     {report['consistency']}",
        f"  verdict     {check.verdict_lines(result)[0]}",
    ]
    lines += [f"  {line}" for line in check.verdict_lines(result)[1:]]
    return "\n".join(lines)
