"""The rw-register checker (raftline/check/rw_register.py, as Elle's):
one hand-made history per anomaly class, valid ones accepted."""

from raftline.check.history import Operation
from raftline.check.rw_register import check_rw_register


def ops_of(*txns):
    """Operations from micro-op lists run one after another, one process each:
    ("r", key, value) reads, ("w", key, value) writes; a (micro-ops, type) pair
    gives a type other than ok."""
    operations = []
    for index, txn in enumerate(txns):
        micro, kind = txn if isinstance(txn, tuple) and isinstance(txn[1], str) else (txn, "ok")
        observed = [[f, k, v] for f, k, v in micro]
        invoked = [[f, k, None if f == "r" else v] for f, k, v in micro]
        operations.append(Operation(index=index, process=index, f="txn", invoke_value=invoked,
                                    result_value=observed if kind == "ok" else invoked, type=kind,
                                    start=2 * index, end=None if kind == "info" else 2 * index + 1))
    return operations


def names(result):
    return sorted(anomaly.name for anomaly in result.anomalies)


def test_a_serial_history_with_reads_of_the_latest_write_is_valid():
    history = ops_of([("w", "x", 1)], [("r", "x", 1), ("w", "x", 2)], [("r", "x", 2), ("r", "y", None)])
    assert check_rw_register(history).valid


def test_g2_write_skew_from_the_initial_version():
    history = ops_of([("r", "x", None), ("w", "y", 1)], [("r", "y", None), ("w", "x", 1)])
    assert names(check_rw_register(history)) == ["G2"]


def test_g_single_read_skew():
    history = ops_of([("w", "x", 1), ("w", "y", 1)], [("r", "x", None), ("r", "y", 1)])
    assert names(check_rw_register(history)) == ["G-single"]


def test_a_lost_update_is_a_cycle_through_writes_that_follow_reads():
    history = ops_of([("r", "x", None), ("w", "x", 1)], [("r", "x", None), ("w", "x", 2)])
    assert names(check_rw_register(history)) == ["G2"]


def test_a_stale_read_is_serializable_but_not_strictly():
    history = ops_of([("w", "x", 1)], [("r", "x", None)])
    assert check_rw_register(history).valid
    assert [anomaly.name for anomaly in check_rw_register(history, realtime=True).anomalies] == ["G-single-realtime"]


def test_non_cyclic_anomalies():
    assert names(check_rw_register(ops_of(([("w", "x", 1)], "fail"), [("r", "x", 1)]))) == ["G1a"]
    assert names(check_rw_register(ops_of([("w", "x", 1), ("w", "x", 2)], [("r", "x", 1)]))) == ["G1b"]
    assert names(check_rw_register(ops_of([("r", "x", 7)]))) == ["garbage-read"]
    assert names(check_rw_register(ops_of([("w", "x", 1), ("r", "x", 2)], [("w", "x", 2)]))) == ["internal"]


def test_an_info_write_may_or_may_not_have_happened():
    assert check_rw_register(ops_of(([("w", "x", 1)], "info"), [("r", "x", 1)])).valid
    assert check_rw_register(ops_of(([("w", "x", 1)], "info"), [("r", "x", None)])).valid
