"""Named Raft scenarios, ported in spirit from the well-known Raft lab tests.

Every scenario runs on the deterministic simulator, so the safety invariants
(paper, figure 3, plus Persist Before Send) are checked after every step, and
each ends with `settle()`: heal, then exactly one leader and every
acknowledged command applied on every live member.
"""

from __future__ import annotations

import random
from typing import Callable

from actors.raft.node import FOLLOWER, LEADER, ConfChangeBusy, NotLeader, RaftConfig
from tests.sim.harness.fault_switches import FaultSwitches
from tests.sim.raft.cluster import RaftSim, SimConfig
from tests.sim.raft.random_runs import Workload
from tests.sim.raft.scenarios import E, commit_all


def cluster(nodes: int = 3, *, seed: int = 1, faults: FaultSwitches = FaultSwitches(), snapshot_entries: int = 0, **raft) -> RaftSim:
    return RaftSim(
        SimConfig(
            seed=seed,
            nodes=nodes,
            faults=faults,
            snapshot_entries=snapshot_entries,
            raft=RaftConfig(id="template", **raft),
        )
    )


def cmd(n: int | str) -> bytes:
    return f"cmd-{n}".encode()


def others(sim: RaftSim, *excluded: str) -> list[str]:
    return [rid for rid in sim.running() if rid not in excluded]




def retry(sim: RaftSim, attempt: Callable[[], int | None], max_ticks: int = 5 * E) -> int | None:
    """Call `attempt` each tick until it stops raising ConfChangeBusy."""
    for _ in range(max_ticks):
        try:
            return attempt()
        except ConfChangeBusy:
            sim.run(1)
    raise AssertionError("the membership change stayed busy")


def applied_everywhere(sim: RaftSim, replicas: list[str]) -> bool:
    """Whether each of `replicas` has applied up to the leader's commit index."""
    leader = sim.leader()
    return leader is not None and all(sim.machine(rid).applied >= sim.node(leader).commit for rid in replicas)


# -- elections ----------------------------------------------------------------


def test_initial_election():
    """Paper 5.2: one leader is elected, all replicas agree on its term, and
    with no failure neither leader nor term changes."""
    sim = cluster(3)
    leader = sim.wait_leader(max_ticks=3 * E)
    sim.run(2)
    term = sim.node(leader).term
    assert {sim.node(rid).term for rid in sim.running()} == {term}
    sim.run(10 * E)
    assert sim.leaders() == [leader] and sim.node(leader).term == term
    sim.settle()


def test_reelection():
    """Paper 5.2: cutting the leader off elects another; the old one returning
    does not disturb it; with no quorum nobody is elected; a regained quorum
    elects a leader again."""
    sim = cluster(3)
    first = sim.wait_leader()
    sim.isolate(first)
    second = sim.wait_leader(among=others(sim, first))
    sim.rejoin(first)
    sim.run(2 * E)
    assert sim.leaders() == [second]

    lone, away = others(sim, second)
    sim.isolate(second)
    sim.isolate(away)
    sim.run(4 * E)
    assert sim.node(lone).role != LEADER
    sim.rejoin(away)
    sim.wait_leader(among=[lone, away])
    sim.rejoin(second)
    sim.settle()


def test_many_elections():
    """Paper 5.2 under churn: ten times over, three of seven replicas are cut
    off at random and the other four still elect a leader among themselves."""
    sim = cluster(7)
    rng = random.Random(7)
    sim.wait_leader()
    for _ in range(10):
        cut = rng.sample(sim.running(), 3)
        for rid in cut:
            sim.isolate(rid)
        sim.wait_leader(among=others(sim, *cut), max_ticks=6 * E)
        for rid in cut:
            sim.rejoin(rid)
    sim.settle()


# -- agreement ----------------------------------------------------------------


def test_basic_agree():
    """Paper 5.3: each command is applied by every replica at the next index,
    and nothing is applied at an index before a command is proposed there."""
    sim = cluster(3)
    leader = sim.wait_leader()
    previous = None
    for n in range(3):
        upcoming = sim.node(leader).last_index + 1
        assert sim.applied_count(upcoming)[0] == 0
        index = sim.one(cmd(n), expected=3)
        assert previous is None or index == previous + 1
        previous = index
    assert len({tuple(sim.machine(rid).commands.items()) for rid in sim.running()}) == 1
    sim.settle()


def test_fail_agree():
    """Paper 5.3: with one follower cut off the other two keep agreeing; when
    it returns, the leader brings it up to date and all three agree again."""
    sim = cluster(3)
    leader = sim.wait_leader()
    sim.one(cmd(101), expected=3)
    away = others(sim, leader)[0]
    sim.isolate(away)
    for n in range(102, 106):
        sim.one(cmd(n), expected=2)
    sim.run(2 * E)
    sim.rejoin(away)
    sim.one(cmd(106), expected=3)
    sim.run(2)
    assert {cmd(n) for n in range(101, 107)} <= set(sim.machine(away).commands.values())
    sim.settle()


def test_follower_failure():
    """Paper 5.3: the leader commits with one follower cut off, and commits
    nothing once both are."""
    sim = cluster(3)
    leader = sim.wait_leader()
    sim.one(cmd(101), expected=3)
    first, second = others(sim, leader)
    sim.isolate(first)
    sim.one(cmd(102), expected=2)
    sim.run(E)
    sim.one(cmd(103), expected=2)
    sim.isolate(second)
    proposal = sim.propose(cmd(104), to=leader)
    assert proposal is not None
    sim.run(2 * E)
    assert sim.applied_count(proposal.index)[0] == 0
    sim.settle()


def test_leader_failure():
    """Paper 5.2-5.3: after the leader is cut off the other two elect a leader
    and commit; with that leader cut off too, nothing commits anywhere."""
    sim = cluster(3)
    first = sim.wait_leader()
    sim.one(cmd(101), expected=3)
    sim.isolate(first)
    sim.one(cmd(102), expected=2)
    second = sim.wait_leader(among=others(sim, first))
    sim.isolate(second)
    proposals = [sim.propose(cmd(f"103-{rid}"), to=rid) for rid in sim.running()]
    sim.run(2 * E)
    for proposal in filter(None, proposals):
        assert all(sim.machine(rid).commands.get(proposal.index) != proposal.data for rid in sim.running())
    sim.settle()


def test_fail_no_agree():
    """Paper 5.3 (commitment needs a majority): with three of five followers
    cut off, the leader accepts a command but never commits it; once they
    return, agreement resumes."""
    sim = cluster(5)
    sim.one(cmd(10), expected=5)
    leader = sim.leader()
    cut = others(sim, leader)[:3]
    for rid in cut:
        sim.isolate(rid)
    proposal = sim.propose(cmd(20), to=leader)
    assert proposal is not None and proposal.index == sim.node(leader).last_index
    sim.run(2 * E)
    assert sim.applied_count(proposal.index)[0] == 0
    for rid in cut:
        sim.rejoin(rid)
    sim.one(cmd(30), expected=5)
    sim.one(cmd(1000), expected=5)
    sim.settle()


def test_concurrent_starts():
    """Paper 5.3 with batching (docs/DESIGN.md section 2, thesis 10.2.1): five commands
    proposed in one instant get consecutive indices, are applied in that
    order everywhere, and ride in at most two entry-carrying AppendLogs per
    follower (the first goes at once, the rest together after its answer)."""
    sim = cluster(3)
    leader = sim.wait_leader()
    sim.one(cmd("warm"), expected=3)
    batches = sim.stats.batches
    proposals = [sim.propose(cmd(n), to=leader) for n in range(5)]
    indices = [p.index for p in proposals]
    assert indices == list(range(indices[0], indices[0] + 5))
    assert sim.run_until(lambda: all(sim.applied_count(i)[0] == 3 for i in indices), max_ticks=3 * 2)
    assert sim.stats.batches - batches <= 2 * 2
    for rid in sim.running():
        assert [sim.machine(rid).commands[i] for i in indices] == [cmd(n) for n in range(5)]
    sim.settle()


def test_rejoin():
    """Paper 5.3 and figure 7: a cut-off leader's uncommitted entries are
    overwritten when it rejoins a cluster that moved on without it."""
    sim = cluster(3)
    first = sim.wait_leader()
    sim.one(cmd(101), expected=3)
    sim.isolate(first)
    for n in range(3):
        assert sim.propose(cmd(f"stale-{n}"), to=first) is not None
    sim.one(cmd(103), expected=2)
    second = sim.wait_leader(among=others(sim, first))
    sim.isolate(second)
    sim.rejoin(first)
    sim.one(cmd(104), expected=2)
    sim.rejoin(second)
    sim.one(cmd(105), expected=3)
    sim.settle()
    applied = {data for rid in sim.running() for data in sim.machine(rid).commands.values()}
    assert not {cmd(f"stale-{n}") for n in range(3)} & applied


def test_backup():
    """Paper 5.3 (end, fast backtracking): followers holding fifty conflicting
    entries are repaired in a few round trips each, not one per entry."""
    sim = cluster(5)
    sim.one(cmd("start"), expected=5)
    first = sim.leader()
    partner, *rest = others(sim, first)
    sim.partition([first, partner], rest)
    for n in range(50):
        sim.propose(cmd(f"lost-a{n}"), to=first)
    sim.run(E)
    second = sim.wait_leader(among=rest)
    commit_all(sim, [cmd(f"b{n}") for n in range(50)], expected=3, via=second)

    other, third = [rid for rid in rest if rid != second]
    sim.partition([second, other], [first, partner, third])
    for n in range(50):
        sim.propose(cmd(f"lost-c{n}"), to=second)
    rejected = sim.stats.rejected
    # Only `third` holds the committed b-entries, so only it can win; `first`
    # may still believe it leads term 1 until CheckQuorum unseats it.
    assert sim.wait_leader(among=[third], max_ticks=4 * E) == third
    commit_all(sim, [cmd(f"d{n}") for n in range(50)], expected=3, via=third)
    # Two stale followers, each with one conflicting term: a handful of
    # refusals each, where stepping back one entry at a time takes 50+.
    assert sim.stats.rejected - rejected <= 2 * 3

    sim.heal()
    rejected = sim.stats.rejected
    sim.one(cmd("end"), expected=5)
    assert sim.stats.rejected - rejected <= 2 * 3
    sim.settle()


def test_count():
    """Paper 5.2 and thesis 10.2.1: an election costs a bounded number of
    messages, so does each agreement; a burst of a hundred commands rides in
    a few messages; an idle cluster sends only heartbeats."""
    sim = cluster(3)
    sim.wait_leader()
    assert sim.messages_sent() <= 30

    before = sim.messages_sent()
    for n in range(10):
        sim.one(cmd(n), expected=3)
    assert (sim.messages_sent() - before) / 10 <= 12

    before = sim.messages_sent()
    commit_all(sim, [cmd(f"burst-{n}") for n in range(100)], expected=3)
    assert sim.messages_sent() - before <= 40

    before = sim.messages_sent()
    idle_ticks = 10 * E
    sim.run(idle_ticks)
    heartbeat_ticks = sim.config.raft.heartbeat_ticks
    # One AppendLog and one reply per follower per heartbeat interval.
    assert sim.messages_sent() - before <= 2 * 2 * (idle_ticks // heartbeat_ticks + 1)
    sim.settle()


# -- persistence ----------------------------------------------------------------


def test_persist1():
    """Paper figure 2 (persistent state): term, vote and log survive crashes,
    whether the whole cluster restarts at once or one replica at a time."""
    sim = cluster(3)
    sim.one(cmd(11), expected=3)
    for rid in sim.running():
        sim.crash(rid)
    for rid in sorted(sim.replicas):
        sim.restart(rid)
    sim.one(cmd(12), expected=3)

    leader = sim.leader()
    sim.crash(leader)
    sim.restart(leader)
    sim.one(cmd(13), expected=3)

    leader = sim.leader()
    sim.crash(leader)
    sim.one(cmd(14), expected=2)
    sim.restart(leader)
    sim.one(cmd(15), expected=3)

    follower = others(sim, sim.leader())[0]
    sim.crash(follower)
    sim.one(cmd(16), expected=2)
    sim.restart(follower)
    sim.one(cmd(17), expected=3)
    sim.settle()
    for rid in sim.running():
        assert {cmd(n) for n in range(11, 18)} <= set(sim.machine(rid).commands.values())


def test_persist2():
    """Paper figure 2 and 5.4: in five rounds two followers crash, then the
    leader and the other two, and those first two come back with one more:
    a majority that never all saw the last entries must still keep them."""
    sim = cluster(5)
    for round_ in range(5):
        sim.one(cmd(f"{round_}-a"), expected=5)
        leader = sim.leader()
        ring = sorted(sim.replicas)
        at = ring.index(leader)
        nxt = [ring[(at + k) % 5] for k in range(5)]
        sim.crash(nxt[1])
        sim.crash(nxt[2])
        sim.one(cmd(f"{round_}-b"), expected=3)
        for k in (0, 3, 4):
            sim.crash(nxt[k])
        sim.restart(nxt[1])
        sim.restart(nxt[2])
        sim.run(E)
        sim.restart(nxt[3])
        sim.one(cmd(f"{round_}-c"), expected=3)
        sim.restart(nxt[4])
        sim.restart(nxt[0])
    sim.one(cmd("end"), expected=5)
    sim.settle()


def test_persist3():
    """Paper figure 2: with a follower cut off, the leader and the other
    follower crash; the leader and the cut-off follower then form a quorum
    that must keep what was committed before."""
    sim = cluster(3)
    sim.one(cmd(101), expected=3)
    leader = sim.leader()
    ring = sorted(sim.replicas)
    at = ring.index(leader)
    follower, away = ring[(at + 1) % 3], ring[(at + 2) % 3]
    sim.isolate(away)
    sim.one(cmd(102), expected=2)
    sim.crash(leader)
    sim.crash(follower)
    sim.rejoin(away)
    sim.restart(leader)
    sim.one(cmd(103), expected=2)
    sim.restart(follower)
    sim.one(cmd(104), expected=3)
    sim.settle()
    assert sim.machine(away).commands.get(sim.acked.get(cmd(102), 0)) in (cmd(102), None)


def test_figure8():
    """Paper 5.4.2 and figure 8: with leaders crashing at random moments right
    after proposing, a leader must never count replicas for an entry of an
    earlier term; small batches let old entries replicate without the new
    leader's no-op, which is what makes that rule matter."""
    sim = cluster(5, seed=8, max_batch_bytes=8)
    rng = random.Random(8)
    sim.wait_leader()
    for n in range(120):
        leader = None
        for rid in sim.running():
            if sim.propose(b"f%05d" % n, to=rid) is not None:
                leader = rid
        sim.run(rng.uniform(0, E / 2) if rng.random() < 0.1 else rng.uniform(0, 1.5))
        if leader is not None and sim.replicas[leader].running:
            sim.crash(leader)
        down = [rid for rid in sorted(sim.replicas) if not sim.replicas[rid].running]
        if len(down) > 2:
            sim.restart(rng.choice(down))
    for rid in sorted(sim.replicas):
        if not sim.replicas[rid].running:
            sim.restart(rid)
    sim.one(cmd("end"), expected=5, max_ticks=10 * E)
    sim.settle()


def test_figure8_exact():
    """Paper 5.4.2, figure 8, step by step. A term-1 leader L1 replicates two
    entries to one follower only and crashes; B wins term 2 in the other
    three, appends its no-op and is cut off. L1 returns and a leader A of
    term 3 brings one of those three up to the first old entry: it now sits
    on a majority but is of term 1, so A must not count it committed. A
    crashes; B, whose last entry (term 2) is newer, wins again with the
    same majority and overwrites it. Batches of one entry (max_batch_bytes)
    keep A's no-op from riding along with the old entry."""
    sim = cluster(5, max_batch_bytes=8)
    sim.one(cmd("b0"), expected=5)
    first = sim.leader()
    partner, *group = others(sim, first)
    sim.partition([first, partner], group)
    old = [sim.propose(cmd(f"x{n}"), to=first) for n in (1, 2)]
    assert sim.run_until(lambda: sim.checker.mirrors[partner].last_index == old[1].index, max_ticks=E)
    sim.crash(first)

    assert sim.run_until(lambda: any(rid in sim.leaders() for rid in group), max_ticks=6 * E, every_step=True)
    b = next(rid for rid in sim.leaders() if rid in group)
    sim.isolate(b)
    sim.crash(b)
    caught_up, behind = [rid for rid in group if rid != b]

    sim.restart(first)
    sim.rejoin(b)
    sim.partition([first, partner, caught_up], [behind], [b])

    def a_replicated_first_old_entry() -> bool:
        leaders = [rid for rid in sim.leaders() if rid in (first, partner)]
        if not leaders:
            return False
        progress = sim.node(leaders[0]).progress
        return min(progress.get(caught_up, 0), progress.get(({first, partner} - {leaders[0]}).pop(), 0)) >= old[0].index

    assert sim.run_until(a_replicated_first_old_entry, max_ticks=6 * E, every_step=True)
    a = next(rid for rid in sim.leaders() if rid in (first, partner))
    sim.crash(a)

    sim.restart(b)
    sim.partition([b, caught_up, behind], [({first, partner} - {a}).pop()])
    assert sim.wait_leader(among=[b], max_ticks=6 * E) == b
    sim.heal()
    sim.restart(a)
    sim.one(cmd("end"), expected=5)
    sim.settle()
    assert cmd("x1") not in sim.machine(b).commands.values()


def test_figure8_unreliable():
    """Paper 5.4.2 and figure 8 on a network that delays, drops, duplicates
    and reorders: leaders are cut off at random instead of crashing."""
    sim = cluster(5, seed=9, faults=FaultSwitches.unreliable(), max_batch_bytes=8)
    rng = random.Random(9)
    for n in range(150):
        leader = None
        for rid in sim.running():
            if sim.propose(b"u%05d" % n, to=rid) is not None:
                leader = rid
        sim.run(rng.uniform(0, E / 2) if rng.random() < 0.1 else rng.uniform(0, 1.5))
        if leader is not None and rng.random() < 0.5:
            sim.isolate(leader)
        cut = [rid for rid in sorted(sim.replicas) if sim.network.isolated(rid)]
        if len(cut) > 2:
            sim.rejoin(rng.choice(cut))
    sim.heal()
    sim.network.faults = FaultSwitches()
    sim.one(cmd("end"), expected=5, max_ticks=10 * E)
    sim.settle()


def _churn(faults: FaultSwitches, seed: int) -> RaftSim:
    """Clients propose all along while replicas crash, restart, are cut off
    and return at random; the run must end live with every acknowledged
    command applied everywhere."""
    sim = cluster(5, seed=seed, faults=faults)
    workload = Workload(sim, sim.rng("clients"), per_tick=2)
    workload.start()
    rng = random.Random(seed)
    for _ in range(40):
        sim.run(rng.uniform(0.5, 4))
        down = [rid for rid in sorted(sim.replicas) if not sim.replicas[rid].running]
        up = sim.running()
        roll = rng.random()
        if roll < 0.2 and len(down) < 2:
            sim.crash(rng.choice(up))
        elif roll < 0.5 and down:
            sim.restart(rng.choice(down))
        elif roll < 0.7:
            sim.isolate(rng.choice(up))
        else:
            sim.heal()
    workload.stop()
    sim.settle()
    return sim


def test_reliable_churn():
    """Paper 5 as a whole, under crashes and cuts on a reliable network."""
    sim = _churn(FaultSwitches(), seed=21)
    assert sim.stats.acked >= 40


def test_unreliable_churn():
    """Paper 5 as a whole, under crashes and cuts on a network that delays,
    drops, duplicates and reorders."""
    sim = _churn(FaultSwitches.unreliable(), seed=22)
    assert sim.stats.acked >= 20


# -- snapshots -------------------------------------------------------------------


def test_snapshot_basic():
    """Paper 7: replicas compact their logs as they apply, so the stored log
    stays short while the state machine keeps every command."""
    sim = cluster(3, snapshot_entries=10)
    commit_all(sim, [cmd(n) for n in range(60)], expected=3)
    sim.run(2)
    for rid in sim.running():
        stored = sim.replicas[rid].storage.load()
        assert stored.snapshot is not None and stored.snapshot.index >= 50
        assert len(stored.entries) <= 2 * 10
        assert {cmd(n) for n in range(60)} <= set(sim.machine(rid).commands.values())
    sim.settle()


def test_snapshot_install():
    """Paper 7 (InstallSnapshot, here RepairLogReply with snapshot chunks): a
    follower cut off while the others compacted past its log is sent the
    snapshot, in small chunks, and restores its state machine from it."""
    sim = cluster(3, snapshot_entries=10, max_snapshot_chunk=64)
    leader = sim.wait_leader()
    follower = others(sim, leader)[0]
    sim.isolate(follower)
    commit_all(sim, [cmd(n) for n in range(40)], expected=2)
    sim.rejoin(follower)
    assert sim.run_until(lambda: applied_everywhere(sim, sim.running()), max_ticks=5 * E)
    assert sim.stats.snapshot_chunks > 2
    assert sim.checker.mirrors[follower].snapshot_index > 0
    assert sim.machine(follower).commands == sim.machine(sim.leader()).commands
    sim.settle()


def test_snapshot_install_crash():
    """Paper 7 with crashes: a follower down while the others compact catches
    up from a snapshot after restarting, round after round."""
    sim = cluster(3, snapshot_entries=10)
    rng = random.Random(3)
    sim.wait_leader()
    for round_ in range(4):
        victim = rng.choice(others(sim, sim.leader()))
        sim.crash(victim)
        commit_all(sim, [cmd(f"{round_}-{n}") for n in range(25)], expected=2)
        sim.restart(victim)
        sim.one(cmd(f"{round_}-end"), expected=3)
    assert sim.stats.snapshot_chunks > 0
    sim.settle()


def test_snapshot_all_crash():
    """Paper 7 and figure 2: the whole cluster crashes after compacting, round
    after round, and restarts from snapshot plus log without losing or
    repeating a command."""
    sim = cluster(3, snapshot_entries=10)
    previous = 0
    for round_ in range(5):
        commit_all(sim, [cmd(f"{round_}-{n}") for n in range(12)], expected=3)
        for rid in sim.running():
            sim.crash(rid)
        for rid in sorted(sim.replicas):
            sim.restart(rid)
        index = sim.one(cmd(f"{round_}-after"), expected=3)
        assert index > previous
        previous = index
    sim.settle()


def test_snapshot_init():
    """Paper 7: a replica restarting from a snapshot restores its state
    machine from it before anything else happens, and keeps working."""
    sim = cluster(3, snapshot_entries=10)
    commit_all(sim, [cmd(n) for n in range(15)], expected=3)
    for _ in range(2):
        for rid in sim.running():
            sim.crash(rid)
        for rid in sorted(sim.replicas):
            sim.restart(rid)
            snapshot_index = sim.checker.mirrors[rid].snapshot_index
            assert snapshot_index > 0 and sim.machine(rid).applied >= snapshot_index
        sim.one(cmd("again"), expected=3)
    sim.settle()


# -- repair, PreVote, CheckQuorum ---------------------------------------------------


def _sleeping_follower(compacted: bool) -> None:
    """The sleeper misses entries and a change of leader: the new leader
    knows nothing of how far behind it is, so its first heartbeat leaves a gap."""
    sim = cluster(3, snapshot_entries=10 if compacted else 0)
    first = sim.wait_leader()
    sleeper, second = others(sim, first)
    term = sim.node(first).term
    sim.sleep(sleeper, 5 * E)
    commit_all(sim, [cmd(n) for n in range(15)], expected=2)
    sim.transfer(second)
    assert sim.wait_leader(among=[second], max_ticks=E) == second
    # Few enough that the new leader does not compact past the point it
    # believes the sleeper is at, so the sleeper must ask (RepairLogRequest).
    commit_all(sim, [cmd(n) for n in range(15, 17)], expected=2)
    requests, repairs, chunks = sim.stats.sent.get("RepairLogRequest", 0), sim.stats.sent.get("RepairLogReply", 0), sim.stats.snapshot_chunks
    assert sim.run_until(lambda: not sim.network.asleep(sleeper), max_ticks=5 * E)
    assert sim.run_until(lambda: applied_everywhere(sim, sim.running()), max_ticks=3 * E)
    assert sim.stats.sent.get("RepairLogRequest", 0) > requests
    assert sim.stats.sent.get("RepairLogReply", 0) > repairs
    assert (sim.stats.snapshot_chunks > chunks) == compacted
    assert sim.machine(sleeper).commands == sim.machine(second).commands
    assert sim.node(sleeper).term == sim.node(second).term == term + 1
    sim.settle()


def test_sleeping_follower_repairs_with_repair_log_req():
    """docs/DESIGN.md section 2: a follower that slept through many entries finds the gap
    on the next heartbeat, asks with RepairLogRequest and is sent the entries."""
    _sleeping_follower(compacted=False)


def test_sleeping_follower_repairs_from_snapshot_when_compacted():
    """docs/DESIGN.md section 2 and paper 7: when the entries it missed were compacted
    away, the RepairLogReply answer carries the snapshot instead."""
    _sleeping_follower(compacted=True)


def test_sleeping_follower_gets_heartbeats_only_and_repairs_on_waking():
    """docs/DESIGN.md section 2, same leader throughout: while the follower sleeps the leader
    only probes it with heartbeats; on waking it finds its gap and asks with
    RepairLogRequest."""
    sim = cluster(3)
    leader = sim.wait_leader()
    sleeper = others(sim, leader)[0]
    sim.sleep(sleeper, 5 * E)
    commit_all(sim, [cmd(n) for n in range(15)], expected=2)
    requests = sim.stats.sent.get("RepairLogRequest", 0)
    assert sim.run_until(lambda: not sim.network.asleep(sleeper), max_ticks=5 * E)
    assert sim.run_until(lambda: applied_everywhere(sim, sim.running()), max_ticks=3 * E)
    assert sim.stats.sent.get("RepairLogRequest", 0) > requests and sim.leader() == leader
    sim.settle()


def test_returning_replica_does_not_depose_the_leader():
    """Thesis 9.6 (PreVote) and 4.2.3: a replica cut off, or asleep, for ten
    election timeouts comes back without raising the term or deposing the
    leader. Thesis 6.2 (CheckQuorum): a leader cut off from its quorum steps
    down within an election timeout or two."""
    sim = cluster(3)
    leader = sim.wait_leader()
    term = sim.node(leader).term
    cut, sleeper = others(sim, leader)
    sim.isolate(cut)
    sim.run(10 * E)
    sim.rejoin(cut)
    sim.run(4 * E)
    assert sim.leaders() == [leader] and sim.node(leader).term == term == sim.node(cut).term

    sim.sleep(sleeper, 10 * E)
    sim.run(14 * E)
    assert sim.leaders() == [leader] and sim.node(leader).term == term == sim.node(sleeper).term

    sim.isolate(leader)
    sim.run(2 * E + 1)
    assert sim.node(leader).role != LEADER
    sim.settle()


# -- membership -------------------------------------------------------------------------


def test_membership_add_promote_remove():
    """Thesis 4.1-4.2: a learner joins without a vote, catches up and is
    promoted; a follower is removed; removing the leader goes through a
    leadership transfer (thesis 3.10) and the new leader removes it. The
    cluster commits throughout."""
    sim = cluster(3)
    leader = sim.wait_leader()
    sim.one(cmd("a"), expected=3)
    learner = sim.add_learner()
    assert sim.run_until(lambda: applied_everywhere(sim, [learner]), max_ticks=3 * E)
    conf = sim.node(leader).conf
    assert learner in conf.learners and learner not in conf.voters
    assert sim.node(learner).role == FOLLOWER
    sim.one(cmd("b"), expected=4)

    retry(sim, lambda: sim.promote(learner))
    assert sim.run_until(lambda: learner in sim.node(sim.leader()).conf.voters, max_ticks=E)
    sim.one(cmd("c"), expected=4)

    follower = others(sim, sim.leader(), learner)[0]
    retry(sim, lambda: sim.remove(follower))
    assert sim.run_until(lambda: applied_everywhere(sim, others(sim, follower)), max_ticks=E)
    sim.decommission(follower)
    sim.one(cmd("d"), expected=3)

    old = sim.leader()
    remaining = sorted(set(sim.node(old).conf.voters) - {old})
    try:
        retry(sim, lambda: sim.remove(old))
    except NotLeader as moved:
        successor = moved.leader
    else:
        raise AssertionError("a leader removing itself must hand over leadership first")
    assert sim.wait_leader(among=[successor], max_ticks=E) == successor
    retry(sim, lambda: sim.remove(old, via=successor))
    assert sim.run_until(lambda: old not in sim.node(successor).conf.voters and applied_everywhere(sim, [successor]), E)
    sim.decommission(old)
    sim.one(cmd("e"), expected=2)
    conf = sim.node(successor).conf
    assert sorted(conf.voters) == remaining and not conf.learners
    sim.settle()


def test_membership_change_while_partitioned():
    """Thesis 4.1-4.2.3: with a follower cut off, the majority adds, catches up
    and promotes a learner and removes the cut-off follower; when that
    follower returns, unaware of its removal, it cannot disturb the leader."""
    sim = cluster(5)
    leader = sim.wait_leader()
    sim.one(cmd("a"), expected=5)
    away = others(sim, leader)[0]
    sim.partition([away], others(sim, away))
    learner = sim.add_learner()
    assert sim.run_until(lambda: applied_everywhere(sim, [learner]), max_ticks=3 * E)
    retry(sim, lambda: sim.promote(learner))
    retry(sim, lambda: sim.remove(away))
    assert sim.run_until(lambda: away not in sim.members() and applied_everywhere(sim, sim.members()), E)
    term = sim.node(leader).term
    sim.heal()
    sim.run(4 * E)
    assert sim.leader() == leader and sim.node(leader).term == term
    sim.decommission(away)
    sim.one(cmd("b"), expected=5)
    sim.settle()


# -- the leader's lease -------------------------------------------------------------------------
# Lease Safety (invariants.py) is checked after every step: these scenarios set
# up the two ways a lease could outlive the voters' promise.


def test_a_replica_restarted_inside_the_lease_does_not_help_elect_another_leader():
    """A voter that answered the leader, crashed and came back at once no longer
    knows it heard from a leader; it ignores elections for an election timeout
    anyway, so the replicas that lost the leader win only once its lease ran out."""
    sim = cluster(5)
    leader = sim.wait_leader()
    sim.one(cmd("a"), expected=5)
    voter, keeper, *away = others(sim, leader)
    sim.partition([leader, voter, keeper], away)
    sim.run(3 * E)  # the cut-off pair campaigns in vain; the leader's lease rests on voter and keeper
    assert sim.node(leader).lease_basis is not None
    sim.crash(voter)
    sim.restart(voter)
    sim.partition([leader, keeper], [voter, *away])
    new = sim.wait_leader(among=[voter, *away], max_ticks=4 * E)
    assert sim.node(new).term > sim.node(leader).term
    sim.settle()


def test_a_leader_handing_over_gives_up_its_lease():
    """The transferee campaigns past the voters' refusal (TimeoutNow), so a
    leader that began a transfer holds no lease for the rest of its term."""
    sim = cluster(3)
    leader = sim.wait_leader()
    sim.one(cmd("a"), expected=3)
    assert sim.node(leader).lease_basis is not None
    successor = others(sim, leader)[0]
    sim.transfer(successor)
    assert sim.node(leader).lease_basis is None
    assert sim.wait_leader(among=[successor], max_ticks=E) == successor
    sim.settle()
