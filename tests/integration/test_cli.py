"""The `raftline` command end to end, including every error path (docs/DESIGN.md section 8)."""

from __future__ import annotations

import json
import subprocess
import sys

from actors.process import process_running
from coordinator.admin import free_port
from tests.integration.conftest import admin_options, unique, wait_for, write_topology


def raftline(*args: str, timeout: float = 90.0, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "raftline.cli", *args], capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, cwd=cwd,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str, status: int) -> None:
    """One line on stderr, nothing on stdout, exit `status`: 1 the operation failed, 2 bad usage or input."""
    assert result.returncode == status, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_put_get_delete_and_txn(cluster):
    admin = admin_options(cluster)
    key = unique("cli")
    assert raftline("put", key, '{"n": 1}', *admin).returncode == 0
    assert json.loads(raftline("get", key, *admin).stdout) == {"n": 1}
    assert raftline("put", key, "plain words", *admin).returncode == 0
    assert json.loads(raftline("get", key, *admin).stdout) == "plain words"
    result = raftline("txn", f"put {key} 7", f"get {key}", f"put {key}-other [1, 2]", *admin)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{key} = 7", "committed"]
    assert json.loads(raftline("get", f"{key}-other", *admin).stdout) == [1, 2]
    assert raftline("put", key, "null", *admin).returncode == 0
    assert raftline("get", key, *admin).stdout == "null\n", "a stored null is a value"
    assert raftline("delete", key, *admin).returncode == 0
    missing = raftline("get", key, *admin)
    assert (missing.returncode, missing.stdout, missing.stderr) == (1, "", f"raftline get: {key}: not found\n")
    # What JSON cannot hold is a string, as the help says of anything not JSON.
    for text in ("NaN", "1e400", "Infinity"):
        assert raftline("put", key, text, *admin).returncode == 0
        assert json.loads(raftline("get", key, *admin).stdout) == text


def test_put_reads_a_large_value_from_a_file_or_standard_input(cluster, tmp_path):
    admin = admin_options(cluster)
    key = unique("cli-file")
    big = {"blob": "x" * 20_000}
    path = tmp_path / "value.json"
    path.write_text(json.dumps(big))
    assert raftline("put", key, "--file", str(path), *admin).returncode == 0
    assert json.loads(raftline("get", key, *admin).stdout) == big
    piped = subprocess.run([sys.executable, "-m", "raftline.cli", "put", key, "--file", "-", *admin],
                           input="from stdin", capture_output=True, text=True, timeout=90)
    assert piped.returncode == 0, piped.stderr
    assert json.loads(raftline("get", key, *admin).stdout) == "from stdin"
    assert_one_line_error(raftline("put", key, "v", "--file", str(path), *admin), "a VALUE or --file F", status=2)


def test_status_json_is_pure_json_with_the_promised_fields(cluster):
    result = raftline("status", "--json", *admin_options(cluster))
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["epoch"] >= 1
    for info in status["clusters"].values():
        assert {"leader", "term", "slots", "replicas"} <= set(info)
        for replica in info["replicas"].values():
            assert {"role", "term", "commit", "applied", "last_index", "alive", "asleep", "pid"} <= set(replica)
    table = raftline("status", *admin_options(cluster))
    assert table.returncode == 0 and "cluster c1: leader" in table.stdout


def test_sleep_and_kill_through_the_cli(cluster):
    admin = admin_options(cluster)
    replicas = cluster.status()["clusters"]["c2"]["replicas"]
    follower = next(r for r, info in replicas.items() if info["role"] == "follower")
    result = raftline("sleep", follower, "1", *admin)
    assert result.returncode == 0 and "sleeps for 1 s" in result.stdout
    wait_for(lambda: not cluster.status()["clusters"]["c2"]["replicas"][follower]["asleep"], timeout=15)
    result = raftline("kill", follower, *admin)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: cluster.status()["clusters"]["c2"]["replicas"][follower]["alive"], timeout=30)


def test_error_paths_are_one_clear_line(cluster, tmp_path):
    """Exit status 1 when the running system refuses or is not there, 2 for bad usage or input."""
    admin = admin_options(cluster)
    assert_one_line_error(raftline("sleep", "c9-r9", "1", *admin), "unknown server 'c9-r9'", status=1)
    assert_one_line_error(raftline("kill", "nobody", *admin), "unknown server 'nobody'", status=1)
    assert_one_line_error(raftline("put", "big", "x" * 40_000, *admin), "value too large", status=2)
    assert_one_line_error(raftline("put", "", "1", *admin), "keys are non-empty strings", status=2)
    assert_one_line_error(raftline("txn", "frobnicate a", *admin), "bad transaction operation", status=2)
    assert_one_line_error(raftline("sleep", "c1-r0", "-1", *admin), "SECONDS must be more than 0", status=2)
    assert_one_line_error(raftline("sleep", "c1-r0", "100000", *admin), "at most 3600, got 100000", status=2)
    assert_one_line_error(raftline("get", "k", "--admin", "nonsense"), "HOST:PORT", status=2)
    nobody = f"127.0.0.1:{free_port()}"
    assert_one_line_error(raftline("get", "k", "--admin", nobody), "no raftline system is running", "raftline start",
                          status=1)
    assert_one_line_error(raftline("status", "--admin", nobody), "raftline start", status=1)
    broken = tmp_path / "broken.yaml"
    broken.write_text("clusters:\n  c1: {replicas: 3}\nraft:\n  election_ticks: [12, 6]\n")
    assert_one_line_error(raftline("get", "k", "-t", str(broken)), "broken.yaml:4", "raft.election_ticks", status=2)
    assert_one_line_error(raftline("get", "k", "-t", str(tmp_path / "missing.yaml")), "missing.yaml", "no such file",
                          status=2)


def test_start_refuses_an_option_it_would_ignore(tmp_path):
    for option in ("--admin", "--secret-file"):
        refused = raftline("start", "-t", str(write_topology(tmp_path)), option, "127.0.0.1:19000")
        assert refused.returncode == 2 and f"unrecognized arguments: {option}" in refused.stderr


def test_start_status_stop_in_the_background(tmp_path):
    topology = write_topology(tmp_path)
    port = str(free_port())
    admin = ("--admin", f"127.0.0.1:{port}", "--secret-file", str(tmp_path / "data" / "secret"))
    started = raftline("start", "-t", str(topology), "--data-dir", str(tmp_path / "data"), "--admin-port", port)
    assert started.returncode == 0, started.stderr
    assert "raftline is running at" in started.stdout
    status = json.loads(raftline("status", "--json", *admin).stdout)
    pids = {status["admin_pid"]} | {r["pid"] for c in status["clusters"].values() for r in c["replicas"].values()}
    again = raftline("start", "-t", str(topology), "--data-dir", str(tmp_path / "data"), "--admin-port", port)
    assert_one_line_error(again, "already listens", status=1)
    # --data-dir alone finds the system started on it, on the port it recorded.
    stopped = raftline("stop", "--data-dir", str(tmp_path / "data"))
    assert stopped.returncode == 0, stopped.stderr
    assert f"raftline at 127.0.0.1:{port} stopped" in stopped.stdout
    wait_for(lambda: not any(process_running(pid) for pid in pids), timeout=15)
    assert_one_line_error(raftline("stop", *admin), "no raftline system is running", status=1)
    assert (tmp_path / "data" / "raftline.log").exists()


def test_from_any_directory_the_embedded_default_starts_with_its_data_there(tmp_path):
    """No topology.yaml here: the packaged default runs, its data under ./data of the current directory."""
    port = str(free_port())
    admin = ("--admin", f"127.0.0.1:{port}")
    started = raftline("start", "--admin-port", port, cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    assert f"(data in {tmp_path / 'data'};" in started.stdout
    status = json.loads(raftline("status", "--json", *admin, cwd=tmp_path).stdout)
    assert sorted(status["clusters"]) == ["c1", "c2", "c3"]
    pids = {status["admin_pid"]} | {r["pid"] for c in status["clusters"].values() for r in c["replicas"].values()}
    pids |= {r["pid"] for r in status["coordinator"]["replicas"].values()}
    assert raftline("stop", *admin, cwd=tmp_path).returncode == 0
    wait_for(lambda: not any(process_running(pid) for pid in pids), timeout=15)
    assert (tmp_path / "data" / "coordinator-0").is_dir()


def test_status_piped_into_a_reader_that_is_gone_is_quiet(cluster):
    """`raftline status | head -1`: a reader gone before the output is written
    (closed here at once, while status is still gathering) is not an error."""
    command = [sys.executable, "-m", "raftline.cli", "status", *admin_options(cluster)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL) as status:
        status.stdout.close()
        stderr = status.stderr.read().decode()
        assert status.wait(timeout=60) == 0, stderr
    assert stderr == ""
