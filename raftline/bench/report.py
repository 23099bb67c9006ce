"""Bench reports: a text table per workload or experiment, and --plot."""

from __future__ import annotations

from raftline.bench.experiments import CATCHUP_WRITERS
from raftline.bench.measure import percentile


def load_line(load: float, width: int = 5) -> str:
    """The 1-minute load average, which says how busy the machine was while measuring."""
    return f"  {'load':<{width}}{load:.2f} (1-minute load average at the end)"


def format_workload(summary: dict) -> str:
    latency = summary["latency_ms"]
    cpu = "  ".join(f"{kind} {seconds:.2f}" for kind, seconds in summary["cpu_s"].items())
    lines = [
        f"bench {summary['workload']}: {summary['clients']} client(s) in {summary['processes']} process(es), "
        f"{summary['duration_s']:g} s, "
        f"{summary['clusters']} cluster(s) x {summary['replicas']} replicas, {summary['keys']} keys, "
        f"{summary['value_size']} B values"
        + (f", read ratio {summary['read_ratio']:g}" if "read_ratio" in summary else "")
        + (f"; interrupted after {summary['interrupted_after_s']:g} s: what was done by then"
           if "interrupted_after_s" in summary else ""),
        f"  ops          {summary['ops']} committed ({summary['gave_up']} out of retries, {summary['failed']} unavailable)",
        f"  throughput   {summary['throughput']:.1f} ops/s",
        f"  latency ms   p50 {latency['p50']:.2f}  p95 {latency['p95']:.2f}  p99 {latency['p99']:.2f}  max {latency['max']:.2f}",
        f"  aborts       {summary['abort_rate']:.2%} of attempts; {summary['attempts_per_commit']:.2f} attempts per commit",
        f"  hops         {summary['hops']:.1f} messages on the critical path per op; "
        f"actor round trip {summary['rtt_ms']:.2f} ms -> ~{summary['messaging_ms']:.1f} ms of messaging per op",
        f"  cpu s        {cpu}",
        load_line(summary["load"], width=13),
    ]
    if summary.get("messages"):
        kinds = ", ".join(f"{kind} {count:g}" for kind, count in summary["messages"]["by_kind"].items())
        lines.insert(-2, f"  messages     {summary['messages']['total']:g} per op, all actors ({kinds}, ...)")
    if "bank_total_conserved" in summary:
        lines.append(f"  bank total   {'conserved' if summary['bank_total_conserved'] else 'VIOLATED'}")
    return "\n".join(lines)


def format_versus(raftline: dict, etcd: dict) -> str:
    """The raftline run and the etcd run of one bench, side by side, with raftline/etcd ratios."""
    def ratio(ours: float, theirs: float) -> str:
        return f"{ours / theirs:.2f}x" if theirs else "-"

    rows = [("throughput ops/s", raftline["throughput"], etcd["throughput"], ".1f")]
    rows += [(f"latency {name} ms", raftline["latency_ms"][name], etcd["latency_ms"][name], ".2f")
             for name in ("p50", "p95", "p99")]
    rows += [("aborts of attempts", raftline["abort_rate"], etcd["abort_rate"], ".2%"),
             ("cpu s, all processes", sum(raftline["cpu_s"].values()), sum(etcd["cpu_s"].values()), ".2f")]
    lines = [f"side by side: the same workload, clients and keys on etcd ({etcd['members']} members, loopback, "
             f"its v3 JSON gateway), run right after",
             f"  {'':<22} {'raftline':>10} {'etcd':>10} {'raftline/etcd':>14}"]
    for name, ours, theirs, spec in rows:
        lines.append(f"  {name:<22} {ours:>10{spec}} {theirs:>10{spec}} {ratio(ours, theirs):>14}")
    if "bank_total_conserved" in etcd:
        lines.append(f"  etcd bank total       {'conserved' if etcd['bank_total_conserved'] else 'VIOLATED'}")
    lines.append(load_line(etcd["load"], width=13))
    return "\n".join(lines)


def format_hog(quiet: dict, hogged: dict, etcd_quiet: dict | None = None, etcd_hogged: dict | None = None) -> str:
    """--hog: each system's run again under a busy loop on one core, and how
    much it slowed down (p50 hogged / quiet; throughput quiet / hogged)."""
    def slowdowns(before: dict, after: dict) -> tuple[float, float]:
        p50 = after["latency_ms"]["p50"] / before["latency_ms"]["p50"] if before["latency_ms"]["p50"] else 0.0
        rate = before["throughput"] / after["throughput"] if after["throughput"] else 0.0
        return p50, rate

    lines = ["under a CPU hog (a busy loop on one core), the same run again:",
             f"  {'':<10} {'p50 ms quiet':>13} {'hogged':>8} {'slowdown':>9}"
             f" {'ops/s quiet':>12} {'hogged':>8} {'slowdown':>9}"]
    runs = [("raftline", quiet, hogged)] + ([("etcd", etcd_quiet, etcd_hogged)] if etcd_hogged else [])
    found = {}
    for name, before, after in runs:
        found[name] = slowdowns(before, after)
        lines.append(f"  {name:<10} {before['latency_ms']['p50']:>13.2f} {after['latency_ms']['p50']:>8.2f} "
                     f"{found[name][0]:>8.2f}x {before['throughput']:>12.1f} {after['throughput']:>8.1f} "
                     f"{found[name][1]:>8.2f}x")
    if "etcd" in found and all(found["etcd"]):
        lines.append(f"  raftline's slowdown / etcd's: p50 {found['raftline'][0] / found['etcd'][0]:.2f}x, "
                     f"throughput {found['raftline'][1] / found['etcd'][1]:.2f}x")
    lines.append(load_line(hogged["load"], width=11))
    return "\n".join(lines)


ETCD_COLOR = "0.55"  # grey: raftline's own colours stay those of its runs without etcd


def per_second(records: list[list], seconds: int) -> list[list[float]]:
    """Committed operations' latencies (ms) by the whole second they finished in."""
    buckets: list[list[float]] = [[] for _ in range(seconds)]
    for start, latency, outcome, _, _ in records:
        if outcome == "ok" and start + latency < seconds:
            buckets[int(start + latency)].append(latency * 1000)
    return buckets


def plot(records: list[list], summary: dict, path: str, versus: list[list] | None = None) -> None:
    """Latency percentiles and throughput per second of the run; with `versus`
    (etcd's records of the same workload), its p50 and throughput beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Whole seconds only: a last, partial second drawn as a full bar is a dip that never happened.
    seconds = max(1, int(summary["duration_s"]))
    buckets = per_second(records, seconds)
    times = list(range(seconds))
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    for name, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        top.plot(times, [percentile(sorted(bucket), fraction) for bucket in buckets], label=f"raftline {name}")
    width = 0.9
    if versus is not None:
        theirs = per_second(versus, seconds)
        top.plot(times, [percentile(sorted(bucket), 0.5) for bucket in theirs], label="etcd p50", linestyle="--",
                 color=ETCD_COLOR)
        width = 0.45
        bottom.bar([time + width for time in times], [len(bucket) for bucket in theirs], width=width, label="etcd",
                   color=ETCD_COLOR)
    top.set_ylabel("latency (ms)")
    top.set_ylim(bottom=0)
    top.legend()
    bottom.bar(times, [len(bucket) for bucket in buckets], width=width, label="raftline", color="C0")
    bottom.set_ylabel("committed ops / s")
    bottom.set_xlabel("seconds into the run")
    if versus is not None:
        bottom.legend()
    figure.suptitle(f"raftline bench {summary['workload']}, {summary['clients']} client(s)"
                    + (", etcd beside it" if versus is not None else ""))
    figure.savefig(path)
    plt.close(figure)


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
    lines.append(load_line(result["load"]))
    return "\n".join(lines)


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
    lines.append(load_line(result["load"]))
    return "\n".join(lines)


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
            load_line(result["load"]),
        ]
    )


def format_failover(result: dict) -> str:
    victim = "the acting coordinator replica" if result["target"] == "coordinator" else "c1's leader"
    def line(what: str, ms: dict) -> str:
        return f"  {what:<28} p50 {ms['p50']:.0f} ms, max {ms['max']:.0f} ms"
    return "\n".join(
        [
            f"bench failover: 2 clusters x {result['replicas']} replicas; SIGKILL of {victim}, "
            f"{result['trials']} trials; time from the kill to the first success",
            line("put", result["put_ms"]),
            line("2-cluster transaction", result["txn_ms"]),
            line("status", result["status_ms"]),
            load_line(result["load"]),
        ]
    )


def format_catchup(result: dict) -> str:
    return "\n".join(
        [
            f"bench catchup: 1 cluster x {result['replicas']} replicas; a follower sleeps while "
            f"{CATCHUP_WRITERS} clients commit",
            f"  commits while asleep   {result['commits']} ({result['entries_missed']} log entries behind on waking)",
            f"  caught up after waking {result['caught_up_s']:.2f} s (status polled every 50 ms)",
            load_line(result["load"]),
        ]
    )


