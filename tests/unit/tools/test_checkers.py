"""Unit tests for the bank and serializability checkers (raftline/check/bank.py, serializable.py) on small hand-made histories."""

from actors.messages import ZERO_STAMP
from raftline.check.bank import check_bank
from raftline.check.serializable import CommittedTxn, check_serializable


def txn(txid, ts, reads=None, writes=()):
    return CommittedTxn(txid=txid, stamp=(ts, txid), reads=reads or {}, writes=frozenset(writes))


def version(txid, ts):
    return (ts, txid)


# -- bank ---------------------------------------------------------------------


def test_bank_accepts_reads_that_conserve_the_total():
    result = check_bank([{"a": 60, "b": 40}, {"a": 0, "b": 100}], 100)
    assert result.valid and result.violations == []


def test_bank_reports_a_wrong_sum():
    result = check_bank([{"a": 60, "b": 40}, {"a": 50, "b": 40}], 100)
    assert not result.valid
    assert result.violations == ["read 1: balances sum to 90, expected 100"]


def test_bank_reports_a_negative_balance_even_when_the_sum_is_right():
    result = check_bank([{"a": -10, "b": 110}], 100)
    assert result.violations == ["read 0: account a has a negative balance -10"]


def test_bank_reports_a_missing_account():
    result = check_bank([{"a": 100, "b": None}], 100)
    assert result.violations == ["read 0: accounts missing: b"]


def test_bank_caps_the_report_and_counts_the_rest():
    result = check_bank([{"a": 1}] * 5, 100, limit=2)
    assert not result.valid
    assert result.violations[-1] == "... and 3 more"
    assert len(result.violations) == 3


# -- serializability ------------------------------------------------------------


def test_a_serial_history_is_valid():
    history = [
        txn("t1", 1, {"x": ZERO_STAMP}, {"x"}),
        txn("t2", 2, {"x": version("t1", 1), "y": ZERO_STAMP}, {"y"}),
        txn("t3", 3, {"x": version("t1", 1), "y": version("t2", 2)}, {"x", "y"}),
    ]
    result = check_serializable(history)
    assert result.valid, result.violations
    assert result.cycle == ()


def test_a_reader_of_an_old_version_ordered_before_the_writer_is_valid():
    # t2 read x before t3 overwrote it; t2 < t3 so the rw edge goes forward.
    history = [
        txn("t1", 1, {}, {"x"}),
        txn("t2", 2, {"x": version("t1", 1)}, ()),
        txn("t3", 3, {}, {"x"}),
    ]
    assert check_serializable(history).valid


def test_write_skew_is_a_cycle():
    # Both read x and y at the initial versions; each writes one of them.
    history = [
        txn("t1", 1, {"x": ZERO_STAMP, "y": ZERO_STAMP}, {"x"}),
        txn("t2", 2, {"x": ZERO_STAMP, "y": ZERO_STAMP}, {"y"}),
    ]
    result = check_serializable(history)
    assert not result.valid
    assert set(result.cycle) == {"t1", "t2"}
    assert result.violations[0].startswith("cycle: ")
    assert any("edge against timestamp order: t2" in line and "rw 'x'" in line for line in result.violations)


def test_lost_update_is_a_cycle():
    # Both read x at the initial version and both write it.
    history = [
        txn("t1", 1, {"x": ZERO_STAMP}, {"x"}),
        txn("t2", 2, {"x": ZERO_STAMP}, {"x"}),
    ]
    result = check_serializable(history)
    assert not result.valid
    assert set(result.cycle) == {"t1", "t2"}
    assert "-ww 'x'->" in result.violations[0] and "-rw 'x'->" in result.violations[0]


def test_a_read_of_an_aborted_write_is_reported():
    history = [
        txn("t1", 1, {}, {"x"}),
        txn("t3", 3, {"x": version("t2", 2)}, ()),
    ]
    result = check_serializable(history)
    assert not result.valid
    assert result.violations == [
        "t3 read 'x' at version (2, 't2'), which no committed transaction wrote"
    ]


def test_a_read_of_a_version_its_writer_did_not_write_for_that_key_is_reported():
    history = [txn("t1", 1, {}, {"y"}), txn("t2", 2, {"x": version("t1", 1)}, ())]
    assert not check_serializable(history).valid


def test_an_edge_against_timestamp_order_is_reported_without_a_cycle():
    # t1 (stamp 1) read the version t2 (stamp 2) wrote: acyclic, but the
    # serial order is not the timestamp order.
    history = [
        txn("t2", 2, {}, {"x"}),
        txn("t1", 1, {"x": version("t2", 2)}, ()),
    ]
    result = check_serializable(history)
    assert not result.valid
    assert result.cycle == ()
    assert result.violations == ["edge against timestamp order: t2 (2, 't2') -wr 'x'-> t1 (1, 't1')"]


def test_equal_timestamps_are_ordered_by_txid():
    history = [
        txn("a", 5, {}, {"x"}),
        txn("b", 5, {"x": version("a", 5)}, {"x"}),
    ]
    assert check_serializable(history).valid


def test_a_repeated_txid_is_reported():
    history = [txn("t1", 1, {}, {"x"}), txn("t1", 1, {}, {"x"})]
    assert not check_serializable(history).valid


def test_a_long_cycle_through_many_keys_is_found():
    # t0 -> t1 -> ... -> t9 by wr edges; t0 read t9's write, which closes the
    # loop with the only edge that runs backwards in stamp order.
    history = [txn("t0", 10, {"k9": version("t9", 19)}, {"k0"})]
    for i in range(1, 10):
        history.append(txn(f"t{i}", 10 + i, {f"k{i - 1}": version(f"t{i - 1}", 10 + i - 1)}, {f"k{i}"}))
    result = check_serializable(history)
    assert not result.valid
    assert set(result.cycle) == {f"t{i}" for i in range(10)}


def test_a_large_serial_history_is_valid():
    # 20,000 transactions chained through one hot key: exercises the
    # iterative search on a path far deeper than Python's recursion limit.
    history = []
    previous = ZERO_STAMP
    for i in range(1, 20_001):
        history.append(txn(f"t{i}", i, {"hot": previous, f"k{i}": ZERO_STAMP}, {"hot", f"k{i}"}))
        previous = version(f"t{i}", i)
    assert check_serializable(history).valid
