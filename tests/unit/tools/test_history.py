"""Unit tests for raftline/check/history.py: the JSON Lines format and operation pairing."""

import io

import pytest

from raftline.check.history import Event, HistoryError, pair_operations, read_history, read_operations, write_history


def line(process, kind, f="txn", value=None, time=0):
    return Event(process=process, type=kind, f=f, value=value, time=time)


def text(*events):
    out = io.StringIO()
    write_history(events, out)
    return out.getvalue()


def test_write_then_read_round_trips():
    events = [line(1, "invoke", value=[["r", "x", None]], time=5), line(1, "ok", value=[["r", "x", [1]]], time=9)]
    assert read_history(io.StringIO(text(*events))) == events


def test_blank_lines_are_skipped_but_counted():
    history = text(line(1, "invoke", time=1)) + "\n" + '{"process": 1}\n'
    with pytest.raises(HistoryError, match="^line 3: missing field"):
        read_history(history.splitlines())


@pytest.mark.parametrize(
    "bad, message",
    [
        ("{not json", "line 1: not JSON"),
        ("[1, 2]", "line 1: an event must be a JSON object"),
        ('{"process": 1, "type": "ok", "f": "txn", "value": null}', "line 1: missing field.s.: time"),
        ('{"process": "p", "type": "ok", "f": "txn", "value": null, "time": 1}', "process must be an integer"),
        ('{"process": true, "type": "ok", "f": "txn", "value": null, "time": 1}', "process must be an integer"),
        ('{"process": 1, "type": "done", "f": "txn", "value": null, "time": 1}', "type must be one of"),
        ('{"process": 1, "type": "ok", "f": "", "value": null, "time": 1}', "f must be a non-empty string"),
        ('{"process": 1, "type": "ok", "f": "txn", "value": null, "time": -4}', "time must be a non-negative"),
    ],
)
def test_each_malformed_line_gets_one_clear_error(bad, message):
    with pytest.raises(HistoryError, match=message) as caught:
        read_history([bad])
    assert caught.value.line == 1


def test_times_may_go_backwards_as_in_jepsens_histories_and_real_time_is_line_order():
    history = text(line(1, "invoke", time=10), line(1, "ok", time=3), line(2, "invoke", time=1),
                   line(2, "ok", time=2))
    first, second = read_operations(history.splitlines())
    # The second began after the first completed, whatever the clocks said.
    assert (first.start, first.end, second.start, second.end) == (0, 1, 2, 3)


def test_invokes_pair_with_their_process_completions():
    events = [
        line(1, "invoke", value="a", time=1),
        line(2, "invoke", value="b", time=2),
        line(2, "fail", value="b", time=3),
        line(1, "ok", value="A", time=4),
        line(2, "invoke", value="c", time=5),
        line(2, "info", value="c", time=6),
    ]
    first, second, third = pair_operations(events)
    assert (first.process, first.invoke_value, first.result_value, first.type) == (1, "a", "A", "ok")
    # start and end are positions among the events: real time is their order.
    assert (first.start, first.end, first.index, first.line) == (0, 3, 0, 1)
    assert (second.type, second.end, second.index) == ("fail", 2, 1)
    assert (third.type, third.start, third.end) == ("info", 4, None)


def test_an_invoke_never_completed_is_info():
    (operation,) = pair_operations([line(3, "invoke", value="x", time=7)])
    assert (operation.type, operation.end, operation.result_value) == ("info", None, None)


def test_a_process_has_at_most_one_outstanding_operation():
    history = text(line(1, "invoke", time=1), line(1, "invoke", time=2))
    with pytest.raises(HistoryError, match="line 2: process 1 invokes txn while its txn from line 1"):
        read_operations(history.splitlines())


def test_a_completion_needs_an_invoke():
    with pytest.raises(HistoryError, match="line 1: ok for process 4, which has no outstanding"):
        read_operations(text(line(4, "ok")).splitlines())


def test_a_completion_must_match_its_invoke():
    history = text(line(1, "invoke", f="read", time=1), line(1, "ok", f="write", time=2))
    with pytest.raises(HistoryError, match="line 2: ok write does not match process 1's invoke of read on line 1"):
        read_operations(history.splitlines())


def test_describe_names_process_index_and_value():
    (operation,) = pair_operations([line(2, "invoke", value=[1], time=1), line(2, "ok", value=[2], time=2)])
    assert operation.describe() == "op 0 (process 2, ok txn [2])"
