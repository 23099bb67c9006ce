"""Reconfiguration jobs (coordinator/reconfig.py), driven by fake reports:
id allocation, validation, locking, each job's steps, and resuming a job
mid-flight from its JSON form."""

import pytest

from actors.messages import (
    MOVE_DRAINING,
    MOVE_DROPPED,
    MOVE_NOT_OWNED,
    MOVE_SHIPPING,
    ChangeMembership,
    MembershipReport,
    MoveProgress,
    MoveSlot,
)
from actors.raft.messages import CONF_ADD_LEARNER, CONF_PROMOTE, CONF_REMOVE
from coordinator.reconfig import (
    DONE,
    FAILED,
    FINISHED_KEPT,
    RUNNING,
    Founding,
    ProbeReplicas,
    Reconfig,
    ReconfigError,
    SendToLeader,
    StartServer,
    StopServer,
)
from coordinator.shardmap import ShardMap

GRACE = 1.2


def members(*clusters: str, replicas: int = 3) -> dict[str, list[str]]:
    return {name: [f"{name}-r{index}" for index in range(replicas)] for name in clusters}


def two_clusters(slots: int = 16) -> Reconfig:
    return Reconfig.fresh(ShardMap.initial(["c1", "c2"], members("c1", "c2"), slots), GRACE)


def report(cluster: str, voters, learners=(), *, pending=False, commit=10, match=None, error="") -> MembershipReport:
    return MembershipReport(cluster=cluster, leader=voters[0], term=2, voters=tuple(voters), learners=tuple(learners),
                            pending=pending, commit=commit, match=dict(match or {}), error=error)


def leaders_of(reconfig: Reconfig) -> dict[str, str]:
    return {name: reconfig.map.replicas(name)[0] for name in reconfig.map.clusters}


def membership(op: str, replica: str, cluster: str) -> SendToLeader:
    return SendToLeader(cluster=cluster, message=ChangeMembership(op=op, replica=replica))


def finish_moves(reconfig: Reconfig, job_id: str, now: float = 1.0) -> list[tuple[int, str, str]]:
    """Drop every planned move as the source leaders would; returns the moves sent."""
    sent = []
    while reconfig.job(job_id).phase == "moving" and reconfig.job(job_id).moves_done < len(reconfig.job(job_id).moves):
        (action,) = reconfig.drive(now, leaders_of(reconfig))
        message = action.message
        assert isinstance(message, MoveSlot)
        sent.append((message.slot, action.cluster, message.destination))
        reconfig.observe_move(MoveProgress(move=message.move, cluster=action.cluster, stage=MOVE_DROPPED), now)
    return sent


# -- founding, ids, validation, locks ----------------------------------------------


def test_first_boot_records_founding_memberships_and_counters_above_every_id():
    shard_map = ShardMap(epoch=1, slots=("c1", "c7") * 4,
                         members={"c1": ["c1-r0", "c1-r5"], "c7": ["c7-r2", "odd-name"]})
    reconfig = Reconfig.fresh(shard_map, GRACE)
    assert reconfig.founding == {"c1": Founding(voters=("c1-r0", "c1-r5"), slots=(0, 2, 4, 6)),
                                 "c7": Founding(voters=("c7-r2", "odd-name"), slots=(1, 3, 5, 7))}
    assert reconfig.add_replica("c1", now=0).replicas == ("c1-r6",)
    assert Reconfig.fresh(shard_map, GRACE).add_cluster(3, now=0).target == "c8"


def test_replica_and_cluster_ids_are_never_reused():
    reconfig = two_clusters()
    job = reconfig.add_replica("c2", now=0)
    assert job.replicas == ("c2-r3",) and job.id == "j1"
    reconfig.observe_membership(report("c2", ["c2-r0", "c2-r1", "c2-r2", "c2-r3"]), now=0.1)
    assert reconfig.job("j1").phase == "start"  # not in the map yet: too early to count
    reconfig.drive(0.3, leaders_of(reconfig))
    reconfig.observe_membership(report("c2", ["c2-r0", "c2-r1", "c2-r2", "c2-r3"]), now=1)
    assert reconfig.job("j1").state == DONE
    reconfig.remove_replica("c2-r3", now=2)
    reconfig.observe_membership(report("c2", ["c2-r0", "c2-r1", "c2-r2"]), now=3)
    reconfig.drive(4, leaders_of(reconfig))
    assert reconfig.map.replicas("c2") == ("c2-r0", "c2-r1", "c2-r2")
    job = reconfig.add_replica("c2", now=5)
    assert job.replicas == ("c2-r4",) and job.id == "j3"


@pytest.mark.parametrize("request_, error", [
    (lambda r: r.add_replica("c9", 0), "unknown cluster 'c9' (clusters: c1, c2)"),
    (lambda r: r.remove_replica("c9-r0", 0), "unknown server 'c9-r0' (servers: c1-r0, c1-r1"),
    (lambda r: r.remove_cluster("c9", 0), "unknown cluster 'c9'"),
    (lambda r: r.add_cluster(0, 0), "a cluster has 1..9 replicas, got 0"),
    (lambda r: r.add_cluster(10, 0), "a cluster has 1..9 replicas, got 10"),
])
def test_bad_requests_are_refused_with_what_is_wrong_and_change_nothing(request_, error):
    reconfig = two_clusters()
    before = reconfig.to_json()
    with pytest.raises(ReconfigError, match="^" + error.replace("(", r"\(").replace(")", r"\)")):
        request_(reconfig)
    assert reconfig.to_json() == before


def test_the_last_replica_the_last_cluster_and_a_full_cluster_are_refused():
    reconfig = Reconfig.fresh(ShardMap.initial(["c1"], {"c1": ["c1-r0"]}, 2), GRACE)
    with pytest.raises(ReconfigError, match="c1-r0 is the last replica of c1; remove the whole cluster instead"):
        reconfig.remove_replica("c1-r0", 0)
    with pytest.raises(ReconfigError, match="c1 is the last cluster"):
        reconfig.remove_cluster("c1", 0)
    full = Reconfig.fresh(ShardMap.initial(["c1"], members("c1", replicas=9), 2), GRACE)
    with pytest.raises(ReconfigError, match="c1 already has 9 replicas"):
        full.add_replica("c1", 0)
    crowded = Reconfig.fresh(ShardMap.initial(["c1", "c2"], members("c1", "c2"), 2), GRACE)
    with pytest.raises(ReconfigError, match="2 slots cannot give each of 3 clusters one"):
        crowded.add_cluster(3, 0)


def test_a_job_locks_its_cluster_and_a_cluster_job_locks_every_cluster():
    reconfig = two_clusters()
    reconfig.add_replica("c2", 0)
    reconfig.add_replica("c1", 0)  # another cluster: allowed
    with pytest.raises(ReconfigError) as busy:
        reconfig.remove_replica("c2-r0", 0)
    assert str(busy.value) == ("busy: j1 is adding replica c2-r3 on c2; "
                               "retry when it is done (raftline status shows it)")
    with pytest.raises(ReconfigError, match="^busy: j1 is adding replica c2-r3 on c2"):
        reconfig.add_cluster(3, 0)

    other = two_clusters()
    other.add_cluster(3, 0)
    for request in (lambda: other.add_replica("c1", 0), lambda: other.remove_cluster("c2", 0),
                    lambda: other.add_replica("c3", 0)):
        with pytest.raises(ReconfigError, match="^busy: j1 is adding cluster c3 on c"):
            request()


# -- add / remove a replica ---------------------------------------------------------


def test_add_replica_joins_as_learner_catches_up_then_is_promoted():
    reconfig = two_clusters()
    job = reconfig.add_replica("c1", now=0)
    assert reconfig.map.replicas("c1") == ("c1-r0", "c1-r1", "c1-r2")  # nothing until driven

    actions = reconfig.drive(0.3, leaders_of(reconfig))
    assert actions == [StartServer(cluster="c1", replica="c1-r3"), membership(CONF_ADD_LEARNER, "c1-r3", "c1")]
    assert reconfig.map.replicas("c1") == ("c1-r0", "c1-r1", "c1-r2", "c1-r3") and reconfig.map.epoch == 2

    voters = ["c1-r0", "c1-r1", "c1-r2"]
    reconfig.observe_membership(report("c1", voters, ["c1-r3"], pending=True), now=0.4)
    assert reconfig.job(job.id).phase == "learner"  # not committed yet
    assert reconfig.drive(0.6, {}) == [membership(CONF_ADD_LEARNER, "c1-r3", "c1")]
    reconfig.observe_membership(report("c1", voters, ["c1-r3"], commit=5000, match={"c1-r3": 1200}), now=0.7)
    assert reconfig.job(job.id).step == "c1-r3 catching up 1200/5000"
    assert reconfig.drive(0.9, {}) == [membership("", "c1-r3", "c1")]
    reconfig.observe_membership(report("c2", ["c2-r0"], commit=1, match={"c1-r3": 1}), now=1.0)  # another cluster
    assert reconfig.job(job.id).phase == "catch_up"
    reconfig.observe_membership(report("c1", voters, ["c1-r3"], commit=5010, match={"c1-r3": 5010}), now=1.1)
    assert reconfig.job(job.id).phase == "promote"
    assert reconfig.drive(1.2, {}) == [membership(CONF_PROMOTE, "c1-r3", "c1")]
    reconfig.observe_membership(report("c1", voters, ["c1-r3"], error="busy: a change is pending"), now=1.3)
    waiting = reconfig.job(job.id)
    assert (waiting.step, waiting.waiting) == ("promoting c1-r3 to voter", "busy: a change is pending")
    reconfig.observe_membership(report("c1", voters + ["c1-r3"], pending=True), now=1.4)
    assert (reconfig.job(job.id).state, reconfig.job(job.id).waiting) == (RUNNING, "")
    reconfig.observe_membership(report("c1", voters + ["c1-r3"]), now=1.5)
    done = reconfig.job(job.id)
    assert (done.state, done.step, done.finished) == (DONE, "c1-r3 is a voter of c1", 1.5)
    assert reconfig.drive(1.6, {}) == []


def test_remove_replica_follows_the_leader_then_stops_it_and_leaves_the_map():
    reconfig = two_clusters()
    job = reconfig.remove_replica("c2-r0", now=0)  # c2-r0 leads
    remove = membership(CONF_REMOVE, "c2-r0", "c2")
    assert reconfig.drive(0.3, leaders_of(reconfig)) == [remove]
    reconfig.observe_membership(report("c2", ["c2-r0", "c2-r1", "c2-r2"], error="handing leadership to c2-r1 first"),
                                now=0.4)
    handing = reconfig.job(job.id)
    assert (handing.step, handing.waiting) == ("removing c2-r0 from c2's membership",
                                               "handing leadership to c2-r1 first")
    assert reconfig.drive(0.6, {"c2": "c2-r1"}) == [remove]  # the shell sends it to the new leader
    reconfig.observe_membership(report("c2", ["c2-r1", "c2-r2"], pending=True), now=0.7)
    assert reconfig.job(job.id).phase == "remove"
    reconfig.observe_membership(report("c2", ["c2-r1", "c2-r2"]), now=0.8)
    assert reconfig.removing() == {"c2-r0"}
    assert reconfig.map.replicas("c2") == ("c2-r0", "c2-r1", "c2-r2")  # leaves the map once stopped
    assert reconfig.drive(0.9, {"c2": "c2-r1"}) == [StopServer(replica="c2-r0")]
    assert reconfig.map.replicas("c2") == ("c2-r1", "c2-r2")
    assert reconfig.job(job.id).state == DONE and reconfig.removing() == set()


# -- add / remove a cluster ---------------------------------------------------------


def test_add_cluster_starts_servers_waits_for_a_leader_then_moves_slots_one_at_a_time():
    reconfig = two_clusters(slots=16)
    job = reconfig.add_cluster(2, now=0)
    assert (job.target, job.replicas) == ("c3", ("c3-r0", "c3-r1"))
    assert reconfig.founding["c3"] == Founding(voters=("c3-r0", "c3-r1"), slots=())
    assert reconfig.drive(0.3, {}) == [StartServer(cluster="c3", replica="c3-r0"),
                                       StartServer(cluster="c3", replica="c3-r1")]
    assert reconfig.map.clusters == ("c1", "c2", "c3") and reconfig.map.slots_of("c3") == ()
    assert reconfig.drive(0.6, {"c1": "c1-r0", "c2": "c2-r0", "c3": None}) == []
    assert reconfig.job(job.id).step == "waiting for c3 to elect a leader"

    (send,) = reconfig.drive(0.9, leaders_of(reconfig))
    planned = reconfig.job(job.id).moves
    assert len(planned) == 5 and all(destination == "c3" for _, _, destination in planned)
    assert send == SendToLeader(cluster=planned[0][1],
                                message=MoveSlot(move="j1-m0", slot=planned[0][0], destination="c3"))
    slot, source, _ = planned[0]
    reconfig.observe_move(MoveProgress(move="j1-m0", cluster=source, stage=MOVE_SHIPPING, keys=40, chunks=3, acked=2),
                          now=1.0)
    assert reconfig.job(job.id).step == f"moving slot {slot} {source} -> c3 (1 of 5): shipping 2/3 chunks (40 keys)"
    reconfig.observe_move(MoveProgress(move="j0-m0", cluster=source, stage=MOVE_DROPPED), now=1.1)  # stale
    assert reconfig.job(job.id).moves_done == 0 and reconfig.map.slots[slot] == source
    epoch = reconfig.map.epoch
    reconfig.observe_move(MoveProgress(move="j1-m0", cluster=source, stage=MOVE_DROPPED), now=1.2)
    assert reconfig.job(job.id).step == f"slot {slot} {source} -> c3 moved in 0.30 s (1/5)"
    assert reconfig.job(job.id).move_seconds == (0.3,)
    assert reconfig.map.slots[slot] == "c3" and reconfig.map.epoch == epoch + 1
    reconfig.observe_move(MoveProgress(move="j1-m0", cluster=source, stage=MOVE_DROPPED), now=1.3)  # repeat
    assert reconfig.job(job.id).moves_done == 1

    assert finish_moves(reconfig, job.id) == list(planned[1:])
    assert reconfig.drive(2.0, leaders_of(reconfig)) == []
    assert reconfig.job(job.id).state == DONE
    assert sorted(reconfig.map.slot_counts().values()) == [5, 5, 6]


def test_remove_cluster_moves_its_slots_waits_for_settled_transactions_and_a_grace_then_stops_it():
    reconfig = Reconfig.fresh(ShardMap.initial(["c1", "c2", "c3"], members("c1", "c2", "c3"), 12), GRACE)
    job = reconfig.remove_cluster("c2", now=0)
    assert len(job.moves) == 4 and {source for _, source, _ in job.moves} == {"c2"}
    finish_moves(reconfig, job.id)
    assert reconfig.map.slots_of("c2") == ()

    assert reconfig.drive(10.0, {}) == [ProbeReplicas(cluster="c2")]
    assert reconfig.job(job.id).deadline == 10.0 + GRACE
    drained = {"slots": {"owned": 0}, "prepared": 0, "unacknowledged": 0}
    reconfig.observe_replica_status("c2-r0", {**drained, "slots": {"owned": 1}}, now=10.1)  # behind the last drop
    reconfig.observe_replica_status("c2-r1", {**drained, "prepared": 1}, now=10.1)
    reconfig.observe_replica_status("c1-r1", drained, now=10.1)  # not c2
    reconfig.observe_replica_status("c2-r2", {**drained, "unacknowledged": 2}, now=10.1)
    assert reconfig.job(job.id).step.startswith("waiting for c2's transactions to settle")
    assert reconfig.drive(12.0, {}) == [ProbeReplicas(cluster="c2")]  # past the grace, but not settled
    reconfig.observe_replica_status("c2-r2", drained, now=12.1)  # one conclusive report; c2-r0 may never answer
    reconfig.observe_replica_status("c2-r1", {**drained, "prepared": 1}, now=12.1)  # a lagging one changes nothing
    assert reconfig.job(job.id).clean == ("c2-r2",)
    assert reconfig.drive(12.2, {}) == [StopServer(replica=f"c2-r{index}") for index in range(3)]
    assert reconfig.map.clusters == ("c1", "c3") and reconfig.job(job.id).state == DONE
    assert "c2" in reconfig.founding  # its name is never used again
    assert reconfig.add_cluster(1, now=13).target == "c4"


def test_settled_replicas_still_wait_for_the_grace_period():
    reconfig = two_clusters(slots=4)
    job = reconfig.remove_cluster("c2", now=0)
    finish_moves(reconfig, job.id)
    reconfig.drive(5.0, {})
    reconfig.observe_replica_status("c2-r1", {"slots": {"owned": 0}, "prepared": 0, "unacknowledged": 0}, now=5.1)
    assert reconfig.job(job.id).step == "settled; keeping c2 up 1.2 s more for participants still asking it"
    assert reconfig.drive(5.0 + GRACE - 0.1, {}) == [ProbeReplicas(cluster="c2")]
    assert reconfig.drive(5.0 + GRACE, {})[0] == StopServer(replica="c2-r0")


def test_a_source_that_does_not_own_the_slot_fails_the_job_and_frees_its_locks():
    reconfig = two_clusters(slots=4)
    job = reconfig.remove_cluster("c2", now=0)
    (send,) = reconfig.drive(0.3, {})
    reconfig.observe_move(MoveProgress(move=send.message.move, cluster="c2", stage=MOVE_NOT_OWNED), now=0.4)
    failed = reconfig.job(job.id)
    assert failed.state == FAILED and failed.finished == 0.4
    assert failed.error.startswith(f"c2 says it does not own slot {send.message.slot}")
    assert reconfig.drive(0.6, {}) == []
    reconfig.add_replica("c2", now=1)  # no longer locked


# -- persistence ----------------------------------------------------------------------


def test_a_job_resumes_mid_flight_from_its_json_form():
    reconfig = Reconfig.fresh(ShardMap.initial(["c1", "c2", "c3"], members("c1", "c2", "c3"), 12), GRACE)
    job = reconfig.remove_cluster("c3", now=0)
    (send,) = reconfig.drive(0.3, {})
    reconfig.observe_move(MoveProgress(move=send.message.move, cluster="c3", stage=MOVE_DROPPED), now=0.4)
    reconfig.observe_move(MoveProgress(move="j1-m1", cluster="c3", stage=MOVE_DRAINING, prepared=2), now=0.5)

    restored = Reconfig.from_json(reconfig.to_json(), ShardMap.from_json(reconfig.map.to_json()), GRACE)
    assert restored.to_json() == reconfig.to_json() and restored.map == reconfig.map
    assert restored.job(job.id) == reconfig.job(job.id)
    assert restored.job(job.id).step.endswith("(2 of 4): draining 2 prepared transactions")
    assert restored.drive(1.0, {}) == reconfig.drive(1.0, {})  # the same move, re-sent
    assert finish_moves(restored, job.id) == list(job.moves[1:])
    restored.drive(2.0, {})
    assert restored.job(job.id).phase == "settle" and restored.map.slots_of("c3") == ()
    assert (restored.next_job, restored.next_cluster) == (2, 4)


def test_only_the_last_finished_jobs_are_kept():
    reconfig = two_clusters()
    for _ in range(FINISHED_KEPT + 3):
        reconfig.remove_cluster("c2", now=0)
        (send,) = reconfig.drive(0.5, {})
        reconfig.observe_move(MoveProgress(move=send.message.move, cluster="c2", stage=MOVE_NOT_OWNED), now=1)
    reconfig.add_replica("c2", now=2)
    ids = [job.id for job in reconfig.jobs]
    assert len(ids) == FINISHED_KEPT + 1 and ids[0] == "j4" and ids[-1] == f"j{FINISHED_KEPT + 4}"


def test_the_cli_prints_one_line_per_moved_slot_and_per_new_step(capsys):
    from raftline.cli import JobProgress

    reconfig = two_clusters(slots=6)
    job = reconfig.add_cluster(1, now=0)
    progress = JobProgress()
    reconfig.drive(0.3, {})
    progress(reconfig.job(job.id).to_dict())
    progress(reconfig.job(job.id).to_dict())  # unchanged: nothing printed
    (send,) = reconfig.drive(0.6, leaders_of(reconfig))
    reconfig.observe_move(MoveProgress(move=send.message.move, cluster=send.cluster, stage=MOVE_DROPPED), now=0.7)
    progress(reconfig.job(job.id).to_dict())
    finish_moves(reconfig, job.id)  # the last move, missed by polling, is still reported
    reconfig.drive(1.0, leaders_of(reconfig))
    progress(reconfig.job(job.id).to_dict())
    moves, took = reconfig.job(job.id).moves, reconfig.job(job.id).move_seconds
    assert took[0] == 0.1
    assert capsys.readouterr().out.splitlines() == [
        "waiting for c3 to elect a leader",
        f"slot {moves[0][0]} {moves[0][1]} -> c3 moved in 0.10 s (1/2)",
        f"slot {moves[1][0]} {moves[1][1]} -> c3 moved in {took[1]:.2f} s (2/2)",
    ]


def test_status_shows_learners_hosts_and_the_jobs_in_flight_only():
    from raftline.cli import format_status

    reconfig = two_clusters(slots=4)
    done = reconfig.add_replica("c1", now=0)
    reconfig._update(reconfig.job(done.id), state=DONE)  # as if finished long ago
    running = reconfig.add_replica("c2", now=1)
    replica = {"role": "follower", "term": 2, "commit": 9, "applied": 9, "last_index": 9, "alive": True, "pid": 7}
    status = {
        "epoch": reconfig.map.epoch,
        "clusters": {
            "c2": {
                "leader": "c2-r0",
                "term": 2,
                "slots": [0, 1],
                "replicas": {
                    "c2-r0": {**replica, "role": "leader", "host": "a"},
                    "c2-r3": {**replica, "applied": 4, "learner": True, "host": "b"},
                },
            }
        },
        "hosts": {
            "a": {"address": "10.0.0.1:19000", "up": True, "leader": True, "why": "", "down_seconds": 0,
                  "replicas": ["c2-r0"]},
            "b": {"address": "10.0.0.2:19000", "up": False, "leader": False, "why": "left the convention",
                  "down_seconds": 4.5, "replicas": ["c2-r3"]},
        },
        "jobs": [job.to_dict() for job in reconfig.jobs],
    }
    lines = format_status(status).splitlines()
    (learner,) = [line for line in lines if line.strip().startswith("c2-r3")]
    assert learner.split()[1] == "learner" and learner.split()[6] == "5"  # its lag behind the leader
    assert "host b (10.0.0.2:19000): DOWN (left the convention, 4.5 s); replicas c2-r3" in lines
    assert [line for line in lines if line.startswith("job ")] == [
        f"job {running.id} (add-replica c2): {reconfig.job(running.id).step}"
    ]
