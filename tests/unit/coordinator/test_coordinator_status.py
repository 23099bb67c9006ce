"""The status dict (coordinator/status.py) built from a status round's
reports and what the supervisor knows: the promised fields, silent, sleeping
and lost servers, hosts and jobs shown."""

from coordinator.reconfig import ADD_REPLICA, DONE, RUNNING, Job, Reconfig
from coordinator.shardmap import ShardMap
from coordinator.status import FINISHED_JOBS_SHOWN, build_status, coordinator_shown, jobs_shown
from coordinator.supervisor import CreateServer, Supervisor
from coordinator.topology import parse_topology

NOW = 500.0
PROMISED = {"role", "term", "commit", "applied", "last_index", "alive", "asleep", "pid"}


def booted(text: str) -> tuple[Supervisor, Reconfig]:
    topology = parse_topology(text)
    shard_map = ShardMap.initial(topology.cluster_names, topology.members(), topology.slots)
    supervisor = Supervisor(topology, {}, {})
    supervisor.place_unplaced(shard_map)
    for cluster in shard_map.clusters:
        for replica in shard_map.replicas(cluster):
            for action in supervisor.supervise(cluster, replica, NOW):
                if isinstance(action, CreateServer):
                    supervisor.created(action.replica, f"{action.replica}@0")
    return supervisor, Reconfig.fresh(shard_map, 1.0)


GROUP_METRICS = {"raftline_term": [{"labels": {}, "value": 4}]}
GROUP = {"replica": "coordinator-1", "term": 4, "commit": 9, "lag": {"coordinator-0": 0, "coordinator-2": 3},
         "metrics": GROUP_METRICS}
COORDINATOR = coordinator_shown(GROUP, {"coordinator-0": 10, "coordinator-1": 11, "coordinator-2": 0},
                                {"coordinator-0": True, "coordinator-1": True},
                                {"coordinator-0": "a", "coordinator-1": "b", "coordinator-2": "c"})


def test_the_coordinator_group_shows_its_leader_and_each_replica_with_its_role_lag_host_and_metrics():
    assert COORDINATOR == {
        "leader": "coordinator-1", "term": 4, "commit": 9, "storage_failure": "", "metrics": GROUP_METRICS,
        "replicas": {"coordinator-0": {"role": "follower", "pid": 10, "lag": 0, "host": "a"},
                     "coordinator-1": {"role": "leader", "pid": 11, "lag": 0, "host": "b"},
                     "coordinator-2": {"role": "down", "pid": 0, "lag": 3, "host": "c"}},
    }


def test_a_server_whose_storage_failed_shows_failing_with_the_reason_while_failures_go_on():
    supervisor, reconfig = booted("clusters:\n  c1: {replicas: 3}\n")
    supervisor.failed("c1-r1", "disk full", NOW - 1)
    assert status_of(supervisor, reconfig, {})["clusters"]["c1"]["replicas"]["c1-r1"]["failing"] == "disk full"
    later = status_of(supervisor, reconfig, {}, now=NOW + 60)
    assert later["clusters"]["c1"]["replicas"]["c1-r1"]["failing"] == ""


def status_of(supervisor: Supervisor, reconfig: Reconfig, reports: dict, last_reports=None, now=NOW) -> dict:
    leaders = {cluster: reconfig.map.replicas(cluster)[0] for cluster in reconfig.map.clusters}
    return build_status(shard_map=reconfig.map, supervisor=supervisor, reports=reports,
                        last_reports=last_reports or {}, leaders=leaders, terms=dict.fromkeys(leaders, 3),
                        jobs=reconfig.jobs, now=now, admin_pid=11, clerks=2, coordinator=COORDINATOR,
                        clerk_metrics={})


def report(role: str, commit: int = 120, **more) -> dict:
    return {"role": role, "term": 3, "commit": commit, "applied": commit, "last_index": commit, **more}


def test_every_replica_shows_the_promised_fields():
    supervisor, reconfig = booted("clusters:\n  c1: {replicas: 3}\n  c2: {replicas: 1}\n")
    supervisor.started("c1-r0", "c1-r0@0", pid=4242, now=NOW)
    status = status_of(supervisor, reconfig, {"c1-r0": report("leader"), "c1-r1": report("follower")})
    assert (status["epoch"], status["admin_pid"], status["clerks"], status["hosts"]) == (1, 11, 2, {})
    c1 = status["clusters"]["c1"]
    assert (c1["leader"], c1["term"]) == ("c1-r0", 3)
    assert sorted(c1["slots"] + status["clusters"]["c2"]["slots"]) == list(range(64))
    for entry in c1["replicas"].values():
        assert PROMISED <= set(entry)
    leader = c1["replicas"]["c1-r0"]
    assert (leader["role"], leader["alive"], leader["pid"], leader["host"]) == ("leader", True, 4242, "local")
    silent = c1["replicas"]["c1-r2"]
    assert (silent["role"], silent["alive"], silent["commit"]) == ("unresponsive", False, 0)


def test_a_silent_server_shows_its_last_report():
    supervisor, reconfig = booted("clusters:\n  c1: {replicas: 3}\n")
    supervisor.exited("c1-r2@0")
    entry = status_of(supervisor, reconfig, {}, {"c1-r2": report("follower", commit=77)})["clusters"]["c1"]["replicas"]
    assert (entry["c1-r2"]["role"], entry["c1-r2"]["commit"], entry["c1-r2"]["restarts"]) == ("down", 77, 1)


def test_a_sleeping_server_is_alive_and_asleep_until_its_sleep_ends():
    supervisor, reconfig = booted("clusters:\n  c1: {replicas: 3}\n")
    supervisor.asleep_for("c1-r1", 2.0, NOW)
    supervisor.isolated_for("c1-r2", 5.0, NOW)
    entry = status_of(supervisor, reconfig, {})["clusters"]["c1"]["replicas"]
    assert (entry["c1-r1"]["alive"], entry["c1-r1"]["asleep"], entry["c1-r1"]["role"]) == (True, True, "unknown")
    assert entry["c1-r2"]["isolated"]
    later = status_of(supervisor, reconfig, {}, now=NOW + 3)["clusters"]["c1"]["replicas"]
    assert (later["c1-r1"]["asleep"], later["c1-r1"]["role"], later["c1-r2"]["isolated"]) == (False, "unresponsive",
                                                                                              True)


def test_learners_are_read_from_the_leaders_report():
    supervisor, reconfig = booted("clusters:\n  c1: {replicas: 3}\n")
    reports = {"c1-r0": report("leader", conf={"learners": ["c1-r2"]}), "c1-r2": report("follower")}
    entry = status_of(supervisor, reconfig, reports)["clusters"]["c1"]["replicas"]
    assert [entry[r]["learner"] for r in ("c1-r0", "c1-r1", "c1-r2")] == [False, False, True]


def test_hosts_show_who_is_up_why_not_and_for_how_long():
    supervisor, reconfig = booted("hosts:\n  - {name: a, address: 10.0.0.1}\n  - {name: b, address: 10.0.0.2}\n"
                                  "clusters:\n  c1: {replicas: 2}\n")
    supervisor.convention_changed("b", True, "tcp://b", NOW)
    supervisor.convention_changed("b", False, "tcp://b", NOW + 1)
    status = status_of(supervisor, reconfig, {"c1-r0": report("leader")}, now=NOW + 4)
    a, b = status["hosts"]["a"], status["hosts"]["b"]
    assert (a["up"], a["leader"], a["down_seconds"], a["replicas"]) == (True, True, 0, ["c1-r0"])
    assert (b["up"], b["why"], b["down_seconds"], b["replicas"]) == (False, "left the convention", 3.0, ["c1-r1"])
    assert b["address"] == "10.0.0.2:19000"
    on_b = status["clusters"]["c1"]["replicas"]["c1-r1"]
    assert (on_b["role"], on_b["host"], on_b["host_down"]) == ("down", "b", True)


def test_running_jobs_and_the_last_few_finished_ones_are_shown():
    def job(number: int, state: str) -> Job:
        return Job(id=f"j{number}", kind=ADD_REPLICA, target="c1", cluster="c1", state=state, phase=state,
                   step="", locks=("c1",), replicas=(f"c1-r{number}",), created=float(number))

    jobs = [job(number, DONE if number != 3 else RUNNING) for number in range(1, FINISHED_JOBS_SHOWN + 4)]
    shown = jobs_shown(jobs)
    assert [entry["id"] for entry in shown] == ["j3"] + [f"j{n}" for n in range(4, FINISHED_JOBS_SHOWN + 4)]
    assert shown[0]["replicas"] == ["c1-r3"], "plain JSON types"
