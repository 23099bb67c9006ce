"""The dashboard's derivations from successive status dicts: rates from
counter deltas, latency percentiles from histogram deltas, leader changes."""

import pytest

from actors.metrics import DURATION_BUCKETS
from raftline.dashboard.history import WINDOW_SECONDS, History, counter_delta, percentile
from tests.unit.dashboard.samples import clerk, status


def observed(*statuses: dict, every: float = 1.0) -> History:
    history = History()
    for n, shown in enumerate(statuses):
        history.observe(shown, now=100.0 + n * every, wall=1_700_000_000.0 + n * every)
    return history


def test_a_counter_below_its_last_value_was_reset_and_counts_from_zero():
    assert counter_delta(10, 15) == 5
    assert counter_delta(10, 3) == 3
    assert counter_delta(None, 4) == 4


def test_throughput_is_the_growth_of_each_cluster_leaders_own_counter_per_second():
    before = status(applied={"c1-r0": 100, "c1-r1": 100, "c2-r0": 50})
    after = status(applied={"c1-r0": 130, "c1-r1": 128, "c2-r0": 60})
    (point,) = observed(before, after, every=2.0).points
    assert point["applied_per_s"] == 20.0  # (30 + 10) / 2 s; the follower's counter is not added
    assert point["seconds"] == 2.0


def test_a_new_leader_is_measured_on_its_own_counter_and_a_restarted_one_from_zero():
    before = status(applied={"c1-r0": 100, "c1-r1": 97, "c2-r0": 50})
    after = status(leaders={"c1": "c1-r1", "c2": "c2-r0"}, applied={"c1-r1": 105, "c2-r0": 4})
    (point,) = observed(before, after).points
    assert point["applied_per_s"] == 8 + 4


def test_clerk_operations_per_second_count_a_new_clerk_from_zero():
    before = status(clerks={"clerk-1": clerk(operations=10)})
    after = status(clerks={"clerk-1": clerk(operations=25), "clerk-2": clerk(operations=5)})
    (point,) = observed(before, after).points
    assert point["client_ops_per_s"] == 20.0


def test_rates_cover_the_last_few_seconds_so_a_clerk_reporting_every_other_poll_shows_no_false_idle():
    reported = [0, 0, 10, 10, 20, 20, 30, 30]
    history = observed(*[status(clerks={"clerk-1": clerk(operations=n)}) for n in reported])
    assert [p["seconds"] for p in history.points] == [1, 2, 3, 4, 5, 5, 5]
    assert [p["client_ops_per_s"] for p in history.points][-3:] == [4.0, 6.0, 4.0]


def test_absent_metrics_give_no_value_rather_than_zero():
    (point,) = observed(status(), status()).points
    assert point["applied_per_s"] is None and point["client_ops_per_s"] is None
    assert point["p50_ms"] is None and point["p99_ms"] is None


def test_latency_percentiles_come_from_the_observations_of_the_interval_only():
    old = (5.0,) * 100  # slow observations before the interval must not count
    before = status(clerks={"clerk-1": clerk(durations=old)})
    fast = (0.004,) * 98 + (0.2,) * 2
    after = status(clerks={"clerk-1": clerk(durations=old + fast)})
    (point,) = observed(before, after).points
    assert 2.5 < point["p50_ms"] <= 5.0  # in the (2.5 ms, 5 ms] bucket
    assert 100 < point["p99_ms"] <= 250


def test_percentile_interpolates_inside_its_bucket_and_caps_at_the_highest_bound():
    buckets = [0] * (len(DURATION_BUCKETS) + 1)
    buckets[1] = 10  # ten observations in (0.5 ms, 1 ms]
    assert percentile(buckets, 0.5) == pytest.approx(0.00075)
    assert percentile([0] * len(buckets), 0.5) is None
    buckets[-1] = 90  # above every bound
    assert percentile(buckets, 0.99) == DURATION_BUCKETS[-1]


def test_leader_changes_are_recorded_as_they_happen_with_old_and_new_leader_and_term():
    first = status()
    leaderless = status(leaders={"c1": None})
    elected = status(leaders={"c1": "c1-r2"}, term=3)
    history = observed(first, leaderless, elected, elected)
    (change,) = history.leader_changes
    assert {k: change[k] for k in ("group", "old", "new", "term")} == {"group": "c1", "old": "c1-r0",
                                                                      "new": "c1-r2", "term": 3}
    assert change["time"] == 1_700_000_002.0


def test_the_coordinator_groups_leader_changes_too():
    moved = status()
    moved["coordinator"] = moved["coordinator"] | {"leader": "coordinator-2", "term": 2}
    (change,) = observed(status(), moved).leader_changes
    assert (change["group"], change["old"], change["new"], change["term"]) == ("coordinator", "coordinator-0",
                                                                               "coordinator-2", 2)


def test_the_history_keeps_the_last_five_minutes():
    history = observed(*[status()] * 400)
    assert len(history.points) == WINDOW_SECONDS  # one a second
    assert history.points[-1]["time"] - history.points[0]["time"] < WINDOW_SECONDS


def test_a_failed_poll_is_shown_until_one_succeeds_and_the_history_is_kept():
    history = observed(status(), status())
    history.failed("no coordinator replica answered", wall=1_700_000_002.0)
    state = history.state()
    assert state["error"] == "no coordinator replica answered" and len(state["points"]) == 1
    assert state["status"] is not None  # the last good status stays on the page
    history.observe(status(), now=102.0, wall=1_700_000_003.0)
    assert history.state()["error"] is None and len(history.points) == 2
