"""One bench workload run: clients started, timed, summarized (latency,
throughput, aborts, hops, messages per op from every actor's metrics, and CPU
seconds by process kind from /proc)."""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from raftline.bench.hog import cpu_hog
from raftline.bench.messages import message_counts, messages_per_op
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
CLERK_ANSWER_SECONDS = 0.2
DEFAULT_CLIENT_PROCESSES = 8
"""As etcd's benchmark runs its clients over a few connections: 64 clients are 8 processes of 8 threads."""


def run_workload(args, replicas: int, directory: Path) -> dict:
    """One workload run: {"summary": the report dict, "records": every operation},
    and with --versus etcd "etcd": the same for etcd, run right after on as many members."""
    clusters = args.clusters or DEFAULT_CLUSTERS
    with system_for_run(directory / "system", admin=args.admin, clusters=clusters, replicas=replicas) as cluster:
        result = measure(cluster, args, args.workload, args.clients, directory)
        if args.hog:
            result["hogged"] = measure(cluster, args, args.workload, args.clients, directory, hog=True)
    if args.versus == "etcd":
        result["etcd"] = measure_etcd(args, args.workload, args.clients, replicas, result["slots"], directory)
    return result


def measure(cluster, args, workload: str, clients: int, directory: Path, *, hog: bool = False) -> dict:
    """Run `workload` with `clients` client processes on `cluster` for
    args.duration (with a busy loop on one core, when `hog`): {"summary": the
    report dict, "records": every operation}."""
    from clerk.client import connect

    keys = bench_keys(workload, args.keys)
    status = cluster.status()
    slots = slot_owners(status)
    with connect(admin=cluster.admin) as store:
        if workload == "bank":
            preload(store, keys, OPENING_BALANCE)
        elif workload in ("get", "mixed"):
            preload(store, keys, "v" * args.value_size)
        total_before = bank_total(store, keys) if workload == "bank" else None
    rtt_ms = measure_rtt(cluster.admin)

    base_spec = {
        "admin": cluster.admin,
        "secret_file": os.fspath(cluster.secret_file),
        "workload": workload,
        "duration": args.duration,
        "keys": keys,
        "slots": slots,
        "value_size": args.value_size,
        "read_ratio": args.read_ratio,
        "retries": args.retries,
    }
    run = run_clients(base_spec, clients, args, directory / f"run-{workload}-{time.monotonic_ns()}",
                      kinds_of=lambda client_pids: process_kinds(cluster.status(), client_pids),
                      sample=lambda: message_counts(status_with_clerks(cluster)), hog=hog)
    records, interrupted_at = run.records, run.interrupted_at
    duration = args.duration if interrupted_at is None else round(interrupted_at, 1)
    summary = summarize(records, duration)
    if interrupted_at is not None:
        summary["interrupted_after_s"] = duration
    summary.update(
        workload=workload,
        clients=clients,
        processes=client_processes(args, clients),
        duration_s=duration,
        clusters=len(status["clusters"]),
        replicas=max(len(info["replicas"]) for info in status["clusters"].values()),
        keys=len(keys),
        value_size=args.value_size,
        rtt_ms=round(rtt_ms, 3),
        cpu_s=run.cpu_s,
        load=round(os.getloadavg()[0], 2),
    )
    summary["messaging_ms"] = round(summary["hops"] / 2 * rtt_ms, 2)
    summary["messages"] = messages_per_op(*run.samples, summary["ops"])
    if workload == "mixed":
        summary["read_ratio"] = args.read_ratio
    if workload == "bank":
        with connect(admin=cluster.admin) as store:
            summary["bank_total_conserved"] = bank_total(store, keys) == total_before
    return {"summary": summary, "records": records, "slots": slots}


def measure_etcd(args, workload: str, clients: int, members: int, slots: list[str], directory: Path) -> dict:
    """The same workload, clients and keys on an etcd cluster of `members`
    (raftline/bench/etcd.py): {"summary": ..., "records": ...}, and with
    --hog "hogged": the same again on that cluster under a busy loop. `slots`
    are raftline's, so txn picks the same key pairs."""
    from raftline.bench.etcd import EtcdCluster

    with EtcdCluster(directory / "etcd", members=members) as etcd:
        result = measure_on_etcd(etcd, args, workload, clients, slots, directory)
        if args.hog:
            result["hogged"] = measure_on_etcd(etcd, args, workload, clients, slots, directory, hog=True)
    return result


def measure_on_etcd(etcd, args, workload: str, clients: int, slots: list[str], directory: Path, *,
                    hog: bool = False) -> dict:
    from raftline.bench.etcd import EtcdStore

    keys = bench_keys(workload, args.keys)
    with EtcdStore(etcd.endpoints) as store:
        if workload == "bank":
            preload(store, keys, OPENING_BALANCE)
        elif workload in ("get", "mixed"):
            preload(store, keys, "v" * args.value_size)
        total_before = bank_total(store, keys) if workload == "bank" else None
    base_spec = {"etcd": etcd.endpoints, "workload": workload, "duration": args.duration, "keys": keys,
                 "slots": slots, "value_size": args.value_size, "read_ratio": args.read_ratio,
                 "retries": args.retries}
    run = run_clients(base_spec, clients, args, directory / f"run-etcd-{workload}-{time.monotonic_ns()}",
                      kinds_of=lambda client_pids: {"etcd": etcd.pids, "clients": client_pids}, hog=hog)
    duration = args.duration if run.interrupted_at is None else round(run.interrupted_at, 1)
    summary = summarize(run.records, duration)
    summary.update(workload=workload, clients=clients, processes=client_processes(args, clients),
                   duration_s=duration, members=len(etcd.pids), cpu_s=run.cpu_s,
                   load=round(os.getloadavg()[0], 2))
    if workload == "bank":
        with EtcdStore(etcd.endpoints) as store:
            summary["bank_total_conserved"] = bank_total(store, keys) == total_before
    return {"summary": summary, "records": run.records}


def slot_owners(status: dict) -> list[str]:
    """Each slot's cluster, by slot number."""
    slots = [""] * sum(len(info["slots"]) for info in status["clusters"].values())
    for name, info in status["clusters"].items():
        for slot in info["slots"]:
            slots[slot] = name
    return slots


@dataclass
class ClientRun:
    """What run_clients measured.

    Fields:
        records: every client's operation records.
        interrupted_at: seconds into the run when Ctrl-C cut it short, else None.
        cpu_s: CPU seconds per process kind over the run.
        samples: `sample()` before "go" and after the last client was done.
    """

    records: list[list]
    interrupted_at: float | None
    cpu_s: dict[str, float]
    samples: tuple


def run_clients(base_spec: dict, clients: int, args, run_dir: Path, *,
                kinds_of: Callable[[list[int]], dict[str, list[int]]],
                sample: Callable[[], object] = lambda: None, hog: bool = False) -> ClientRun:
    """Run `clients` clients of `base_spec`, as threads spread over
    `client_processes(args)` processes (each client with its own seed, each
    process its result file), from "go" for args.duration, with a busy loop
    on one core throughout when `hog`; `kinds_of(client pids)` names the
    processes whose CPU time counts."""
    run_dir.mkdir(parents=True)
    handles = []
    hogging = ExitStack()
    try:
        first = 0
        for number, threads in enumerate(threads_per_process(clients, client_processes(args, clients))):
            result = run_dir / f"client-{number}.json"
            spec = {**base_spec, "threads": threads, "seed": args.seed * 1000 + first, "result": os.fspath(result)}
            handles.append(start_client(CLIENT_MODULE, number, spec, run_dir, result))
            first += threads
        wait_until_connected(handles)

        kinds = kinds_of([handle.process.pid for handle in handles])
        if hog:
            hogging.enter_context(cpu_hog())
        sampled_before = sample()
        before = sample_cpu(kinds)
        for handle in handles:
            handle.send("go")
        began = time.monotonic()
        bar = ProgressBar(base_spec["workload"], args.duration)
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
        hogging.close()
        if not all(handle.done for handle in handles):
            raise TimeoutError(f"clients still running {CLIENT_GRACE_SECONDS:g} s after the deadline")
        after = sample_cpu(kinds)
        sampled_after = sample()
        records = [record for handle in handles for record in json.loads(handle.result.read_text())]
    finally:
        hogging.close()
        for handle in handles:
            stop_client(handle)
    return ClientRun(records=records, interrupted_at=interrupted_at, cpu_s=cpu_by_kind(kinds, before, after),
                     samples=(sampled_before, sampled_after))


def client_processes(args, clients: int) -> int:
    """--processes, else up to DEFAULT_CLIENT_PROCESSES, never more than clients."""
    return min(clients, args.processes or DEFAULT_CLIENT_PROCESSES)


def threads_per_process(clients: int, processes: int) -> list[int]:
    """`clients` spread as evenly as they go over `processes`."""
    return [clients // processes + (1 if number < clients % processes else 0) for number in range(processes)]


def status_with_clerks(cluster) -> dict:
    """A status whose clerk metrics are current: a clerk's snapshot answers the
    round before, so the second of two rounds shows what every clerk counted by the first."""
    cluster.status()
    time.sleep(CLERK_ANSWER_SECONDS)
    return cluster.status()


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
