"""Tests for `raftline check` (raftline/check), in process and once as a module."""

import json
import subprocess
import sys

import pytest

from raftline.cli import main


def check(argv: list[str]) -> int:
    """`raftline check ARGV` in process: its exit status."""
    return main(["check", *argv])


def write(path, events):
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    return str(path)


def txn(process, time, invoked, observed=None, kind="ok"):
    return [
        {"process": process, "type": "invoke", "f": "txn", "value": invoked, "time": time},
        {"process": process, "type": kind, "f": "txn", "value": observed or invoked, "time": time + 1},
    ]


WRITE_SKEW = [
    *txn(0, 0, [["r", "x", None], ["append", "y", 1]], [["r", "x", []], ["append", "y", 1]]),
    *txn(1, 10, [["r", "y", None], ["append", "x", 1]], [["r", "y", []], ["append", "x", 1]]),
    *txn(2, 20, [["r", "x", None], ["r", "y", None]], [["r", "x", [1]], ["r", "y", [1]]]),
]


def test_a_valid_list_append_history(tmp_path, capsys):
    history = write(
        tmp_path / "h.jsonl", txn(0, 0, [["append", "x", 1]]) + txn(1, 5, [["r", "x", None]], [["r", "x", [1]]])
    )
    assert check([history, "--model", "list-append"]) == 0
    assert capsys.readouterr().out == "valid\n"


def test_an_invalid_history_lists_each_anomaly(tmp_path, capsys):
    history = write(tmp_path / "h.jsonl", WRITE_SKEW)
    assert check([history, "--model", "list-append"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "INVALID: 1 anomaly"
    assert out[1].startswith("  G2: cycle op ")


def test_json_verdict_names_operations(tmp_path, capsys):
    history = write(tmp_path / "h.jsonl", WRITE_SKEW)
    assert check([history, "--model", "list-append", "--json"]) == 1
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["valid"] is False and verdict["operations"] == 3
    (anomaly,) = verdict["anomalies"]
    assert anomaly["name"] == "G2"
    assert sorted((op["process"], op["line"]) for op in anomaly["operations"]) == [(0, 1), (1, 3)]


def test_bank_model(tmp_path, capsys):
    events = [
        {"process": 0, "type": "invoke", "f": "transfer", "value": {"from": "0", "to": "1", "amount": 5}, "time": 0},
        {"process": 0, "type": "ok", "f": "transfer", "value": {"from": "0", "to": "1", "amount": 5}, "time": 1},
        {"process": 1, "type": "invoke", "f": "read", "value": None, "time": 2},
        {"process": 1, "type": "ok", "f": "read", "value": {"0": 5, "1": 15}, "time": 3},
        {"process": 1, "type": "invoke", "f": "read", "value": None, "time": 4},
        {"process": 1, "type": "ok", "f": "read", "value": {"0": -5, "1": 15}, "time": 5},
    ]
    history = write(tmp_path / "bank.jsonl", events)
    assert check([history, "--model", "bank", "--total", "20", "--accounts", "2"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "INVALID: 2 anomalies"
    assert [line.split(":")[0].strip() for line in out[1:]] == ["negative-balance", "wrong-total"]
    assert check([write(tmp_path / "ok.jsonl", events[:4]), "--model", "bank", "--total", "20", "--accounts", "2"]) == 0


def test_an_empty_history_is_valid_and_says_nothing_was_checked(tmp_path, capsys):
    assert check([write(tmp_path / "h.jsonl", []), "--model", "list-append"]) == 0
    assert capsys.readouterr().out == "valid: the history holds no operation, so nothing was checked\n"


def test_a_search_that_hits_its_limit_is_undetermined_with_its_own_exit_status(tmp_path, capsys):
    writes = [event for n in range(4) for event in
              ({"process": n, "type": "invoke", "f": "write", "value": {"key": "a", "value": n}, "time": 0},)]
    writes += [{"process": n, "type": "ok", "f": "write", "value": {"key": "a", "value": n}, "time": 1}
               for n in range(4)]
    read = [{"process": 9, "type": "invoke", "f": "read", "value": {"key": "a", "value": None}, "time": 2},
            {"process": 9, "type": "ok", "f": "read", "value": {"key": "a", "value": 9}, "time": 3}]
    history = write(tmp_path / "h.jsonl", writes + read)
    assert check([history, "--model", "register", "--max-states", "3"]) == 3
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "UNDETERMINED: no anomaly found, but not everything could be decided"
    assert "gave up after exploring 3 states" in out[1] and "--max-states" in out[1]
    # Given room, the search proves it.
    assert check([history, "--model", "register"]) == 1


def test_bank_model_needs_total_and_accounts(tmp_path, capsys):
    assert check([write(tmp_path / "h.jsonl", []), "--model", "bank"]) == 2
    assert "needs --total and --accounts" in capsys.readouterr().err


def test_register_model(tmp_path, capsys):
    events = [
        {"process": 0, "type": "invoke", "f": "write", "value": {"key": "a", "value": 1}, "time": 0},
        {"process": 0, "type": "ok", "f": "write", "value": {"key": "a", "value": 1}, "time": 1},
        {"process": 1, "type": "invoke", "f": "read", "value": {"key": "a", "value": None}, "time": 2},
        {"process": 1, "type": "ok", "f": "read", "value": {"key": "a", "value": None}, "time": 3},
    ]
    assert check([write(tmp_path / "h.jsonl", events), "--model", "register"]) == 1
    assert "nonlinearizable: key 'a'" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"process": 1, "type": "invoke", "f": "txn", "value": [], "time": 0}\n{oops\n', "line 2: not JSON"),
        (
            '{"process": 1, "type": "invoke", "f": "txn", "value": [["put", "x", 1]], "time": 0}\n',
            "line 1: op 0 (process 1, info txn",
        ),
    ],
)
def test_a_bad_file_is_one_line_naming_the_line(tmp_path, capsys, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    assert check([str(path), "--model", "list-append"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("raftline check: ")


def test_a_missing_file(tmp_path, capsys):
    assert check([str(tmp_path / "absent.jsonl"), "--model", "register"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_runs_as_a_module(tmp_path):
    history = write(tmp_path / "h.jsonl", WRITE_SKEW)
    done = subprocess.run(
        [sys.executable, "-m", "raftline.cli", "check", history, "--model", "list-append"], capture_output=True, text=True
    )
    assert done.returncode == 1 and done.stdout.startswith("INVALID: 1 anomaly")
