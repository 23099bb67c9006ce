"""Unit tests for the list-append checker (raftline/check/elle.py, Elle-style):
one hand-made history per anomaly class, valid ones accepted, and random
histories of a strictly serializable model accepted.

Run as a script for the 100,000-operation timing:
    python3 -m tests.unit.test_checkers_elle [OPERATIONS]
"""

import io
import random
import sys

import pytest

from raftline.check.elle import check_list_append
from raftline.check.history import Event, Operation, read_operations, write_history


def ops_of(*txns):
    """Operations from (micro-ops, type) pairs run one after another, one
    process each: ("a", key, value) appends, ("r", key, list) reads."""
    operations = []
    for index, txn in enumerate(txns):
        micro, kind = txn if isinstance(txn, tuple) and isinstance(txn[1], str) else (txn, "ok")
        observed = [["append", k, v] if f == "a" else ["r", k, v] for f, k, v in micro]
        invoked = [[f, k, None if f == "r" else v] for f, k, v in observed]
        operations.append(
            Operation(
                index=index,
                process=index,
                f="txn",
                invoke_value=invoked,
                result_value=observed if kind == "ok" else invoked,
                type=kind,
                start=index * 10,
                end=None if kind == "info" else index * 10 + 5,
            )
        )
    return operations


def names(result):
    return sorted(anomaly.name for anomaly in result.anomalies)


# -- valid histories ----------------------------------------------------------------------


def test_an_empty_history_is_valid():
    assert check_list_append([]).valid


def test_a_serial_history_is_valid():
    result = check_list_append(
        ops_of(
            [("a", "x", 1), ("r", "y", [])],
            [("r", "x", [1]), ("a", "x", 2), ("a", "y", 1)],
            [("r", "x", [1, 2]), ("r", "y", [1])],
        )
    )
    assert result.valid, result.violations


def test_a_stale_read_is_serializable_though_not_strictly():
    history = ops_of([("a", "x", 1)], [("r", "x", [])], [("r", "x", [1])])
    assert check_list_append(history).valid
    result = check_list_append(history, realtime=True)
    assert names(result) == ["G-single-realtime"]
    assert [op.index for op in result.anomalies[0].operations] in ([0, 1], [1, 0])


def test_process_order_names_a_session_violation():
    history = ops_of([("a", "x", 1)], [("r", "x", [])], [("r", "x", [1])])
    history[1] = Operation(**{**_fields(history[1]), "process": 0})
    assert check_list_append(history).valid
    assert names(check_list_append(history, process_order=True)) == ["G-single-process"]


def _fields(operation):
    return {name: getattr(operation, name) for name in Operation.__slots__}


def test_an_info_append_may_have_happened_so_reading_it_is_fine():
    history = ops_of(([("a", "x", 1)], "info"), [("r", "x", [1])])
    assert check_list_append(history).valid


def test_an_info_append_may_never_have_happened_either():
    history = ops_of(([("a", "x", 1)], "info"), [("r", "x", [])], [("a", "x", 2)], [("r", "x", [2])])
    assert check_list_append(history).valid


# -- cycles ----------------------------------------------------------------------------------


def test_g0_write_cycle():
    result = check_list_append(
        ops_of(
            [("a", "x", 1), ("a", "y", 1)],
            [("a", "x", 2), ("a", "y", 2)],
            [("r", "x", [1, 2]), ("r", "y", [2, 1])],
        )
    )
    assert names(result) == ["G0"]
    anomaly = result.anomalies[0]
    assert {op.index for op in anomaly.operations} == {0, 1}
    assert "-ww 'x'->" in anomaly.detail and "-ww 'y'->" in anomaly.detail


def test_g1c_circular_information_flow():
    result = check_list_append(
        ops_of(
            [("a", "x", 1), ("r", "y", [1])],
            [("a", "y", 1), ("r", "x", [1])],
        )
    )
    assert names(result) == ["G1c"]
    assert {op.index for op in result.anomalies[0].operations} == {0, 1}


def test_g_single_read_skew():
    result = check_list_append(
        ops_of(
            [("a", "x", 1), ("a", "y", 1)],
            [("r", "x", []), ("r", "y", [1])],
            [("r", "x", [1])],
        )
    )
    assert names(result) == ["G-single"]
    assert "-rw 'x'->" in result.anomalies[0].detail and "-wr 'y'->" in result.anomalies[0].detail


def test_g2_write_skew():
    result = check_list_append(
        ops_of(
            [("r", "x", []), ("a", "y", 1)],
            [("r", "y", []), ("a", "x", 1)],
            [("r", "x", [1]), ("r", "y", [1])],
        )
    )
    assert names(result) == ["G2"]
    assert result.anomalies[0].detail.count("-rw ") == 2


def test_each_component_yields_its_own_cycle():
    g0 = [[("a", "x", 1), ("a", "y", 1)], [("a", "x", 2), ("a", "y", 2)], [("r", "x", [1, 2]), ("r", "y", [2, 1])]]
    g2 = [[("r", "p", []), ("a", "q", 1)], [("r", "q", []), ("a", "p", 1)], [("r", "p", [1]), ("r", "q", [1])]]
    result = check_list_append(ops_of(*g0, *g2))
    assert names(result) == ["G0", "G2"]


def test_the_weakest_cycle_of_a_component_is_named():
    # Write skew plus a ww cycle among the same two transactions: G0 wins.
    result = check_list_append(
        ops_of(
            [("r", "x", []), ("a", "y", 1), ("a", "z", 1), ("a", "w", 1)],
            [("r", "y", []), ("a", "x", 1), ("a", "z", 2), ("a", "w", 2)],
            [("r", "x", [1]), ("r", "y", [1]), ("r", "z", [1, 2]), ("r", "w", [2, 1])],
        )
    )
    assert names(result) == ["G0"]


# -- anomalies without cycles --------------------------------------------------------------


def test_g1a_aborted_read():
    result = check_list_append(ops_of(([("a", "x", 1)], "fail"), [("r", "x", [1])]))
    assert names(result) == ["G1a"]
    assert [op.index for op in result.anomalies[0].operations] == [1, 0]


def test_g1b_intermediate_read():
    result = check_list_append(ops_of([("a", "x", 1), ("a", "x", 2)], [("r", "x", [1])], [("r", "x", [1, 2])]))
    assert "G1b" in names(result)
    g1b = next(anomaly for anomaly in result.anomalies if anomaly.name == "G1b")
    assert [op.index for op in g1b.operations] == [1, 0]


def test_a_read_of_a_txns_final_append_is_not_intermediate():
    assert check_list_append(ops_of([("a", "x", 1), ("a", "x", 2)], [("r", "x", [1, 2])])).valid


def test_incompatible_orders():
    result = check_list_append(ops_of([("a", "x", 1)], [("a", "x", 2)], [("r", "x", [1, 2])], [("r", "x", [2, 1])]))
    assert names(result) == ["incompatible-order"]
    assert {op.index for op in result.anomalies[0].operations} == {2, 3}


def test_duplicate_elements():
    result = check_list_append(ops_of([("a", "x", 1)], [("r", "x", [1, 1])]))
    assert "duplicate-elements" in names(result)


def test_internal_inconsistency_missing_own_append():
    result = check_list_append(ops_of([("a", "x", 1), ("r", "x", [])]))
    assert names(result) == ["internal"]


def test_internal_inconsistency_between_two_reads():
    result = check_list_append(ops_of([("a", "x", 1)], [("a", "x", 2)], [("r", "x", [1]), ("r", "x", [1, 2])]))
    assert "internal" in names(result)


def test_a_read_after_own_appends_that_sees_them_is_consistent():
    assert check_list_append(ops_of([("a", "x", 1)], [("a", "x", 2), ("r", "x", [1, 2])])).valid


def test_garbage_read():
    assert names(check_list_append(ops_of([("r", "x", [7])]))) == ["garbage-read"]


def test_a_future_read_of_the_txns_own_later_append():
    # Elle's internal anomaly: the read returns an element the txn appends only afterwards.
    assert names(check_list_append(ops_of([("a", "x", 0), ("a", "x", 2)], [("r", "x", [0, 2, 1]), ("a", "x", 1)]))) == [
        "future-read"]
    # Also between its own appends: it appended 1, read [0, 1], and only then appends 0.
    assert names(check_list_append(ops_of([("a", "x", 1), ("r", "x", [0, 1]), ("a", "x", 0), ("a", "x", 3)]))) == [
        "future-read"]


# -- committed appends no read observed (Elle infers where they go) ------------------------


def test_an_unobserved_append_comes_after_the_longest_read_and_closes_a_g_single():
    """T1 appends x and y; T2 sees T1's y but not its x, the only read of x.
    T1's x was never read, yet it follows x's whole observed order (empty):
    T2 -rw-> T1 -wr-> T2. Without the inference nothing links T2 to T1's x."""
    history = ops_of([("a", "x", 1), ("a", "y", 1)], [("r", "y", [1]), ("r", "x", [])])
    assert names(check_list_append(history)) == ["G-single"]


def test_unobserved_appends_on_both_sides_close_a_write_skew():
    """Each reads the other's key empty and appends to its own; nobody reads the appends."""
    history = ops_of([("r", "x", []), ("a", "y", 1)], [("r", "y", []), ("a", "x", 1)])
    assert names(check_list_append(history)) == ["G2"]


def test_an_unobserved_append_after_everything_read_is_fine():
    history = ops_of([("a", "x", 1)], [("r", "x", [1])], [("a", "x", 2)], [("r", "y", [])])
    assert check_list_append(history).valid


def test_unobserved_appends_are_not_ordered_among_themselves():
    history = ops_of([("r", "x", [])], [("a", "x", 1)], [("a", "x", 2)])
    assert check_list_append(history).valid


def test_anomalies_name_the_operations_involved():
    result = check_list_append(ops_of(([("a", "x", 1)], "fail"), [("r", "x", [1])]))
    assert result.violations[0].startswith("G1a: op 1 (process 1, ok txn")
    assert "failed op 0 (process 0, fail txn" in result.violations[0]


# -- random histories of a strictly serializable model ------------------------------------------


def generate_list_append(rng, count, *, processes=5, active_keys=4, max_appends=12, fail=0.05, info=0.05):
    """A JSON Lines history of `count` list-append txns by concurrent processes.

    Each txn takes effect atomically at a random instant inside its interval,
    against one in-memory store, so the history is strictly serializable. A
    failed txn does nothing; an info one takes effect or not. A key retires
    after `max_appends` appends (a fresh one replaces it), as Elle's generator
    does, so reads stay short.
    """
    clock = [0] * processes
    planned = []  # (effect instant, start, end, process, micro-ops, type)
    for number in range(count):
        process = rng.randrange(processes)
        start = clock[process] + rng.randint(1, 50)
        end = start + rng.randint(1, 200)
        clock[process] = end
        roll = rng.random()
        kind = "fail" if roll < fail else "info" if roll < fail + info else "ok"
        planned.append([rng.randint(start, end) * count + number, start, end, process, None, kind])
    # Micro-ops are chosen in effect order, so appended values and key rotation follow the store.
    store: dict[str, list[int]] = {}
    appends: dict[str, int] = {}
    active = [f"k{n}" for n in range(active_keys)]
    fresh = active_keys
    for entry in sorted(planned):
        micro = []
        for _ in range(rng.randint(1, 4)):
            slot = rng.randrange(len(active))
            key = active[slot]
            if rng.random() < 0.5:
                appends[key] = appends.get(key, 0) + 1
                micro.append(["append", key, appends[key]])
                if appends[key] >= max_appends:
                    active[slot] = f"k{fresh}"
                    fresh += 1
            else:
                micro.append(["r", key, None])
        happens = entry[5] == "ok" or (entry[5] == "info" and rng.random() < 0.5)
        observed = []
        for f, key, value in micro:
            if f == "r":
                observed.append(["r", key, list(store.get(key, [])) if happens else None])
            else:
                if happens:
                    store.setdefault(key, []).append(value)
                observed.append([f, key, value])
        entry[4] = (micro, observed)
    events = []
    for _, start, end, process, (micro, observed), kind in planned:
        events.append((start, 0, process, Event(process=process, type="invoke", f="txn", value=micro, time=start)))
        value = observed if kind == "ok" else micro
        events.append((end, 1, process, Event(process=process, type=kind, f="txn", value=value, time=end)))
    events.sort(key=lambda item: item[:3])
    out = io.StringIO()
    write_history([event for *_, event in events], out)
    return out.getvalue().splitlines()


@pytest.mark.parametrize("seed", range(40))
def test_random_strictly_serializable_histories_are_valid(seed):
    operations = read_operations(generate_list_append(random.Random(seed), 60))
    result = check_list_append(operations, realtime=True, process_order=True)
    assert result.valid, result.violations


@pytest.mark.parametrize("seed", range(20))
def test_a_read_that_loses_an_element_is_caught(seed):
    rng = random.Random(seed)
    operations = read_operations(generate_list_append(rng, 60, fail=0, info=0))
    reads = [
        (position, slot)
        for position, op in enumerate(operations)
        for slot, micro in enumerate(op.result_value)
        if micro[0] == "r" and len(micro[2]) >= 2
    ]
    position, slot = rng.choice(reads)
    victim = operations[position]
    observed = [list(micro) for micro in victim.result_value]
    observed[slot][2] = observed[slot][2][:-2] + observed[slot][2][-1:]  # the next-to-last element vanishes
    operations[position] = Operation(**{**_fields(victim), "result_value": observed})
    assert not check_list_append(operations).valid


def benchmark(count):
    """Generate and check a `count`-operation history; print the checker's time."""
    from time import perf_counter

    lines = generate_list_append(random.Random(1), count, processes=10, active_keys=20, max_appends=32)
    operations = read_operations(lines)
    began = perf_counter()
    result = check_list_append(operations)
    checked = perf_counter() - began
    with_order = perf_counter()
    strict = check_list_append(operations, realtime=True, process_order=True)
    print(
        f"list-append: {len(operations)} operations: {checked:.2f} s (serializable, valid={result.valid}),"
        f" {perf_counter() - with_order:.2f} s (with realtime and process edges, valid={strict.valid})"
    )


if __name__ == "__main__":
    benchmark(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
