"""actors/metrics.py: one catalogue of names, and the plain-data snapshot every
actor sends with its status (docs/DESIGN.md section 14)."""

import pytest

from actors.metrics import DURATION_BUCKETS, Metrics


def test_counters_gauges_and_histograms_snapshot_as_plain_data():
    metrics = Metrics()
    metrics.count("raftline_messages_sent_total", kind="AppendLog")
    metrics.count("raftline_messages_sent_total", 2, kind="AppendLog")
    metrics.set("raftline_term", 4)
    for seconds in (0.001, 0.0011, 20.0):  # at a bound counts in its bucket; past the last, in the overflow
        metrics.observe("raftline_client_operation_duration_seconds", seconds, operation="read")
    snapshot = metrics.snapshot()
    assert snapshot["raftline_messages_sent_total"] == [{"labels": {"kind": "AppendLog"}, "value": 3}]
    assert snapshot["raftline_term"] == [{"labels": {}, "value": 4}]
    [histogram] = snapshot["raftline_client_operation_duration_seconds"]
    buckets = histogram["buckets"]
    assert len(buckets) == len(DURATION_BUCKETS) + 1
    assert buckets[DURATION_BUCKETS.index(0.001)] == 1 and buckets[DURATION_BUCKETS.index(0.0025)] == 1
    assert buckets[-1] == 1 and histogram["count"] == 3 and histogram["sum"] == pytest.approx(20.0021)
    assert metrics.value("raftline_messages_sent_total", kind="AppendLog") == 3
    assert metrics.value("raftline_messages_sent_total", kind="Never") == 0


def test_a_name_or_labels_the_catalogue_does_not_declare_fail_at_once():
    metrics = Metrics()
    with pytest.raises(KeyError, match="not declared"):
        metrics.count("raftline_typo_total")
    with pytest.raises(ValueError, match="labelled"):
        metrics.count("raftline_messages_sent_total")  # its label is missing
    with pytest.raises(ValueError, match="in that order"):
        metrics.count("raftline_client_operations_total", outcome="ok", operation="read")
    with pytest.raises(ValueError, match="not a gauge"):
        metrics.set("raftline_messages_sent_total", 1, kind="AppendLog")
    with pytest.raises(ValueError, match="strings"):
        metrics.count("raftline_messages_sent_total", kind=3)
    assert metrics.snapshot() == {}  # nothing refused was recorded
