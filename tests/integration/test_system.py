"""The actor system end to end on real processes (docs/DESIGN.md sections 4, 5, 7)."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from actors.datadir import LOCK_FILE
from actors.keyspace import slot_of
from actors.messages import ClientBatch, ClientBatchReply, ClientRequest, CommitOnePhase, MapUpdate, Prepare, Subscribe
from actors.process import process_running
from clerk import TransactionAborted, TransactionTooLarge, connect
from clerk.errors import AlreadyRunning
from coordinator.admin import attach, coordinator_addresses
from coordinator.system import start
from raftline.metrics import exposition
from tests.integration.conftest import unique, wait_for, write_topology


def keys_on_each_cluster(cluster, prefix: str) -> dict[str, str]:
    """One fresh key per cluster: cluster -> key."""
    status = cluster.status()
    owner_of_slot = {slot: name for name, info in status["clusters"].items() for slot in info["slots"]}
    slots = len(owner_of_slot)
    found: dict[str, str] = {}
    index = 0
    while len(found) < len(status["clusters"]):
        key = f"{prefix}-{index}"
        found.setdefault(owner_of_slot[slot_of(key, slots)], key)
        index += 1
    return found


def test_transaction_across_clusters_is_atomic(cluster, store):
    keys = keys_on_each_cluster(cluster, unique("atomic"))
    a, b = keys["c1"], keys["c2"]
    store.put(a, 100)
    store.put(b, {"balance": 5})
    with store.transaction() as txn:
        txn.put(a, txn.get(a) - 10)
        txn.put(b, {"balance": txn.get(b)["balance"] + 10})
    assert store.get(a) == 90
    assert store.get(b) == {"balance": 15}
    store.delete(a)
    assert store.get(a) is None
    assert store.get(unique("never-written")) is None


def test_conflicting_transactions_one_aborts(cluster, store):
    key = unique("conflict")
    store.put(key, 0)
    first, second = store.transaction(), store.transaction()
    first.put(key, first.get(key) + 1)
    second.put(key, second.get(key) + 1)
    first.commit()
    with pytest.raises(TransactionAborted):
        second.commit()
    assert store.get(key) == 1


def test_bank_with_concurrent_clerks_conserves_the_total(cluster, store):
    accounts = [unique(f"account{i}") for i in range(6)]
    with store.transaction() as txn:
        for account in accounts:
            txn.put(account, 100)
    errors: list[BaseException] = []

    def client(seed: int) -> None:
        try:
            with connect(admin=cluster.admin) as own:
                transfer = own.transactional(retries=50)(move)
                for step in range(15):
                    source, target = accounts[(seed + step) % 6], accounts[(seed * 2 + step + 1) % 6]
                    if source != target:
                        transfer(source, target, 1 + step % 7)
        except BaseException as error:  # reported below: a thread's failure must fail the test
            errors.append(error)

    def move(txn, source, target, amount):
        balance = txn.get(source)
        if balance >= amount:
            txn.put(source, balance - amount)
            txn.put(target, txn.get(target) + amount)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    with store.transaction() as txn:
        balances = [txn.get(account) for account in accounts]
    assert sum(balances) == 600
    assert min(balances) >= 0


def test_sleeping_follower_repairs_its_log(cluster, store):
    status = cluster.status()["clusters"]["c1"]
    sleeper = next(r for r in status["replicas"] if r != status["leader"])
    cluster.sleep(sleeper, 2.0)
    wait_for(lambda: cluster.status()["clusters"]["c1"]["replicas"][sleeper]["asleep"])
    key = keys_on_each_cluster(cluster, unique("repair"))["c1"]
    for value in range(40):
        store.put(key, value)

    def caught_up():
        info = cluster.status()["clusters"]["c1"]
        mine, leader = info["replicas"][sleeper], info["replicas"][info["leader"]]
        return not mine["asleep"] and mine["role"] == "follower" and mine["applied"] >= leader["commit"]

    wait_for(caught_up, timeout=30)
    log = (cluster.data_dir / sleeper / "server.log").read_text()
    assert "sleeping for 2 s" in log and "woke up" in log
    assert "found a gap" in log and "repair from" in log
    metrics = cluster.status()["clusters"]["c1"]["replicas"][sleeper]["metrics"]
    assert metrics["raftline_log_repair_requests_total"][0]["value"] >= 1
    assert metrics["raftline_log_repair_entries_total"][0]["value"] >= 1


def test_status_carries_each_servers_and_the_acting_coordinators_metrics(cluster, store):
    key = keys_on_each_cluster(cluster, unique("metrics"))["c1"]
    store.put(key, 1)
    status = cluster.status()
    leader = status["clusters"]["c1"]["replicas"][status["clusters"]["c1"]["leader"]]["metrics"]
    received = {series["labels"]["kind"] for series in leader["raftline_messages_received_total"]}
    assert {"ClientBatch", "AppendLogReply", "ReplicaStatusRequest"} <= received
    assert leader["raftline_is_leader"][0]["value"] == 1
    assert leader["raftline_transactions_committed_total"][0]["value"] >= 1
    assert leader["raftline_fsync_duration_seconds"][0]["count"] >= 1
    coordinator = status["coordinator"]["metrics"]
    assert coordinator["raftline_is_leader"][0]["value"] == 1
    assert coordinator["raftline_messages_sent_total"]
    exposed = exposition(status)
    assert 'raftline_is_leader{cluster="coordinator",replica="%s"} 1.0' % status["coordinator"]["leader"] in exposed


def test_killed_leader_is_replaced_and_restarted(cluster, store):
    before = cluster.status()["clusters"]["c2"]
    old_leader = before["leader"]
    old_pid = before["replicas"][old_leader]["pid"]
    cluster.kill(old_leader)
    wait_for(lambda: cluster.leader("c2") not in (None, old_leader), timeout=30)
    key = keys_on_each_cluster(cluster, unique("failover"))["c2"]
    store.put(key, "after failover")  # the clerk follows the MapUpdate to the new leader
    assert store.get(key) == "after failover"

    def restarted():
        replica = cluster.status()["clusters"]["c2"]["replicas"][old_leader]
        return replica["alive"] and replica["pid"] not in (0, old_pid) and replica["role"] == "follower"

    wait_for(restarted, timeout=30)


def test_prepared_keys_unblock_after_the_clerk_dies(cluster, store):
    """A clerk that dies between prepare and commit: participants time out,
    ask the primary, which aborts; the keys are writable again."""
    keys = keys_on_each_cluster(cluster, unique("orphan"))
    system = attach(cluster.admin)
    for coordinator in coordinator_addresses(system, cluster.admin).values():
        system.tell(coordinator, Subscribe(pid=0))  # the acting replica answers
    routing = system.listen(10)
    assert isinstance(routing, MapUpdate)
    participants = tuple(sorted(keys))
    primary = min(participants, key=lambda name: keys[name])
    for name, key in keys.items():
        prepare = Prepare(
            txid=unique("dead-clerk"), ts=1, reads={}, writes={key: "orphan"}, primary=primary,
            participants=participants, epoch=routing.epoch,
        )
        leader = routing.addresses[routing.leaders[name]]
        system.tell(leader, ClientBatch(client="dead-clerk", cluster=name, epoch=routing.epoch,
                                        requests=(ClientRequest(req=1, op=prepare),)))
    # Whatever the timing, a new writer of both keys eventually commits, and the orphan's writes never appear.
    write_both = store.transactional(retries=200)(lambda txn: [txn.put(key, "fresh") for key in keys.values()])
    write_both()
    assert all(store.get(key) == "fresh" for key in keys.values())


def test_stop_then_start_keeps_every_committed_key(tmp_path):
    topology = write_topology(tmp_path)
    data = tmp_path / "data"
    with start(topology, data_dir=data, admin_port=0) as system:
        with connect(admin=system.admin) as store:
            for index in range(20):
                store.put(f"durable-{index}", {"index": index})
    with start(topology, data_dir=data, admin_port=0) as system:
        with connect(admin=system.admin) as store:
            assert [store.get(f"durable-{index}") for index in range(20)] == [{"index": i} for i in range(20)]


def test_killing_every_replica_of_a_cluster_loses_no_acknowledged_write(cluster, store):
    keys = [unique(f"crash{i}") for i in range(12)]
    for index, key in enumerate(keys):
        store.put(key, index)
    for replica in cluster.status()["clusters"]["c1"]["replicas"]:
        cluster.kill(replica)
    wait_for(lambda: cluster.leader("c1") is not None and all(
        r["alive"] for r in cluster.status()["clusters"]["c1"]["replicas"].values()), timeout=30)
    assert [store.get(key) for key in keys] == list(range(12))


def test_clerk_of_an_application_that_died_without_closing_exits(cluster):
    before = cluster.status()["clerks"]
    script = (
        "import os; from clerk import connect; "
        f"store = connect(admin={cluster.admin!r}, secret_file={os.fspath(cluster.secret_file)!r}); "
        "store.put('abandoned', 1); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    wait_for(lambda: cluster.status()["clerks"] <= before, timeout=20)


def test_an_isolated_follower_returns_without_deposing_the_leader(cluster, store):
    """It keeps ticking while cut off; PreVote keeps it from raising the term,
    so when it returns the leader and term are unchanged and it catches up."""
    before = cluster.status()["clusters"]["c1"]
    leader, term = before["leader"], before["term"]
    cut_off = next(r for r in before["replicas"] if r != leader)
    cluster.isolate(cut_off, 2.0)
    key = keys_on_each_cluster(cluster, unique("isolated"))["c1"]
    for value in range(10):
        store.put(key, value)
    wait_for(lambda: not cluster.status()["clusters"]["c1"]["replicas"][cut_off]["isolated"], timeout=15)

    def caught_up():
        info = cluster.status()["clusters"]["c1"]
        mine, head = info["replicas"][cut_off], info["replicas"][info["leader"]]
        return mine["applied"] >= head["commit"]

    wait_for(caught_up, timeout=20)
    after = cluster.status()["clusters"]["c1"]
    assert (after["leader"], after["term"], after["replicas"][cut_off]["term"]) == (leader, term, term)


def test_get_many_reads_keys_of_several_clusters_in_one_round_trip(cluster, store):
    keys = keys_on_each_cluster(cluster, unique("many"))
    a, b = keys["c1"], keys["c2"]
    store.put(a, 1)
    store.put(b, 2)
    with store.transaction() as txn:
        txn.get(a)
        one_key = store.last_hops
    with store.transaction() as txn:
        assert txn.get_many([a, b, a]) == {a: 1, b: 2}
        assert store.last_hops == one_key  # both clusters at once: the critical path of one read
        txn.put(a, 10)
        assert txn.get_many([a, b]) == {a: 10, b: 2}  # its own write; nothing read twice
        txn.put(b, txn.get(b) + 1)
    assert store.get(a) == 10 and store.get(b) == 3
    missing = unique("missing")
    before = store.total_hops
    assert store.get_many([b, missing, a, b]) == {b: 3, missing: None, a: 10}
    # One read at each cluster, in parallel: 4 hops from the leaders' leases, 6 where a lease had
    # lapsed (a late heartbeat under load) and the read took the log.
    assert store.total_hops - before in (4, 6)


def test_a_get_is_one_read_at_the_leader_and_one_that_meets_a_newer_version_reads_it_the_slower_way(cluster, store):
    key = unique("ahead")
    store.put(key, "now")
    hops = []
    for _ in range(5):
        before = store.total_hops
        assert store.get(key) == "now"
        hops.append(store.total_hops - before)
    # The ask and clerk <-> leader, answered from the leader's lease; 6 when the lease had
    # lapsed under load and the read took the leader's log round.
    assert set(hops) <= {4, 6} and 4 in hops

    # A writer whose clock runs ahead (another host's, say) leaves a version
    # above the next get's timestamp: its logged read is refused by rule 3,
    # and a transaction reads the key instead, above the version it read.
    system = attach(cluster.admin)
    for coordinator in coordinator_addresses(system, cluster.admin).values():
        system.tell(coordinator, Subscribe(pid=0))
    routing = system.listen(10)
    assert isinstance(routing, MapUpdate)
    name = routing.slots[slot_of(key, len(routing.slots))]
    ahead = CommitOnePhase(txid=unique("ahead"), ts=int((time.time() + 1.5) * 1e6), reads={},
                           writes={key: "later"}, epoch=routing.epoch)
    leader = routing.addresses[routing.leaders[name]]
    system.tell(leader, ClientBatch(client="clock-ahead", cluster=name, epoch=routing.epoch,
                                    requests=(ClientRequest(req=1, op=ahead),)))
    reply = system.listen(10)
    while not isinstance(reply, ClientBatchReply):
        reply = system.listen(10)
    assert reply.responses[0].result.committed
    before = store.total_hops
    assert store.get(key) == "later"
    # The refused get, then a read and a read-only commit (its check from the lease, or logged).
    assert 4 + 4 + 4 <= store.total_hops - before <= 6 + 4 + 6


def test_a_second_start_on_a_data_directory_in_use_is_refused_before_anything_starts(cluster, store):
    key = unique("before-second-start")
    store.put(key, 1)
    with pytest.raises(AlreadyRunning, match=r"data directory .* is in use by process (\d+)") as refused:
        start(cluster.data_dir.parent / "topology.yaml", data_dir=cluster.data_dir, admin_port=0)
    holder = int(re.search(r"in use by process (\d+)", str(refused.value)).group(1))
    assert process_running(holder)  # the running system's coordinator
    assert store.get(key) == 1


def test_a_restarted_server_whose_directory_is_held_waits_without_opening_its_storage(cluster, store):
    status = cluster.status()["clusters"]["c1"]
    follower = next(replica for replica in status["replicas"] if replica != status["leader"])
    old_pid = status["replicas"][follower]["pid"]
    directory = cluster.data_dir / follower
    with open(directory / LOCK_FILE, "a+") as held:
        # Queue for the server's lock, so this process has it the moment the server dies.
        taken = threading.Thread(target=fcntl.flock, args=(held, fcntl.LOCK_EX))
        taken.start()
        cluster.kill(follower)
        taken.join(timeout=30)
        assert not taken.is_alive()
        held.seek(0)
        held.truncate()
        held.write(f"{os.getpid()}\n")
        held.flush()
        refused = f"{follower}: data directory {directory} is in use by process {os.getpid()}"
        wait_for(lambda: refused in (directory / "server.log").read_text(), timeout=30)

    def restarted():
        replica = cluster.status()["clusters"]["c1"]["replicas"][follower]
        return replica["alive"] and replica["pid"] not in (0, old_pid) and replica["role"] == "follower"

    wait_for(restarted, timeout=30)
    key = keys_on_each_cluster(cluster, unique("after-held"))["c1"]
    store.put(key, "written")
    assert store.get(key) == "written"


def test_a_transaction_too_large_for_one_log_entry_fails_at_once_and_is_never_retried(cluster, store):
    first = keys_on_each_cluster(cluster, unique("big-a"))["c1"]
    second = keys_on_each_cluster(cluster, unique("big-b"))["c1"]
    attempts = []

    @store.transactional(retries=20)
    def write_both(txn) -> None:
        attempts.append(1)
        txn.put(first, "a" * 30_000)
        txn.put(second, "b" * 30_000)

    with pytest.raises(TransactionTooLarge, match="more than the 48000 one log entry holds"):
        write_both()
    assert len(attempts) == 1, "a transaction that can never commit is never retried"
    assert store.last_hops == 2, "nothing was sent to a server: only the ask of the clerk"
    store.put(first, "a" * 30_000)  # each alone fits
    assert store.get(first) == "a" * 30_000 and store.get(second) is None
