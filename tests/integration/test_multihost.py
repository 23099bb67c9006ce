"""Actor systems on this one machine form a convention, as hosts would
(each its own admin port, node name and data directory): the leader started
with `start`, the members with `raftline join`. Two clusters of three
replicas are spread over them. Bank transfers run while one member's whole
actor system is SIGKILLed:
- three hosts: the clusters keep committing on the other two; under
  `on_host_loss: replace` no host can take b's replicas without breaking
  `spread: hosts`, which is reported and nothing is started; the member
  joins again and its replicas catch up;
- four hosts, `on_host_loss: replace`: the lost replicas are replaced on the
  hosts their clusters lack, then removed;
- three hosts, each in its own network namespace and address (root and `ip`
  needed; skipped otherwise): as the first.
Every time the total is conserved and no process is left behind."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from actors.keyspace import slot_of
from actors.process import process_running
from clerk import connect
from clerk.errors import AdminError, Unavailable
from coordinator.admin import LOOPBACK, free_port, session_processes
from coordinator.system import start
from raftline.workloads import OPENING_BALANCE
from tests.integration.conftest import admin_options, system_pids, wait_for
from tests.integration.transfers import ACCOUNTS, Transfers, total

TOPOLOGY = """\
slots: 16
hosts:
{hosts}clusters:
  c1: {{replicas: 3}}
  c2: {{replicas: 3}}
raft: {{tick_ms: 50, heartbeat_ticks: 2, election_ticks: [6, 12], snapshot_entries: 300}}
transactions: {{prepare_timeout_ms: 600}}
storage: {{engine: sqlite, fsync: false}}
{extra}"""
REPLACING = "placement: {on_host_loss: replace, replace_after_ms: 1000}\n"
NAMESPACE_PORT = 19000
"""Every host's admin port under namespaces: each host has its own address."""
NAMESPACE_SUBNET = "10.213.0"
"""Private to the test's namespaces: nothing of it is in the root namespace."""


def topology_text(addresses: dict[str, tuple[str, int]], extra: str = "") -> str:
    hosts = "".join(f"  - {{name: {name}, address: {address}, admin_port: {port}}}\n"
                    for name, (address, port) in addresses.items())
    return TOPOLOGY.format(hosts=hosts, extra=extra)


def raftline(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "raftline.cli", *args], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def member_session(data_dir: Path) -> int:
    return json.loads((data_dir / "pids.json").read_text())["session"]


def hosts_pids(status: dict, host: str) -> set[int]:
    return {info["pid"] for cluster in status["clusters"].values() for info in cluster["replicas"].values()
            if info["host"] == host and info["pid"]}


def every_pid_known(status: dict) -> dict | None:
    """`status` once every cluster has a leader and every server has reported its process."""
    clusters = status["clusters"].values()
    known = all(info["leader"] and all(server["pid"] for server in info["replicas"].values()) for info in clusters)
    return status if clusters and known else None


def key_of(cluster: str, status: dict, slots: int) -> str:
    """A key that cluster `cluster` owns."""
    owned = set(status["clusters"][cluster]["slots"])
    return next(key for key in (f"probe-{n}" for n in range(10_000)) if slot_of(key, slots) in owned)


class Convention:
    """Actor systems on this machine, one per host of `addresses` (the first is
    the convention leader, started with `start` from this process; the
    others join, each run with its `prefixes` entry before the command);
    teardown stops every one and fails the test if any of their processes is left."""

    def __init__(self, tmp_path: Path, addresses: dict[str, tuple[str, int]], extra: str = "",
                 prefixes: dict[str, tuple[str, ...]] | None = None, namespaces: dict[str, str] | None = None):
        self.names = list(addresses)
        self.addresses = addresses
        self.prefixes = prefixes or {}
        here = "/proc/thread-self/ns/net"
        self.namespaces = {name: os.stat((namespaces or {}).get(name, here)).st_ino for name in self.names}
        """Host -> the inode of the network namespace its processes run in."""
        self.topology = tmp_path / "topology.yaml"
        self.topology.write_text(topology_text(addresses, extra))
        self.dirs = {name: tmp_path / name for name in self.names}
        self.seen: set[int] = set()
        self.sessions: set[int] = set()
        self.cluster = start(self.topology, data_dir=self.dirs[self.names[0]])

    def join(self, name: str) -> None:
        address, port = self.addresses[self.names[0]]
        result = raftline("join", "-t", os.fspath(self.topology), "--leader", f"{address}:{port}",
                          "--name", name, "--data-dir", os.fspath(self.dirs[name]),
                          "--secret-file", os.fspath(self.cluster.secret_file), prefix=self.prefixes.get(name, ()))
        assert result.returncode == 0, result.stderr
        assert f"{name} joined" in result.stdout
        self.sessions.add(member_session(self.dirs[name]))

    def assert_in_namespaces(self, status: dict) -> None:
        """Every server runs in its host's network namespace."""
        for info in status["clusters"].values():
            for replica, server in info["replicas"].items():
                where = os.stat(f"/proc/{server['pid']}/ns/net").st_ino
                assert where == self.namespaces[server["host"]], (replica, server["host"])

    def kill_host(self, name: str) -> float:
        """SIGKILL the whole of host `name`: its admin, its logger and every
        server on it; returns when (time.monotonic())."""
        victims = session_processes(member_session(self.dirs[name])) | hosts_pids(self.cluster.status(), name)
        assert len(victims) >= 4, victims
        killed_at = time.monotonic()
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        return killed_at

    def teardown(self) -> None:
        members = self.names[1:]
        for name in members:
            if (self.dirs[name] / "pids.json").exists():
                self.sessions.add(member_session(self.dirs[name]))
        try:
            self.seen |= system_pids(self.cluster)
        except Exception:  # noqa: BLE001 - already down: what was seen is all there is
            pass
        self.cluster.stop()
        for name in members:
            # Fails for a member killed by the test and not back: its processes are reaped below.
            raftline("stop", "--admin", f"{LOOPBACK}:{self.addresses[name][1]}", "--data-dir",
                     os.fspath(self.dirs[name]), prefix=self.prefixes.get(name, ()))
        for session in self.sessions:
            self.seen |= session_processes(session)
        for pid in self.seen:
            if process_running(pid):
                os.kill(pid, signal.SIGKILL)
        leftovers = [pid for pid in self.seen if process_running(pid)]
        assert not leftovers, f"processes left behind: {leftovers}"


@contextmanager
def convention(tmp_path: Path, addresses: dict[str, tuple[str, int]], extra: str = "", prefixes=None,
               namespaces=None):
    hosts = Convention(tmp_path, addresses, extra, prefixes, namespaces)
    try:
        yield hosts
    finally:
        hosts.teardown()


@pytest.fixture
def three_hosts(tmp_path):
    with convention(tmp_path, {name: (LOOPBACK, free_port()) for name in "abc"}, REPLACING) as hosts:
        yield hosts


@pytest.fixture
def four_hosts_replacing(tmp_path):
    with convention(tmp_path, {name: (LOOPBACK, free_port()) for name in "abcd"}, REPLACING) as hosts:
        yield hosts


def open_accounts_and_transfer(cluster, store) -> list[Transfers]:
    with store.transaction() as txn:
        for account in ACCOUNTS:
            txn.put(account, OPENING_BALANCE)
    return run_transfers(cluster)


def run_transfers(cluster, seeds=(1, 2)) -> list[Transfers]:
    workers = [Transfers(cluster, seed) for seed in seeds]
    for worker in workers:
        worker.start()
    wait_for(lambda: all(worker.committed for worker in workers), timeout=30)
    return workers


def committed(workers) -> int:
    return sum(worker.committed for worker in workers)


def keep_committing(workers, timeout: float = 30) -> None:
    before = committed(workers)
    wait_for(lambda: committed(workers) > before + 5, timeout=timeout)


def stop_transfers(workers) -> None:
    for worker in workers:
        worker.stopping.set()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers), "a transfer is stuck"
    assert [error for worker in workers for error in worker.errors] == []


def test_losing_a_host_keeps_every_cluster_committing_and_it_catches_up_on_return(three_hosts):
    kill_and_rejoin(three_hosts, "multi-host")


def test_the_same_with_each_host_in_its_own_network_namespace(three_namespaces):
    kill_and_rejoin(three_namespaces, "namespaces")


def kill_and_rejoin(hosts: Convention, label: str) -> None:
    cluster = hosts.cluster
    # One coordinator replica of three runs: no majority until a host joins, and status says so.
    waiting = raftline("status", *admin_options(cluster))
    assert waiting.returncode != 0
    assert "no majority of the coordinator's replicas runs: coordinator-1 (host b), coordinator-2 (host c)" \
        in waiting.stderr, waiting.stderr
    hosts.join("b")

    def b_up() -> bool:
        state = status_or_none(cluster)
        return state is not None and {name: host["up"] for name, host in state["hosts"].items()} == {
            "a": True, "b": True, "c": False}

    wait_for(b_up, timeout=30)
    with pytest.raises(AdminError, match="a cluster of 4 replicas needs 4 hosts up"):
        cluster.add_cluster(replicas=4)  # refused before anything starts: spread: hosts
    hosts.join("c")
    cluster.wait_ready(60)
    status = wait_for(lambda: every_pid_known(cluster.status()), timeout=30)
    for info in status["clusters"].values():
        assert sorted(replica["host"] for replica in info["replicas"].values()) == ["a", "b", "c"]
    hosts.seen |= system_pids(cluster)
    hosts.assert_in_namespaces(status)
    table = raftline("status", *admin_options(cluster))
    address, port = hosts.addresses["b"]
    assert f"host b ({address}:{port}" in table.stdout and " b " in table.stdout, table.stdout

    with connect(admin=cluster.admin) as store:
        workers = open_accounts_and_transfer(cluster, store)

        killed_at = hosts.kill_host("b")
        probes = {name: key_of(name, status, 16) for name in status["clusters"]}
        for name, key in probes.items():
            store.put(key, name)  # every cluster commits with b gone
        recovered = time.monotonic()
        noticed = wait_for(lambda: not cluster.status()["hosts"]["b"]["up"] and time.monotonic(), timeout=30)
        keep_committing(workers)
        down = cluster.status()
        assert all(info["role"] == "down" and info["host_down"]
                   for c in down["clusters"].values() for info in c["replicas"].values() if info["host"] == "b")
        # Past replace_after_ms: a and c hold both clusters already, so b's replicas are not replaced.
        blocked = wait_for(lambda: cluster.status()["hosts"]["b"]["replacement"], timeout=15)
        for name in ("c1", "c2"):
            assert f"no host can take a replica of {name} without breaking spread: hosts" in blocked, blocked
        assert "add a host with raftline join" in blocked
        assert cluster.status()["jobs"] == []

        hosts.join("b")

        seen: list[dict] = [{}]

        def caught_up() -> bool:
            now = seen[0] = cluster.status()
            for info in now["clusters"].values():
                head = info["replicas"][info["leader"]]["commit"] if info["leader"] else None
                for replica in info["replicas"].values():
                    if head is None or not replica["alive"] or replica["applied"] < head - 5:
                        return False
            return now["hosts"]["b"]["up"]

        wait_for(caught_up, timeout=45, explain=lambda: replicas_seen(seen[0]))
        wait_for(lambda: coordinator_replica_on(cluster.status(), "b")["role"] == "follower", timeout=30)
        back = cluster.status()
        assert back["hosts"]["b"]["replacement"] == "" and back["jobs"] == []
        hosts.seen |= system_pids(cluster)
        keep_committing(workers)
        stop_transfers(workers)
        assert total(store) == OPENING_BALANCE * len(ACCOUNTS)
        for name, key in probes.items():
            assert store.get(key) == name
    print(f"\n{label}: host b noticed dead after {noticed - killed_at:.2f} s; every cluster committed again "
          f"{recovered - killed_at:.2f} s after the kill; {committed(workers)} transfers")


def replicas_seen(status: dict) -> str:
    """Each replica's role, liveness, applied index and host, and each host's state, for a failure message."""
    replicas = {replica: (info["role"], info["alive"], info["applied"], info["host"])
                for cluster in status.get("clusters", {}).values() for replica, info in cluster["replicas"].items()}
    hosts = {name: host["up"] for name, host in status.get("hosts", {}).items()}
    return f"replicas {replicas}; hosts up {hosts}; acting {status.get('coordinator', {}).get('leader')}"


def status_or_none(cluster) -> dict | None:
    """The status, or None while no coordinator replica acts."""
    try:
        return cluster.status(timeout=3)
    except Unavailable:
        return None


def coordinator_replica_on(status: dict, host: str) -> dict:
    return next(info for info in status["coordinator"]["replicas"].values() if info["host"] == host)


def acting_host(status: dict) -> str:
    return status["coordinator"]["replicas"][status["coordinator"]["leader"]]["host"]


def test_the_coordinator_acts_from_any_host_and_survives_losing_the_one_it_acts_on(three_hosts):
    """One coordinator replica per host. The acting replica is killed until
    one on b or c acts; then its whole host is killed under transfers:
    commits go on, status answers from a replica on another host, a server
    on a killed next is restarted by it, and the lost host's coordinator
    replica and servers are back once it joins again."""
    hosts = three_hosts
    cluster = hosts.cluster
    for name in "bc":
        hosts.join(name)
    cluster.wait_ready(60)

    def settled() -> dict | None:
        state = every_pid_known(cluster.status())
        group = state["coordinator"]["replicas"] if state else {}
        return state if group and all(info["role"] != "down" for info in group.values()) else None

    status = wait_for(settled, timeout=30)
    placed = {replica: info["host"] for replica, info in status["coordinator"]["replicas"].items()}
    assert placed == {"coordinator-0": "a", "coordinator-1": "b", "coordinator-2": "c"}
    hosts.seen |= system_pids(cluster)

    with connect(admin=cluster.admin) as store:
        workers = open_accounts_and_transfer(cluster, store)
        for _ in range(3):
            if acting_host(status) != "a":
                break
            acting = status["coordinator"]["leader"]
            os.kill(status["coordinator"]["replicas"][acting]["pid"], signal.SIGKILL)
            status = wait_for(lambda: (now := status_or_none(cluster)) and now["coordinator"]["leader"] != acting
                              and now, timeout=30)
        lost = acting_host(status)
        assert lost in ("b", "c"), status["coordinator"]
        hosts.seen |= system_pids(cluster)

        killed_at = hosts.kill_host(lost)
        answered = wait_for(lambda: (now := status_or_none(cluster)) and acting_host(now) != lost
                            and time.monotonic(), timeout=30)
        keep_committing(workers)
        wait_for(lambda: not cluster.status()["hosts"][lost]["up"], timeout=30)

        on_a = sorted(((info["role"] != "follower", replica), info["pid"]) for c in cluster.status()["clusters"].values()
                      for replica, info in c["replicas"].items() if info["host"] == "a")
        (_, victim), old_pid = on_a[0]  # a follower when there is one
        os.kill(old_pid, signal.SIGKILL)

        def restarted() -> bool:
            info = next(c["replicas"][victim] for c in cluster.status()["clusters"].values() if victim in c["replicas"])
            hosts.seen.add(info["pid"])
            return info["alive"] and info["pid"] not in (0, old_pid)

        wait_for(restarted, timeout=30)
        hosts.join(lost)
        wait_for(lambda: coordinator_replica_on(cluster.status(), lost)["role"] == "follower", timeout=30)
        wait_for(lambda: all(info["alive"] for c in cluster.status()["clusters"].values()
                             for info in c["replicas"].values()), timeout=45)
        hosts.seen |= system_pids(cluster)
        keep_committing(workers)
        stop_transfers(workers)
        assert total(store) == OPENING_BALANCE * len(ACCOUNTS)
    print(f"\ncoordinator acting on {lost}: its host killed, status answered from another host "
          f"{answered - killed_at:.2f} s later; {committed(workers)} transfers")


def test_a_lost_hosts_replicas_are_replaced_on_the_spare_host(four_hosts_replacing):
    """Four hosts, two clusters of three: b holds a replica of each (c1-r1,
    c2-r2) and d is the only host without c1, c the only one without c2.
    b is killed and never comes back: after replace_after_ms each of its
    replicas gets a replacement on the host its cluster lacks, then is
    removed; transfers go on throughout."""
    hosts = four_hosts_replacing
    cluster = hosts.cluster
    for name in "bcd":
        hosts.join(name)
    cluster.wait_ready(60)
    status = wait_for(lambda: every_pid_known(cluster.status()), timeout=30)
    placed = {replica: info["host"] for c in status["clusters"].values() for replica, info in c["replicas"].items()}
    assert placed == {"c1-r0": "a", "c1-r1": "b", "c1-r2": "c", "c2-r0": "d", "c2-r1": "a", "c2-r2": "b"}
    hosts.seen |= system_pids(cluster)

    with connect(admin=cluster.admin) as store:
        workers = open_accounts_and_transfer(cluster, store)

        killed_wall = time.time()  # job times are wall-clock
        killed_at = hosts.kill_host("b")
        probes = {name: key_of(name, status, 16) for name in status["clusters"]}
        for name, key in probes.items():
            store.put(key, name)
        recovered = time.monotonic()
        noticed = wait_for(lambda: not cluster.status()["hosts"]["b"]["up"] and time.monotonic(), timeout=30)

        def replaced() -> dict | None:
            now = cluster.status()
            hosts.seen |= {info["pid"] for c in now["clusters"].values()
                           for info in c["replicas"].values() if info["pid"]}
            for info in now["clusters"].values():
                replicas = info["replicas"].values()
                if len(replicas) != 3 or not all(r["alive"] and not r["learner"] and not r["host_down"]
                                                 for r in replicas):
                    return None
            return now

        final = wait_for(replaced, timeout=40)
        voters_at = time.monotonic()
        keep_committing(workers)
        stop_transfers(workers)
        assert total(store) == OPENING_BALANCE * len(ACCOUNTS)
        for name, key in probes.items():
            assert store.get(key) == name

    placed = {replica: info["host"] for c in final["clusters"].values() for replica, info in c["replicas"].items()}
    assert placed == {"c1-r0": "a", "c1-r2": "c", "c1-r3": "d", "c2-r0": "d", "c2-r1": "a", "c2-r3": "c"}
    assert all(final["hosts"][name]["up"] for name in "acd")
    assert final["hosts"]["b"]["replicas"] == [] and not final["hosts"]["b"]["up"]
    jobs = final["jobs"]
    assert [(job["kind"], job["state"]) for job in jobs] == [("add_replica", "done")] * 2 + [("remove_replica", "done")] * 2
    voters = max(job["finished"] for job in jobs if job["kind"] == "add_replica") - killed_wall
    print(f"\nreplacement: host b noticed dead after {noticed - killed_at:.2f} s; every cluster committed again "
          f"{recovered - killed_at:.2f} s after the kill; replacements voters {voters:.2f} s and lost replicas "
          f"removed {voters_at - killed_at:.2f} s after it; {committed(workers)} transfers")


# -- network namespaces --------------------------------------------------------------

CLONE_NEWNET = 0x40000000


def ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def enter_namespace(path: str | int) -> None:
    """Move this thread into the network namespace at `path` (or open fd):
    what it connects to and the processes and threads it starts are there."""
    fd = os.open(path, os.O_RDONLY) if isinstance(path, str) else path
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns: {os.strerror(error)}")
    finally:
        if isinstance(path, str):
            os.close(fd)


def namespace_pids(namespace: str) -> set[int]:
    return {int(pid) for pid in ip("netns", "pids", namespace).stdout.split()}


@pytest.fixture
def three_namespaces(tmp_path):
    """Hosts a, b, c in network namespaces of their own, at 10.213.0.1-3,
    wired to a bridge in a fourth namespace: the root namespace is left as
    it is. This thread (the test's clients) runs in a's namespace; b and c
    are joined through `ip netns exec`. Teardown kills whatever still runs
    in the namespaces and deletes them (their links go with them)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("network namespaces need the `ip` command (iproute2)")
    stem = f"rl{os.getpid()}"
    spaces = {name: f"{stem}{name}" for name in "abc"}
    bridge = f"{stem}br"
    created: list[str] = []
    try:
        for namespace in (bridge, *spaces.values()):
            made = ip("netns", "add", namespace)
            if made.returncode != 0:
                pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
            created.append(namespace)
        steps = [("-n", bridge, "link", "add", "br0", "type", "bridge"), ("-n", bridge, "link", "set", "br0", "up")]
        for number, (name, namespace) in enumerate(spaces.items(), start=1):
            steps += [
                ("-n", bridge, "link", "add", f"v{name}", "type", "veth", "peer", "name", "eth0", "netns", namespace),
                ("-n", bridge, "link", "set", f"v{name}", "master", "br0", "up"),
                ("-n", namespace, "addr", "add", f"{NAMESPACE_SUBNET}.{number}/24", "dev", "eth0"),
                ("-n", namespace, "link", "set", "eth0", "up"),
                ("-n", namespace, "link", "set", "lo", "up"),
            ]
        for step in steps:
            done = ip(*step)
            if done.returncode != 0:
                pytest.skip(f"cannot wire the namespaces: `ip {' '.join(step)}`: {done.stderr.strip()}")
        addresses = {name: (f"{NAMESPACE_SUBNET}.{number}", NAMESPACE_PORT)
                     for number, name in enumerate(spaces, start=1)}
        prefixes = {name: ("ip", "netns", "exec", namespace) for name, namespace in spaces.items()}
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            enter_namespace(f"/run/netns/{spaces['a']}")
            paths = {name: f"/run/netns/{namespace}" for name, namespace in spaces.items()}
            with convention(tmp_path, addresses, REPLACING, prefixes, paths) as hosts:
                yield hosts
        finally:
            enter_namespace(home)
            os.close(home)
    finally:
        leftovers = set()
        for namespace in created:
            leftovers |= namespace_pids(namespace)
        for pid in leftovers:
            if process_running(pid):
                os.kill(pid, signal.SIGKILL)
        for namespace in created:
            ip("netns", "del", namespace)
        assert not leftovers, f"processes left in the namespaces: {sorted(leftovers)}"
