"""The simulator's scheduler and network, fault by fault."""

from __future__ import annotations

import random

import pytest

from tests.sim.harness.fault_switches import FAULT_NAMES, FaultSwitches
from tests.sim.harness.network import MAX_DELAY, TICK, Network, Scheduler, random_groups


class Recorder:
    """A network over nodes a, b, c that records (time, src, dst, message) deliveries."""

    def __init__(self, faults: FaultSwitches = FaultSwitches.none(), seed: int = 1) -> None:
        self.scheduler = Scheduler()
        self.got: list[tuple[int, str, str, object]] = []
        self.trace: list[str] = []
        self.net = Network(
            scheduler=self.scheduler,
            rng=random.Random(seed),
            faults=faults,
            deliver=lambda src, dst, msg: self.got.append((self.scheduler.now, src, dst, msg)),
            trace=self.trace.append,
        )

    def send_many(self, count: int, src: str = "a", dst: str = "b") -> None:
        for number in range(count):
            self.net.send(src, dst, number)

    def settle(self) -> None:
        while self.scheduler.run_next():
            pass

    def payloads(self) -> list[object]:
        return [msg for _, _, _, msg in self.got]


def test_scheduler_runs_by_time_then_by_scheduling_order():
    scheduler = Scheduler()
    ran = []
    scheduler.at(5, lambda: ran.append("late"))
    scheduler.at(2, lambda: ran.append("first"))
    scheduler.at(2, lambda: ran.append("second"))
    scheduler.run_until(4)
    assert ran == ["first", "second"] and scheduler.now == 4
    scheduler.after(0, lambda: ran.append("now"))
    scheduler.run_until(10)
    assert ran == ["first", "second", "now", "late"] and scheduler.now == 10
    with pytest.raises(ValueError):
        scheduler.at(9, lambda: None)


def test_reliable_network_delivers_each_message_once_in_link_order_within_a_tick():
    rec = Recorder()
    rec.send_many(50)
    rec.settle()
    assert rec.payloads() == list(range(50))
    assert max(time for time, *_ in rec.got) <= MAX_DELAY
    assert rec.net.stats.sent == rec.net.stats.delivered == 50


def test_drop_loses_some_messages_only_when_switched_on():
    rec = Recorder(FaultSwitches(drop=True, drop_rate=0.3))
    rec.send_many(200)
    rec.settle()
    assert 20 < 200 - len(rec.got) < 100
    assert rec.net.stats.dropped == 200 - len(rec.got)


def test_duplicate_delivers_some_messages_twice():
    rec = Recorder(FaultSwitches(duplicate=True, dup_rate=0.2))
    rec.send_many(200)
    rec.settle()
    payloads = rec.payloads()
    twice = [n for n in range(200) if payloads.count(n) == 2]
    assert len(payloads) == 200 + len(twice) and 10 < len(twice) < 80
    assert payloads == sorted(payloads), "duplicates still respect link order when reorder is off"


def test_reorder_lets_messages_overtake_and_fifo_holds_without_it():
    reordered = Recorder(FaultSwitches(reorder=True))
    reordered.send_many(50)
    reordered.settle()
    assert sorted(reordered.payloads()) == list(range(50)) and reordered.payloads() != list(range(50))

    fifo = Recorder(FaultSwitches(delay=True, long_delay_rate=0.3))
    fifo.send_many(50)
    fifo.settle()
    assert fifo.payloads() == list(range(50))


def test_delay_holds_some_messages_for_ticks():
    rec = Recorder(FaultSwitches(delay=True, reorder=True, long_delay_rate=0.2, long_delay_ticks=5))
    rec.send_many(100)
    rec.settle()
    late = [time for time, *_ in rec.got if time > MAX_DELAY]
    assert len(rec.got) == 100 and 5 < len(late) < 50
    assert max(late) <= MAX_DELAY + 5 * TICK


def test_partition_cuts_links_between_groups_including_messages_in_flight():
    rec = Recorder()
    rec.net.send("a", "b", "in flight")
    rec.net.partition([["a"], ["b", "c"]])
    rec.net.send("a", "b", "across")
    rec.net.send("b", "c", "within")
    rec.settle()
    assert rec.payloads() == ["within"]
    rec.net.heal()
    rec.net.send("a", "b", "healed")
    rec.settle()
    assert rec.payloads() == ["within", "healed"]


def test_a_node_outside_every_group_is_cut_off_until_placed():
    rec = Recorder()
    rec.net.partition([["a", "b"]])
    assert not rec.net.connected("a", "c")
    rec.net.place("c", beside="b")
    assert rec.net.connected("a", "c") and rec.net.connected("c", "b")


def test_isolate_cuts_one_node_whatever_the_partition():
    rec = Recorder()
    rec.net.isolate("a")
    assert not rec.net.connected("a", "b") and rec.net.connected("b", "c")
    rec.net.rejoin("a")
    assert rec.net.connected("a", "b")
    with pytest.raises(ValueError):
        rec.net.partition([["a", "b"], ["b"]])


def test_sleeping_node_receives_nothing_until_it_wakes():
    rec = Recorder()
    rec.net.sleep("b", ticks=3)
    assert not rec.net.available("b")
    rec.net.send("a", "b", "while asleep")
    rec.scheduler.run_until(3 * TICK)
    assert rec.net.available("b")
    rec.net.send("a", "b", "awake")
    rec.settle()
    assert rec.payloads() == ["awake"]


def test_an_early_wake_is_not_undone_and_a_longer_sleep_is_not_cut_short():
    rec = Recorder()
    rec.net.sleep("b", ticks=2)
    rec.net.wake("b")
    rec.net.sleep("b", ticks=5)
    rec.scheduler.run_until(2 * TICK)
    assert rec.net.asleep("b")
    rec.scheduler.run_until(5 * TICK)
    assert not rec.net.asleep("b")


def test_down_node_loses_messages():
    rec = Recorder()
    rec.net.set_down("c", True)
    rec.net.send("a", "c", "lost")
    rec.settle()
    rec.net.set_down("c", False)
    rec.net.send("a", "c", "kept")
    rec.settle()
    assert rec.payloads() == ["kept"]


def test_same_seed_same_deliveries_and_trace():
    def run(seed: int) -> tuple[list, list]:
        rec = Recorder(FaultSwitches.unreliable(), seed=seed)
        for src, dst in (("a", "b"), ("b", "c"), ("c", "a")):
            rec.send_many(40, src, dst)
        rec.settle()
        return rec.got, rec.trace

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_random_groups_split_every_node_into_nonempty_groups():
    rng = random.Random(3)
    nodes = [f"n{i}" for i in range(7)]
    for _ in range(50):
        groups = random_groups(nodes, rng)
        assert 2 <= len(groups) <= 3 and all(groups)
        assert sorted(n for g in groups for n in g) == nodes


def test_faults_parse_names_and_reject_unknown_ones():
    assert FaultSwitches.parse("none") == FaultSwitches.none()
    assert FaultSwitches.parse("all").describe() == ",".join(FAULT_NAMES)
    parsed = FaultSwitches.parse("drop, dup")
    assert parsed.drop and parsed.duplicate and not parsed.delay
    assert parsed.describe() == "drop,dup"
    with pytest.raises(ValueError, match="unknown fault"):
        FaultSwitches.parse("drop,meteor")
