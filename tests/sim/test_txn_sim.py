"""Two-phase commit and the history-line validator under faults (docs/DESIGN.md
sections 3, 4 and 9), on the transaction simulator.

Randomized runs mix the workloads and fault settings; named scenarios place
one fault at one point of the protocol; a validator with one rule switched
off shows the checks can fail. Every run is judged on what the replicas
applied (txn/truth.py): atomicity, serializability in stamp order, the
clerks' view against the truth, bank totals, and nothing left prepared.
"""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from actors.messages import ClientBatch, CommitOnePhase, Decide, Prepare, ReadResult
from actors.raft.messages import ConfState, Entry
from actors.raft.node import RaftConfig
from actors.replica import ReplicaConfig
from actors.store import validator
from actors.store.machine import Machine
from clerk.core import ClerkConfig
from tests.sim.__main__ import main as simulator_main
from tests.sim.harness.fault_switches import FaultSwitches
from tests.sim.harness.network import TICK
from tests.sim.harness.trace import digests_under_hash_seeds
from tests.sim.txn.cluster import (
    Trap,
    TxnSim,
    TxnSimConfig,
    clerk_window_ticks,
    parse_txn_fault_switches,
    replay_command,
    run_seed,
)
from tests.sim.txn.truth import (
    ABANDONED,
    ABORTED,
    COMMITTED,
    FAILED,
    ClerkRecord,
    ClusterLog,
    ClusterTruth,
    PreparedTxn,
    Release,
    judge,
    judge_real_time,
    replay,
)
from tests.sim.txn.workloads import ClerkDriver, TxnPlan

SEEDS = 100
"""Randomized seeds the suite runs: about 20 s here; `python3 -m tests.sim txn` runs more."""

SETTINGS = [
    dict(faults="all"),
    dict(faults="delay,drop,dup,reorder"),
    dict(faults="crash,sleep,snapshot"),
    dict(faults="partition,drop,snapshot"),
    dict(faults="all", clusters=3),
    dict(faults="all", replicas=5, clerks=4),
]
"""Fault settings, taken in turn every three seeds (so each meets every workload)."""


def settings_for(seed: int) -> dict[str, Any]:
    return {"clusters": 2, "replicas": 3, "clerks": 3, **SETTINGS[(seed // 3) % len(SETTINGS)]}


@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_seed(seed: int):
    settings = settings_for(seed)
    faults = parse_txn_fault_switches(settings["faults"])
    result = run_seed(
        seed,
        clusters=settings["clusters"],
        replicas=settings["replicas"],
        clerks=settings["clerks"],
        faults=faults,
    )
    if result.violations:
        command = replay_command(
            seed,
            workload=result.workload,
            clusters=settings["clusters"],
            replicas=settings["replicas"],
            clerks=settings["clerks"],
            faults=settings["faults"],
        )
        pytest.fail("\n".join([*result.violations[:10], f"replay: {command}", *result.trace_tail[-15:]]), pytrace=False)
    assert result.outcomes[COMMITTED] > 0
    if not faults.partition:
        # Without partitions every cluster keeps a quorum, so nothing may fail.
        assert result.outcomes[FAILED] == 0 and result.read_failures == 0


# -- determinism --------------------------------------------------------------


def test_a_seed_replays_identically():
    first, again, other = run_seed(4), run_seed(4), run_seed(7)
    assert not first.violations
    assert (first.digest, first.steps, first.outcomes) == (again.digest, again.steps, again.outcomes)
    assert first.digest != other.digest


def test_a_seed_replays_identically_whatever_the_hash_seed():
    """Nothing may depend on hash order: another process with another
    PYTHONHASHSEED produces the same trace."""
    program = "from tests.sim.txn.cluster import run_seed; print(run_seed(5, ticks=100).digest)"
    digests = digests_under_hash_seeds(program)
    assert digests == {run_seed(5, ticks=100).digest}


# -- the checks can fail ------------------------------------------------------

RULES = {
    "rule 2": "check_earlier_prepared",
    "rule 3 (reads)": "check_current_read_versions",
    "rule 3 (writes)": "check_current_write_versions",
    "rule 4": "check_later_prepared",
    "rule 5": "check_write_write",
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_a_validator_without_one_rule_is_caught(rule: str, monkeypatch):
    """docs/DESIGN.md section 3: each of rules 2-5 is needed; without it some hot-key
    run commits a history the checks reject (a cycle, an edge against stamp
    order, a lost update) or trips the table's own invariant."""
    monkeypatch.setattr(validator, RULES[rule], lambda *args: None)
    for seed in range(20):
        result = run_seed(seed, workload="hotkey", faults=FaultSwitches(), clerk_crash=False, ticks=150)
        if result.violations:
            return
    pytest.fail(f"no seed of 20 caught a validator without {rule}")


def test_clerks_answering_before_the_commit_wait_are_caught_breaking_real_time(monkeypatch):
    """docs/DESIGN.md section 4, "Timestamps": with clocks a tick apart, the
    commit wait is what keeps stamp order in real-time order."""

    def acknowledge_at_once(driver: ClerkDriver, now: int) -> None:
        driver._record(COMMITTED, "", acked=now)
        driver._reset(now)

    monkeypatch.setattr(ClerkDriver, "_acknowledge", acknowledge_at_once)
    for seed in range(10):
        result = run_seed(seed, workload="uniform", faults=FaultSwitches(), clerk_crash=False, ticks=150)
        if any(line.startswith("real time: ") for line in result.violations):
            return
    pytest.fail("no seed of 10 caught clerks answering before the commit wait")


def test_the_real_time_judge_wants_a_commit_answered_before_another_began_to_have_the_lower_ts():
    first = ClerkRecord(txid="A", ts=50, reads=(), writes=("x",), outcome=COMMITTED, began=1, acked=3)
    overlapping = ClerkRecord(txid="B", ts=40, reads=("y",), writes=(), outcome=COMMITTED, began=3, acked=5)
    assert judge_real_time([first, overlapping]) == []
    later = ClerkRecord(txid="C", ts=50, reads=("y",), writes=(), outcome=COMMITTED, began=4, acked=6)
    [violation] = judge_real_time([first, overlapping, later])
    assert violation.startswith("real time: A (ts 50) was answered at tick 3, before C began at tick 4")


def two_phase(cluster: str, *, committed: bool | None, prepared_at: int = 0, decided_at: int | None = 10) -> PreparedTxn:
    return PreparedTxn(
        txid="T",
        ts=1,
        primary="c1",
        participants=("c1", "c2"),
        reads={},
        writes=(f"key-of-{cluster}",),
        prepared_at=prepared_at,
        decided_at=decided_at if committed is not None else None,
        committed=committed,
    )


def judged(c1: PreparedTxn | None, c2: PreparedTxn | None, clerk_saw: str = ABANDONED) -> list[str]:
    truths = {cluster: ClusterTruth(cluster=cluster, machine=Machine(cluster)) for cluster in ("c1", "c2")}
    for cluster, txn in (("c1", c1), ("c2", c2)):
        if txn is not None:
            truths[cluster].prepared["T"] = txn
    clerk = ClerkRecord(txid="T", ts=1, reads=(), writes=("key-of-c1", "key-of-c2"), outcome=clerk_saw)
    release = Release(heal_time=0, bound=100, limit=200, elections={"c1": [0, 250]})
    return judge(truths, [clerk], cluster_of=lambda key: key[-2:], release=release).violations


@pytest.mark.parametrize(
    "c1, c2, clerk_saw, complaint",
    [
        (two_phase("c1", committed=True), two_phase("c2", committed=False), ABANDONED, "not installed at c2"),
        (two_phase("c1", committed=False), two_phase("c2", committed=True), ABANDONED, "never committed it"),
        (None, two_phase("c2", committed=True), ABANDONED, "never committed it"),
        (two_phase("c1", committed=True, decided_at=20), two_phase("c2", committed=True), ABANDONED, "before its primary"),
        (two_phase("c1", committed=None), two_phase("c2", committed=False), ABANDONED, "still prepared at c1"),
        (two_phase("c1", committed=False, decided_at=210), two_phase("c2", committed=False), ABANDONED, "210 after"),
        (two_phase("c1", committed=False), two_phase("c2", committed=False, decided_at=460), ABANDONED, "210 after"),
        (two_phase("c1", committed=True), two_phase("c2", committed=True, decided_at=30), ABORTED, "saw it abort"),
        (two_phase("c1", committed=False), two_phase("c2", committed=False), COMMITTED, "saw it commit"),
    ],
)
def test_the_judge_catches_broken_two_phase_commit(c1, c2, clerk_saw, complaint):
    assert any(complaint in line for line in judged(c1, c2, clerk_saw))


def test_the_judge_accepts_an_atomic_commit():
    assert judged(two_phase("c1", committed=True), two_phase("c2", committed=True, decided_at=30), COMMITTED) == []


def test_the_judge_counts_the_release_limit_from_the_last_elections():
    """c2 decides 400 units after the heal, but only 150 after its primary's
    leader was elected: late for the design's bound, within the limit."""
    truths = {cluster: ClusterTruth(cluster=cluster, machine=Machine(cluster)) for cluster in ("c1", "c2")}
    truths["c1"].prepared["T"] = two_phase("c1", committed=False)
    truths["c2"].prepared["T"] = two_phase("c2", committed=False, decided_at=400)
    release = Release(heal_time=0, bound=100, limit=200, elections={"c1": [0, 250]})
    judgement = judge(truths, [], cluster_of=lambda key: key[-2:], release=release)
    assert judgement.violations == []
    assert [line.split(" (")[0] for line in judgement.late_releases] == [
        "T stayed prepared at c2 for 400 time units after the heal"
    ]


def test_a_replica_applying_another_entry_at_an_index_is_caught():
    log = ClusterLog("c1")
    assert log.record("c1-r0", Entry(index=1, term=1, data=b"a"), time=0) is None
    assert log.record("c1-r1", Entry(index=1, term=1, data=b"a"), time=5) is None
    assert "c1-r2 applied" in log.record("c1-r2", Entry(index=1, term=2, data=b"b"), time=9)


# -- named scenarios ----------------------------------------------------------

TIMEOUT = 20
"""Prepare timeout of the scenarios, in ticks."""


class SameKeys:
    """Every transaction reads and increments the same keys."""

    name = "same-keys"

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys

    def plan(self, rng: random.Random) -> TxnPlan:
        return TxnPlan(reads=self.keys, writes=self.keys)

    def write_values(self, plan: TxnPlan, values: dict[str, ReadResult], rng: random.Random) -> dict[str, Any]:
        return {key: (values[key].value or 0) + 1 for key in plan.writes}


def scenario(*, clusters: int = 2, prepare_timeout: int = TIMEOUT, seed: int = 3) -> tuple[TxnSim, tuple[str, ...]]:
    """One clerk on a reliable network, incrementing a key of c1 and, with two
    clusters, one of c2: c1's key sorts first, so c1 is the primary.
    Records are kept as long as the design asks (docs/DESIGN.md section 4, step 6)."""
    raft = RaftConfig(id="template")
    clerk = ClerkConfig(
        clerk="template", request_timeout_ticks=6, max_backoff_ticks=24, max_attempts=6, outcome_budget_ticks=150
    )
    replica = ReplicaConfig(
        cluster="template",
        raft=raft,
        initial_conf=ConfState(),
        prepare_timeout_ticks=prepare_timeout,
        push_interval_ticks=4,
        retention_ticks=clerk_window_ticks(clerk, FaultSwitches()) + 10,
    )
    config = TxnSimConfig(seed=seed, clusters=clusters, clerks=1, replica=replica, clerk=clerk)
    probe = TxnSim(config)
    keys = tuple(key_on(probe, cluster, prefix) for cluster, prefix in zip(probe.cluster_ids, "ab"))
    return TxnSim(config, SameKeys(keys)), keys


def key_on(sim: TxnSim, cluster: str, prefix: str) -> str:
    return next(f"{prefix}{n}" for n in range(1000) if sim.cluster_of(f"{prefix}{n}") == cluster)


def sends(kind: type, **fields: Any):
    """A trap condition: the batch carries a `kind` request with these fields."""

    def matches(batch: ClientBatch) -> bool:
        return any(
            isinstance(request.op, kind) and all(getattr(request.op, name) == value for name, value in fields.items())
            for request in batch.requests
        )

    return matches


def truths(sim: TxnSim) -> dict[str, ClusterTruth]:
    return {cluster: replay(log) for cluster, log in sim.logs.items()}


def record(sim: TxnSim, txid: str):
    (found,) = [record for record in sim.records if record.txid == txid]
    return found


def settle_and_judge(sim: TxnSim, ticks: float) -> None:
    sim.run(ticks)
    sim.settle()
    assert sim.judge().violations == []


FIRST = "k1.1/1"
"""The scenarios' first transaction: the first clerk's first."""


def test_clerk_dies_after_prepare_participants_ask_the_primary_and_abort():
    """docs/DESIGN.md section 4, step 5: every participant voted yes, then the clerk
    died before deciding. The primary times T out and aborts it; the other
    participant, timed out too, asks the primary and aborts; the keys are
    free again for the clerk that takes over."""
    sim, _ = scenario()
    sim.traps.append(Trap(matches=sends(Decide, commit=True), action=sim.kill_clerk, before_send=True))
    settle_and_judge(sim, 4 * TIMEOUT)
    found = truths(sim)
    primary, other = found["c1"].prepared[FIRST], found["c2"].prepared[FIRST]
    assert primary.committed is False and other.committed is False
    assert other.decided_at > primary.decided_at
    assert record(sim, FIRST).outcome == ABANDONED
    assert any(r.outcome == COMMITTED for r in sim.records if r.txid.startswith("k1.2/"))


def test_clerk_dies_after_sending_the_commit_the_primary_pushes_it():
    """docs/DESIGN.md section 4, step 4: once the primary applied Decide(commit), T is
    committed; the primary's leader pushes the decision, so every participant
    installs T although its clerk is gone."""
    sim, _ = scenario()
    sim.traps.append(Trap(matches=sends(Decide, commit=True), action=sim.kill_clerk))
    settle_and_judge(sim, 2 * TIMEOUT)
    found = truths(sim)
    assert found["c1"].prepared[FIRST].committed and found["c2"].prepared[FIRST].committed
    assert found["c2"].prepared[FIRST].decided_at > found["c1"].prepared[FIRST].decided_at
    assert record(sim, FIRST).outcome == ABANDONED


def test_primary_leader_crash_mid_commit_the_decision_survives():
    """The primary's leader crashes as the clerk sends Decide(commit): the
    prepared T is in the primary's log, so the next leader holds it and the
    clerk's retried decision commits it everywhere."""
    sim, _ = scenario()

    def crash_primary_leader(slot) -> None:
        leader = sim.leader_of("c1")
        sim.crash(leader)
        sim.scheduler.after(10 * TICK, lambda: sim.restart(leader))

    sim.traps.append(Trap(matches=sends(Decide, commit=True), action=crash_primary_leader))
    settle_and_judge(sim, 3 * TIMEOUT)
    found = truths(sim)
    assert record(sim, FIRST).outcome == COMMITTED
    assert found["c1"].prepared[FIRST].committed and found["c2"].prepared[FIRST].committed


def test_participant_partitioned_during_prepare_the_primary_times_out_and_all_abort():
    """The participant is cut off as the Prepares leave. The primary times T
    out and aborts it; once the partition heals the participant votes yes,
    and the clerk's Decide(commit) meets the primary's abort (log order
    settles the race), so the clerk aborts T everywhere."""
    sim, _ = scenario()
    rest = [node for node in sim.nodes() if node not in sim.members["c2"]]

    def cut_participant(slot) -> None:
        sim.partition(list(sim.members["c2"]), rest)
        sim.scheduler.after((2 * TIMEOUT + 10) * TICK, sim.heal)

    sim.traps.append(Trap(matches=sends(Prepare), action=cut_participant))
    settle_and_judge(sim, 4 * TIMEOUT)
    found = truths(sim)
    outcome = record(sim, FIRST)
    assert outcome.outcome == ABORTED and "primary c1 aborted it" in outcome.reason
    assert found["c1"].prepared[FIRST].committed is False
    assert FIRST not in found["c2"].prepared or found["c2"].prepared[FIRST].committed is False


# -- regressions: once strict xfails, each found by this simulator ----------------


def test_a_participant_is_released_within_a_timeout_and_an_election_of_the_heal():
    """The clerk dies before deciding and the primary's leader crashes with it;
    the crashed leader restarts at once (the heal). Every participant must
    be released within a prepare timeout plus an election."""
    sim, _ = scenario(prepare_timeout=40)
    fired = []

    def clerk_and_primary_leader_die(slot) -> None:
        sim.kill_clerk(slot)
        sim.crash(sim.leader_of("c1"))
        fired.append(slot.id)

    sim.traps.append(Trap(matches=sends(Decide, commit=True), action=clerk_and_primary_leader_die, before_send=True))
    assert sim.run_until(lambda: bool(fired), 50)
    sim.settle()
    judgement = sim.judge()
    assert judgement.violations == []
    assert judgement.late_releases == []


def test_a_paused_clerk_never_sees_a_commit_its_primary_aborted():
    """A clerk frozen past the servers' record retention must not ask again and
    take a trimmed abort for a commit: on waking it sees its budget spent."""
    sim, _ = scenario()
    pause = sim.config.replica.retention_ticks + 2 * TIMEOUT

    def cut_participant_then_pause(slot) -> None:
        rest = [node for node in sim.nodes() if node not in sim.members["c2"]]
        sim.partition(list(sim.members["c2"]), rest)
        # The primary's yes reaches the clerk first; then the clerk freezes.
        sim.scheduler.after(4 * TICK, lambda: sim.pause_clerk(slot, pause))
        sim.scheduler.after((4 + pause) * TICK, sim.heal)

    sim.traps.append(Trap(matches=sends(Prepare), action=cut_participant_then_pause))
    settle_and_judge(sim, pause + 4 * TIMEOUT)


def test_a_paused_clerk_never_sees_an_installed_one_phase_commit_abort():
    """The same for a one-phase commit: a re-validated retry after the trim
    would fail rule 1 although the first attempt was installed."""
    sim, _ = scenario(clusters=1)
    pause = sim.config.replica.retention_ticks + 2 * TIMEOUT
    sim.traps.append(Trap(matches=sends(CommitOnePhase), action=lambda slot: sim.pause_clerk(slot, pause)))
    settle_and_judge(sim, pause + 2 * TIMEOUT)


# -- the command line -----------------------------------------------------------------


def main(argv: list[str]) -> int:
    """`python3 -m tests.sim txn ...`"""
    return simulator_main(["txn", *argv])


def test_clean_seeds_print_the_figures_and_the_summary_line(capsys):
    assert main(["--seeds", "2", "--first-seed", "3", "--ticks", "80"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"txn: 2 seeds, 0 violations, \d+ committed, \d+ aborted", lines[-1])
    assert any(line.startswith("uniform: ") and "aborted (" in line for line in lines)


def test_a_broken_validator_yields_replay_lines_and_a_nonzero_exit(capsys, monkeypatch):
    monkeypatch.setattr(validator, "check_current_read_versions", lambda *args: None)
    argv = ["--seeds", "2", "--workload", "hotkey", "--faults", "none", "--no-clerk-crash", "--ticks", "100"]
    assert main(argv) == 1
    lines = capsys.readouterr().out.splitlines()
    failing = [line for line in lines if line.startswith("seed ")]
    assert failing and re.fullmatch(rf"txn: 2 seeds, {len(failing)} violations, \d+ committed, \d+ aborted", lines[-1])
    assert all(
        "replay: python3 -m tests.sim txn --seeds 1 --first-seed" in line
        and "--workload hotkey --faults none --no-clerk-crash --ticks 100" in line
        for line in failing
    )


def test_membership_faults_are_refused():
    with pytest.raises(SystemExit):
        main(["--faults", "crash,member"])
