"""`raftline bench`: throughput, latency and critical-path hops on real processes.

    raftline bench put --clients 8 --duration 10 [--json] [--plot FILE.png] [--versus etcd] [--hog]
    raftline bench mixed --read-ratio 0.9 --admin 127.0.0.1:19000
    raftline bench election --timeouts 150-300,300-500 --replicas 3,5,7
    raftline bench sweep --replicas 3,5,7
    raftline bench reconfig --keys 10000
    raftline bench catchup --duration 30
    raftline bench failover --target coordinator --trials 5
    raftline bench transport --rounds 5 --bases stock,raftline
    python3 -m raftline.bench.storage       (no system: what one SqliteStorage.save costs)

How a run works:
- A workload (put, get, txn, bank, mixed; raftline/workloads.py) runs on a
  system of raftline/harness.py: its own unless --admin names a running one.
  Experiments (election, sweep, reconfig, catchup, failover, transport) always start their own.
- Clients are threads, each with its own store, spread over --processes OS
  processes (raftline/bench/client.py; default as many as clients, at most
  8, as etcd's benchmark spreads its clients over a few connections); the
  stores of one process share its clerk. A process connects its clients,
  warms them up, runs the workload from "go" until the deadline, writes one
  record per operation (start, latency, outcome, attempts, hops) to a JSON
  file, then keeps its clerk until stdin closes, so the driver can read
  every process's CPU time before anything exits.
- Every operation is a transaction retried on conflict up to --retries
  times; its latency spans every attempt. Only committed operations count as
  ops and in the percentiles; abort_rate is aborted attempts / attempts.
- hops: messages on the critical path per committed operation, as the clerk
  counts them (ClerkReply.hops); rtt_ms: the median round trip between two
  probe actors (raftline/bench/probe.py) in the same system just before the run.
- messages: every message all actors sent per committed operation, by kind
  (raftline/bench/messages.py), from the metrics each actor keeps.
- --versus etcd runs the same workload, clients and keys on a fresh etcd
  cluster of as many members right after (raftline/bench/etcd.py), and
  reports the two side by side as ratios: the machine is shared, so only
  figures of one run compare.
- --hog runs the workload again on the same system (and etcd cluster) with
  a busy loop pinned to one core (raftline/bench/hog.py), and reports each
  system's slowdown: how well it shares a machine.
- Everything is bounded: --duration plus a hard timeout on clients, status
  polls and elections; reports are figures, never pass/fail on speed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from raftline.bench.experiments import (
    FAILOVER_TARGETS,
    run_catchup,
    run_election,
    run_failover,
    run_reconfig,
    run_sweep,
)
from raftline.bench.measure import DEFAULT_CLIENT_PROCESSES, run_workload
from raftline.bench.report import (
    format_catchup,
    format_election,
    format_failover,
    format_hog,
    format_reconfig,
    format_sweep,
    format_versus,
    format_workload,
    plot,
)
from raftline.harness import DEFAULT_CLUSTERS
from raftline.workloads import BENCH_ACCOUNTS, BENCH_KEYS, BENCH_WORKLOADS

EXPERIMENTS = ("election", "sweep", "reconfig", "catchup", "failover", "transport")
VERSUS = ("etcd",)
EXIT_INTERRUPTED = 130
"""A workload run cut short by Ctrl-C (SIGINT), after its partial report: the shell's convention."""
HELP = (
    f"throughput, latency, aborts and hops of a workload ({', '.join(BENCH_WORKLOADS)})"
    f" or an experiment ({', '.join(EXPERIMENTS)})"
)


class BenchUsageError(ValueError):
    """The bench command line is inconsistent."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add bench's arguments to `parser`, which already has --admin and
    --secret-file (no -t: without --admin bench starts its own system)."""
    parser.add_argument(
        "workload",
        choices=BENCH_WORKLOADS + EXPERIMENTS,
        help=f"what to measure: a workload ({', '.join(BENCH_WORKLOADS)}) or an experiment ({', '.join(EXPERIMENTS)})",
    )
    parser.add_argument("--clients", type=int, default=1, help="clients, each a thread with its own store (default 1)")
    parser.add_argument("--processes", type=int,
                        help=f"processes the clients run in, one clerk each (default: as many as clients, "
                             f"at most {DEFAULT_CLIENT_PROCESSES})")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run (default 10)")
    parser.add_argument(
        "--keys", type=int, help=f"keys drawn from (default {BENCH_KEYS}; bank: {BENCH_ACCOUNTS} accounts)"
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
    parser.add_argument("--trials", type=int, default=5,
                        help="election: leader kills per setting; failover: kills (default 5)")
    parser.add_argument("--target", choices=FAILOVER_TARGETS, default="coordinator",
                        help="failover: kill the acting coordinator replica or c1's leader (default coordinator)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="transport: rounds per base, alternated between the bases (default 5)")
    parser.add_argument("--bases", default="stock,raftline",
                        help="transport: Thespian system bases to compare (default stock,raftline)")
    parser.add_argument("--versus", choices=VERSUS,
                        help="a workload: run it on etcd too, right after, as many members as --replicas, "
                             "and report the two side by side (needs the `etcd` binary)")
    parser.add_argument("--hog", action="store_true",
                        help="a workload: run it again under a busy loop on one core (so on etcd too, with "
                             "--versus) and report each system's slowdown")
    parser.add_argument("--seed", type=int, default=1, help="seeds every client's key choices")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument(
        "--plot", metavar="FILE.png", help="draw latency percentiles and throughput over time (needs matplotlib)"
    )


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


def check_arguments(args) -> tuple[list[int], list[tuple[int, int]]]:
    """The replica counts and election timeout ranges asked for;
    BenchUsageError when an argument is out of range."""
    if args.clients < 1:
        raise BenchUsageError(f"--clients must be at least 1, got {args.clients}")
    if args.processes is not None and not 1 <= args.processes <= args.clients:
        raise BenchUsageError(f"--processes must be within 1..--clients ({args.clients}), got {args.processes}")
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
    if args.workload in BENCH_WORKLOADS and len(replicas) != 1:
        raise BenchUsageError(f"{args.workload} takes one --replicas count, got {args.replicas}")
    if args.workload in EXPERIMENTS and args.admin:
        raise BenchUsageError(f"bench {args.workload} starts its own systems: --admin does not apply")
    if args.workload in ("election", "failover") and args.trials < 1:
        raise BenchUsageError(f"--trials must be at least 1, got {args.trials}")
    if args.workload == "transport":
        if args.rounds < 1:
            raise BenchUsageError(f"--rounds must be at least 1, got {args.rounds}")
        from raftline.bench.transport import parse_bases  # here only: it imports Thespian

        try:
            parse_bases(args.bases)
        except ValueError as error:
            raise BenchUsageError(str(error)) from None
    if args.versus and args.workload not in BENCH_WORKLOADS:
        raise BenchUsageError(f"--versus runs a workload ({', '.join(BENCH_WORKLOADS)}) on both, not {args.workload}")
    if args.hog and args.workload not in BENCH_WORKLOADS:
        raise BenchUsageError(f"--hog runs a workload ({', '.join(BENCH_WORKLOADS)}) again, not {args.workload}")
    if args.versus == "etcd":
        from raftline.bench.etcd import etcd_binary

        if etcd_binary() is None:
            raise BenchUsageError("--versus etcd needs the `etcd` binary on PATH (Debian: apt-get install etcd-server)")
    if args.workload == "catchup" and replicas[0] < 3:
        raise BenchUsageError("catchup needs --replicas 3 or more: a follower sleeps while the others commit")
    return replicas, parse_timeouts(args.timeouts)


def run(args) -> int:
    """Run what `args` (from add_arguments) asks; the report goes to stdout
    (with --json its last line is one JSON object), progress to stderr."""
    replicas, timeouts = check_arguments(args)
    if args.plot and args.workload != "election":
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise BenchUsageError("--plot needs matplotlib: pip install 'raftline[plot]'") from None
    directory = Path(tempfile.mkdtemp(prefix="raftline-bench-"))
    try:
        if args.workload == "election":
            result = run_election(args, timeouts, replicas, directory)
            print(format_election(result))
        elif args.workload == "sweep":
            result = run_sweep(args, replicas, directory)
            print(format_sweep(result))
        elif args.workload == "reconfig":
            result = run_reconfig(args, replicas[0], directory)
            print(format_reconfig(result))
        elif args.workload == "catchup":
            result = run_catchup(args, replicas[0], directory)
            print(format_catchup(result))
        elif args.workload == "failover":
            result = run_failover(args, replicas[0], directory)
            print(format_failover(result))
        elif args.workload == "transport":
            # Imported only here, as measure.py does the probe: it imports Thespian.
            from raftline.bench.transport import format_transport, parse_bases, run_transport

            result = run_transport(parse_bases(args.bases), args.rounds, directory)
            print(format_transport(result))
        else:
            run_result = run_workload(args, replicas[0], directory)
            result = run_result["summary"]
            print(format_workload(result))
            if "etcd" in run_result:
                result["etcd"] = run_result["etcd"]["summary"]
                print(format_versus(result, result["etcd"]))
            if "hogged" in run_result:
                result["hogged"] = run_result["hogged"]["summary"]
                etcd_hogged = run_result.get("etcd", {}).get("hogged")
                if etcd_hogged is not None:
                    result["etcd"]["hogged"] = etcd_hogged["summary"]
                print(format_hog(result, result["hogged"], result.get("etcd"),
                                 etcd_hogged["summary"] if etcd_hogged else None))
            if args.plot:
                plot(run_result["records"], result, args.plot, versus=run_result.get("etcd", {}).get("records"))
                print(f"plot written to {args.plot}")
        if args.json:
            print(json.dumps(result, sort_keys=True))
        # Interrupted (Ctrl-C): the partial report is out; the status says it is partial.
        return EXIT_INTERRUPTED if "interrupted_after_s" in result else 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)
