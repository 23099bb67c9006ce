"""Unit tests for the per-key register linearizability checker (raftline/check/linearizable.py).

Run as a script for the 100,000-operation timing:
    python3 -m tests.unit.test_linearizable [OPERATIONS]
"""

import io
import random
import sys

import pytest

from raftline.check.history import Event, HistoryError, Operation, read_operations, write_history
from raftline.check.linearizable import check_linearizable


def op(index, f, value, start, end, *, result=None, kind="ok", process=None, key=None):
    """A register operation over [start, end]; `end` None for info."""
    if key is not None:
        value = {"key": key, "value": value}
        result = {"key": key, "value": result}
    return Operation(
        index=index,
        process=index if process is None else process,
        f=f,
        invoke_value=value,
        result_value=result if f == "read" else value,
        type=kind,
        start=start,
        end=end,
    )


def test_sequential_reads_of_the_last_write_are_linearizable():
    history = [op(0, "read", None, 0, 1), op(1, "write", 1, 2, 3), op(2, "read", None, 4, 5, result=1)]
    assert check_linearizable(history).valid


def test_a_read_concurrent_with_a_write_may_see_either_value():
    for seen in (None, 1):
        history = [op(0, "write", 1, 0, 10), op(1, "read", None, 2, 5, result=seen)]
        assert check_linearizable(history).valid


def test_a_stale_read_is_not_linearizable():
    history = [op(0, "write", 1, 0, 1), op(1, "write", 2, 2, 3), op(2, "read", None, 4, 5, result=1)]
    result = check_linearizable(history)
    assert not result.valid
    anomaly = result.anomalies[0]
    assert anomaly.name == "nonlinearizable"
    assert anomaly.operations[-1].index == 2
    assert "with the register at 2" in anomaly.detail


def test_a_lost_write_is_not_linearizable():
    history = [op(0, "write", 1, 0, 1), op(1, "read", None, 2, 3, result=None)]
    assert not check_linearizable(history).valid


def test_reads_cannot_go_back_in_time_between_concurrent_writes():
    history = [
        op(0, "write", 1, 0, 100),
        op(1, "write", 2, 0, 100),
        op(2, "read", None, 10, 20, result=1),
        op(3, "read", None, 30, 40, result=2),
        op(4, "read", None, 50, 60, result=1),
    ]
    assert not check_linearizable(history).valid
    assert check_linearizable(history[:4]).valid


def test_cas_succeeds_only_on_the_expected_value():
    ok = [op(0, "write", 1, 0, 1), op(1, "cas", [1, 2], 2, 3), op(2, "read", None, 4, 5, result=2)]
    assert check_linearizable(ok).valid
    wrong = [op(0, "write", 1, 0, 1), op(1, "cas", [5, 2], 2, 3)]
    assert not check_linearizable(wrong).valid


def test_a_failed_cas_did_nothing():
    history = [op(0, "write", 1, 0, 1), op(1, "cas", [1, 2], 2, 3, kind="fail"), op(2, "read", None, 4, 5, result=1)]
    assert check_linearizable(history).valid
    history[2] = op(2, "read", None, 4, 5, result=2)
    assert not check_linearizable(history).valid


def test_an_info_write_may_take_effect_late():
    history = [
        op(0, "write", 1, 0, None, kind="info"),
        op(1, "read", None, 10, 11, result=None),
        op(2, "read", None, 20, 21, result=1),
    ]
    assert check_linearizable(history).valid


def test_an_info_write_may_never_take_effect():
    history = [op(0, "write", 1, 0, None, kind="info"), op(1, "read", None, 10, 11, result=None)]
    assert check_linearizable(history).valid


def test_an_info_write_cannot_take_effect_before_its_invoke():
    history = [op(0, "read", None, 0, 1, result=1), op(1, "write", 1, 5, None, kind="info")]
    assert not check_linearizable(history).valid


def test_an_info_write_takes_effect_at_most_once():
    history = [
        op(0, "write", 1, 0, None, kind="info"),
        op(1, "read", None, 10, 11, result=1),
        op(2, "write", 2, 12, 13),
        op(3, "read", None, 14, 15, result=1),
    ]
    assert not check_linearizable(history).valid


def test_keys_are_independent_registers():
    history = [
        op(0, "write", 1, 0, 1, key="a"),
        op(1, "write", 2, 2, 3, key="b"),
        op(2, "read", None, 4, 5, result=1, key="a"),
        op(3, "read", None, 6, 7, result=2, key="b"),
    ]
    assert check_linearizable(history).valid


def test_every_bad_key_is_reported_by_name():
    history = [
        op(0, "write", 1, 0, 1, key="a"),
        op(1, "read", None, 2, 3, result=None, key="a"),
        op(2, "write", 1, 0, 1, key="b"),
        op(3, "read", None, 2, 3, result=1, key="b"),
        op(4, "write", 1, 0, 1, key="c"),
        op(5, "read", None, 2, 3, result=7, key="c"),
    ]
    result = check_linearizable(history)
    assert [anomaly.detail.split(":")[0] for anomaly in result.anomalies] == ["key 'a'", "key 'c'"]


def test_a_search_that_outgrows_its_budget_is_undetermined_not_valid():
    history = [op(n, "write", n, 0, 10) for n in range(4)] + [op(4, "read", None, 20, 21, result=9)]
    result = check_linearizable(history, max_states=3)
    assert not result.valid and result.anomalies == ()
    assert result.undetermined == ("key None: the search gave up after exploring 3 states of 5 operations"
                                   " (raise the limit with --max-states)",)
    assert [anomaly.name for anomaly in check_linearizable(history).anomalies] == ["nonlinearizable"]


def test_values_may_be_any_json():
    history = [op(0, "write", [1, {"b": 2}], 0, 1), op(1, "read", None, 2, 3, result=[1, {"b": 2}])]
    assert check_linearizable(history).valid


def test_malformed_register_operations_are_caller_errors():
    with pytest.raises(HistoryError, match="not 'append'"):
        check_linearizable([op(0, "append", 1, 0, 1)])
    with pytest.raises(HistoryError, match=r"\[old, new\]"):
        check_linearizable([op(0, "cas", 1, 0, 1)])
    with pytest.raises(ValueError, match="unknown model"):
        check_linearizable([], model="queue")


# -- random histories of a linearizable register ------------------------------------------------


def generate_register(rng, count, *, processes=5, keys=1, values=3, info=0.05):
    """A JSON Lines register history: each operation takes effect atomically at
    a random instant inside its interval, so it is linearizable. A cas that
    finds another value fails; an info operation takes effect or not."""
    clock = [0] * processes
    planned = []
    for number in range(count):
        process = rng.randrange(processes)
        start = clock[process] + rng.randint(1, 30)
        end = start + rng.randint(1, 100)
        clock[process] = end
        f = rng.choice(("read", "write", "cas"))
        argument = None if f == "read" else rng.randrange(values)
        if f == "cas":
            argument = [rng.randrange(values), rng.randrange(values)]
        planned.append(
            (rng.randint(start, end) * count + number, start, end, process, f, argument, rng.randrange(keys))
        )
    registers: dict[int, int] = {}
    events = []
    for _, start, end, process, f, argument, key in sorted(planned):
        kind = "info" if f != "read" and rng.random() < info else "ok"
        happens = kind == "ok" or rng.random() < 0.5
        result = registers.get(key) if f == "read" else argument
        if f == "write" and happens:
            registers[key] = argument
        elif f == "cas" and registers.get(key) == argument[0]:
            if happens:
                registers[key] = argument[1]
        elif f == "cas" and kind == "ok":
            kind = "fail"
        invoked = {"key": key, "value": None if f == "read" else argument}
        events.append((start, 0, process, Event(process=process, type="invoke", f=f, value=invoked, time=start)))
        done = {"key": key, "value": result} if kind == "ok" else invoked
        events.append((end, 1, process, Event(process=process, type=kind, f=f, value=done, time=end)))
    events.sort(key=lambda item: item[:3])
    out = io.StringIO()
    write_history([event for *_, event in events], out)
    return out.getvalue().splitlines()


@pytest.mark.parametrize("seed", range(40))
def test_random_linearizable_histories_are_accepted(seed):
    operations = read_operations(generate_register(random.Random(seed), 80, keys=2))
    result = check_linearizable(operations)
    assert result.valid, result.violations


@pytest.mark.parametrize("seed", range(20))
def test_a_read_of_a_value_never_written_is_caught(seed):
    rng = random.Random(seed)
    operations = read_operations(generate_register(rng, 60, keys=1))
    reads = [position for position, o in enumerate(operations) if o.f == "read" and o.type == "ok"]
    victim = operations[rng.choice(reads)]
    fields = {name: getattr(victim, name) for name in Operation.__slots__}
    operations[victim.index] = Operation(**{**fields, "result_value": {"key": 0, "value": 99}})
    assert not check_linearizable(operations).valid


def benchmark(count):
    """Generate and check a `count`-operation history over many keys; print the checker's time."""
    from time import perf_counter

    operations = read_operations(generate_register(random.Random(1), count, processes=10, keys=1000))
    began = perf_counter()
    result = check_linearizable(operations)
    print(f"register: {len(operations)} operations, 1000 keys: {perf_counter() - began:.2f} s (valid={result.valid})")


if __name__ == "__main__":
    benchmark(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
