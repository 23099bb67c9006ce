"""Three actor systems on this one machine form a convention, as three hosts
would (each its own admin port, node name and data directory): the leader
started with `start`, two members with `raftline join`. Two clusters of
three replicas are spread over them. Bank transfers run while one member's
whole actor system is SIGKILLed: the clusters keep committing on the other
two hosts; the member joins again and its replicas catch up; the total is
conserved and no process is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.process import process_running
from coordinator.shardmap import slot_of
from coordinator.system import free_port, session_processes, start, stop_system
from tests.integration.conftest import system_pids, wait_for
from tests.integration.test_reconfig import ACCOUNTS, OPENING_BALANCE, Transfers, total

TOPOLOGY = """\
slots: 16
hosts:
  - {{name: a, address: 127.0.0.1, admin_port: {a}}}
  - {{name: b, address: 127.0.0.1, admin_port: {b}}}
  - {{name: c, address: 127.0.0.1, admin_port: {c}}}
clusters:
  c1: {{replicas: 3}}
  c2: {{replicas: 3}}
raft: {{tick_ms: 50, heartbeat_ticks: 2, election_ticks: [6, 12], snapshot_entries: 300}}
transactions: {{prepare_timeout_ms: 600}}
storage: {{engine: sqlite, fsync: false}}
"""


def raftline(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clerk.cli", *args], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def member_session(data_dir: Path) -> int:
    return json.loads((data_dir / "pids.json").read_text())["session"]


def hosts_pids(status: dict, host: str) -> set[int]:
    return {info["pid"] for cluster in status["clusters"].values() for info in cluster["replicas"].values()
            if info["host"] == host and info["pid"]}


def key_of(cluster: str, status: dict, slots: int) -> str:
    """A key that cluster `cluster` owns."""
    owned = set(status["clusters"][cluster]["slots"])
    return next(key for key in (f"probe-{n}" for n in range(10_000)) if slot_of(key, slots) in owned)


@pytest.fixture
def three_hosts(tmp_path):
    ports = {name: free_port() for name in "abc"}
    topology = tmp_path / "topology.yaml"
    topology.write_text(TOPOLOGY.format(**ports))
    dirs = {name: tmp_path / name for name in "abc"}
    seen: set[int] = set()
    sessions: set[int] = set()
    cluster = start(topology, data_dir=dirs["a"])
    try:
        yield cluster, topology, ports, dirs, seen, sessions
    finally:
        for name in "bc":
            if (dirs[name] / "pids.json").exists():
                sessions.add(member_session(dirs[name]))
        try:
            seen |= system_pids(cluster)
        except Exception:  # noqa: BLE001 - already down: what was seen is all there is
            pass
        cluster.stop()
        for name in "bc":
            try:
                stop_system(f"127.0.0.1:{ports[name]}", dirs[name])
            except Exception:  # noqa: BLE001 - a member killed by the test and not back
                pass
        for session in sessions:
            seen |= session_processes(session)
        for pid in seen:
            if process_running(pid):
                os.kill(pid, signal.SIGKILL)
        leftovers = [pid for pid in seen if process_running(pid)]
        assert not leftovers, f"processes left behind: {leftovers}"


def join(topology: Path, ports: dict, dirs: dict, name: str) -> None:
    result = raftline("join", "-t", os.fspath(topology), "--leader", f"127.0.0.1:{ports['a']}",
                      "--name", name, "--data-dir", os.fspath(dirs[name]))
    assert result.returncode == 0, result.stderr
    assert f"{name} joined" in result.stdout


def test_losing_a_host_keeps_every_cluster_committing_and_it_catches_up_on_return(three_hosts):
    cluster, topology, ports, dirs, seen, sessions = three_hosts
    booted = cluster.status()
    assert {name: host["up"] for name, host in booted["hosts"].items()} == {"a": True, "b": False, "c": False}
    for name in "bc":
        join(topology, ports, dirs, name)
        sessions.add(member_session(dirs[name]))
    status = cluster.wait_ready(60)
    for info in status["clusters"].values():
        assert sorted(replica["host"] for replica in info["replicas"].values()) == ["a", "b", "c"]
    seen |= system_pids(cluster)
    table = raftline("status", "--admin", cluster.admin)
    assert "host b (127.0.0.1:" in table.stdout and " b " in table.stdout, table.stdout

    with cluster.connect() as store:
        with store.transaction() as txn:
            for account in ACCOUNTS:
                txn.put(account, OPENING_BALANCE)
        workers = [Transfers(cluster, seed) for seed in (1, 2)]
        for worker in workers:
            worker.start()
        wait_for(lambda: all(worker.committed for worker in workers), timeout=30)

        # The whole of host b: its admin, its logger and every server on it.
        victims = session_processes(member_session(dirs["b"])) | hosts_pids(cluster.status(), "b")
        assert len(victims) >= 4, victims
        killed_at = time.monotonic()
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        probes = {name: key_of(name, status, 16) for name in status["clusters"]}
        for name, key in probes.items():
            store.put(key, name)  # every cluster commits with b gone
        recovered = time.monotonic()
        noticed = wait_for(lambda: not cluster.status()["hosts"]["b"]["up"] and time.monotonic(), timeout=30)
        before = sum(worker.committed for worker in workers)
        wait_for(lambda: sum(worker.committed for worker in workers) > before + 5, timeout=30)
        down = cluster.status()
        assert all(info["role"] == "down" and info["host_down"]
                   for c in down["clusters"].values() for info in c["replicas"].values() if info["host"] == "b")

        join(topology, ports, dirs, "b")
        sessions.add(member_session(dirs["b"]))

        def caught_up() -> bool:
            now = cluster.status()
            for info in now["clusters"].values():
                head = info["replicas"][info["leader"]]["commit"] if info["leader"] else None
                for replica in info["replicas"].values():
                    if head is None or not replica["alive"] or replica["applied"] < head - 5:
                        return False
            return now["hosts"]["b"]["up"]

        wait_for(caught_up, timeout=45)
        seen |= system_pids(cluster)
        after_return = sum(worker.committed for worker in workers)
        wait_for(lambda: sum(worker.committed for worker in workers) > after_return + 5, timeout=30)

        for worker in workers:
            worker.stopping.set()
        for worker in workers:
            worker.join(timeout=60)
        assert not any(worker.is_alive() for worker in workers), "a transfer is stuck"
        assert [error for worker in workers for error in worker.errors] == []
        assert total(store) == OPENING_BALANCE * len(ACCOUNTS)
        for name, key in probes.items():
            assert store.get(key) == name
    print(f"\nmulti-host: host b noticed dead after {noticed - killed_at:.2f} s; every cluster committed again "
          f"{recovered - killed_at:.2f} s after the kill; {sum(w.committed for w in workers)} transfers")
