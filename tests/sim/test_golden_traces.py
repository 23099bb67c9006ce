"""Golden traces: a few Raft scenarios on the simulator, every event of each
compared line by line with a file in tests/sim/testdata/ (etcd's datadriven
tests do the same).

A change to the Raft core that alters who sends what, when, shows up here as a
readable diff rather than a changed digest. When the change is intended, write
the traces anew and review the diff before committing it:

    python3 -m pytest tests/sim/test_golden_traces.py --rewrite-golden
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from tests.sim.raft.cluster import RaftSim, SimConfig
from tests.sim.raft.scenarios import E, commit_all

TESTDATA = Path(__file__).parent / "testdata"
def traced_cluster(nodes: int = 3) -> RaftSim:
    return RaftSim(SimConfig(seed=1, nodes=nodes, trace_kept=None))


def initial_election(sim: RaftSim) -> None:
    """Paper 5.2: PreVote, then a vote, then the leader's no-op entry and one command."""
    sim.wait_leader(max_ticks=3 * E)
    commit_all(sim, [b"first"], expected=3)


def sleeping_follower_repairs(sim: RaftSim) -> None:
    """A follower asleep through three commits finds its gap from a heartbeat
    and repairs its log with RepairLogRequest when it wakes (docs/DESIGN.md section 2)."""
    leader = sim.wait_leader(max_ticks=3 * E)
    sleeper = next(rid for rid in sim.running() if rid != leader)
    sim.sleep(sleeper, 2 * E)
    for n in range(3):
        commit_all(sim, [f"while-asleep-{n}".encode()], expected=2)
    assert sim.run_until(lambda: sim.machine(sleeper).applied >= sim.node(leader).commit, max_ticks=4 * E)


def leader_crash_reelection(sim: RaftSim) -> None:
    """Paper 5.2 and 5.4: the leader crashes, the others elect one among them,
    the old leader restarts from storage and follows."""
    first = sim.wait_leader(max_ticks=3 * E)
    commit_all(sim, [b"before"], expected=3)
    sim.crash(first)
    second = sim.wait_leader(among=[rid for rid in sim.running() if rid != first])
    commit_all(sim, [b"after"], expected=2)
    sim.restart(first)
    assert sim.run_until(lambda: sim.machine(first).applied >= sim.node(second).commit, max_ticks=4 * E)


SCENARIOS = {
    "initial_election": initial_election,
    "sleeping_follower_repairs": sleeping_follower_repairs,
    "leader_crash_reelection": leader_crash_reelection,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_trace_matches_its_golden_file(name, request):
    sim = traced_cluster()
    SCENARIOS[name](sim)
    actual = "\n".join(sim.trace_lines()) + "\n"
    golden = TESTDATA / f"{name}.txt"
    if request.config.getoption("--rewrite-golden"):
        golden.write_text(actual)
        return
    assert golden.exists(), f"no golden trace {golden.name}: run with --rewrite-golden"
    expected = golden.read_text()
    if actual != expected:
        diff = difflib.unified_diff(expected.splitlines(), actual.splitlines(), "golden", "now", lineterm="", n=2)
        pytest.fail(f"{name} changed (rewrite with --rewrite-golden if intended):\n" + "\n".join(list(diff)[:60]))
