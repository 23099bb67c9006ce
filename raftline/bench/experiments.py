"""Bench experiments, each on systems of its own: election (leader kills per
timeout range and cluster size), sweep (serial put and get per cluster size),
reconfig (a replica and a cluster added under writers), catchup (a sleeping
follower repairing its log), failover (SIGKILL of the acting coordinator
replica or a cluster leader, and the time until puts, 2-cluster
transactions and status work again)."""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from pathlib import Path

from raftline.bench.measure import measure, percentile
from raftline.harness import CLIENT_GRACE_SECONDS, PROGRESS_INTERVAL, preload, progress_line, system_for_run

ELECTION_TIMEOUT = 30.0
CATCHUP_MARGIN = 1.0
"""Seconds before the sleeper wakes at which the writers stop and its backlog is measured."""
"""Seconds a cluster has to elect a leader (or a follower to catch up) before the experiment gives up."""


# -- election and sweep --------------------------------------------------------------------------


def run_election(args, timeouts: list[tuple[int, int]], replica_counts: list[int], directory: Path) -> dict:
    """Per timeout range x cluster size: kill the leader `trials` times and time
    the new leader's appearance in status and the first write committed after."""
    from clerk.client import connect

    rows = []
    for election_ms in timeouts:
        for replicas in replica_counts:
            label = f"election {election_ms[0]}-{election_ms[1]} ms x {replicas}"
            system_dir = directory / f"election-{election_ms[0]}-{election_ms[1]}-{replicas}"
            elections, writes = [], []
            with system_for_run(
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
    """(seconds to a new leader, seconds to the first committed write) after a
    kill. The leader counts from when status shows it or the write commits,
    whichever is first: status is polled, and a commit needs a leader."""
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
    return min(elected[0], written), written


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


def run_sweep(args, replica_counts: list[int], directory: Path) -> dict:
    """Per cluster size: a serial put run and a serial get run on a fresh system."""
    rows = []
    for replicas in replica_counts:
        system_dir = directory / f"sweep-{replicas}"
        with system_for_run(system_dir, admin=None, clusters=args.clusters or 1, replicas=replicas) as cluster:
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


# -- reconfiguration ----------------------------------------------------------------------------

MOVING_SLOT_KEYS = 1000
"""Keys put into the first slot the new cluster takes, so its move is timed at that size."""


def run_reconfig(args, replicas: int, directory: Path) -> dict:
    """On a new 2-cluster system holding --keys keys in c1: time adding a replica
    to c1, then add a cluster while two serial clients write, one to a key of the
    first slot to move (MOVING_SLOT_KEYS keys) and one to a key of a slot that
    stays; report each move's time and the clients' longest stalls."""
    from actors.keyspace import slot_of
    from clerk.client import connect
    from coordinator.shardmap import ShardMap, plan_rebalance

    total_keys = max(args.keys or 10_000, MOVING_SLOT_KEYS + 1)
    with system_for_run(directory / "system", admin=None, clusters=2, replicas=replicas) as cluster:
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


# -- log repair -----------------------------------------------------------------------------------

CATCHUP_WRITERS = 8
CATCHUP_TARGET = 10_000
"""Commits a sleeping follower should miss; fewer when --duration ends first."""


def run_catchup(args, replicas: int, directory: Path) -> dict:
    """One cluster: a follower sleeps --duration seconds while CATCHUP_WRITERS
    clients commit puts (up to CATCHUP_TARGET); then time from its waking until
    it has applied everything committed while it slept."""
    from clerk.client import connect

    with system_for_run(directory / "system", admin=None, clusters=1, replicas=replicas) as cluster:
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
        while not enough.is_set() and time.monotonic() < woke_at - CATCHUP_MARGIN:
            progress_line(f"catchup: {sum(commits)} commits while {sleeper} sleeps")
            time.sleep(PROGRESS_INTERVAL * 5)
        enough.set()
        # Measured at once, while it still sleeps: a writer's last put may take a while under load.
        backlog = cluster.status()["clusters"]["c1"]
        if not backlog["replicas"][sleeper]["asleep"]:
            raise TimeoutError(f"{sleeper} woke before its backlog could be measured (the machine is too busy)")
        target = backlog["replicas"][backlog["leader"]]["commit"]
        missed = target - backlog["replicas"][sleeper]["applied"]
        for writer in writers:
            writer.join(CLIENT_GRACE_SECONDS)
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




# -- failover ------------------------------------------------------------------------------------


FAILOVER_TARGETS = ("coordinator", "leader")


def run_failover(args, replicas: int, directory: Path) -> dict:
    """Per trial: SIGKILL the acting coordinator replica (--target coordinator)
    or c1's leader (--target leader), then time, from the kill, the first
    committed put, the first committed 2-cluster transaction and the first
    status answer, each from its own client connected beforehand."""
    with system_for_run(directory / "system", admin=None, clusters=2, replicas=replicas) as cluster:
        keys = keys_per_cluster(cluster.status())
        puts, txns, statuses = [], [], []
        for trial in range(1, args.trials + 1):
            put_s, txn_s, status_s = kill_once(cluster, args.target, keys, trial)
            puts.append(put_s * 1000)
            txns.append(txn_s * 1000)
            statuses.append(status_s * 1000)
            progress_line(f"failover {args.target}: trial {trial}/{args.trials}: put {put_s * 1000:.0f} ms, "
                          f"2-cluster txn {txn_s * 1000:.0f} ms, status {status_s * 1000:.0f} ms")

    def summary(values: list[float]) -> dict:
        return {"p50": round(statistics.median(values), 1), "max": round(max(values), 1)}

    return {"workload": "failover", "target": args.target, "replicas": replicas, "trials": args.trials,
            "put_ms": summary(puts), "txn_ms": summary(txns), "status_ms": summary(statuses),
            "load": round(os.getloadavg()[0], 2)}


def keys_per_cluster(status: dict) -> tuple[str, str]:
    """A key owned by c1 and one owned by c2."""
    from actors.keyspace import slot_of

    owner = {slot: name for name, info in status["clusters"].items() for slot in info["slots"]}
    found: dict[str, str] = {}
    number = 0
    while len(found) < 2:
        key = f"failover-{number}"
        found.setdefault(owner[slot_of(key, len(owner))], key)
        number += 1
    return found["c1"], found["c2"]


def kill_once(cluster, target: str, keys: tuple[str, str], trial: int) -> tuple[float, float, float]:
    """(put, 2-cluster transaction, status) seconds from one kill to each's first success."""
    from clerk.client import connect
    from clerk.errors import RaftlineError
    from coordinator.admin import Cluster

    victim = wait_for_whole_system(cluster, target)
    probes = {"put": lambda store: store.put(keys[0], trial),
              "txn": lambda store: store.transactional(retries=100)(lambda txn: [txn.put(key, trial) for key in keys])(),
              "status": None}
    ready = threading.Barrier(len(probes) + 1)
    killed = threading.Event()
    taken: dict[str, float] = {}

    def probe(name: str) -> None:
        # Each with its own connection (Thespian handles are per thread), made
        # and used once before the kill, as a client that was already working.
        handle = Cluster(cluster.admin) if name == "status" else connect(admin=cluster.admin)
        handle.status() if name == "status" else probes[name](handle)
        ready.wait()
        killed.wait()
        deadline = killed_at[0] + ELECTION_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if name == "status":
                    handle.status(timeout=5.0)
                else:
                    probes[name](handle)
                taken[name] = time.monotonic() - killed_at[0]
                break
            except RaftlineError:
                continue
        if name != "status":
            handle.close()

    killed_at = [0.0]
    threads = [threading.Thread(target=probe, args=(name,), daemon=True) for name in probes]
    for thread in threads:
        thread.start()
    ready.wait()
    killed_at[0] = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    killed.set()
    for thread in threads:
        thread.join(ELECTION_TIMEOUT + 5)
    missing = [name for name in probes if name not in taken]
    if missing:
        raise TimeoutError(f"no {', '.join(missing)} succeeded within {ELECTION_TIMEOUT:g} s of the kill")
    return taken["put"], taken["txn"], taken["status"]


def wait_for_whole_system(cluster, target: str) -> int:
    """The PID to kill, once every coordinator replica and server runs again
    (the previous trial's victim re-created), so each trial starts whole."""
    deadline = time.monotonic() + ELECTION_TIMEOUT
    while time.monotonic() < deadline:
        status = cluster.status()
        group = status["coordinator"]
        servers_up = all(replica["alive"] for info in status["clusters"].values()
                         for replica in info["replicas"].values())
        group_up = all(info["role"] != "down" and info["pid"] for info in group["replicas"].values())
        leader = status["clusters"]["c1"]["leader"]
        if servers_up and group_up and leader:
            if target == "coordinator":
                return group["replicas"][group["leader"]]["pid"]
            return status["clusters"]["c1"]["replicas"][leader]["pid"]
        time.sleep(0.2)
    raise TimeoutError(f"the system was not whole again within {ELECTION_TIMEOUT:g} s")
