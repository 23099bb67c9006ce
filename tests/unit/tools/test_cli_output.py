"""What the command line prints: the status table's states, the progress bar off a terminal."""

from raftline.cli import format_status
from raftline.harness import ProgressBar


def replica(**fields) -> dict:
    return {"role": "follower", "term": 2, "commit": 9, "applied": 9, "last_index": 9, "alive": True,
            "asleep": False, "pid": 7, "host": "local", **fields}


def test_an_isolated_replica_shows_as_isolated_and_a_failing_one_with_its_reason():
    status = {"epoch": 1, "clusters": {"c1": {"leader": "c1-r0", "term": 2, "slots": [0], "replicas": {
        "c1-r0": replica(role="leader"), "c1-r1": replica(isolated=True), "c1-r2": replica(failing="disk full")}}}}
    rows = {line.split()[0]: line for line in format_status(status).splitlines() if line.startswith("  c1-")}
    assert rows["c1-r0"].endswith(" alive")
    assert rows["c1-r1"].endswith(" isolated")
    assert rows["c1-r2"].endswith(" failing: disk full")


def test_off_a_terminal_the_progress_bar_prints_its_full_line_once(capsys):
    bar = ProgressBar("verify", 4.0)
    bar.show(1.0, 10)
    bar.show(4.0, 30)  # the deadline passed; the last operations are finishing
    bar.close(4.2, 33)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["verify [##........] 1.0/4 s  10 ops", "verify [##########] 4.0/4 s  33 ops"]
