"""`python3 -m tests.sim raft`: its summary line, exit status and replay lines."""

from __future__ import annotations

import pytest

from actors.raft.log import RaftLog
from tests.sim.__main__ import main


def test_clean_seeds_print_the_summary_and_exit_zero(capsys):
    assert main(["raft", "--seeds", "3", "--first-seed", "10", "--ticks", "60"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "raft: 3 seeds, 0 violations"


def test_a_broken_node_yields_replay_lines_and_a_nonzero_exit(capsys, monkeypatch):
    # Voters that ignore the election restriction (paper 5.4.1) elect leaders
    # missing committed entries.
    monkeypatch.setattr(RaftLog, "is_up_to_date", lambda self, last_index, last_term: True)
    assert main(["raft", "--seeds", "4", "--first-seed", "1", "--nodes", "5", "--faults", "crash,partition"]) == 1
    lines = capsys.readouterr().out.splitlines()
    failing = [line for line in lines if line.startswith("seed ")]
    assert failing and lines[-1] == f"raft: 4 seeds, {len(failing)} violations"
    assert all(
        "replay: python3 -m tests.sim raft --seeds 1 --first-seed" in line
        and "--nodes 5 --faults crash,partition" in line
        for line in failing
    )


def test_stats_report_time_and_messages_per_entry(capsys):
    assert main(["raft", "--seeds", "1", "--ticks", "30", "--nodes", "3", "--stats", "--load-ticks", "20"]) == 0
    out = capsys.readouterr().out
    assert "time:" in out and "messages per committed entry" in out


def test_unknown_fault_names_are_refused():
    with pytest.raises(SystemExit):
        main(["raft", "--faults", "meteor"])
