"""`raftline bench` on real processes (short runs), and its arithmetic.

Speed is never asserted: the figures are checked for shape and for what the
protocol guarantees (hops per operation have a floor set by its phases)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from actors.messages import ClientBatch, ClientRequest, CommitOnePhase, Decide, Prepare, ReadKeys
from clerk.session import CriticalPath
from raftline.bench.etcd import CLUSTER_TOKEN
from raftline.bench.measure import client_processes, percentile, summarize, threads_per_process
from tests.integration.conftest import admin_options, wait_for

REPORT_KEYS = {
    "workload",
    "ops",
    "throughput",
    "latency_ms",
    "abort_rate",
    "hops",
    "rtt_ms",
    "cpu_s",
    "attempts_per_commit",
}


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "raftline.cli", "bench", *args],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def last_json_line(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_sane(report: dict, workload: str) -> None:
    assert REPORT_KEYS <= set(report)
    assert report["workload"] == workload
    assert report["ops"] > 0 and report["throughput"] > 0
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert 0 <= report["abort_rate"] < 1 and report["attempts_per_commit"] >= 1
    assert report["rtt_ms"] > 0
    assert report["cpu_s"]["servers"] > 0
    assert set(report["cpu_s"]) == {"admin", "coordinator", "servers", "clerks", "clients"}


def test_put_on_its_own_system():
    report = last_json_line(bench("put", "--clients", "3", "--processes", "2", "--duration", "2", "--clusters", "2",
                                  "--json"))
    assert_sane(report, "put")
    assert (report["clients"], report["processes"], report["clusters"]) == (3, 2, 2)
    # The ask, then one logged phase (clerk <-> leader, AppendLog and acks).
    assert report["hops"] >= 6
    # Every message on the critical path is a message some actor counted.
    assert report["messages"]["total"] >= report["hops"]
    assert {"ClerkCommit", "ClientBatch", "ClerkReply"} <= set(report["messages"]["by_kind"])


@pytest.mark.skipif(shutil.which("etcd") is None, reason="needs the etcd binary (Debian: etcd-server; .ci/run installs it)")
def test_versus_etcd_runs_the_same_bank_workload_on_etcd_and_ends_every_member():
    report = last_json_line(bench("bank", "--clients", "2", "--duration", "2", "--clusters", "2", "--versus", "etcd",
                                  "--json"))
    assert_sane(report, "bank")
    etcd = report["etcd"]
    assert etcd["workload"] == "bank" and etcd["members"] == 3 and etcd["ops"] > 0
    # Conflicting transfers on etcd abort and retry, as on raftline: money is conserved on both.
    assert report["bank_total_conserved"] and etcd["bank_total_conserved"]
    assert set(etcd["cpu_s"]) == {"etcd", "clients"}
    assert not etcd_members_running()


def etcd_members_running() -> list[str]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if f"--initial-cluster-token\x00{CLUSTER_TOKEN}".encode() in cmdline.read():
                    found.append(entry)
        except OSError:
            pass
    return found


def test_txn_against_a_running_system(cluster):
    report = last_json_line(bench("txn", "--clients", "2", "--duration", "2", *admin_options(cluster), "--json"))
    assert_sane(report, "txn")
    # Both reads in one unlogged round (4), then a two-phase commit: the ask
    # plus prepare and the primary's decision, each logged (4 each); it is
    # answered at that commit point, before the others apply it.
    assert report["hops"] >= 4 + 2 + 2 * 4


def test_reconfig_times_a_replica_and_a_cluster_added_under_writers():
    report = last_json_line(bench("reconfig", "--keys", "1500", "--json"))
    assert report["workload"] == "reconfig" and report["keys"] == 1500
    assert report["add_replica_s"] > 0 and report["add_cluster_s"] > 0
    assert report["moving_slot"]["keys"] == 1000 and report["moving_slot"]["move_s"] > 0
    # 64 slots over 2 clusters, then 3: c3 takes 21 of them, one move each.
    assert report["other_moves"]["count"] == 20
    for writer in ("writer_on_moving_slot_ms", "writer_on_staying_slot_ms"):
        assert report[writer]["puts"] > 0 and 0 < report[writer]["p50"] <= report[writer]["max"]


def test_catchup_times_a_sleeping_follower_repairing_its_log():
    report = last_json_line(bench("catchup", "--duration", "3", "--json"))
    assert report["workload"] == "catchup" and report["commits"] > 0
    assert report["entries_missed"] > 0 and report["caught_up_s"] >= 0


def test_failover_times_puts_transactions_and_status_after_the_acting_coordinator_dies():
    report = last_json_line(bench("failover", "--target", "coordinator", "--trials", "2", "--json"))
    assert report["workload"] == "failover" and report["trials"] == 2
    for measured in ("put_ms", "txn_ms", "status_ms"):
        assert 0 < report[measured]["p50"] <= report[measured]["max"]


def test_ctrl_c_reports_what_was_done_and_leaves_nothing_behind(cluster):
    """Ctrl-C at a terminal reaches the bench and its clients (one process
    group): the clients stop and hand over their records, the bench prints the
    partial report and exits 130; the clients' clerks go with them."""
    clerks_before = cluster.status()["clerks"]
    command = [sys.executable, "-m", "raftline.cli", "bench", "put", "--clients", "2", "--duration", "60",
               *admin_options(cluster)]
    # As at a terminal: a job a shell ran in the background (CI, say) inherits SIGINT ignored.
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                          text=True, start_new_session=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) as bench:
        wait_for(lambda: cluster.status()["clerks"] >= clerks_before + 2, timeout=60)
        time.sleep(2)  # some operations done
        os.killpg(bench.pid, signal.SIGINT)
        stdout, stderr = bench.communicate(timeout=120)
    assert bench.returncode == 130, stderr
    assert "interrupted after" in stdout, stdout
    committed = int(stdout.split("ops", 1)[1].split("committed", 1)[0])
    assert committed > 0, stdout
    wait_for(lambda: cluster.status()["clerks"] <= clerks_before, timeout=30)


def test_inconsistent_arguments_are_one_line_errors():
    result = bench("put", "--replicas", "3,5")
    assert result.returncode == 2
    assert result.stderr.strip() == "raftline bench: put takes one --replicas count, got 3,5"
    result = bench("sweep", "--admin", "127.0.0.1:1")
    assert result.returncode == 2 and "--admin does not apply" in result.stderr
    result = bench("election", "--versus", "etcd")
    assert result.returncode == 2 and "--versus runs a workload" in result.stderr
    result = bench("put", "--clients", "2", "--processes", "3")
    assert result.returncode == 2 and "--processes must be within 1..--clients (2), got 3" in result.stderr


def test_clients_are_spread_evenly_over_at_most_eight_processes_unless_told():
    assert threads_per_process(64, client_processes(argparse.Namespace(processes=None), 64)) == [8] * 8
    assert threads_per_process(10, client_processes(argparse.Namespace(processes=3), 10)) == [4, 3, 3]
    assert client_processes(argparse.Namespace(processes=None), 2) == 2


def test_summary_counts_attempts_aborts_and_percentiles():
    records = [
        [0.0, 0.010, "ok", 1, 6],
        [0.1, 0.030, "ok", 3, 18],
        [0.2, 0.500, "aborted", 4, 24],
        [0.3, 0.020, "failed", 2, 8],
    ]
    summary = summarize(records, duration=2.0)
    assert summary["ops"] == 2 and summary["gave_up"] == 1 and summary["failed"] == 1
    assert summary["abort_rate"] == round((0 + 2 + 4 + 1) / 10, 4)
    assert summary["attempts_per_commit"] == 5.0
    assert summary["hops"] == 12.0
    assert summary["latency_ms"] == {"p50": 10.0, "p95": 30.0, "p99": 30.0, "max": 30.0}
    assert percentile([], 0.5) == 0.0


def batch(*requests: ClientRequest) -> list[tuple[str, ClientBatch]]:
    return [("c1-r0", ClientBatch(client="k", cluster="c1", epoch=1, requests=requests))]


def test_critical_path_counts_phases_resends_and_skips_aborts():
    path = CriticalPath()
    path.begin(1)
    path.sent(batch(ClientRequest(req=1, op=ReadKeys(keys=("a",))), ClientRequest(req=2, op=ReadKeys(keys=("b",)))))
    path.sent(batch(ClientRequest(req=2, op=ReadKeys(keys=("b",)))))  # a resend
    assert path.finish(1) == (2 + 2 * 2, 1)

    path.begin(2, txid="t2")
    prepare = Prepare(
        txid="t2", ts=5, reads={}, writes={"a": 1}, deletes=(), primary="c1", participants=("c1", "c2"), epoch=1
    )
    path.sent(batch(ClientRequest(req=3, op=prepare), ClientRequest(req=4, op=prepare)))
    path.sent(batch(ClientRequest(req=5, op=Decide(txid="t2", ts=5, commit=True))))
    path.sent(batch(ClientRequest(req=6, op=Decide(txid="t2", ts=5, commit=True))))
    path.sent(batch(ClientRequest(req=7, op=Decide(txid="t2", ts=5, commit=False))))
    assert path.finish(2, "t2") == (2 + 3 * 4, 0)

    path.begin(3, txid="t3")
    path.sent(
        batch(ClientRequest(req=8, op=CommitOnePhase(txid="t3", ts=6, reads={}, writes={"a": 2}, deletes=(), epoch=1)))
    )
    assert path.finish(3, "t3") == (2 + 4, 0)
