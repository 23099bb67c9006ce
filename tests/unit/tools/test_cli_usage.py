"""The command line's conventions, without a running system: each command takes
only the options it uses, and its exit status says 0 ok, 1 the operation
failed or found a problem, 2 bad usage or input; "internal error" is for bugs."""

import argparse
import os
import re
import subprocess
import sys

import pytest

from coordinator.admin import free_port
from raftline import bench, cli
from raftline.cli import EXIT_ERROR, EXIT_USAGE, JobProgress, build_parser, main


def nobody() -> str:
    """An admin address where nothing listens: a command that got past its checks fails with 1, not 2."""
    return f"127.0.0.1:{free_port()}"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    (action,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("argv", [
    ["start", "--admin", "127.0.0.1:19000"],
    ["start", "--admin", "19001"],  # not an abbreviation of --admin-port
    ["start", "--secret-file", "secret"],
    ["demo", "--admin", "127.0.0.1:19000"],
    ["join", "--admin", "127.0.0.1:19000", "--leader", "127.0.0.1:19000", "--name", "h"],
    ["bench", "put", "-t", "topology.yaml"],
    ["verify", "--workload", "bank", "-t", "topology.yaml"],
    ["check", "history.jsonl", "--model", "register", "--admin", "127.0.0.1:19000"],
])
def test_an_option_a_command_does_not_use_is_refused_as_usage(argv, capsys):
    assert main(argv) == EXIT_USAGE
    assert "unrecognized arguments" in capsys.readouterr().err


def test_every_command_has_a_description_and_every_positional_argument_help():
    for name, parser in subcommands().items():
        assert parser.description, name
        for action in parser._actions:
            if not action.option_strings:
                assert action.help, f"{name} {action.dest}"


def test_bench_help_lists_every_mode_it_accepts():
    parser = subcommands()["bench"]
    (workload,) = (a for a in parser._actions if a.dest == "workload")
    assert set(workload.choices) == set(bench.BENCH_WORKLOADS + bench.EXPERIMENTS)
    described = parser.description + workload.help
    assert all(re.search(rf"\b{mode}\b", described) for mode in workload.choices)


def test_the_topology_option_says_it_is_the_deployment():
    for name in ("start", "status", "stop", "put"):
        (topology,) = (a for a in subcommands()[name]._actions if a.dest == "topology")
        assert topology.help.startswith("the topology file: the deployment, its admin port"), name


@pytest.mark.parametrize("argv, message", [
    (["sleep", "c1-r0", "-5"], "SECONDS must be more than 0 and at most 3600, got -5"),
    (["sleep", "c1-r0", "100000"], "SECONDS must be more than 0 and at most 3600, got 100000"),
    (["isolate", "c1-r0", "nan"], "SECONDS must be"),
    (["put", "", "1"], "keys are non-empty strings, got ''"),
    (["put", "k", "x" * 40_000], "value too large"),
    (["get", ""], "keys are non-empty strings"),
    (["txn", "frobnicate a"], "bad transaction operation"),
    (["txn", "put k [1, 2]", "put x" + "y" * 2000 + " 1"], "key too long"),
    (["add-cluster", "--replicas", "0"], "--replicas must be"),
    (["bench", "put", "--clients", "0"], "--clients must be at least 1"),
    (["verify", "--workload", "bank", "--clients", "0"], "--clients must be at least 1"),
])
def test_an_invalid_value_is_bad_input_and_nothing_is_sent(argv, message, capsys):
    assert main([*argv, "--admin", nobody()]) == EXIT_USAGE
    line = error_line(capsys)
    assert message in line and "internal error" not in line


@pytest.mark.parametrize("argv, message", [
    (["get", "k", "--admin", "nonsense"], "--admin expects HOST:PORT"),
    (["join", "--leader", "nonsense", "--name", "h", "--address", "127.0.0.1"], "--leader expects HOST:PORT"),
    (["join", "--leader", "127.0.0.1:1", "--name", "no spaces", "--address", "127.0.0.1"], "invalid host name"),
    (["start", "--admin-port", "70000"], "--admin-port must be 0..65535"),
    (["check", "history.jsonl", "--model", "bank"], "needs --total and --accounts"),
    (["bench", "transport", "--bases", "frob"], "--bases expects"),
    (["bench", "election", "--admin", "127.0.0.1:1"], "starts its own systems: --admin does not apply"),
])
def test_a_malformed_option_is_bad_usage(argv, message, capsys):
    assert main(argv) == EXIT_USAGE
    assert message in error_line(capsys)


def test_argparse_errors_are_bad_usage(capsys):
    assert main(["sleep", "c1-r0"]) == EXIT_USAGE
    assert main(["sleep", "c1-r0", "soon"]) == EXIT_USAGE
    assert main(["frobnicate"]) == EXIT_USAGE


def test_a_broken_topology_file_is_bad_input(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("clusters:\n  c1: {replicas: 3}\nraft:\n  election_ticks: [12, 6]\n")
    assert main(["status", "-t", str(broken)]) == EXIT_USAGE
    assert "broken.yaml:4" in error_line(capsys)


def test_no_system_running_is_a_failed_operation():
    # A process of its own: an attempt to connect must leave nothing behind in the test's.
    result = subprocess.run([sys.executable, "-m", "raftline.cli", "get", "k", "--admin", nobody()],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == EXIT_ERROR
    assert "no raftline system is running" in result.stderr and "internal error" not in result.stderr


def test_a_data_directory_that_cannot_be_made_is_a_plain_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("")
    assert main(["start", "--data-dir", str(tmp_path / "a-file" / "data"), "--admin-port", "0"]) == EXIT_ERROR
    assert error_line(capsys) == f"raftline start: cannot use {tmp_path / 'a-file' / 'data'}: Not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to a read-only directory")
def test_a_read_only_data_directory_is_a_plain_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o500)
    assert main(["start", "--data-dir", str(read_only), "--admin-port", "0"]) == EXIT_ERROR
    line = error_line(capsys)
    assert "Permission denied" in line and "internal error" not in line


def planted_bug(args):
    return 1 // 0


def test_a_bug_is_an_internal_error_naming_the_file_with_its_traceback(monkeypatch, capsys):
    monkeypatch.setattr(cli, "cmd_status", planted_bug)
    assert main(["status", "--admin", nobody()]) == EXIT_ERROR
    line = error_line(capsys)
    assert line.startswith("raftline status: internal error (a bug): ZeroDivisionError: ")
    log = line.rsplit("; traceback in ", 1)[1]
    try:
        assert "Traceback" in open(log).read()
    finally:
        os.remove(log)


def test_a_bug_of_a_command_on_a_data_directory_goes_to_its_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "cmd_stop", planted_bug)
    assert main(["stop", "--admin", nobody(), "--data-dir", str(tmp_path)]) == EXIT_ERROR
    assert error_line(capsys).endswith(f"traceback in {tmp_path / 'raftline.log'}")
    assert "ZeroDivisionError" in (tmp_path / "raftline.log").read_text()


def test_a_bug_in_check_is_no_verdict_never_invalid(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("raftline.check.read_operations", lambda lines: 1 // 0)
    history = tmp_path / "h.jsonl"
    history.write_text("")
    assert main(["check", str(history), "--model", "register"]) == 2
    log = error_line(capsys).rsplit("traceback in ", 1)[1]
    os.remove(log)


def job(step: str, *, state: str = "running", waiting: str = "") -> dict:
    return {"moves": [], "moves_done": 0, "move_seconds": [], "step": step, "state": state, "waiting": waiting}


def test_a_job_step_and_what_it_waits_on_are_each_printed_once(capsys):
    progress = JobProgress()
    removing = "removing c1-r2 from c1's membership"
    handing = "handing leadership to c1-r0 first"
    for waiting in (handing, "", handing, ""):
        progress(job(removing, waiting=waiting))
    progress(job("stopping c1-r2"))
    progress(job("removed c1-r2", state="done"))
    assert capsys.readouterr().out.splitlines() == [removing, f"  waiting: {handing}", "stopping c1-r2"]


def test_a_step_refused_before_it_was_first_shown_is_still_printed_before_the_refusal(capsys):
    progress = JobProgress()
    progress(job("adding c2-r3 to c2 as a learner", waiting="busy: this leader's first entry is not committed yet"))
    assert capsys.readouterr().out.splitlines() == [
        "adding c2-r3 to c2 as a learner", "  waiting: busy: this leader's first entry is not committed yet"]


def test_a_moved_slot_is_printed_once_though_the_step_repeats_it(capsys):
    progress = JobProgress()
    moved = {"moves": [[3, "c1", "c4"]], "moves_done": 1, "move_seconds": [0.5], "state": "running",
             "step": "slot 3 c1 -> c4 moved in 0.50 s (1/1)"}
    progress(job("moving slot 3 c1 -> c4 (1/1): copying") | {"moves": [[3, "c1", "c4"]]})
    progress(moved)
    progress(moved | {"step": "waiting for c4's transactions to settle"})
    assert capsys.readouterr().out.splitlines() == [
        "moving slot 3 c1 -> c4 (1/1): copying", "slot 3 c1 -> c4 moved in 0.50 s (1/1)",
        "waiting for c4's transactions to settle"]
