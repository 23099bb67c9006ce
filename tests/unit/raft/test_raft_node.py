"""RaftNode driven by hand: 1-5 replicas, a tiny message pump, seeded RNGs.

The pump delivers every message instantly (or drops it on request) and keeps
each replica's persisted state the way a shell would, from its Readys; the
full network simulator lives in tests/sim.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace

import pytest

from actors.raft.log import ENTRY_OVERHEAD_BYTES, InvariantViolation
from actors.raft.messages import (
    CONF_ADD_LEARNER,
    CONF_PROMOTE,
    CONF_REMOVE,
    ENTRY_COMMAND,
    ENTRY_CONF,
    ENTRY_NOOP,
    AppendLog,
    AppendLogReply,
    ConfChange,
    ConfState,
    Entry,
    HardState,
    RepairLogReply,
    RepairLogRequest,
    Snapshot,
    SnapshotChunk,
    TimeoutNow,
    VoteReply,
    VoteRequest,
)
from actors.raft.node import (
    CANDIDATE,
    FOLLOWER,
    LEADER,
    PRE_CANDIDATE,
    ConfChangeBusy,
    NotLeader,
    RaftConfig,
    RaftNode,
    Ready,
)

ELECTION_MIN, ELECTION_MAX, HEARTBEAT = 6, 12, 2


def make_config(replica: str, **overrides) -> RaftConfig:
    return RaftConfig(
        id=replica, election_min=ELECTION_MIN, election_max=ELECTION_MAX, heartbeat_ticks=HEARTBEAT, **overrides
    )


def encode_state(commands: list[bytes]) -> bytes:
    return json.dumps([command.decode() for command in commands]).encode()


def decode_state(data: bytes) -> list[bytes]:
    return [command.encode() for command in json.loads(data)] if data else []


def run(first: int, count: int, term: int) -> list[Entry]:
    """`count` empty entries of `term` from index `first`."""
    return [Entry(index=first + k, term=term) for k in range(count)]


@dataclass
class Disk:
    """What one replica persisted, following the storage contract."""

    hard_state: HardState = HardState()
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    def save(self, ready: Ready) -> None:
        if ready.snapshot is not None:
            s = ready.snapshot
            keeps = any(e.index == s.index and e.term == s.term for e in self.entries)
            self.entries = [e for e in self.entries if e.index > s.index] if keeps else []
            self.snapshot = s
        if ready.entries:
            start = ready.entries[0].index
            self.entries = [e for e in self.entries if e.index < start] + list(ready.entries)
        if ready.hard_state is not None:
            self.hard_state = ready.hard_state

    def compact(self, snapshot: Snapshot) -> None:
        self.entries = [e for e in self.entries if e.index > snapshot.index]
        self.snapshot = snapshot


class Pump:
    """Replicas, their disks and state machines (the list of applied
    commands), and a queue of messages delivered in rounds."""

    def __init__(self, replicas, *, voters=None, learners=(), seed=0, **overrides):
        self.replicas = list(replicas)
        self.conf = ConfState(voters=tuple(voters or replicas), learners=tuple(learners))
        self.seed = seed
        self.overrides = overrides
        self.disks = {r: Disk() for r in self.replicas}
        self.states: dict[str, list[bytes]] = {}
        self.nodes: dict[str, RaftNode] = {}
        for replica in self.replicas:
            self.start(replica)
        self.queue: list[tuple[str, str, object]] = []
        self.sent: list[tuple[str, str, object]] = []
        self.cut: set[str] = set()
        self.drop = lambda sender, to, message: False

    def start(self, replica: str) -> RaftNode:
        """(Re)start a replica from its disk, as after a crash."""
        disk = self.disks[replica]
        self.nodes[replica] = RaftNode(
            make_config(replica, **self.overrides),
            rng=random.Random(f"{self.seed}/{replica}/{len(self.nodes)}"),
            hard_state=disk.hard_state,
            snapshot=disk.snapshot,
            entries=tuple(disk.entries),
            initial_conf=self.conf,
        )
        self.states[replica] = decode_state(disk.snapshot.data) if disk.snapshot else []
        return self.nodes[replica]

    def start_after_crash(self, *replicas: str) -> None:
        """Start replicas whose disks hold a term, as after a crash: each
        ignores elections for its first ELECTION_MIN ticks (it may have
        promised a leader its lease), which pass here cut off from everyone."""
        for replica in replicas:
            self.start(replica)
        cut, self.cut = self.cut, set(replicas)
        self.tick(ELECTION_MIN, replicas=list(replicas))
        self.cut = cut

    def add(self, replica: str) -> RaftNode:
        """A new replica joining with the founding membership."""
        self.replicas.append(replica)
        self.disks[replica] = Disk()
        return self.start(replica)

    def handle_ready(self, replica: str) -> Ready:
        node = self.nodes[replica]
        ready = node.ready()
        self.disks[replica].save(ready)
        if ready.snapshot is not None:
            self.states[replica] = decode_state(ready.snapshot.data)
        for entry in ready.committed_entries:
            if entry.kind == ENTRY_COMMAND:
                self.states[replica].append(entry.data)
        for to, message in ready.messages:
            self.sent.append((replica, to, message))
            self.queue.append((replica, to, message))
        node.advance(ready)
        return ready

    def flush(self) -> None:
        for replica in self.replicas:
            if self.nodes[replica].has_ready():
                self.handle_ready(replica)

    def deliver(self) -> None:
        batch, self.queue = self.queue, []
        for sender, to, message in batch:
            if sender in self.cut or to in self.cut or to not in self.nodes or self.drop(sender, to, message):
                continue
            self.nodes[to].step(message)

    def settle(self, rounds: int = 200) -> None:
        """Flush Readys and deliver messages until nothing moves."""
        for _ in range(rounds):
            self.flush()
            if not self.queue and not any(self.nodes[r].has_ready() for r in self.replicas):
                return
            self.deliver()
        raise AssertionError("the cluster did not settle")

    def tick(self, times: int = 1, replicas=None) -> None:
        for _ in range(times):
            for replica in replicas if replicas is not None else self.replicas:
                self.nodes[replica].tick()
            self.settle()

    def spread(self, leader: str) -> None:
        """Tick only `leader` until a heartbeat has carried its commit index to
        every follower it has just replicated to."""
        self.tick(HEARTBEAT + 1, replicas=[leader])

    def elect(self, replica: str) -> RaftNode:
        """Only `replica` ticks until it leads, then the cluster settles."""
        node = self.nodes[replica]
        for _ in range(3 * ELECTION_MAX):
            node.tick()
            self.settle()
            if node.role == LEADER:
                return node
        raise AssertionError(f"{replica} did not win an election")

    def leaders(self) -> list[str]:
        return [r for r in self.replicas if self.nodes[r].role == LEADER and r not in self.cut]

    def propose(self, replica: str, *commands: bytes) -> list[int]:
        return [self.nodes[replica].propose(command) for command in commands]

    def compact(self, replica: str) -> Snapshot:
        node = self.nodes[replica]
        snapshot = node.compact(node.applied, encode_state(self.states[replica]))
        self.disks[replica].compact(snapshot)
        return snapshot

    def sent_of(self, kind, sender=None, to=None) -> list:
        return [
            message
            for s, t, message in self.sent
            if isinstance(message, kind) and sender in (None, s) and to in (None, t)
        ]


def test_a_single_voter_elects_itself_and_commits_alone():
    pump = Pump(["a"])
    leader = pump.elect("a")
    assert leader.term == 1 and leader.leader == "a"
    [index] = pump.propose("a", b"x")
    pump.settle()
    assert leader.commit == index == 2  # after the no-op
    assert pump.states["a"] == [b"x"]


def test_election_timeout_is_drawn_from_the_injected_rng_within_bounds():
    first_campaign = set()
    for seed in range(12):
        node = RaftNode(make_config("a"), rng=random.Random(seed), initial_conf=ConfState(voters=("a", "b", "c")))
        ticks = 0
        while node.role == FOLLOWER:
            node.tick()
            ticks += 1
        assert node.role == PRE_CANDIDATE
        first_campaign.add(ticks)
    assert min(first_campaign) >= ELECTION_MIN and max(first_campaign) <= ELECTION_MAX
    assert len(first_campaign) > 1


def test_three_replicas_elect_one_leader_through_prevote():
    pump = Pump(["a", "b", "c"])
    pump.tick(3 * ELECTION_MAX)
    [leader] = pump.leaders()
    assert all(pump.nodes[r].term == pump.nodes[leader].term for r in pump.replicas)
    assert all(pump.nodes[r].leader == leader for r in pump.replicas)
    assert pump.sent_of(VoteRequest) and all(
        m.pre_vote for m in pump.sent_of(VoteRequest)[: len(pump.replicas) - 1]
    )
    # The no-op of the new term is committed everywhere after a heartbeat.
    assert all(pump.nodes[r].commit == 1 for r in pump.replicas)


def test_a_replica_back_from_isolation_does_not_depose_a_healthy_leader():
    """PreVote (thesis 9.6) and the CheckQuorum lease (thesis 4.2.3)."""
    pump = Pump(["a", "b", "c"])
    pump.elect("a")
    term = pump.nodes["a"].term
    pump.cut = {"c"}
    pump.tick(5 * ELECTION_MAX)
    assert pump.nodes["c"].role == PRE_CANDIDATE and pump.nodes["c"].term == term
    pump.cut = set()
    pump.tick(2 * ELECTION_MAX)
    assert pump.leaders() == ["a"] and pump.nodes["a"].term == term
    assert pump.nodes["c"].role == FOLLOWER and pump.nodes["c"].leader == "a"


def test_voters_in_a_lease_ignore_vote_requests_unless_it_is_a_transfer():
    pump = Pump(["a", "b", "c"])
    pump.elect("a")
    b = pump.nodes["b"]
    term = b.term
    request = VoteRequest(term=term + 1, candidate="c", last_index=99, last_term=term)
    b.step(request)
    assert b.term == term and not b.has_ready()
    b.step(replace(request, transfer=True))
    ready = b.ready()
    assert b.term == term + 1 and ready.hard_state.voted_for == "c"
    assert ready.messages == (("c", VoteReply(term=term + 1, voter="b", granted=True)),)


def test_a_leader_cut_off_from_its_quorum_steps_down():
    """CheckQuorum (thesis 6.2): the first window still saw the answers to
    the no-op; the next one, silent, ends the leadership."""
    pump = Pump(["a", "b", "c"])
    a = pump.elect("a")
    pump.cut = {"b", "c"}
    pump.tick(2 * ELECTION_MIN - 1, replicas=["a"])
    assert a.role == LEADER
    pump.tick(1, replicas=["a"])
    assert a.role == FOLLOWER and a.leader is None


def test_a_stale_leader_learns_the_new_term_from_a_follower_and_steps_down():
    pump = Pump(["a", "b", "c"], check_quorum=False)
    a = pump.elect("a")
    pump.cut = {"a"}
    pump.elect("b")
    pump.cut = set()
    assert a.role == LEADER and a.term < pump.nodes["b"].term
    pump.tick(HEARTBEAT, replicas=["a"])
    assert a.role == FOLLOWER and a.term == pump.nodes["b"].term


def test_a_new_leader_commits_earlier_terms_only_under_an_entry_of_its_own():
    """Paper 5.4.2 (figure 8): counting replicas of an older-term entry is unsafe."""
    old = [Entry(index=1, term=1), Entry(index=2, term=2)]
    node = RaftNode(
        make_config("a", pre_vote=False),
        rng=random.Random(1),
        hard_state=HardState(term=2),
        entries=old,
        initial_conf=ConfState(voters=("a", "b", "c")),
    )
    while node.role != CANDIDATE:
        node.tick()
    node.step(VoteReply(term=3, voter="b", granted=True))
    assert node.role == LEADER
    noop = node.ready()
    assert noop.entries == (Entry(index=3, term=3, kind=ENTRY_NOOP),)
    node.advance(noop)
    node.step(AppendLogReply(term=3, follower="b", success=True, match_index=2))
    assert node.commit == 0  # a quorum holds index 2, but it is of term 2
    node.step(AppendLogReply(term=3, follower="b", success=True, match_index=3))
    assert node.commit == 3
    assert [e.index for e in node.ready().committed_entries] == [1, 2, 3]


def test_proposals_made_while_an_append_is_in_flight_go_out_together():
    pump = Pump(["a", "b", "c"])
    a = pump.elect("a")
    pump.sent.clear()
    pump.propose("a", b"first")
    pump.flush()
    assert [len(m.entries) for m in pump.sent_of(AppendLog, to="b")] == [1]
    pump.propose("a", *[b"p%d" % k for k in range(50)])
    pump.flush()
    assert len(pump.sent_of(AppendLog, to="b")) == 1  # the slot is busy
    pump.settle()
    assert [len(m.entries) for m in pump.sent_of(AppendLog, to="b")] == [1, 50]
    assert a.commit == a.last_index == 52
    assert len(pump.sent_of(AppendLog)) == 4 and len(pump.sent_of(AppendLogReply)) == 4


def test_proposals_before_a_ready_share_one_message_split_by_max_batch_bytes():
    pump = Pump(["a", "b"], max_batch_bytes=1000)
    pump.elect("a")
    pump.sent.clear()
    pump.propose("a", *[b"x" * 300 for _ in range(10)])
    pump.settle()
    assert [len(m.entries) for m in pump.sent_of(AppendLog, to="b")] == [3, 3, 3, 1]
    with pytest.raises(ValueError):
        pump.nodes["a"].propose(b"y" * 1001)


def test_a_quiet_cluster_sends_only_heartbeats_and_their_replies():
    pump = Pump(["a", "b", "c"])
    pump.elect("a")
    pump.tick(HEARTBEAT)
    pump.sent.clear()
    rounds = 10
    pump.tick(rounds * HEARTBEAT)
    appends = pump.sent_of(AppendLog)
    assert len(appends) == 2 * rounds and all(not m.entries for m in appends)
    assert len(pump.sent_of(AppendLogReply)) == 2 * rounds
    assert len(pump.sent) == 4 * rounds


def test_a_lost_append_frees_its_slot_after_a_bounded_wait_and_the_follower_repairs():
    """The slot frees after `2 * heartbeat_ticks`; the leader then probes
    rather than resends, and the follower asks for what it lacks."""
    pump = Pump(["a", "b", "c"])
    a = pump.elect("a")
    pump.tick(HEARTBEAT)
    pump.sent.clear()
    pump.drop = lambda sender, to, message: to == "b" and isinstance(message, AppendLog) and bool(message.entries)
    [index] = pump.propose("a", b"x")
    pump.settle()
    pump.drop = lambda sender, to, message: False
    assert pump.nodes["b"].last_index < index
    pump.tick(2 * HEARTBEAT - 1, replicas=["a"])
    assert pump.nodes["b"].last_index < index and len(pump.sent_of(AppendLog, to="b")) == 1
    pump.tick(1, replicas=["a"])
    assert pump.nodes["b"].last_index == index
    assert a.progress["b"] == index
    [request] = pump.sent_of(RepairLogRequest, sender="b")
    [repair] = pump.sent_of(RepairLogReply, to="b")
    assert request.last_index == index - 1 and [e.index for e in repair.entries] == [index]


def test_hints_let_the_leader_skip_hundreds_of_conflicting_entries_in_few_round_trips():
    """The "backup" lab test: whole terms are skipped (paper 5.3, end)."""
    common = run(1, 10, 1)
    pump = Pump(["a", "b", "c"])
    pump.disks["a"] = Disk(HardState(term=5, commit=10), None, common + run(11, 300, 4))
    pump.disks["b"] = Disk(HardState(term=3, commit=10), None, common + run(11, 400, 3))
    pump.disks["c"] = Disk(HardState(term=2, commit=10), None, common + run(11, 200, 2))
    pump.start_after_crash(*pump.replicas)
    pump.cut = {"c"}
    pump.elect("a")
    pump.cut = set()
    pump.sent.clear()
    pump.tick(2 * HEARTBEAT, replicas=["a"])  # the probe lost while c was cut off is due again
    c = pump.nodes["c"]
    assert c.last_index == 311 and c.commit == 311
    answers = [message for sender, _, message in pump.sent if sender == "c"]
    caught_up = next(k for k, m in enumerate(answers) if isinstance(m, AppendLogReply) and m.match_index == 311)
    # Its gap (RepairLogRequest), the conflict's hint, the probe there, the entries.
    assert caught_up + 1 == 4
    b_log = pump.disks["b"].entries
    assert [e.term for e in b_log[-2:]] == [4, pump.nodes["a"].term] and len(b_log) == 311


def test_a_replica_that_missed_entries_asks_for_repair_and_gets_them_batched():
    pump = Pump(["a", "b", "c"], max_batch_bytes=500 * (4 + ENTRY_OVERHEAD_BYTES))  # 500 four-byte commands
    a = pump.elect("a")
    pump.cut = {"c"}
    pump.propose("a", *[b"%04d" % k for k in range(1000)])
    pump.settle()
    assert a.commit == 1001
    a.transfer_leadership("b")  # c wakes up to a leader that knows nothing of it
    pump.settle()
    b = pump.nodes["b"]
    assert b.role == LEADER
    pump.cut = set()
    pump.sent.clear()
    pump.tick(2 * HEARTBEAT, replicas=["b"])  # the probe lost while c was cut off is due again
    [request] = pump.sent_of(RepairLogRequest, sender="c")
    assert request.last_index == 1
    [repair] = pump.sent_of(RepairLogReply, to="c")
    assert (repair.prev_index, len(repair.entries)) == (1, 500)
    # A heartbeat found the gap; after the repair, batches carry the rest.
    appends = pump.sent_of(AppendLog, to="c")
    assert not appends[0].entries and appends[0].prev_index == b.last_index
    assert [len(m.entries) for m in appends if m.entries] == [500, 1]
    assert pump.nodes["c"].last_index == b.last_index == 1002
    pump.spread("b")
    assert pump.states["c"] == pump.states["a"] and len(pump.states["c"]) == 1000


@pytest.mark.parametrize("compacted", [False, True], ids=["entries", "snapshot"])
def test_a_sleeping_follower_gets_only_heartbeats_then_repairs_its_log_on_waking(compacted):
    """c sleeps (it does not tick; messages to and from it are lost) while
    the leader commits many entries: after the first lost append times out
    the leader only probes it with heartbeats; on waking it finds its gap,
    asks with RepairLogRequest and is sent what it missed by RepairLogReply (the
    snapshot when it was compacted away), then gets ordinary pipelined
    AppendLogs again."""
    pump = Pump(["a", "b", "c"], max_batch_bytes=20 * (6 + ENTRY_OVERHEAD_BYTES), max_snapshot_chunk=200)
    a = pump.elect("a")
    pump.spread("a")
    c = pump.nodes["c"]
    slept_at = c.last_index
    pump.cut = {"c"}
    pump.sent.clear()
    rounds = 10
    for k in range(rounds):
        pump.propose("a", *[b"r%02d-%02d" % (k, n) for n in range(5)])  # 6-byte commands
        pump.settle()
        pump.tick(HEARTBEAT, replicas=["a", "b"])
    assert a.commit == a.last_index == slept_at + 5 * rounds
    if compacted:
        snapshot = pump.compact("a")
    pump.tick(HEARTBEAT, replicas=["a", "b"])
    asleep = [m for _, to, m in pump.sent if to == "c"]
    [lost, *heartbeats] = asleep
    assert lost.entries and all(isinstance(m, AppendLog) and not m.entries for m in heartbeats)
    slept_ticks = (rounds + 1) * HEARTBEAT
    assert len(heartbeats) == (slept_ticks - 2 * HEARTBEAT) // HEARTBEAT + 1  # one per heartbeat_ticks
    assert heartbeats[-1].prev_index == a.last_index

    pump.cut = set()
    pump.sent.clear()
    pump.tick(HEARTBEAT)
    [request] = pump.sent_of(RepairLogRequest, sender="c")
    assert request.last_index == slept_at
    repairs = pump.sent_of(RepairLogReply, to="c")
    if compacted:
        assert all(m.snapshot.index == snapshot.index for m in repairs) and len(repairs) > 1
        assert c.snapshot == snapshot and not pump.sent_of(AppendLog, to="c")[0].entries
    else:
        [repair] = repairs
        assert (repair.prev_index, len(repair.entries)) == (slept_at, 20)
        assert [len(m.entries) for m in pump.sent_of(AppendLog, to="c") if m.entries] == [20, 10]
    assert c.last_index == a.last_index and pump.states["c"] == pump.states["a"]

    pump.sent.clear()
    [index] = pump.propose("a", b"after")
    pump.flush()
    [append] = pump.sent_of(AppendLog, to="c")
    assert [e.index for e in append.entries] == [index]
    pump.spread("a")
    assert pump.states["c"][-1] == b"after" and a.progress["c"] == index


def test_a_far_behind_replica_receives_the_snapshot_in_acknowledged_chunks():
    pump = Pump(["a", "b", "c"], max_snapshot_chunk=100)
    a = pump.elect("a")
    pump.cut = {"c"}
    pump.propose("a", *[b"cmd%02d" % k for k in range(60)])
    pump.settle()
    snapshot = pump.compact("a")
    assert snapshot.index == 61 and a.first_index == 62
    chunks_needed = -(-len(snapshot.data) // 100)
    pump.cut = set()
    pump.sent.clear()
    pump.tick(2 * HEARTBEAT, replicas=["a"])
    chunks = [m.snapshot for m in pump.sent_of(RepairLogReply, to="c")]
    assert len(chunks) == chunks_needed and [c.offset for c in chunks] == [100 * k for k in range(chunks_needed)]
    assert [c.done for c in chunks] == [False] * (chunks_needed - 1) + [True]
    assert len(pump.sent_of(AppendLogReply, sender="c")) == chunks_needed
    c = pump.nodes["c"]
    assert (c.first_index, c.last_index, c.commit, c.applied) == (62, 61, 61, 61)
    assert pump.disks["c"].snapshot == snapshot and pump.states["c"] == pump.states["a"]
    pump.propose("a", b"after")
    pump.spread("a")
    assert pump.states["c"][-1] == b"after" and a.progress["c"] == 62


def test_a_lost_chunk_is_resent_and_a_restarted_receiver_starts_the_transfer_over():
    pump = Pump(["a", "b", "c"], max_snapshot_chunk=50)
    pump.elect("a")
    pump.cut = {"c"}
    pump.propose("a", *[b"c%02d" % k for k in range(40)])
    pump.settle()
    snapshot = pump.compact("a")
    pump.cut = set()
    lost = []

    def lose_second_chunk(sender, to, message):
        if isinstance(message, RepairLogReply) and message.snapshot and message.snapshot.offset == 50 and not lost:
            lost.append(message)
            return True
        return False

    pump.drop = lose_second_chunk
    pump.tick(2 * HEARTBEAT, replicas=["a"])
    assert lost and pump.nodes["c"].snapshot is None
    pump.start("c")  # the receiver crashes: its partial snapshot is gone
    pump.tick(4 * HEARTBEAT, replicas=["a"])
    offsets = [m.snapshot.offset for m in pump.sent_of(RepairLogReply, to="c")]
    assert offsets[:3] == [0, 50, 50] and offsets.count(0) == 2
    assert pump.nodes["c"].snapshot == snapshot and pump.states["c"] == pump.states["a"]


def test_a_conflicting_follower_below_the_compaction_point_gets_the_snapshot():
    """Ordinary backtracking lands below the leader's first index (paper 7)."""
    pump = Pump(["a", "b", "c"])
    committed = [Entry(index=i, term=1, data=b"c%d" % i) for i in range(1, 6)]
    leader_snapshot = Snapshot(
        index=5, term=1, conf=pump.conf, data=encode_state([e.data for e in committed])
    )
    noop = Entry(index=6, term=3, kind=ENTRY_NOOP)
    pump.disks["a"] = Disk(HardState(term=3, commit=5), leader_snapshot, [noop])
    pump.disks["b"] = Disk(HardState(term=3, commit=5), None, committed + [noop])
    stale = committed[:3] + run(4, 4, 2)
    pump.disks["c"] = Disk(HardState(term=2, commit=3), None, stale)
    pump.start_after_crash(*pump.replicas)
    pump.elect("a")
    pump.tick(2 * HEARTBEAT, replicas=["a"])
    c = pump.nodes["c"]
    [chunk] = pump.sent_of(RepairLogReply, to="c")
    assert chunk.snapshot.index == 5 and not pump.sent_of(RepairLogRequest)
    assert c.snapshot == leader_snapshot and c.last_index == pump.nodes["a"].last_index
    assert pump.states["c"] == [e.data for e in committed]


def test_compaction_records_the_term_and_membership_and_drops_the_log():
    pump = Pump(["a", "b", "c"])
    a = pump.elect("a")
    pump.propose("a", b"x", b"y")
    pump.settle()
    pump.nodes["a"].propose_conf_change(ConfChange(op=CONF_ADD_LEARNER, replica="d"))
    pump.settle()
    with pytest.raises(ValueError):
        a.compact(a.applied + 1, b"")
    snapshot = pump.compact("a")
    assert (snapshot.index, snapshot.term) == (4, a.term)
    assert snapshot.conf == ConfState(voters=("a", "b", "c"), learners=("d",))
    assert a.first_index == 5 and a.snapshot == snapshot
    with pytest.raises(ValueError):
        a.compact(snapshot.index, b"")


def test_a_restarted_replica_restores_its_state_and_reapplies_committed_entries():
    pump = Pump(["a", "b", "c"])
    pump.elect("a")
    pump.propose("a", b"x", b"y", b"z")
    pump.spread("a")
    pump.compact("b")
    pump.propose("a", b"w")
    pump.spread("a")
    before = pump.states["b"]
    b = pump.start("b")
    assert (b.term, b.commit, b.applied, b.role) == (pump.nodes["a"].term, 5, 4, FOLLOWER)
    first = b.ready()
    assert [e.data for e in first.committed_entries] == [b"w"]
    assert first.hard_state is None and first.soft_state is None
    pump.nodes["b"].advance(first)
    assert b.applied == 5
    assert before == [b"x", b"y", b"z", b"w"]


def test_a_restarted_voter_keeps_its_vote_for_the_term():
    pump = Pump(["a", "b", "c"], pre_vote=False)
    b = pump.nodes["b"]
    b.step(VoteRequest(term=1, candidate="a", last_index=0, last_term=0))
    pump.handle_ready("b")
    b = pump.start("b")
    b.step(VoteRequest(term=1, candidate="c", last_index=0, last_term=0))
    assert b.ready().messages == (("c", VoteReply(term=1, voter="b", granted=False)),)


def test_replies_that_depend_on_new_state_come_in_the_ready_that_persists_it():
    pump = Pump(["a", "b", "c"], pre_vote=False)
    b = pump.nodes["b"]
    b.step(VoteRequest(term=4, candidate="a", last_index=0, last_term=0))
    ready = b.ready()
    assert ready.hard_state == HardState(term=4, voted_for="a", commit=0)
    assert ready.messages == (("a", VoteReply(term=4, voter="b", granted=True)),)
    b.advance(ready)
    b.step(AppendLog(term=4, leader="a", prev_index=0, prev_term=0, entries=(Entry(index=1, term=4),), commit=1))
    ready = b.ready()
    assert ready.entries == (Entry(index=1, term=4),) and ready.hard_state.commit == 1
    assert ready.messages == (("a", AppendLogReply(term=4, follower="b", success=True, match_index=1)),)
    assert ready.committed_entries == ready.entries
    b.advance(ready)
    assert not b.has_ready()


def test_overwriting_a_committed_entry_is_an_invariant_violation():
    node = RaftNode(
        make_config("b"),
        rng=random.Random(0),
        hard_state=HardState(term=2, commit=1),
        entries=(Entry(index=1, term=1),),
        initial_conf=ConfState(voters=("a", "b", "c")),
    )
    with pytest.raises(InvariantViolation):
        node.step(AppendLog(term=3, leader="a", prev_index=0, prev_term=0, entries=(Entry(index=1, term=2),)))
    with pytest.raises(TypeError):
        node.step("not a message")


def test_a_learner_gets_the_log_but_neither_campaigns_nor_counts_toward_commit():
    pump = Pump(["a", "b", "c"])
    a = pump.elect("a")
    d = pump.add("d")
    index = a.propose_conf_change(ConfChange(op=CONF_ADD_LEARNER, replica="d"))
    pump.propose("a", b"x")
    pump.spread("a")
    assert a.conf.learners == ("d",) and d.conf.learners == ("d",)
    assert a.progress == {"b": index + 1, "c": index + 1, "d": index + 1}
    assert pump.states["d"] == [b"x"]
    pump.cut = {"a"}
    pump.tick(5 * ELECTION_MAX, replicas=["d"])
    assert d.role == FOLLOWER and not pump.sent_of(VoteRequest, sender="d")
    pump.cut = {"b", "c"}
    [late] = pump.propose("a", b"y")
    pump.spread("a")
    assert a.progress["d"] == late and a.commit < late  # a learner's copy is not a vote
    pump.cut = set()
    pump.tick(2 * HEARTBEAT, replicas=["a"])
    assert a.commit == late


def test_a_caught_up_learner_is_promoted_then_a_voter_is_removed():
    pump = Pump(["a", "b", "c"])
    a = pump.elect("a")
    pump.add("d")
    a.propose_conf_change(ConfChange(op=CONF_ADD_LEARNER, replica="d"))
    with pytest.raises(ConfChangeBusy):
        a.propose_conf_change(ConfChange(op=CONF_PROMOTE, replica="d"))
    pump.spread("a")
    assert a.progress["d"] == a.last_index
    a.propose_conf_change(ConfChange(op=CONF_PROMOTE, replica="d"))
    pump.spread("a")
    assert a.conf.voters == ("a", "b", "c", "d") and pump.nodes["d"].conf == a.conf
    with pytest.raises(ValueError):
        a.propose_conf_change(ConfChange(op=CONF_PROMOTE, replica="d"))
    a.propose_conf_change(ConfChange(op=CONF_REMOVE, replica="b"))
    pump.spread("a")
    assert a.conf.voters == ("a", "c", "d") and "b" not in a.progress
    pump.sent.clear()
    pump.tick(5 * ELECTION_MAX)
    assert not pump.sent_of(AppendLog, to="b") and not pump.sent_of(VoteRequest, sender="b")
    assert pump.leaders() == ["a"]


def test_no_membership_change_before_the_leader_commits_an_entry_of_its_term():
    pump = Pump(["a", "b", "c"])
    pump.drop = lambda sender, to, message: isinstance(message, AppendLogReply)
    a = pump.elect("a")
    with pytest.raises(ConfChangeBusy):
        a.propose_conf_change(ConfChange(op=CONF_ADD_LEARNER, replica="d"))
    pump.drop = lambda sender, to, message: False
    pump.tick(2 * HEARTBEAT, replicas=["a"])
    assert a.commit == 1
    a.propose_conf_change(ConfChange(op=CONF_ADD_LEARNER, replica="d"))
    with pytest.raises(NotLeader):
        pump.nodes["b"].propose_conf_change(ConfChange(op=CONF_ADD_LEARNER, replica="e"))


def test_a_truncated_membership_change_reverts():
    node = RaftNode(make_config("b"), rng=random.Random(0), initial_conf=ConfState(voters=("a", "b", "c")))
    change = Entry(index=1, term=1, kind=ENTRY_CONF, data=ConfChange(op=CONF_REMOVE, replica="c").encode())
    node.step(AppendLog(term=1, leader="a", prev_index=0, prev_term=0, entries=(change,)))
    assert node.conf.voters == ("a", "b")
    node.step(AppendLog(term=2, leader="c", prev_index=0, prev_term=0, entries=(Entry(index=1, term=2),)))
    assert node.conf.voters == ("a", "b", "c")
    assert node.ready().entries == (Entry(index=1, term=2),)


def test_a_replica_the_membership_does_not_list_as_a_voter_never_campaigns():
    node = RaftNode(make_config("d"), rng=random.Random(0), initial_conf=ConfState(voters=("a", "b", "c")))
    for _ in range(10 * ELECTION_MAX):
        node.tick()
    node.step(TimeoutNow(term=0, leader="a"))
    assert node.role == FOLLOWER and not node.has_ready()


def test_leadership_transfer_catches_the_target_up_then_hands_over():
    """Thesis 3.10."""
    pump = Pump(["a", "b", "c"])
    a = pump.elect("a")
    pump.cut = {"c"}
    pump.propose("a", b"x", b"y")
    pump.settle()
    pump.cut = set()
    term = a.term
    a.transfer_leadership("c")
    with pytest.raises(NotLeader) as refused:
        a.propose(b"z")
    assert refused.value.leader == "c"
    assert not pump.sent_of(TimeoutNow)  # c must catch up first
    pump.tick(2 * HEARTBEAT, replicas=["a"])
    assert len(pump.sent_of(TimeoutNow)) == 1
    assert pump.leaders() == ["c"] and pump.nodes["c"].term == term + 1
    assert pump.sent_of(VoteRequest, sender="c")[-1].transfer
    assert a.role == FOLLOWER and a.leader == "c"
    pump.propose("c", b"z")
    pump.spread("c")
    assert pump.states["a"] == [b"x", b"y", b"z"]


def test_a_transfer_to_an_unreachable_replica_is_abandoned_after_an_election_timeout():
    pump = Pump(["a", "b", "c"])
    a = pump.elect("a")
    pump.cut = {"c"}
    pump.propose("a", b"x")
    a.transfer_leadership("c")
    pump.tick(ELECTION_MAX - 1, replicas=["a"])
    with pytest.raises(NotLeader):
        a.propose(b"y")
    pump.tick(1, replicas=["a"])
    assert a.role == LEADER and a.transferee is None
    a.propose(b"y")
    with pytest.raises(ValueError):
        a.transfer_leadership("zz")
    with pytest.raises(NotLeader):
        pump.nodes["b"].transfer_leadership("a")


def test_removing_the_leader_hands_over_first_and_the_new_leader_removes_it():
    """Thesis 4.2.2: the removal is retried at the most up-to-date voter."""
    pump = Pump(["a", "b", "c"])
    a = pump.elect("a")
    pump.cut = {"b"}
    pump.propose("a", b"x")
    pump.settle()
    pump.cut = set()
    with pytest.raises(NotLeader) as redirected:
        a.propose_conf_change(ConfChange(op=CONF_REMOVE, replica="a"))
    assert redirected.value.leader == "c"
    pump.spread("a")
    assert pump.leaders() == ["c"]
    c = pump.nodes["c"]
    pump.spread("c")
    c.propose_conf_change(ConfChange(op=CONF_REMOVE, replica="a"))
    pump.spread("c")
    assert c.conf.voters == ("b", "c") and a.conf.voters == ("b", "c")
    pump.sent.clear()
    pump.tick(5 * ELECTION_MAX)
    assert not pump.sent_of(VoteRequest, sender="a") and pump.leaders() == ["c"]
    with pytest.raises(ValueError):
        Pump(["a"]).elect("a").propose_conf_change(ConfChange(op=CONF_REMOVE, replica="a"))


def test_five_replicas_survive_the_leader_s_isolation_and_converge():
    pump = Pump(["a", "b", "c", "d", "e"], seed=7)
    pump.elect("a")
    pump.propose("a", b"1", b"2")
    pump.settle()
    pump.cut = {"a"}
    pump.propose("a", b"lost")
    pump.tick(3 * ELECTION_MAX)
    [leader] = pump.leaders()
    assert leader != "a"
    pump.propose(leader, b"3")
    pump.cut = set()
    pump.tick(2 * ELECTION_MAX)
    assert pump.leaders() == [leader]
    assert all(pump.states[r] == [b"1", b"2", b"3"] for r in pump.replicas)


def test_a_candidate_rejected_by_a_majority_returns_to_follower():
    node = RaftNode(make_config("a", pre_vote=False), rng=random.Random(3), initial_conf=ConfState(voters=("a", "b", "c")))
    while node.role != CANDIDATE:
        node.tick()
    node.step(VoteReply(term=1, voter="b", granted=False))
    assert node.role == CANDIDATE
    node.step(VoteReply(term=1, voter="c", granted=False))
    assert node.role == FOLLOWER and node.term == 1


def test_a_leader_ignores_pre_votes_and_a_stale_pre_candidate_learns_the_term():
    pump = Pump(["a", "b", "c"])
    a = pump.elect("a")
    a.step(VoteRequest(term=a.term + 1, candidate="c", last_index=99, last_term=a.term, pre_vote=True))
    assert a.role == LEADER and not a.has_ready()
    a.step(VoteRequest(term=a.term - 1, candidate="c", last_index=99, last_term=a.term, pre_vote=True))
    assert a.ready().messages == (("c", VoteReply(term=a.term, voter="a", granted=False, pre_vote=True)),)


def test_the_leader_resends_after_the_last_entry_of_a_term_both_logs_hold():
    """Paper 5.3 (end): the follower's conflicting term is one the leader also
    has, so everything through the leader's last entry of it matches."""
    pump = Pump(["a", "b", "c"])
    pump.disks["a"] = Disk(HardState(term=4), None, [Entry(index=1, term=1), *run(2, 2, 2), Entry(index=4, term=4)])
    pump.disks["c"] = Disk(HardState(term=2), None, [Entry(index=1, term=1), *run(2, 5, 2)])
    for replica in pump.replicas:
        pump.start(replica)
    pump.cut = {"c"}
    pump.elect("a")
    pump.cut = set()
    pump.sent.clear()
    pump.tick(2 * HEARTBEAT, replicas=["a"])
    reject, probed, accept = pump.sent_of(AppendLogReply, sender="c")[:3]
    assert (reject.success, reject.hint_index, reject.hint_term) == (False, 2, 2)
    probe, append = pump.sent_of(AppendLog, to="c")[1:3]
    assert (probe.prev_index, probe.entries, probed.success) == (3, (), True)
    assert (append.prev_index, len(append.entries), accept.success) == (3, 2, True)
    assert [e.term for e in pump.disks["c"].entries] == [1, 2, 2, 4, 5]


def test_a_repair_that_overshoots_a_short_log_is_refused_with_its_length():
    node = RaftNode(make_config("b"), rng=random.Random(0), initial_conf=ConfState(voters=("a", "b")))
    node.step(RepairLogReply(term=1, leader="a", prev_index=5, prev_term=1, entries=(Entry(index=6, term=1),)))
    assert node.ready().messages == (
        ("a", AppendLogReply(term=1, follower="b", success=False, hint_index=1, hint_term=0)),
    )


def test_a_snapshot_whose_last_entry_the_follower_holds_only_moves_its_commit():
    """Paper 7, figure 13 step 6."""
    node = RaftNode(
        make_config("b"),
        rng=random.Random(0),
        hard_state=HardState(term=2),
        entries=run(1, 4, 2),
        initial_conf=ConfState(voters=("a", "b")),
    )
    chunk = SnapshotChunk(index=3, term=2, conf=ConfState(voters=("a", "b")), offset=0, data=b"image", done=True)
    node.step(RepairLogReply(term=2, leader="a", snapshot=chunk))
    ready = node.ready()
    assert ready.snapshot is None and node.last_index == 4 and node.commit == 3
    assert [e.index for e in ready.committed_entries] == [1, 2, 3]
    assert ready.messages == (("a", AppendLogReply(term=2, follower="b", success=True, match_index=3)),)


def test_a_restarted_replica_rebuilds_its_membership_from_the_log():
    founders = ConfState(voters=("a", "b", "c"))
    entries = (
        Entry(index=1, term=1, kind=ENTRY_CONF, data=ConfChange(op=CONF_ADD_LEARNER, replica="d").encode()),
        Entry(index=2, term=1, kind=ENTRY_CONF, data=ConfChange(op=CONF_PROMOTE, replica="d").encode()),
        Entry(index=3, term=1, kind=ENTRY_CONF, data=ConfChange(op=CONF_REMOVE, replica="a").encode()),
    )
    node = RaftNode(make_config("a"), rng=random.Random(0), hard_state=HardState(term=1), entries=entries,
                    initial_conf=founders)
    assert node.conf == ConfState(voters=("b", "c", "d"))
    for _ in range(5 * ELECTION_MAX):
        node.tick()
    assert node.role == FOLLOWER  # removed: it never campaigns


def test_membership_changes_that_do_not_fit_are_refused():
    pump = Pump(["a", "b", "c"])
    a = pump.elect("a")
    for op, replica in [(CONF_ADD_LEARNER, "b"), (CONF_PROMOTE, "b"), (CONF_REMOVE, "zz"), ("rename", "b")]:
        with pytest.raises(ValueError):
            a.propose_conf_change(ConfChange(op=op, replica=replica))
    assert a.last_index == 1


# -- the leader's lease ------------------------------------------------------------------


def test_the_lease_rests_on_the_latest_send_time_a_quorum_echoed():
    pump = Pump(["a", "b", "c"])
    leader = pump.elect("a")
    assert leader.lease_basis is None  # no time observed: AppendLogs carried none
    leader.observe_time(10.0)
    pump.cut = {"c"}
    pump.tick(HEARTBEAT, replicas=["a"])  # the heartbeat sent at 10.0 reaches b only
    assert leader.lease_basis == 10.0  # a and b are a quorum of three
    leader.observe_time(11.0)
    pump.cut = {"b", "c"}
    pump.tick(HEARTBEAT, replicas=["a"])  # nobody answers the round sent at 11.0
    assert leader.lease_basis == 10.0
    assert pump.nodes["b"].lease_basis is None  # followers hold no lease


def test_without_check_quorum_or_once_a_transfer_began_there_is_no_lease():
    pump = Pump(["a", "b", "c"], check_quorum=False)
    leader = pump.elect("a")
    leader.observe_time(10.0)
    pump.tick(HEARTBEAT, replicas=["a"])
    assert leader.lease_basis is None  # its voters promise nothing

    pump = Pump(["a", "b", "c"])
    leader = pump.elect("a")
    leader.observe_time(10.0)
    pump.tick(HEARTBEAT, replicas=["a"])
    assert leader.lease_basis == 10.0
    pump.cut = {"b"}  # the transfer to b cannot complete, and is abandoned
    leader.transfer_leadership("b")
    pump.tick(ELECTION_MAX, replicas=["a"])
    assert leader.role == LEADER and leader.transferee is None
    assert leader.lease_basis is None  # for the rest of its term


def test_a_replica_restarted_with_a_term_ignores_elections_for_election_min_ticks():
    pump = Pump(["a", "b", "c"])
    pump.elect("a")
    pump.cut = {"a"}
    pump.start("b")  # b restarts: it no longer knows it heard from a
    candidate = pump.nodes["c"]
    for _ in range(ELECTION_MIN - 1):
        pump.tick(replicas=["b"])
    pump.tick(3 * ELECTION_MAX, replicas=["c"])
    assert candidate.role != LEADER  # b still ignored its requests
    pump.tick(replicas=["b"])
    pump.tick(3 * ELECTION_MAX, replicas=["c"])
    assert candidate.role == LEADER
