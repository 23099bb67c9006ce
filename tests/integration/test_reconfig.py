"""Reconfiguration on real processes under live traffic (docs/DESIGN.md section 6):
bank transfers keep running while a cluster is added, another is removed and
a replica of every remaining cluster (its leader included) is replaced; the
bank total is conserved, every key reads back its last value, and nothing is
left prepared."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from actors.process import process_running
from clerk import connect
from coordinator.system import start
from raftline.workloads import OPENING_BALANCE
from tests.integration.conftest import admin_options, system_pids, wait_for, write_topology
from tests.integration.transfers import ACCOUNTS, Transfers, total

PLAIN_KEYS = [f"plain-{number:03d}" for number in range(240)]
LOAD_BATCH = 40






def commits_during(workers: list[Transfers], action):
    """Run `action` and return its result with the commits made meanwhile."""
    before = sum(worker.committed for worker in workers)
    result = action()
    return result, sum(worker.committed for worker in workers) - before


def replicas_of(status: dict, cluster: str) -> dict:
    return status["clusters"][cluster]["replicas"]


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    directory = tmp_path_factory.mktemp("reconfig")
    cluster = start(write_topology(directory, snapshot_entries=300), data_dir=directory / "data", admin_port=0)
    seen_pids = set(system_pids(cluster))
    yield cluster, directory / "data", seen_pids
    seen_pids |= system_pids(cluster)
    cluster.stop()
    leftovers = [pid for pid in seen_pids if process_running(pid)]
    assert not leftovers, f"processes left behind: {leftovers}"


def test_reconfiguration_under_bank_transfers(system):
    cluster, data_dir, seen_pids = system
    with connect(admin=cluster.admin) as store:
        with store.transaction() as txn:
            for account in ACCOUNTS:
                txn.put(account, OPENING_BALANCE)
        for start_at in range(0, len(PLAIN_KEYS), LOAD_BATCH):
            with store.transaction() as txn:
                for key in PLAIN_KEYS[start_at : start_at + LOAD_BATCH]:
                    txn.put(key, {"key": key, "generation": 0})

        workers = [Transfers(cluster, seed) for seed in (1, 2)]
        for worker in workers:
            worker.start()
        wait_for(lambda: all(worker.committed for worker in workers), timeout=30)

        steps: list[str] = []
        added, during_add = commits_during(workers, lambda: cluster.add_cluster(progress=lambda job: steps.append(job["step"])))
        status = cluster.status()
        seen_pids |= system_pids(cluster)
        counts = {name: len(info["slots"]) for name, info in status["clusters"].items()}
        assert sorted(counts.values()) == [5, 5, 6], counts
        assert counts[added] == 5
        assert steps, "add_cluster reported no progress"

        _, during_remove = commits_during(workers, lambda: cluster.remove_cluster("c1"))
        status = cluster.status()
        assert "c1" not in status["clusters"]
        assert sorted(len(info["slots"]) for info in status["clusters"].values()) == [8, 8]

        # A second write in the middle of it all: every key must read back this value.
        for start_at in range(0, len(PLAIN_KEYS), LOAD_BATCH):
            with store.transaction() as txn:
                for key in PLAIN_KEYS[start_at : start_at + LOAD_BATCH]:
                    txn.put(key, {"key": key, "generation": 1})

        for name in sorted(status["clusters"]):
            leader = cluster.leader(name)
            newcomer = cluster.add_replica(name)
            seen_pids |= system_pids(cluster)
            assert replicas_of(cluster.status(), name)[newcomer]["role"] in ("follower", "leader")
            _, during_replace = commits_during(workers, lambda: cluster.remove_replica(leader))
            assert leader not in replicas_of(cluster.status(), name)
            assert during_replace >= 0

        for worker in workers:
            worker.stopping.set()
        for worker in workers:
            worker.join(timeout=60)
        assert not any(worker.is_alive() for worker in workers), "a transfer is stuck"
        assert [error for worker in workers for error in worker.errors] == []
        assert during_add > 0 and during_remove > 0, "transfers stalled while slots moved"

        assert total(store) == OPENING_BALANCE * len(ACCOUNTS)
        with store.transaction() as txn:
            for key in PLAIN_KEYS:
                assert txn.get(key) == {"key": key, "generation": 1}

    def settled():
        clusters = cluster.status()["clusters"].values()
        return all(replica["prepared"] == 0 for info in clusters for replica in info["replicas"].values())

    wait_for(settled, timeout=30)
    removed = sorted(path.name for path in (data_dir / "removed").iterdir())
    assert any(name.startswith("c1-r") for name in removed), removed
    print(
        f"\nreconfiguration: {sum(w.committed for w in workers)} transfers committed, "
        f"slowest {max(w.slowest for w in workers):.2f} s, {during_add} during add-cluster, "
        f"{during_remove} during remove-cluster"
    )


def test_cli_reconfiguration_commands_report_progress_and_errors(system):
    cluster, _, seen_pids = system
    admin = admin_options(cluster)

    def raftline(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "raftline.cli", *args, *admin],
            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        )

    name = sorted(cluster.status()["clusters"])[0]
    result = raftline("add-replica", name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "add-replica printed no progress"
    seen_pids |= system_pids(cluster)
    newest = sorted(replicas_of(cluster.status(), name), key=lambda rid: int(rid.rsplit("r", 1)[1]))[-1]
    result = raftline("remove-replica", newest)
    assert result.returncode == 0, result.stderr

    unknown = raftline("remove-cluster", "nosuch")
    assert unknown.returncode != 0 and "nosuch" in unknown.stderr and "Traceback" not in unknown.stderr
    status = json.loads(raftline("status", "--json").stdout)
    assert newest not in status["clusters"][name]["replicas"]


class StopWaiting(Exception):
    """Raised from a progress callback to stop waiting for a job (it goes on)."""


def test_a_job_interrupted_by_a_whole_system_restart_resumes(tmp_path):
    """add-cluster is stopped mid-way (c1 asleep, so the job is stuck on a
    move off c1 after c2's first move); after a restart on the same data the
    coordinator resumes the persisted job, and no key is lost or duplicated."""
    topology = write_topology(tmp_path, snapshot_entries=300)
    cluster = start(topology, data_dir=tmp_path / "data", admin_port=0)
    seen_pids = set(system_pids(cluster))
    try:
        keys = [f"restart-{number:04d}" for number in range(400)]
        with connect(admin=cluster.admin) as store:
            for begin in range(0, len(keys), LOAD_BATCH):
                with store.transaction() as txn:
                    for key in keys[begin : begin + LOAD_BATCH]:
                        txn.put(key, key.upper())
        for replica in replicas_of(cluster.status(), "c1"):
            cluster.sleep(replica, 30)

        def stuck_on_c1(job: dict) -> None:
            if job["moves_done"] >= 1 and job["moves"][job["moves_done"]][1] == "c1":
                raise StopWaiting(job["id"])

        with pytest.raises(StopWaiting) as stopped:
            cluster.add_cluster(progress=stuck_on_c1, timeout=60)
        job_id = str(stopped.value)
        seen_pids |= system_pids(cluster)
        cluster.stop()

        cluster = start(topology, data_dir=tmp_path / "data", admin_port=0)
        seen_pids |= system_pids(cluster)
        def finished() -> dict | None:
            return next((j for j in cluster.jobs() if j["id"] == job_id and j["state"] != "running"), None)

        job = wait_for(finished, 60)
        assert job["state"] == "done", job
        assert job["moves_done"] == len(job["moves"]) == 5
        counts = {name: len(info["slots"]) for name, info in cluster.status()["clusters"].items()}
        assert sorted(counts.values()) == [5, 5, 6]
        with connect(admin=cluster.admin) as store, store.transaction() as txn:
            assert [txn.get(key) for key in keys] == [key.upper() for key in keys]
    finally:
        seen_pids |= system_pids(cluster)
        cluster.stop()
        leftovers = [pid for pid in seen_pids if process_running(pid)]
        assert not leftovers, f"processes left behind: {leftovers}"
