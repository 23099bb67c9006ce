"""`raftline bench transport` with tiny rounds on real actor systems: stock's,
and raftline's own base once actors.transport exists. Checked: the report's
rows, positive figures, and that no process of any round is left running.
Speed is never asserted: the targets are the report's business."""

from __future__ import annotations

import importlib.util

from actors.process import process_running
from raftline.bench.transport import LABELS, TransportBenchSettings, format_transport, run_transport
from raftline.cli import main

TINY = TransportBenchSettings(round_trips=20, window=4, fanout_rounds=20, phase_seconds=0.3)


def test_one_round_per_base_reports_every_figure_and_leaves_no_process_behind(tmp_path):
    bases = ["stock", "raftline"] if importlib.util.find_spec("actors.transport") else ["stock"]
    result = run_transport(bases, 1, tmp_path, TINY)

    assert result["failed"] == {}
    assert result["rounds"] == {base: 1 for base in bases}
    for base in bases:
        assert all(figure > 0 for figure in result["medians"][base].values())
    assert bool(result["ratios"]) == (len(bases) == 2)
    report = format_transport(result)
    for label in LABELS.values():
        assert label in report
    for outcome in result["round_results"]:
        assert len(outcome["processes"]) >= 3  # the driver and two echoes at least: the check is not vacuous
        assert [pid for pid in outcome["processes"] if process_running(pid)] == []


def test_inconsistent_arguments_are_one_line_errors(capsys):
    assert main(["bench", "transport", "--rounds", "0"]) == 2
    assert capsys.readouterr().err.strip() == "raftline bench: --rounds must be at least 1, got 0"
    assert main(["bench", "transport", "--bases", "stock,tcp"]) == 2
    assert capsys.readouterr().err.strip() == (
        "raftline bench: --bases expects some of stock,raftline separated by commas, got 'stock,tcp'"
    )
