"""Real processes on loopback: every system gets a free admin port and its own
data directory, and is stopped in teardown, leaving no process behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from actors.process import process_running
from clerk import connect
from coordinator.admin import listener_session, parse_admin, prepare_environment, session_processes
from coordinator.system import start

prepare_environment()  # before any test module imports thespian

TEST_TOPOLOGY = """\
admin_port: 0
data_dir: ./data
slots: 16
clusters:
  c1: {{replicas: 3}}
  c2: {{replicas: 3}}
raft:
  tick_ms: 50
  heartbeat_ticks: 2
  election_ticks: [6, 12]
  snapshot_entries: {snapshot_entries}
transactions:
  prepare_timeout_ms: 600
  read_from: leader
storage:
  engine: sqlite
  fsync: false
"""


def write_topology(directory: Path, snapshot_entries: int = 10000) -> Path:
    path = directory / "topology.yaml"
    path.write_text(TEST_TOPOLOGY.format(snapshot_entries=snapshot_entries))
    return path


def admin_options(cluster) -> tuple[str, ...]:
    """The command-line options that reach `cluster` from another directory."""
    return ("--admin", cluster.admin, "--secret-file", os.fspath(cluster.secret_file))


def wait_for(condition, timeout: float = 20.0, interval: float = 0.1, explain=None):
    """Poll `condition` until it returns something truthy; fail the test after
    `timeout`, with what `explain()` says of the state it last saw, if given."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout:g} s" + (f": {explain()}" if explain is not None else ""))


def system_pids(cluster) -> set[int]:
    """Every process of a running system on this host: those its status names
    (admin, coordinator replicas, servers), and every process of its admin's
    session (the logger is named nowhere)."""
    status = cluster.status()
    pids = {status["admin_pid"]}
    pids |= {replica["pid"] for replica in status["coordinator"]["replicas"].values() if replica["pid"]}
    for info in status["clusters"].values():
        pids |= {replica["pid"] for replica in info["replicas"].values() if replica["pid"]}
    return pids | session_processes(listener_session(parse_admin(cluster.admin)[1]))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A 2-cluster x 3-replica system shared by a module's tests."""
    directory = tmp_path_factory.mktemp("system")
    system = start(write_topology(directory, snapshot_entries=200), data_dir=directory / "data", admin_port=0)
    pids = system_pids(system)
    yield system
    system.stop()
    leftovers = [pid for pid in pids if process_running(pid)]
    assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture
def store(cluster):
    with connect(admin=cluster.admin) as connection:
        yield connection


def unique(name: str) -> str:
    """Keys unique to one test, so tests sharing a system do not interfere."""
    return f"{name}-{os.getpid()}-{time.monotonic_ns()}"
