"""`raftline bench`: throughput, latency and critical-path hops on real processes.

    python3 -m clerk.bench put --clients 8 --duration 10 [--json] [--plot FILE.png]
    python3 -m clerk.bench mixed --read-ratio 0.9 --admin 127.0.0.1:19000
    python3 -m clerk.bench election --timeouts 150-300,300-500 --replicas 3,5,7
    python3 -m clerk.bench sweep --replicas 3,5,7
    python3 -m clerk.bench reconfig --keys 10000
    python3 -m clerk.bench catchup --duration 30

How a run works:
- Without --admin it starts its own system (C clusters x R replicas, the
  default deployment's settings otherwise) in a temporary directory on a
  free port and always stops it; with --admin it uses the running one.
- Each client is its own OS process (`python3 -m clerk.bench --client SPEC`)
  with its own Store and clerk. It connects, warms up, prints "ready", waits
  for "go" on stdin, runs its workload until its deadline, writes one record
  per operation (start, latency, outcome, attempts, hops) to a JSON file,
  prints "done", then keeps its clerk until stdin closes, so the driver can
  read every process's CPU time before anything exits.
- Every operation is a transaction retried on conflict up to --retries
  times; its latency spans every attempt. Only committed operations count as
  ops and in the percentiles; abort_rate is aborted attempts / attempts.
- hops: messages on the critical path per committed operation, as the clerk
  counts them (ClerkReply.hops); rtt_ms: the median round trip between two
  probe actors (clerk/probe.py) in the same system just before the run.
- Everything is bounded: --duration plus a hard timeout on clients, status
  polls and elections; reports are figures, never pass/fail on speed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

WORKLOADS = ("put", "get", "txn", "bank", "mixed")
EXPERIMENTS = ("election", "sweep", "reconfig", "catchup")
TICK_MS = 50
DEFAULT_CLUSTERS = 3
DEFAULT_KEYS = 1000
BANK_ACCOUNTS = 10
OPENING_BALANCE = 100
PRELOAD_BATCH = 50
"""Keys per preload transaction: keeps each Prepare far under Thespian's message limit."""
CLIENT_START_TIMEOUT = 60.0
CLIENT_GRACE_SECONDS = 90.0
"""How long past its deadline a client may take: a commit may wait out the clerk's 30 s budget."""
ELECTION_TIMEOUT = 30.0
PROGRESS_INTERVAL = 0.2


# -- command line ------------------------------------------------------------------------------


def add_bench_arguments(parser: argparse.ArgumentParser, *, connection_options: bool = True) -> None:
    """Add bench's arguments to `parser`; `connection_options=False` when the
    caller already provides --admin (and -t, which bench ignores: without
    --admin it always starts its own system)."""
    parser.add_argument("workload", choices=WORKLOADS + EXPERIMENTS, help="what to measure")
    parser.add_argument("--clients", type=int, default=1, help="client processes, each with its own clerk (default 1)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run (default 10)")
    parser.add_argument(
        "--keys", type=int, help=f"keys drawn from (default {DEFAULT_KEYS}; bank: {BANK_ACCOUNTS} accounts)"
    )
    parser.add_argument("--value-size", type=int, default=100, help="bytes per written value (default 100)")
    parser.add_argument("--read-ratio", type=float, default=0.9, help="mixed: fraction of operations that are reads")
    parser.add_argument(
        "--retries", type=int, default=20, help="retries of an operation aborted by a conflict (default 20)"
    )
    parser.add_argument(
        "--clusters", type=int, help=f"clusters of a started system (default {DEFAULT_CLUSTERS}; sweep: 1)"
    )
    parser.add_argument("--replicas", default="3", help="replicas per cluster; election and sweep take a list: 3,5,7")
    parser.add_argument(
        "--timeouts", default="300-600", help="election: election timeout ranges in ms, e.g. 150-300,300-500"
    )
    parser.add_argument("--trials", type=int, default=3, help="election: leader kills per setting (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="seeds every client's key choices")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument(
        "--plot", metavar="FILE.png", help="draw latency percentiles and throughput over time (needs matplotlib)"
    )
    if connection_options:
        parser.add_argument("--admin", metavar="HOST:PORT", help="bench a running system instead of starting one")


class BenchUsageError(ValueError):
    """The bench command line is inconsistent."""


def parse_int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise BenchUsageError(f"{what} expects integers separated by commas, got {text!r}") from None
    return values


def parse_timeouts(text: str) -> list[tuple[int, int]]:
    ranges = []
    for part in text.split(","):
        low, sep, high = part.partition("-")
        if not sep or not low.isdigit() or not high.isdigit() or not 0 < int(low) < int(high):
            raise BenchUsageError(f"--timeouts expects ranges in ms like 150-300,300-500, got {part!r}")
        ranges.append((int(low), int(high)))
    return ranges


def check_arguments(args) -> None:
    if args.clients < 1:
        raise BenchUsageError(f"--clients must be at least 1, got {args.clients}")
    if not args.duration > 0:
        raise BenchUsageError(f"--duration must be positive, got {args.duration:g}")
    if args.keys is not None and args.keys < 2:
        raise BenchUsageError(f"--keys must be at least 2, got {args.keys}")
    if args.value_size < 0:
        raise BenchUsageError(f"--value-size must not be negative, got {args.value_size}")
    if not 0 <= args.read_ratio <= 1:
        raise BenchUsageError(f"--read-ratio must be within 0..1, got {args.read_ratio:g}")
    if args.clusters is not None and args.clusters < 1:
        raise BenchUsageError(f"--clusters must be at least 1, got {args.clusters}")
    replicas = parse_int_list(args.replicas, "--replicas")
    if any(not 1 <= count <= 9 for count in replicas):
        raise BenchUsageError(f"--replicas must be within 1..9, got {args.replicas}")
    if args.workload in WORKLOADS and len(replicas) != 1:
        raise BenchUsageError(f"{args.workload} takes one --replicas count, got {args.replicas}")
    if args.workload in EXPERIMENTS and getattr(args, "admin", None):
        raise BenchUsageError(f"bench {args.workload} starts its own systems: --admin does not apply")
    if args.workload == "election" and args.trials < 1:
        raise BenchUsageError(f"--trials must be at least 1, got {args.trials}")
    parse_timeouts(args.timeouts)


def run_bench(args) -> int:
    """Run what `args` (from add_bench_arguments) asks; the report goes to
    stdout (with --json its last line is one JSON object), progress to stderr."""
    check_arguments(args)
    if args.plot and args.workload != "election":
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise BenchUsageError("--plot needs matplotlib: pip install 'raftline[plot]'") from None
    directory = Path(tempfile.mkdtemp(prefix="raftline-bench-"))
    try:
        if args.workload == "election":
            result = run_election(args, directory)
            print(format_election(result))
        elif args.workload == "sweep":
            result = run_sweep(args, directory)
            print(format_sweep(result))
        elif args.workload == "reconfig":
            result = run_reconfig(args, directory)
            print(format_reconfig(result))
        elif args.workload == "catchup":
            result = run_catchup(args, directory)
            print(format_catchup(result))
        else:
            result = run_workload(args, directory)
            print(format_workload(result["summary"]))
            if args.plot:
                plot(result["records"], result["summary"], args.plot)
                print(f"plot written to {args.plot}")
            result = result["summary"]
        if args.json:
            print(json.dumps(result, sort_keys=True))
        return 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# -- systems -----------------------------------------------------------------------------------


def bench_topology(clusters: int, replicas: int, election_ms: tuple[int, int] = (300, 600)) -> str:
    """A topology like the embedded default, with C clusters x R replicas and
    the election timeout converted to ticks."""
    low, high = max(1, round(election_ms[0] / TICK_MS)), max(2, round(election_ms[1] / TICK_MS))
    high = max(high, low + 1)
    heartbeat = 2 if low > 2 else 1  # a heartbeat must come well within the shortest timeout
    lines = ["admin_port: 0", "data_dir: ./data", "slots: 64", "clusters:"]
    lines += [f"  c{number}: {{replicas: {replicas}}}" for number in range(1, clusters + 1)]
    lines += [
        "raft:",
        f"  tick_ms: {TICK_MS}",
        f"  heartbeat_ticks: {heartbeat}",
        f"  election_ticks: [{low}, {high}]",
        "  snapshot_entries: 10000",
        "transactions:",
        "  prepare_timeout_ms: 2000",
        "  read_from: leader",
        "storage:",
        "  engine: sqlite",
        "  fsync: true",
    ]
    return "\n".join(lines) + "\n"


@contextmanager
def bench_system(directory: Path, *, admin: str | None, clusters: int, replicas: int, election_ms=(300, 600)):
    """The running system at `admin`, else a new one that is stopped on exit."""
    from coordinator.system import Cluster, start

    if admin is not None:
        yield Cluster(admin)
        return
    directory.mkdir(parents=True, exist_ok=True)
    topology = directory / "topology.yaml"
    topology.write_text(bench_topology(clusters, replicas, election_ms))
    progress_line(f"starting {clusters} cluster(s) x {replicas} replicas ...")
    cluster = start(topology, data_dir=directory / "data", admin_port=0)
    try:
        yield cluster
    finally:
        cluster.stop()


def measure_rtt(admin: str) -> float:
    from coordinator.system import parse_admin, prepare_environment

    prepare_environment()
    from thespian.actors import ActorSystem

    from clerk.probe import measure_round_trip

    _, port = parse_admin(admin)
    return measure_round_trip(ActorSystem("multiprocTCPBase", {"Admin Port": port}, transientUnique=True))


# -- CPU time per process kind -----------------------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return []


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of `pid` (None when it is gone or not on this host)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS if fields else None


def parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def clerk_pids(admin_pid: int) -> list[int]:
    """The admin's children titled "raftline clerk" (clerks are created from outside)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and parent_of(int(entry)) == admin_pid:
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    if cmdline.read().startswith(b"raftline clerk"):
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def process_kinds(status: dict, client_pids: list[int]) -> dict[str, list[int]]:
    servers = [
        info["pid"] for cluster in status["clusters"].values() for info in cluster["replicas"].values() if info["pid"]
    ]
    admin = status.get("admin_pid")
    coordinator = {parent_of(pid) for pid in servers} - {None, admin}  # the coordinator creates the servers
    return {
        "admin": [admin] if admin else [],
        "coordinator": sorted(coordinator),
        "servers": servers,
        "clerks": clerk_pids(admin) if admin else [],
        "clients": client_pids,
    }


def sample_cpu(kinds: dict[str, list[int]]) -> dict[int, float]:
    return {pid: seconds for pids in kinds.values() for pid in pids if (seconds := cpu_seconds(pid)) is not None}


def cpu_by_kind(kinds: dict[str, list[int]], before: dict[int, float], after: dict[int, float]) -> dict[str, float]:
    """CPU seconds each kind spent between the samples (processes seen in both)."""
    return {
        kind: round(sum(after[pid] - before[pid] for pid in pids if pid in before and pid in after), 2)
        for kind, pids in kinds.items()
    }


# -- progress ----------------------------------------------------------------------------------


def progress_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class ProgressBar:
    """`[#####.....] 4.2/10 s  1234 ops` on stderr: redrawn in place on a
    terminal, a line every couple of seconds otherwise."""

    def __init__(self, label: str, total: float):
        self.label = label
        self.total = total
        self.tty = sys.stderr.isatty()
        self.last_line = -math.inf

    def show(self, elapsed: float, ops: int) -> None:
        filled = min(10, int(10 * elapsed / self.total))
        line = f"{self.label} [{'#' * filled}{'.' * (10 - filled)}] {min(elapsed, self.total):.1f}/{self.total:g} s  {ops} ops"
        if self.tty:
            print("\r" + line, end="", file=sys.stderr, flush=True)
        elif time.monotonic() - self.last_line >= 2.0:
            print(line, file=sys.stderr, flush=True)
            self.last_line = time.monotonic()

    def close(self, elapsed: float, ops: int) -> None:
        self.last_line = -math.inf
        self.show(elapsed, ops)
        if self.tty:
            print(file=sys.stderr, flush=True)


# -- the driver side of a workload run ---------------------------------------------------------


@dataclass(kw_only=True, slots=True)
class ClientHandle:
    """One client process as the driver sees it.

    Fields:
        process: the OS process.
        result: where it writes its records.
        ops: operations it reported done so far.
        ready, done: its "ready" and "done" lines arrived.
        clerk_pid: its clerk actor's process id, when its "ready" line gave it.
    """

    process: subprocess.Popen
    result: Path
    ops: int = 0
    ready: bool = False
    done: bool = False
    clerk_pid: int = 0

    def follow(self) -> None:
        """Read the client's stdout lines until it closes (runs in a thread)."""
        for line in self.process.stdout:
            word, _, value = line.strip().partition(" ")
            if word == "ready":
                self.clerk_pid = int(value or 0)
                self.ready = True
            elif word == "ops":
                self.ops = int(value)
            elif word == "done":
                self.ops = int(value or self.ops)
                self.done = True


def workload_keys(workload: str, count: int) -> list[str]:
    prefix = "account" if workload == "bank" else "bench"
    return [f"{prefix}-{index:05d}" for index in range(count)]


def preload(store, keys: list[str], value) -> None:
    for begin in range(0, len(keys), PRELOAD_BATCH):
        with store.transaction() as txn:
            for key in keys[begin : begin + PRELOAD_BATCH]:
                txn.put(key, value)


def bank_total(store, accounts: list[str]) -> int:
    with store.transaction() as txn:
        return sum(txn.get(account) or 0 for account in accounts)


def run_workload(args, directory: Path) -> dict:
    """One workload run: {"summary": the report dict, "records": every operation}."""
    replicas = parse_int_list(args.replicas, "--replicas")[0]
    clusters = args.clusters or DEFAULT_CLUSTERS
    admin = getattr(args, "admin", None)
    with bench_system(directory / "system", admin=admin, clusters=clusters, replicas=replicas) as cluster:
        return measure(cluster, args, args.workload, args.clients, directory)


def measure(cluster, args, workload: str, clients: int, directory: Path) -> dict:
    from clerk.client import connect

    count = args.keys or (BANK_ACCOUNTS if workload == "bank" else DEFAULT_KEYS)
    keys = workload_keys(workload, count)
    status = cluster.status()
    slots = [""] * sum(len(info["slots"]) for info in status["clusters"].values())
    for name, info in status["clusters"].items():
        for slot in info["slots"]:
            slots[slot] = name
    with connect(admin=cluster.admin) as store:
        if workload == "bank":
            preload(store, keys, OPENING_BALANCE)
        elif workload in ("get", "mixed"):
            preload(store, keys, "v" * args.value_size)
        total_before = bank_total(store, keys) if workload == "bank" else None
    rtt_ms = measure_rtt(cluster.admin)

    run_dir = directory / f"run-{workload}-{time.monotonic_ns()}"
    run_dir.mkdir(parents=True)
    handles = []
    try:
        for number in range(clients):
            spec = {
                "admin": cluster.admin,
                "workload": workload,
                "duration": args.duration,
                "keys": keys,
                "slots": slots,
                "value_size": args.value_size,
                "read_ratio": args.read_ratio,
                "retries": args.retries,
                "seed": args.seed * 1000 + number,
                "result": os.fspath(run_dir / f"client-{number}.json"),
            }
            spec_path = run_dir / f"client-{number}.spec.json"
            spec_path.write_text(json.dumps(spec))
            with open(run_dir / f"client-{number}.stderr", "w") as errors:
                process = subprocess.Popen(
                    [sys.executable, "-m", "clerk.bench", "--client", os.fspath(spec_path)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=errors,
                    text=True,
                )
            handle = ClientHandle(process=process, result=Path(spec["result"]))
            threading.Thread(target=handle.follow, daemon=True).start()
            handles.append(handle)
        wait_until(lambda: all(handle.ready for handle in handles), CLIENT_START_TIMEOUT, handles, run_dir, "connect")

        kinds = process_kinds(cluster.status(), [handle.process.pid for handle in handles])
        before = sample_cpu(kinds)
        for handle in handles:
            handle.process.stdin.write("go\n")
            handle.process.stdin.flush()
        began = time.monotonic()
        bar = ProgressBar(workload, args.duration)
        hard_deadline = began + args.duration + CLIENT_GRACE_SECONDS
        while not all(handle.done for handle in handles) and time.monotonic() < hard_deadline:
            check_alive(handles, run_dir)
            bar.show(time.monotonic() - began, sum(handle.ops for handle in handles))
            time.sleep(PROGRESS_INTERVAL)
        bar.close(time.monotonic() - began, sum(handle.ops for handle in handles))
        if not all(handle.done for handle in handles):
            raise TimeoutError(f"clients still running {CLIENT_GRACE_SECONDS:g} s after the deadline")
        after = sample_cpu(kinds)
        records = [record for handle in handles for record in json.loads(handle.result.read_text())]
    finally:
        for handle in handles:
            stop_client(handle)

    summary = summarize(records, args.duration)
    summary.update(
        workload=workload,
        clients=clients,
        duration_s=args.duration,
        clusters=len(status["clusters"]),
        replicas=max(len(info["replicas"]) for info in status["clusters"].values()),
        keys=count,
        value_size=args.value_size,
        rtt_ms=round(rtt_ms, 3),
        cpu_s=cpu_by_kind(kinds, before, after),
        load=round(os.getloadavg()[0], 2),
    )
    summary["messaging_ms"] = round(summary["hops"] / 2 * rtt_ms, 2)
    if workload == "mixed":
        summary["read_ratio"] = args.read_ratio
    if workload == "bank":
        with connect(admin=cluster.admin) as store:
            summary["bank_total_conserved"] = bank_total(store, keys) == total_before
    return {"summary": summary, "records": records}


def wait_until(condition, timeout: float, handles: list[ClientHandle], run_dir: Path, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        check_alive(handles, run_dir)
        if time.monotonic() > deadline:
            raise TimeoutError(f"clients did not {what} within {timeout:g} s")
        time.sleep(0.05)


def check_alive(handles: list[ClientHandle], run_dir: Path) -> None:
    for number, handle in enumerate(handles):
        if not handle.done and handle.process.poll() is not None:
            lines = (run_dir / f"client-{number}.stderr").read_text().strip().splitlines()
            raise RuntimeError(
                f"client {number} exited with status {handle.process.returncode}: {lines[-1] if lines else 'no output'}"
            )


def stop_client(handle: ClientHandle) -> None:
    """Close its stdin (it then closes its store and exits); kill it if it does not."""
    try:
        handle.process.stdin.close()
    except OSError:
        pass
    try:
        handle.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        handle.process.kill()
        handle.process.wait()


# -- statistics ----------------------------------------------------------------------------


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summarize(records: list[list], duration: float) -> dict:
    """Records are [start s, latency s, outcome, attempts, hops] with outcome
    "ok", "aborted" (out of retries) or "failed" (unavailable)."""
    committed = [record for record in records if record[2] == "ok"]
    latencies = sorted(record[1] * 1000 for record in committed)
    attempts = sum(record[3] for record in records)
    aborted_attempts = sum(record[3] - (0 if record[2] == "aborted" else 1) for record in records)
    window = max([duration] + [record[0] + record[1] for record in records])
    return {
        "ops": len(committed),
        "gave_up": sum(1 for record in records if record[2] == "aborted"),
        "failed": sum(1 for record in records if record[2] == "failed"),
        "throughput": round(len(committed) / window, 1),
        "latency_ms": {
            name: round(percentile(latencies, fraction), 2)
            for name, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
        },
        "abort_rate": round(aborted_attempts / attempts, 4) if attempts else 0.0,
        "attempts_per_commit": round(attempts / len(committed), 3) if committed else 0.0,
        "hops": round(statistics.fmean(record[4] for record in committed), 2) if committed else 0.0,
    }


def format_workload(summary: dict) -> str:
    latency = summary["latency_ms"]
    cpu = "  ".join(f"{kind} {seconds:.2f}" for kind, seconds in summary["cpu_s"].items())
    lines = [
        f"bench {summary['workload']}: {summary['clients']} client(s), {summary['duration_s']:g} s, "
        f"{summary['clusters']} cluster(s) x {summary['replicas']} replicas, {summary['keys']} keys, "
        f"{summary['value_size']} B values"
        + (f", read ratio {summary['read_ratio']:g}" if "read_ratio" in summary else ""),
        f"  ops          {summary['ops']} committed ({summary['gave_up']} out of retries, {summary['failed']} unavailable)",
        f"  throughput   {summary['throughput']:.1f} ops/s",
        f"  latency ms   p50 {latency['p50']:.2f}  p95 {latency['p95']:.2f}  p99 {latency['p99']:.2f}  max {latency['max']:.2f}",
        f"  aborts       {summary['abort_rate']:.2%} of attempts; {summary['attempts_per_commit']:.2f} attempts per commit",
        f"  hops         {summary['hops']:.1f} messages on the critical path per op; "
        f"actor round trip {summary['rtt_ms']:.2f} ms -> ~{summary['messaging_ms']:.1f} ms of messaging per op",
        f"  cpu s        {cpu}",
        f"  load         {summary['load']:.2f} (1-minute load average at the end)",
    ]
    if "bank_total_conserved" in summary:
        lines.append(f"  bank total   {'conserved' if summary['bank_total_conserved'] else 'VIOLATED'}")
    return "\n".join(lines)


def plot(records: list[list], summary: dict, path: str) -> None:
    """Latency percentiles and throughput per second of the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = max(1, math.ceil(max([summary["duration_s"]] + [record[0] + record[1] for record in records])))
    buckets: list[list[float]] = [[] for _ in range(seconds)]
    for start, latency, outcome, _, _ in records:
        if outcome == "ok":
            buckets[min(seconds - 1, int(start + latency))].append(latency * 1000)
    times = list(range(seconds))
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    for name, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        top.plot(times, [percentile(sorted(bucket), fraction) for bucket in buckets], label=name)
    top.set_ylabel("latency (ms)")
    top.legend()
    bottom.bar(times, [len(bucket) for bucket in buckets], width=0.9)
    bottom.set_ylabel("committed ops / s")
    bottom.set_xlabel("seconds into the run")
    figure.suptitle(f"raftline bench {summary['workload']}, {summary['clients']} client(s)")
    figure.savefig(path)
    plt.close(figure)


# -- the client process ---------------------------------------------------------------------


class WorkloadClient:
    """One client's operations; every body runs inside a transaction."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.rng = random.Random(spec["seed"])
        self.keys = spec["keys"]
        self.value = "v" * spec["value_size"]
        from actors.keyspace import slot_of

        by_cluster: dict[str, list[str]] = {}
        for key in self.keys:
            by_cluster.setdefault(spec["slots"][slot_of(key, len(spec["slots"]))], []).append(key)
        self.keys_by_cluster = list(by_cluster.values())

    def body(self):
        """The next operation: a function of a transaction."""
        workload = self.spec["workload"]
        if workload == "mixed":
            workload = "get" if self.rng.random() < self.spec["read_ratio"] else "put"
        key = self.rng.choice(self.keys)
        if workload == "put":
            return lambda txn: txn.put(key, self.value)
        if workload == "get":
            return lambda txn: txn.get(key)
        if workload == "txn":
            return self.read_modify_write(self.two_keys_on_two_clusters())
        source, target = self.rng.sample(self.keys, 2)
        amount = self.rng.randint(1, 10)
        return lambda txn: self.transfer(txn, source, target, amount)

    def two_keys_on_two_clusters(self) -> tuple[str, str]:
        if len(self.keys_by_cluster) < 2:
            return tuple(self.rng.sample(self.keys, 2))
        first, second = self.rng.sample(self.keys_by_cluster, 2)
        return self.rng.choice(first), self.rng.choice(second)

    @staticmethod
    def read_modify_write(keys: tuple[str, ...]):
        def body(txn) -> None:
            for key, value in txn.get_many(keys).items():
                txn.put(key, (value if isinstance(value, int) else 0) + 1)

        return body

    @staticmethod
    def transfer(txn, source: str, target: str, amount: int) -> None:
        balances = txn.get_many([source, target])
        if (balances[source] or 0) >= amount:
            txn.put(source, (balances[source] or 0) - amount)
            txn.put(target, (balances[target] or 0) + amount)

    def run_operation(self, store, body) -> tuple[str, int, int]:
        """(outcome, attempts, hops) of one operation, retried on conflict."""
        from clerk.client import retry_delay
        from clerk.errors import RaftlineError, TransactionAborted

        hops_before = store.total_hops
        for attempt in range(1, self.spec["retries"] + 2):
            txn = store.transaction()
            try:
                body(txn)
                txn.commit()
                return "ok", attempt, store.total_hops - hops_before
            except TransactionAborted:
                time.sleep(retry_delay(attempt))
            except RaftlineError:
                return "failed", attempt, store.total_hops - hops_before
        return "aborted", self.spec["retries"] + 1, store.total_hops - hops_before


def client_main(spec_path: str) -> int:
    """A client process; see the module docstring for its conversation with the driver."""
    from clerk.client import connect

    spec = json.loads(Path(spec_path).read_text())
    client = WorkloadClient(spec)
    store = connect(admin=spec["admin"])
    try:
        store.get(spec["keys"][0])  # warm up: the clerk has its map and knows the leaders
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 1
        records = []
        began = time.monotonic()
        deadline = began + spec["duration"]
        reported = began
        while time.monotonic() < deadline:
            body = client.body()
            start = time.monotonic()
            outcome, attempts, hops = client.run_operation(store, body)
            records.append([round(start - began, 6), round(time.monotonic() - start, 6), outcome, attempts, hops])
            if time.monotonic() - reported >= PROGRESS_INTERVAL:
                reported = time.monotonic()
                print(f"ops {len(records)}", flush=True)
        Path(spec["result"]).write_text(json.dumps(records))
        print(f"done {len(records)}", flush=True)
        sys.stdin.read()  # keep the clerk until the driver has read every process's CPU time
        return 0
    finally:
        store.close()


# -- election and sweep ---------------------------------------------------------------------


def run_election(args, directory: Path) -> dict:
    """Per timeout range x cluster size: kill the leader `trials` times and time
    the new leader's appearance in status and the first write committed after."""
    from clerk.client import connect

    rows = []
    for election_ms in parse_timeouts(args.timeouts):
        for replicas in parse_int_list(args.replicas, "--replicas"):
            label = f"election {election_ms[0]}-{election_ms[1]} ms x {replicas}"
            system_dir = directory / f"election-{election_ms[0]}-{election_ms[1]}-{replicas}"
            elections, writes = [], []
            with bench_system(
                system_dir, admin=None, clusters=1, replicas=replicas, election_ms=election_ms
            ) as cluster:
                with connect(admin=cluster.admin) as store:
                    store.put("election-probe", 0)
                    for trial in range(1, args.trials + 1):
                        election_s, write_s = kill_leader_once(cluster, store, trial)
                        elections.append(election_s * 1000)
                        writes.append(write_s * 1000)
                        progress_line(
                            f"{label}: trial {trial}/{args.trials}: leader {election_s * 1000:.0f} ms, write {write_s * 1000:.0f} ms"
                        )
            rows.append(
                {
                    "timeout_ms": list(election_ms),
                    "replicas": replicas,
                    "trials": args.trials,
                    "election_ms": {"median": round(statistics.median(elections), 1), "max": round(max(elections), 1)},
                    "first_write_ms": {"median": round(statistics.median(writes), 1), "max": round(max(writes), 1)},
                }
            )
    return {"workload": "election", "results": rows, "load": round(os.getloadavg()[0], 2)}


def kill_leader_once(cluster, store, trial: int) -> tuple[float, float]:
    """(seconds to a new leader in status, seconds to the first committed write) after a kill."""
    old = wait_for_stable_leader(cluster)
    elected: list[float] = []

    def watch(killed_at: float) -> None:
        deadline = killed_at + ELECTION_TIMEOUT
        while time.monotonic() < deadline:
            leader = cluster.leader("c1")
            if leader is not None and leader != old:
                elected.append(time.monotonic() - killed_at)
                return
            time.sleep(0.02)

    killed_at = time.monotonic()
    cluster.kill(old)
    watcher = threading.Thread(target=watch, args=(killed_at,), daemon=True)
    watcher.start()
    store.put("election-probe", trial)
    written = time.monotonic() - killed_at
    watcher.join(ELECTION_TIMEOUT)
    if not elected:
        raise TimeoutError(f"no new leader in status within {ELECTION_TIMEOUT:g} s of killing {old}")
    return elected[0], written


def wait_for_stable_leader(cluster) -> str:
    """The leader, once every replica is alive again (the previous trial's
    victim restarted) so each trial starts from a whole cluster."""
    deadline = time.monotonic() + ELECTION_TIMEOUT
    while time.monotonic() < deadline:
        info = cluster.status()["clusters"]["c1"]
        if info["leader"] and all(replica["alive"] for replica in info["replicas"].values()):
            return info["leader"]
        time.sleep(0.1)
    raise TimeoutError(f"the cluster did not recover a leader and every replica within {ELECTION_TIMEOUT:g} s")


def format_election(result: dict) -> str:
    lines = [
        "bench election: leader killed (SIGKILL); ms until a new leader shows in status and until the first write commits",
        f"  {'timeout ms':<12} {'replicas':>8} {'trials':>6}  {'leader p50':>10} {'max':>7}  {'write p50':>10} {'max':>7}",
    ]
    for row in result["results"]:
        timeout = f"{row['timeout_ms'][0]}-{row['timeout_ms'][1]}"
        election, write = row["election_ms"], row["first_write_ms"]
        lines.append(
            f"  {timeout:<12} {row['replicas']:>8} {row['trials']:>6}  {election['median']:>10.0f} {election['max']:>7.0f}"
            f"  {write['median']:>10.0f} {write['max']:>7.0f}"
        )
    lines.append(f"  load {result['load']:.2f} (1-minute load average at the end)")
    return "\n".join(lines)


def run_sweep(args, directory: Path) -> dict:
    """Per cluster size: a serial put run and a serial get run on a fresh system."""
    rows = []
    for replicas in parse_int_list(args.replicas, "--replicas"):
        system_dir = directory / f"sweep-{replicas}"
        with bench_system(system_dir, admin=None, clusters=args.clusters or 1, replicas=replicas) as cluster:
            row = {"replicas": replicas}
            for workload in ("put", "get"):
                summary = measure(cluster, args, workload, 1, directory)["summary"]
                row[workload] = {
                    "p50_ms": summary["latency_ms"]["p50"],
                    "p99_ms": summary["latency_ms"]["p99"],
                    "throughput": summary["throughput"],
                    "hops": summary["hops"],
                }
                row["rtt_ms"] = summary["rtt_ms"]
            rows.append(row)
    return {"workload": "sweep", "duration_s": args.duration, "results": rows, "load": round(os.getloadavg()[0], 2)}


def format_sweep(result: dict) -> str:
    lines = [
        f"bench sweep: one serial client, {result['duration_s']:g} s per run; latency in ms",
        f"  {'replicas':>8}  {'put p50':>8} {'p99':>8} {'ops/s':>7}  {'get p50':>8} {'p99':>8} {'ops/s':>7}  {'rtt':>6}",
    ]
    for row in result["results"]:
        put, get = row["put"], row["get"]
        lines.append(
            f"  {row['replicas']:>8}  {put['p50_ms']:>8.2f} {put['p99_ms']:>8.2f} {put['throughput']:>7.1f}"
            f"  {get['p50_ms']:>8.2f} {get['p99_ms']:>8.2f} {get['throughput']:>7.1f}  {row['rtt_ms']:>6.2f}"
        )
    lines.append(f"  load {result['load']:.2f} (1-minute load average at the end)")
    return "\n".join(lines)


# -- reconfiguration ----------------------------------------------------------------------------

MOVING_SLOT_KEYS = 1000
"""Keys put into the first slot the new cluster takes, so its move is timed at that size."""


def run_reconfig(args, directory: Path) -> dict:
    """On a new 2-cluster system holding --keys keys in c1: time adding a replica
    to c1, then add a cluster while two serial clients write, one to a key of the
    first slot to move (MOVING_SLOT_KEYS keys) and one to a key of a slot that
    stays; report each move's time and the clients' longest stalls."""
    from actors.keyspace import slot_of
    from clerk.client import connect
    from coordinator.shardmap import ShardMap, plan_rebalance

    replicas = parse_int_list(args.replicas, "--replicas")[0]
    total_keys = max(args.keys or 10_000, MOVING_SLOT_KEYS + 1)
    with bench_system(directory / "system", admin=None, clusters=2, replicas=replicas) as cluster:
        status = cluster.status()
        owners = {slot: name for name, info in status["clusters"].items() for slot in info["slots"]}
        slots = tuple(owners[slot] for slot in range(len(owners)))
        members = {name: tuple(info["replicas"]) for name, info in status["clusters"].items()}
        planned = plan_rebalance(ShardMap(epoch=1, slots=slots, members={**members, "new": ("new-r0",)}), [*members, "new"])
        moving = next(move.slot for move in planned if move.source == "c1")
        staying = next(slot for slot in range(len(slots)) if slots[slot] == "c1" and all(m.slot != slot for m in planned))
        in_moving: list[str] = []
        elsewhere: list[str] = []  # keys of c1's other slots
        number = 0
        while len(in_moving) < MOVING_SLOT_KEYS or len(elsewhere) < total_keys - MOVING_SLOT_KEYS:
            key = f"bench-{number:07d}"
            number += 1
            slot = slot_of(key, len(slots))
            if slot == moving:
                if len(in_moving) < MOVING_SLOT_KEYS:
                    in_moving.append(key)
            elif slots[slot] == "c1" and len(elsewhere) < total_keys - MOVING_SLOT_KEYS:
                elsewhere.append(key)
        staying_key = next(key for key in (f"stay-{n}" for n in range(10**6)) if slot_of(key, len(slots)) == staying)
        loaded = in_moving + elsewhere
        value = "v" * args.value_size
        with connect(admin=cluster.admin) as store:
            progress_line(f"loading {len(loaded)} keys into c1 ...")
            preload(store, loaded, value)
        progress_line("adding a replica to c1 ...")
        began = time.monotonic()
        newcomer = cluster.add_replica("c1")
        add_replica_s = time.monotonic() - began

        probes = [StallProbe(cluster.admin, in_moving[0]), StallProbe(cluster.admin, staying_key)]
        for probe in probes:
            probe.start()
        while not all(probe.latencies for probe in probes):
            time.sleep(0.05)
        progress_line("adding a cluster under two writing clients ...")
        began = time.monotonic()
        added = cluster.add_cluster(progress=lambda job: progress_line(f"  {job['step']}"))
        add_cluster_s = time.monotonic() - began
        time.sleep(0.5)  # a few writes after the last move
        for probe in probes:
            probe.stop()
        job = next(job for job in cluster.jobs() if job["kind"] == "add_cluster" and job["target"] == added)
        moved = {move[0]: seconds for move, seconds in zip(job["moves"], job["move_seconds"])}
        others_s = [seconds for slot, seconds in moved.items() if slot != moving]
    return {
        "workload": "reconfig",
        "replicas": replicas,
        "keys": len(loaded),
        "add_replica_s": round(add_replica_s, 2),
        "added_replica": newcomer,
        "moving_slot": {"slot": moving, "keys": MOVING_SLOT_KEYS, "move_s": moved[moving]},
        "other_moves": {
            "count": len(others_s),
            "keys_each": round(len(elsewhere) / max(1, slots.count("c1") - 1)),
            "median_s": round(statistics.median(others_s), 3) if others_s else 0.0,
            "max_s": round(max(others_s), 3) if others_s else 0.0,
        },
        "add_cluster_s": round(add_cluster_s, 2),
        "writer_on_moving_slot_ms": probes[0].summary(),
        "writer_on_staying_slot_ms": probes[1].summary(),
        "load": round(os.getloadavg()[0], 2),
    }


class StallProbe(threading.Thread):
    """A serial client putting to one key until stopped, timing every put."""

    def __init__(self, admin: str, key: str):
        super().__init__(daemon=True)
        self.admin = admin
        self.key = key
        self.latencies: list[float] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        from clerk.client import connect

        with connect(admin=self.admin) as store:
            count = 0
            while not self.stopping.is_set():
                began = time.monotonic()
                store.put(self.key, count)
                self.latencies.append((time.monotonic() - began) * 1000)
                count += 1

    def stop(self) -> None:
        self.stopping.set()
        self.join(CLIENT_GRACE_SECONDS)

    def summary(self) -> dict:
        ordered = sorted(self.latencies)
        return {"puts": len(ordered), "p50": round(percentile(ordered, 0.5), 2), "max": round(ordered[-1], 2)}


def format_reconfig(result: dict) -> str:
    moving, others = result["moving_slot"], result["other_moves"]
    hot, cold = result["writer_on_moving_slot_ms"], result["writer_on_staying_slot_ms"]
    return "\n".join(
        [
            f"bench reconfig: 2 clusters x {result['replicas']} replicas, {result['keys']} keys in c1",
            f"  add-replica c1 ({result['added_replica']}, learner -> voter)  {result['add_replica_s']:.2f} s",
            f"  add-cluster (moves {others['count'] + 1} slots)            {result['add_cluster_s']:.2f} s",
            f"  move of slot {moving['slot']} ({moving['keys']} keys)            {moving['move_s']:.2f} s",
            f"  other moves (~{others['keys_each']} keys each)            median {others['median_s']:.2f} s, max {others['max_s']:.2f} s",
            f"  writer on the moving slot   {hot['puts']} puts, p50 {hot['p50']:.1f} ms, longest {hot['max']:.1f} ms",
            f"  writer on a staying slot    {cold['puts']} puts, p50 {cold['p50']:.1f} ms, longest {cold['max']:.1f} ms",
            f"  load {result['load']:.2f} (1-minute load average at the end)",
        ]
    )


# -- log repair -----------------------------------------------------------------------------------

CATCHUP_WRITERS = 8
CATCHUP_TARGET = 10_000
"""Commits a sleeping follower should miss; fewer when --duration ends first."""


def run_catchup(args, directory: Path) -> dict:
    """One cluster: a follower sleeps --duration seconds while CATCHUP_WRITERS
    clients commit puts (up to CATCHUP_TARGET); then time from its waking until
    it has applied everything committed while it slept."""
    from clerk.client import connect

    replicas = parse_int_list(args.replicas, "--replicas")[0]
    if replicas < 3:
        raise BenchUsageError("catchup needs --replicas 3 or more: a follower sleeps while the others commit")
    with bench_system(directory / "system", admin=None, clusters=1, replicas=replicas) as cluster:
        status = cluster.status()["clusters"]["c1"]
        sleeper = next(name for name in sorted(status["replicas"]) if name != status["leader"])
        commits = [0] * CATCHUP_WRITERS
        enough = threading.Event()

        def write(writer: int) -> None:
            with connect(admin=cluster.admin) as store:
                while not enough.is_set():
                    store.put(f"catchup-{writer}-{commits[writer] % 100}", commits[writer])
                    commits[writer] += 1
                    if sum(commits) >= CATCHUP_TARGET:
                        enough.set()

        cluster.sleep(sleeper, args.duration)
        woke_at = time.monotonic() + args.duration
        writers = [threading.Thread(target=write, args=(writer,), daemon=True) for writer in range(CATCHUP_WRITERS)]
        for writer in writers:
            writer.start()
        while not enough.is_set() and time.monotonic() < woke_at - 0.5:
            progress_line(f"catchup: {sum(commits)} commits while {sleeper} sleeps")
            time.sleep(PROGRESS_INTERVAL * 5)
        enough.set()
        for writer in writers:
            writer.join(CLIENT_GRACE_SECONDS)
        backlog = cluster.status()["clusters"]["c1"]
        target = backlog["replicas"][backlog["leader"]]["commit"]
        missed = target - backlog["replicas"][sleeper]["applied"]
        while time.monotonic() < woke_at:
            time.sleep(0.01)
        deadline = woke_at + ELECTION_TIMEOUT
        while time.monotonic() < deadline:
            applied = cluster.status()["clusters"]["c1"]["replicas"][sleeper]["applied"]
            if applied >= target:
                break
            time.sleep(0.05)
        else:
            raise TimeoutError(f"{sleeper} had not caught up {ELECTION_TIMEOUT:g} s after waking")
        caught_up_s = time.monotonic() - woke_at
    return {
        "workload": "catchup",
        "replicas": replicas,
        "commits": sum(commits),
        "entries_missed": missed,
        "caught_up_s": round(caught_up_s, 2),
        "load": round(os.getloadavg()[0], 2),
    }


def format_catchup(result: dict) -> str:
    return "\n".join(
        [
            f"bench catchup: 1 cluster x {result['replicas']} replicas; a follower sleeps while "
            f"{CATCHUP_WRITERS} clients commit",
            f"  commits while asleep   {result['commits']} ({result['entries_missed']} log entries behind on waking)",
            f"  caught up after waking {result['caught_up_s']:.2f} s (status polled every 50 ms)",
            f"  load {result['load']:.2f} (1-minute load average at the end)",
        ]
    )


# -- entry point ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--client":
        return client_main(argv[1])
    parser = argparse.ArgumentParser(
        prog="python3 -m clerk.bench", description="raftline bench: throughput and latency"
    )
    add_bench_arguments(parser)
    args = parser.parse_args(argv)
    from clerk.errors import RaftlineError

    try:
        return run_bench(args)
    except (RaftlineError, ValueError, TimeoutError, RuntimeError) as error:
        print(f"raftline bench: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
