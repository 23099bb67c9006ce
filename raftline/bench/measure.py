"""One bench workload run: clients started, timed, summarized (latency,
throughput, aborts, hops, and CPU seconds by process kind from /proc)."""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import time
from pathlib import Path

from raftline.harness import (
    CLIENT_GRACE_SECONDS,
    DEFAULT_CLUSTERS,
    PROGRESS_INTERVAL,
    ProgressBar,
    check_running,
    preload,
    start_client,
    stop_client,
    system_for_run,
    wait_until_connected,
)
from raftline.workloads import OPENING_BALANCE, bank_total, bench_keys

CLIENT_MODULE = "raftline.bench.client"


def run_workload(args, replicas: int, directory: Path) -> dict:
    """One workload run: {"summary": the report dict, "records": every operation}."""
    clusters = args.clusters or DEFAULT_CLUSTERS
    with system_for_run(directory / "system", admin=args.admin, clusters=clusters, replicas=replicas) as cluster:
        return measure(cluster, args, args.workload, args.clients, directory)


def measure(cluster, args, workload: str, clients: int, directory: Path) -> dict:
    """Run `workload` with `clients` client processes on `cluster` for
    args.duration: {"summary": the report dict, "records": every operation}."""
    from clerk.client import connect

    keys = bench_keys(workload, args.keys)
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
            result = run_dir / f"client-{number}.json"
            spec = {
                "admin": cluster.admin,
                "secret_file": os.fspath(cluster.secret_file),
                "workload": workload,
                "duration": args.duration,
                "keys": keys,
                "slots": slots,
                "value_size": args.value_size,
                "read_ratio": args.read_ratio,
                "retries": args.retries,
                "seed": args.seed * 1000 + number,
                "result": os.fspath(result),
            }
            handles.append(start_client(CLIENT_MODULE, number, spec, run_dir, result))
        wait_until_connected(handles)

        kinds = process_kinds(cluster.status(), [handle.process.pid for handle in handles])
        before = sample_cpu(kinds)
        for handle in handles:
            handle.send("go")
        began = time.monotonic()
        bar = ProgressBar(workload, args.duration)
        hard_deadline = began + args.duration + CLIENT_GRACE_SECONDS
        interrupted_at = None
        try:
            while not all(handle.done for handle in handles) and time.monotonic() < hard_deadline:
                check_running(handles)
                bar.show(time.monotonic() - began, sum(handle.ops for handle in handles))
                time.sleep(PROGRESS_INTERVAL)
        except KeyboardInterrupt:
            # Ctrl-C: the clients stop too (they get it from the terminal, or from
            # here) and hand over what they did, which is reported as such.
            interrupted_at = time.monotonic() - began
            for handle in handles:
                if handle.process.poll() is None:
                    handle.process.send_signal(signal.SIGINT)
            hard_deadline = time.monotonic() + CLIENT_GRACE_SECONDS
            while not all(handle.done for handle in handles) and time.monotonic() < hard_deadline:
                check_running(handles)
                time.sleep(PROGRESS_INTERVAL)
        bar.close(time.monotonic() - began, sum(handle.ops for handle in handles))
        if not all(handle.done for handle in handles):
            raise TimeoutError(f"clients still running {CLIENT_GRACE_SECONDS:g} s after the deadline")
        after = sample_cpu(kinds)
        records = [record for handle in handles for record in json.loads(handle.result.read_text())]
    finally:
        for handle in handles:
            stop_client(handle)

    duration = args.duration if interrupted_at is None else round(interrupted_at, 1)
    summary = summarize(records, duration)
    if interrupted_at is not None:
        summary["interrupted_after_s"] = duration
    summary.update(
        workload=workload,
        clients=clients,
        duration_s=duration,
        clusters=len(status["clusters"]),
        replicas=max(len(info["replicas"]) for info in status["clusters"].values()),
        keys=len(keys),
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


def measure_rtt(admin: str) -> float:
    from coordinator.admin import attach
    from raftline.bench.probe import measure_round_trip

    return measure_round_trip(attach(admin))


# -- statistics ----------------------------------------------------------------------------------


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


# -- CPU time per process kind -------------------------------------------------------------------

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
