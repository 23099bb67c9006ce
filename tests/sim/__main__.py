"""Command line of the deterministic simulator.

    python3 -m tests.sim raft --seeds N --first-seed S [--nodes 3|5|7]
                              [--faults all|none|drop,dup,...] [--ticks T]
                              [--stats [--load-ticks L]] [--trace]
    python3 -m tests.sim txn --seeds N --first-seed S [--clusters K --replicas R --clerks C]
                             [--workload mixed|uniform|hotkey|bank] [--faults ...] [--no-clerk-crash]
                             [--reconfig [--moves N] [--member-changes N]]

Prints one line per failing seed with the command that replays it, then a
last line `raft: N seeds, V violations` (for txn: `txn: N seeds, V
violations, A committed, B aborted`); exits non-zero when V > 0. Without
`--nodes`, seed S runs (3, 5, 7)[S % 3] replicas. `--stats` adds the time
taken and, for a steady load on a reliable network, messages per committed
entry (batching at work). `txn --reconfig` also moves slots, adds a
cluster, drains one, and adds and removes replicas during each run.
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.sim.harness.fault_switches import FAULT_NAMES, FaultSwitches
from tests.sim.raft.random_runs import CHAOS_TICKS, measure_load, run_seed
from tests.sim.txn.cluster import add_txn_arguments


def _nodes_for(seed: int, nodes: int | None) -> int:
    return nodes if nodes is not None else (3, 5, 7)[seed % 3]


def _replay_command(seed: int, nodes: int, faults: str, ticks: int) -> str:
    command = f"python3 -m tests.sim raft --seeds 1 --first-seed {seed} --nodes {nodes}"
    if faults != "all":
        command += f" --faults {faults}"
    if ticks != CHAOS_TICKS:
        command += f" --ticks {ticks}"
    return command


def run_raft(args: argparse.Namespace) -> int:
    faults = FaultSwitches.parse(args.faults)
    started = time.perf_counter()
    violations = 0
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        nodes = _nodes_for(seed, args.nodes)
        result = run_seed(seed, nodes, faults, ticks=args.ticks)
        if result.violation is None:
            continue
        violations += 1
        error = result.violation
        print(
            f"seed {seed} ({nodes} nodes): {error.invariant} at step {error.step}: {error.detail}"
            f" -- replay: {_replay_command(seed, nodes, args.faults, args.ticks)}",
            flush=True,
        )
        if args.trace:
            print("\n".join(f"    {line}" for line in error.trace_tail), flush=True)
    elapsed = time.perf_counter() - started
    if args.stats:
        print(f"time: {elapsed:.1f} s for {args.seeds} seeds ({1000 * elapsed / max(1, args.seeds):.0f} ms/seed)")
        for per_tick in (1, 10, 50):
            load = measure_load(args.first_seed, _nodes_for(args.first_seed, args.nodes), per_tick, args.load_ticks)
            print(
                f"load: {load.nodes} nodes, {per_tick} commands/tick for {load.ticks} ticks, no faults: "
                f"{load.committed} committed, {load.messages} messages, "
                f"{load.messages_per_entry:.2f} messages per committed entry, "
                f"{load.entries_per_batch:.1f} entries per AppendLog"
            )
    print(f"raft: {args.seeds} seeds, {violations} violations")
    return 1 if violations else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.sim", description="deterministic simulation runs")
    commands = parser.add_subparsers(dest="command", required=True)
    raft = commands.add_parser("raft", help="randomized runs of one Raft cluster under faults")
    raft.add_argument("--seeds", type=int, default=100, help="how many seeds to run (default 100)")
    raft.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0)")
    raft.add_argument("--nodes", type=int, choices=(3, 5, 7), help="replicas per run (default: by seed)")
    raft.add_argument(
        "--faults", default="all", help=f"all, none, or a comma-separated list of {', '.join(FAULT_NAMES)}"
    )
    raft.add_argument("--ticks", type=int, default=CHAOS_TICKS, help=f"ticks of chaos per seed (default {CHAOS_TICKS})")
    raft.add_argument("--stats", action="store_true", help="report time taken and messages per committed entry")
    raft.add_argument("--load-ticks", type=int, default=200, help="ticks of each --stats load run (default 200)")
    raft.add_argument("--trace", action="store_true", help="print the trace tail of each failing seed")
    raft.set_defaults(run=run_raft)
    add_txn_arguments(commands.add_parser("txn", help="randomized transaction runs on whole clusters under faults"))
    args = parser.parse_args(argv)
    if args.command == "raft":
        try:
            FaultSwitches.parse(args.faults)
        except ValueError as error:
            parser.error(str(error))
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
