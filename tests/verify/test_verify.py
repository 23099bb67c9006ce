"""`raftline verify`: its parts on their own, then short real runs under faults.

Real runs judge what the system did, so their only verdict is the checker's:
each must be valid. Speed is never asserted."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from clerk.errors import TransactionAborted
from raftline.check.history import Event, pair_operations
from raftline.cli import main as raftline_main
from raftline.verify import judge, merge_histories, read_client_history
from raftline.verify.clients import Recorder, run_one
from raftline.verify.faults import FAULT_KINDS, FaultUsageError, choose_fault, healthy_servers, parse_faults
from raftline.workloads import (
    VALUES_PER_PROCESS,
    ListAppendGenerator,
    RegisterGenerator,
    apply_list_append,
    apply_register,
)

# -- workloads -----------------------------------------------------------------------------


class FakeTxn:
    """A transaction over a dict, committing into it: enough to run a workload's body."""

    def __init__(self, table: dict, *, abort_commit: bool = False):
        self.table = table
        self.writes: dict = {}
        self.abort_commit = abort_commit

    def get(self, key):
        return self.writes[key] if key in self.writes else self.table.get(key)

    def put(self, key, value):
        self.writes[key] = value

    def commit(self):
        if self.abort_commit:
            raise TransactionAborted("conflict")
        self.table.update(self.writes)

    def abort(self):
        self.writes = {}


class FakeStore:
    def __init__(self, table: dict, *, abort_commit: bool = False):
        self.table = table
        self.abort_commit = abort_commit

    def transaction(self):
        return FakeTxn(self.table, abort_commit=self.abort_commit)


def test_list_append_generator_is_seeded_and_its_values_unique():
    def draw(seed):
        generator = ListAppendGenerator(random.Random(seed), process=3, prefix="p-")
        return [generator.next(0.0) for _ in range(200)]

    assert draw(7) == draw(7)
    appended = [op[2] for _, txn in draw(7) for op in txn if op[0] == "append"]
    assert len(appended) == len(set(appended))
    assert all(value // VALUES_PER_PROCESS == 3 for value in appended)
    assert all(1 <= len(txn) <= 4 and all(op[1].startswith("p-la-") for op in txn) for _, txn in draw(7))


def test_list_append_reads_see_the_transactions_own_appends():
    table = {"k": [1]}
    txn = FakeTxn(table)
    done = apply_list_append(txn, [["append", "k", 2], ["r", "k", None], ["r", "j", None]])
    assert done == [["append", "k", 2], ["r", "k", [1, 2]], ["r", "j", []]]
    assert table["k"] == [1]  # nothing before commit


def test_register_cas_with_a_stale_old_value_is_recorded_fail():
    table = {"r": 2}
    lines: list[str] = []
    out = type("Out", (), {"write": lambda self, text: lines.append(text), "flush": lambda self: None})()
    clock = iter(range(1, 100))
    recorder = Recorder(out, 5, clock=lambda: next(clock))
    cas = {"key": "r", "value": [1, 3]}
    assert run_one(FakeStore(table), "register", recorder, "cas", cas) == "fail"
    assert run_one(FakeStore(table), "register", recorder, "cas", {"key": "r", "value": [2, 3]}) == "ok"
    assert (
        run_one(FakeStore(table, abort_commit=True), "register", recorder, "write", {"key": "r", "value": 4}) == "fail"
    )
    assert table["r"] == 3
    events = [json.loads(line) for line in lines]
    assert [event["type"] for event in events] == ["invoke", "fail", "invoke", "ok", "invoke", "fail"]
    assert {event["process"] for event in events} == {5}
    assert apply_register(FakeTxn(table), "read", {"key": "r", "value": None}) == {"key": "r", "value": 3}


def test_register_generator_shapes():
    generator = RegisterGenerator(random.Random(1), prefix="p-")
    ops = [generator.next(0.0) for _ in range(100)]
    assert {f for f, _ in ops} == {"read", "write", "cas"}
    assert all(isinstance(value["value"], list) and len(value["value"]) == 2 for f, value in ops if f == "cas")


# -- faults --------------------------------------------------------------------------------


def status_of(clusters: dict) -> dict:
    """A status dict: {cluster: {server: (role, alive, asleep)}}."""
    return {
        "clusters": {
            name: {
                "replicas": {
                    server: {"role": role, "alive": alive, "asleep": asleep}
                    for server, (role, alive, asleep) in replicas.items()
                }
            }
            for name, replicas in clusters.items()
        }
    }


def test_parse_faults():
    assert parse_faults("none") == ()
    assert parse_faults("all") == FAULT_KINDS
    assert parse_faults("kill,sleep,kill") == ("kill", "sleep")
    assert parse_faults("isolate") == ("isolate",)
    with pytest.raises(FaultUsageError):
        parse_faults("partition")


def test_faults_never_hit_a_cluster_already_faulted():
    status = status_of(
        {
            "c1": {"c1-r0": ("leader", True, False), "c1-r1": ("follower", True, True)},
            "c2": {"c2-r0": ("follower", True, False), "c2-r1": ("leader", True, False)},
        }
    )
    assert {server for server, _ in healthy_servers(status)} == {"c2-r0", "c2-r1"}
    rng = random.Random(3)
    faults = [choose_fault(rng, ("sleep", "kill"), status, clients=[]) for _ in range(50)]
    assert {fault.target for fault in faults} == {"c2-r0", "c2-r1"}
    assert {fault.role for fault in faults} == {"leader", "follower"}
    assert all(1.0 <= fault.seconds <= 3.0 for fault in faults if fault.kind == "sleep")
    dead = status_of({"c1": {"c1-r0": ("leader", False, False)}})
    assert choose_fault(rng, ("kill",), dead, clients=[0]) is None
    assert choose_fault(rng, ("clerk",), dead, clients=[]) is None
    assert choose_fault(rng, ("clerk",), dead, clients=[4]).target == 4


def test_the_acting_coordinator_replica_is_killed_only_while_every_replica_runs():
    replicas = {"coordinator-0": {"role": "follower", "pid": 10}, "coordinator-1": {"role": "leader", "pid": 11},
                "coordinator-2": {"role": "follower", "pid": 12}}
    status = {"clusters": {}, "admin_pid": 5, "coordinator": {"leader": "coordinator-1", "replicas": replicas}}
    fault = choose_fault(random.Random(1), ("coordinator",), status, clients=[])
    assert (fault.target, fault.pid) == ("coordinator-1", 11)
    assert fault.describe() == "coordinator: killed the acting replica coordinator-1 (pid 11)"
    replicas["coordinator-2"]["role"] = "down"
    assert choose_fault(random.Random(1), ("coordinator",), status, clients=[]) is None
    admin = choose_fault(random.Random(1), ("admin",), status, clients=[])
    assert (admin.target, admin.pid, admin.describe()) == ("admin", 5, "admin: killed the Thespian admin (pid 5)")


# -- histories -----------------------------------------------------------------------------


def event(process, kind, time, f="txn", value=None):
    return Event(process=process, type=kind, f=f, value=value, time=time)


def test_a_killed_clients_open_operation_becomes_info_and_a_torn_line_is_dropped(tmp_path):
    path = tmp_path / "client.jsonl"
    path.write_text(
        '{"process": 1, "type": "invoke", "f": "txn", "value": [], "time": 10}\n'
        '{"process": 1, "type": "ok", "f": "txn", "value": [], "time": 20}\n'
        '{"process": 1, "type": "invoke", "f": "txn", "value": [["r", "k", null]], "time": 30}\n'
        '{"process": 1, "type": "ok", "f": "t'
    )
    killed = read_client_history(path)
    assert [e.type for e in killed] == ["invoke", "ok", "invoke"]
    other = [event(0, "invoke", 15), event(0, "ok", 50)]
    merged = merge_histories([(other, None), (killed, 40)])
    assert [(e.process, e.type, e.time) for e in merged] == [
        (1, "invoke", 10),
        (0, "invoke", 15),
        (1, "ok", 20),
        (1, "invoke", 30),
        (1, "info", 40),
        (0, "ok", 50),
    ]
    assert [op.type for op in pair_operations(merged)] == ["ok", "ok", "info"]
    assert merged[4].value == [["r", "k", None]]
    # Killed between operations: nothing is open, nothing is added.
    assert len(merge_histories([(killed[:2], 40)])) == 2


def test_bank_runs_are_judged_against_the_opening_total():
    def read(balances):
        return pair_operations([event(0, "invoke", 1, "read"), event(0, "ok", 2, "read", balances)])

    assert judge("bank", read({str(account): 100 for account in range(5)})).valid
    assert not judge("bank", read({"0": 99, "1": 100, "2": 100, "3": 100, "4": 100})).valid


# -- real runs -----------------------------------------------------------------------------


def verify(history, *args: str) -> dict:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "raftline.cli",
            "verify",
            "--duration",
            "4",
            "--clients",
            "3",
            "--clusters",
            "2",
            "--json",
            "--history",
            str(history),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0 and report["valid"], result.stdout
    assert report["outcomes"]["ok"] > 0
    return report


@pytest.mark.parametrize(
    "workload, faults, check_args",
    [
        ("list-append", "all", []),
        ("rw-register", "all", []),
        ("bank", "all", ["--total", "500", "--accounts", "5"]),
        ("register", "all", []),
    ],
)
def test_a_short_run_under_faults_is_valid(workload, faults, check_args, tmp_path):
    report = verify(tmp_path / "history.jsonl", "--workload", workload, "--faults", faults, "--seed", "2")
    assert sum(report["faults"].values()) >= 1, report["fault_errors"]
    transactional = workload in ("list-append", "rw-register")
    assert report["consistency"] == ("strict serializability" if transactional else report["consistency"])
    # The history is in the contract's format: `raftline check` reads it and agrees.
    assert raftline_main(["check", report["history"], "--model", workload, *check_args]) == 0
