"""The coordinator's Supervisor (coordinator/supervisor.py), driven with explicit
`now` values and fake actor addresses, as the shell would: restarts and their
backoff, lost hosts (silence, the convention), hosts that join again, and
the replacement policy against spread."""


import pytest

from actors.messages import MembershipReport
from coordinator.placement import PlacementError
from coordinator.reconfig import DONE, Reconfig
from coordinator.shardmap import ShardMap
from coordinator.supervisor import (
    RESTART_BACKOFF,
    SERVER_SILENCE,
    AskToExit,
    BroadcastMap,
    CreateServer,
    ForgetLeader,
    KillProcess,
    Log,
    Probe,
    Reap,
    ReplacementJobs,
    RestartLater,
    SetDataAside,
    Supervisor,
    WritePids,
)
from coordinator.topology import parse_topology

GRACE = 1.2
START = 1000.0
"""The monotonic clock at boot: any number, only differences matter."""
JOB_TIME = 1.7e9
"""The wall clock new jobs are stamped with."""

ONE_HOST = "clusters:\n  c1: {replicas: 3}\n"


def hosts_topology(names: str, replace: bool = False) -> str:
    hosts = "".join(f"  - {{name: {name}, address: 10.0.0.{index + 1}}}\n" for index, name in enumerate(names))
    policy = "placement: {on_host_loss: replace, replace_after_ms: 1000}\n" if replace else ""
    return f"hosts:\n{hosts}clusters:\n  c1: {{replicas: 3}}\n  c2: {{replicas: 3}}\n{policy}"


class Shell:
    """What the coordinator actor does with the supervisor, minus Thespian:
    each created server gets the address "<replica>@<generation>"."""

    def __init__(self, text: str, now: float = START):
        topology = parse_topology(text)
        shard_map = ShardMap.initial(topology.cluster_names, topology.members(), topology.slots)
        self.reconfig = Reconfig.fresh(shard_map, GRACE)
        self.supervisor = Supervisor(topology, {}, {})
        self.supervisor.place_unplaced(shard_map)
        actions = []
        for cluster in shard_map.clusters:
            for replica in shard_map.replicas(cluster):
                actions += self.supervisor.supervise(cluster, replica, now)
        self.carry_out(actions)

    def carry_out(self, actions: list) -> list:
        for action in actions:
            if isinstance(action, CreateServer):
                self.supervisor.created(action.replica, self.address(action.replica))
        return actions

    def address(self, replica: str) -> str:
        return f"{replica}@{self.supervisor.servers[replica].restarts}"

    def sweep(self, now: float, exited=()) -> list:
        return self.carry_out(self.supervisor.sweep(now, set(exited), ReplacementJobs(self.reconfig, JOB_TIME)))

    def join(self, host: str, now: float) -> list:
        return self.carry_out(self.supervisor.convention_changed(host, True, f"tcp://{host}:1900", now))

    def seen_all(self, host: str, now: float) -> None:
        """Every server on `host` answers a probe."""
        for record in list(self.supervisor.servers.values()):
            if record.host == host:
                self.carry_out(self.supervisor.answered(record.replica, now))

    def on(self, host: str) -> list[str]:
        return sorted(r.replica for r in self.supervisor.servers.values() if r.host == host)


def of_type(actions: list, kind: type) -> list:
    return [action for action in actions if isinstance(action, kind)]


def beyond_probes(actions: list) -> list:
    return [action for action in actions if not isinstance(action, Probe)]


# -- one host: exits and restarts ---------------------------------------------------------


def test_boot_starts_every_replica_here_and_writes_the_pids_once_started():
    shell = Shell(ONE_HOST)
    assert sorted(shell.supervisor.servers) == ["c1-r0", "c1-r1", "c1-r2"]
    assert all(r.alive and r.address == f"{r.replica}@0" and r.host == "" for r in shell.supervisor.servers.values())
    actions = shell.supervisor.started("c1-r0", "c1-r0@0", pid=4242, now=START + 1)
    assert actions == [WritePids(), BroadcastMap()]
    assert shell.supervisor.local_processes() == {"c1-r0": 4242}
    assert shell.supervisor.started("c1-r1", "somebody else", pid=1, now=START + 1) == []


def test_an_exited_server_restarts_after_the_backoff_and_only_once():
    shell = Shell(ONE_HOST)
    supervisor = shell.supervisor
    supervisor.started("c1-r0", "c1-r0@0", pid=4242, now=START)
    actions = supervisor.exited("c1-r0@0")
    assert actions == [ForgetLeader(cluster="c1", replica="c1-r0"),
                       Log(text="server c1-r0 (pid 4242) exited; restarting it in 0.2 s"),
                       RestartLater(replica="c1-r0", generation=1, delay=RESTART_BACKOFF)]
    assert supervisor.exited("c1-r0@0") == [], "ChildActorExited twice"
    assert shell.sweep(START + 0.1, exited={"c1-r0"}) == [], "the sweep saw the same exit"
    assert shell.carry_out(supervisor.restart("c1-r0", 1, START + 0.2)) == [CreateServer(replica="c1-r0")]
    assert supervisor.servers["c1-r0"].address == "c1-r0@1" and supervisor.servers["c1-r0"].pid == 0
    assert supervisor.restart("c1-r0", 1, START + 0.3) == [], "it runs already"
    assert supervisor.exited("c1-r0@0") == [], "the exit of an earlier process"


def test_a_restart_of_an_earlier_generation_does_nothing():
    shell = Shell(ONE_HOST)
    supervisor = shell.supervisor
    supervisor.exited("c1-r1@0")
    shell.carry_out(supervisor.restart("c1-r1", 1, START + 0.2))
    supervisor.exited("c1-r1@1")
    assert supervisor.restart("c1-r1", 1, START + 0.4) == []
    assert supervisor.restart("c1-r1", 2, START + 0.4) == [CreateServer(replica="c1-r1")]


def test_a_dead_process_found_by_the_sweep_counts_as_an_exit():
    shell = Shell(ONE_HOST)
    shell.supervisor.started("c1-r2", "c1-r2@0", pid=77, now=START)
    actions = shell.sweep(START + 0.5, exited={"c1-r2"})
    assert actions[-1] == RestartLater(replica="c1-r2", generation=1, delay=RESTART_BACKOFF)
    assert of_type(actions, Probe) == [], "local servers are checked by PID, not probed"


def test_nothing_restarts_once_the_system_is_stopping():
    shell = Shell(ONE_HOST)
    shell.supervisor.exited("c1-r0@0")
    assert shell.supervisor.shut_down() == [], "no server on another host"
    assert shell.supervisor.restart("c1-r0", 1, START + 0.2) == []
    assert shell.supervisor.exited("c1-r1@0") == []


def test_a_released_server_is_asked_to_exit_reaped_and_its_data_set_aside():
    shell = Shell(ONE_HOST)
    shell.supervisor.started("c1-r2", "c1-r2@0", pid=77, now=START)
    actions = shell.supervisor.release("c1-r2")
    assert actions == [ForgetLeader(cluster="c1", replica="c1-r2"), AskToExit(address="c1-r2@0"), Reap(pid=77),
                       WritePids(), SetDataAside(replica="c1-r2")]
    assert "c1-r2" not in shell.supervisor.servers
    assert shell.supervisor.exited("c1-r2@0") == [], "its exit is no crash"
    assert shell.supervisor.reap(77) == [KillProcess(pid=77)]


# -- several hosts: liveness -----------------------------------------------------------------


def test_servers_on_hosts_not_joined_yet_start_when_their_host_joins():
    shell = Shell(hosts_topology("abc"))
    supervisor = shell.supervisor
    assert {name: state.up for name, state in supervisor.hosts.items()} == {"a": True, "b": False, "c": False}
    assert all(r.alive == (r.host == "a") for r in supervisor.servers.values())
    actions = shell.join("b", START + 1)
    assert actions[0] == Log(text="host b is up: joined from tcp://b:1900")
    assert of_type(actions, CreateServer) == [CreateServer(replica=replica) for replica in shell.on("b")]
    assert of_type(actions, AskToExit) == [], "nothing of b ran before"


def test_a_host_whose_servers_are_all_silent_is_lost():
    shell = Shell(hosts_topology("abc"))
    for host in "bc":
        shell.join(host, START)
    probes = shell.sweep(START + 1)
    assert len(of_type(probes, Probe)) == len(shell.on("b") + shell.on("c")), "servers on other hosts are probed"
    shell.seen_all("c", START + 2)
    assert shell.sweep(START + SERVER_SILENCE) == of_type(probes, Probe), "silent, but not for long enough yet"

    actions = shell.sweep(START + SERVER_SILENCE + 0.5)
    b = shell.supervisor.hosts["b"]
    assert (b.up, b.lost_since, b.why) == (False, START + SERVER_SILENCE + 0.5, "no answer from its servers for 3 s")
    assert of_type(actions, ForgetLeader) == [ForgetLeader(cluster=shell.supervisor.servers[r].cluster, replica=r)
                                              for r in shell.on("b")]
    assert Log(text=f"host b lost (no answer from its servers for 3 s): servers {', '.join(shell.on('b'))} down",
               warning=True) in actions
    assert actions[-1] == BroadcastMap()
    assert all(not r.alive and r.lost for r in shell.supervisor.servers.values() if r.host == "b")
    assert shell.supervisor.hosts["c"].up, "c answered in time"
    assert not of_type(actions, RestartLater), "not restarted elsewhere: their data is on b"


def test_a_silent_server_on_a_host_whose_other_servers_answer_is_restarted_there():
    """Its parent may be a coordinator replica that died: no exit reaches anyone."""
    shell = Shell(hosts_topology("abc"))
    for host in "bc":
        shell.join(host, START)
    silent, answering = shell.on("b")
    for pid, replica in enumerate((silent, answering), start=70):
        shell.carry_out(shell.supervisor.started(replica, shell.address(replica), pid, START))
    shell.seen_all("c", START + SERVER_SILENCE)
    shell.carry_out(shell.supervisor.answered(answering, START + SERVER_SILENCE))
    actions = shell.sweep(START + SERVER_SILENCE + 0.5)
    assert of_type(actions, RestartLater) == [RestartLater(replica=silent, generation=1, delay=RESTART_BACKOFF)]
    assert of_type(actions, AskToExit) == [AskToExit(address=f"{silent}@0")], "a slow one would keep its lock"
    assert shell.supervisor.hosts["b"].up and shell.supervisor.servers[answering].alive
    assert shell.carry_out(shell.supervisor.restart(silent, 1, START + 4)) == [CreateServer(replica=silent)]
    assert shell.supervisor.servers[silent].address == f"{silent}@1"


def test_a_server_that_never_started_is_not_taken_for_dead_by_its_silence():
    """Still opening its storage (no ServerStarted yet) is not a death."""
    shell = Shell(hosts_topology("abc"))
    shell.join("b", START)
    booting, answering = shell.on("b")
    shell.carry_out(shell.supervisor.started(answering, shell.address(answering), 71, START))
    shell.carry_out(shell.supervisor.answered(answering, START + SERVER_SILENCE))
    assert beyond_probes(shell.sweep(START + SERVER_SILENCE + 0.5)) == []
    assert shell.supervisor.servers[booting].alive


def test_a_sleeping_server_is_silent_on_purpose():
    shell = Shell(hosts_topology("abc"))
    shell.join("b", START)
    for replica in shell.on("b"):
        shell.supervisor.asleep_for(replica, 10, START)
    shell.sweep(START + SERVER_SILENCE + 1)
    assert shell.supervisor.hosts["b"].up
    assert not any(r.unreachable for r in shell.supervisor.servers.values())


def test_a_host_that_left_the_convention_joins_again_and_its_servers_restart():
    shell = Shell(hosts_topology("abc"))
    shell.join("b", START)
    lost = shell.supervisor.convention_changed("b", False, "tcp://b:1900", START + 5)
    assert lost[-1] == BroadcastMap() and not shell.supervisor.hosts["b"].up
    assert shell.supervisor.convention_changed("b", False, "tcp://b:1900", START + 6) == [], "lost once"

    actions = shell.join("b", START + 20)
    orphans = [AskToExit(address=f"{replica}@0") for replica in shell.on("b")]
    assert of_type(actions, AskToExit) == orphans, "the old actor system's servers must not share their storage"
    assert of_type(actions, CreateServer) == [CreateServer(replica=replica) for replica in shell.on("b")]
    b = shell.supervisor.hosts["b"]
    assert (b.up, b.lost_since, b.why) == (True, None, "")
    assert all(r.alive and not r.lost and r.address == f"{r.replica}@1"
               for r in shell.supervisor.servers.values() if r.host == "b")


def test_a_host_lost_by_silence_is_back_when_one_of_its_servers_answers():
    shell = Shell(hosts_topology("abc"))
    shell.join("b", START)
    shell.sweep(START + SERVER_SILENCE + 1)
    assert not shell.supervisor.hosts["b"].up
    replica = shell.on("b")[0]
    actions = shell.supervisor.answered(replica, START + 10)
    assert actions == [Log(text="host b is up: answers again"),
                       Log(text=f"server {replica} on b answers again"), BroadcastMap()]
    assert shell.supervisor.servers[replica].alive


def test_an_unknown_actor_system_is_only_logged():
    shell = Shell(hosts_topology("abc"))
    assert shell.supervisor.convention_changed("zz", True, "tcp://zz:1900", START) == [
        Log(text="actor system tcp://zz:1900 (node 'zz') joined the convention; not a host of the topology",
            warning=True)]


# -- several hosts: replacement -----------------------------------------------------------


def lose(shell: Shell, host: str, now: float) -> None:
    shell.carry_out(shell.supervisor.convention_changed(host, False, f"tcp://{host}:1900", now))


def test_replacement_that_would_break_spread_is_refused_and_retried():
    shell = Shell(hosts_topology("abc", replace=True))
    for host in "bc":
        shell.join(host, START)
    lose(shell, "b", START + 1)
    assert beyond_probes(shell.sweep(START + 1.5)) == [], "not before replace_after_ms: b may only be restarting"

    actions = beyond_probes(shell.sweep(START + 2.1))
    note = shell.supervisor.hosts["b"].replacement
    for cluster in ("c1", "c2"):
        assert f"no host can take a replica of {cluster} without breaking spread: hosts" in note
    assert actions == [Log(text=f"host b lost: not replacing its replicas yet: {note}", warning=True)]
    assert shell.reconfig.jobs == [] and shell.supervisor.replacements == {}
    assert beyond_probes(shell.sweep(START + 2.6)) == [], "the same reason is logged once"

    shell.join("b", START + 3)
    assert shell.supervisor.hosts["b"].replacement == ""


def test_a_lost_hosts_replicas_are_replaced_on_the_hosts_their_clusters_lack_then_removed():
    shell = Shell(hosts_topology("abcd", replace=True))
    for host in "bcd":
        shell.join(host, START)
    assert shell.on("b") == ["c1-r1", "c2-r2"] and shell.on("c") == ["c1-r2"] and shell.on("d") == ["c2-r0"]
    lose(shell, "b", START + 1)

    actions = shell.sweep(START + 2)
    assert of_type(actions, Log) == [Log(text="replacing c1-r1 on lost host b: job j1, adding replica c1-r3"),
                                     Log(text="replacing c2-r2 on lost host b: job j2, adding replica c2-r3")]
    assert shell.supervisor.placement["c1-r3"] == "d" and shell.supervisor.placement["c2-r3"] == "c"
    assert shell.supervisor.replacements == {"c1-r1": "add:j1", "c2-r2": "add:j2"}
    assert [job.created for job in shell.reconfig.jobs] == [JOB_TIME, JOB_TIME]
    assert of_type(shell.sweep(START + 2.5), Log) == [], "the jobs run"

    shell.reconfig.drive(JOB_TIME, {})
    for job in shell.reconfig.jobs:  # each new replica is a voter of its cluster
        voters = shell.reconfig.map.replicas(job.cluster)
        shell.reconfig.observe_membership(MembershipReport(cluster=job.cluster, leader=voters[0], term=2, voters=voters,
                                                           learners=(), pending=False, commit=9, match={}, error=""),
                                          JOB_TIME)
    assert [job.state for job in shell.reconfig.jobs] == [DONE, DONE]
    actions = shell.sweep(START + 3)
    assert of_type(actions, Log) == [Log(text="replacing c1-r1 on lost host b: job j3, removing replica c1-r1"),
                                     Log(text="replacing c2-r2 on lost host b: job j4, removing replica c2-r2")]
    assert shell.supervisor.replacements == {"c1-r1": "remove:j3", "c2-r2": "remove:j4"}

    for replica in ("c1-r1", "c2-r2"):
        assert of_type(shell.supervisor.release(replica), SetDataAside) == [], "its data stays on b"
    shell.sweep(START + 4)
    assert shell.supervisor.replacements == {}
    assert all(job.state == DONE for job in shell.reconfig.jobs[:2])


def test_under_the_report_policy_a_lost_host_is_only_reported():
    shell = Shell(hosts_topology("abcd"))
    for host in "bcd":
        shell.join(host, START)
    lose(shell, "b", START + 1)
    for host in "cd":
        shell.seen_all(host, START + 59)
    assert beyond_probes(shell.sweep(START + 60)) == []
    assert shell.reconfig.jobs == [] and shell.supervisor.hosts["b"].replacement == ""


# -- placement of new replicas ---------------------------------------------------------------


def test_new_replicas_and_clusters_are_refused_when_they_would_break_spread():
    shell = Shell(hosts_topology("abcd"))
    with pytest.raises(PlacementError, match="a cluster of 2 replicas needs 2 hosts up"):
        shell.supervisor.check_cluster_fits(2)
    with pytest.raises(PlacementError, match="no host can take a replica of c1 without breaking spread: hosts"):
        shell.supervisor.check_replica_fits("c1", shell.reconfig.map.replicas("c1"))  # only a is up, and holds c1-r0
    for host in "bcd":
        shell.join(host, START)
    shell.supervisor.check_cluster_fits(4)
    shell.supervisor.check_replica_fits("c1", shell.reconfig.map.replicas("c1"))  # on d
    with pytest.raises(PlacementError, match="no host can take a replica of c1 without breaking spread: hosts"):
        shell.supervisor.check_replica_fits("c1", ("c1-r0", "c1-r1", "c1-r2", "c2-r0"))  # d holds c2-r0


def test_a_new_clusters_replicas_go_on_different_hosts():
    shell = Shell(hosts_topology("abc"))
    for host in "bc":
        shell.join(host, START)
    job = shell.reconfig.add_cluster(3, JOB_TIME)
    for replica in job.replicas:
        assert shell.supervisor.assign_host(job.target, replica, job.replicas) == []
    assert sorted(shell.supervisor.placement[replica] for replica in job.replicas) == ["a", "b", "c"]


def test_one_host_supervises_everything_here_whatever_was_placed_before():
    supervisor = Supervisor(parse_topology(ONE_HOST), {"c1-r0": "b"}, {"c1-r0": "add:j1"})
    assert (supervisor.placement, supervisor.replacements, supervisor.hosts) == ({}, {}, {})
    assert supervisor.supervise("c1", "c1-r0", START) == [CreateServer(replica="c1-r0"), WritePids()]


# -- hand-over between coordinator replicas and held data directories ------------------------


def test_a_new_acting_coordinator_adopts_running_servers_without_starting_them_and_watches_their_pids():
    topology = parse_topology(ONE_HOST)
    supervisor = Supervisor(topology, {}, {})
    assert supervisor.adopt("c1", "c1-r0", "c1-r0@old", pid=500, now=START) == [WritePids()]
    assert supervisor.adopt("c1", "c1-r0", "c1-r0@other", pid=501, now=START) == [], "supervised already"
    record = supervisor.servers["c1-r0"]
    assert (record.alive, record.address, record.pid) == (True, "c1-r0@old", 500)
    assert supervisor.local_processes() == {"c1-r0": 500}
    jobs = ReplacementJobs(reconfig=Reconfig.fresh(ShardMap.initial(("c1",), topology.members(), 64), GRACE),
                           job_time=JOB_TIME)
    actions = supervisor.sweep(START + 0.5, {"c1-r0"}, jobs)
    assert actions[-1] == RestartLater(replica="c1-r0", generation=1, delay=RESTART_BACKOFF)


def test_a_server_refused_its_directory_by_an_orphan_of_this_system_gets_the_orphan_killed():
    shell = Shell(ONE_HOST)
    supervisor = shell.supervisor
    supervisor.started("c1-r1", "c1-r1@0", pid=41, now=START)
    assert supervisor.refused("c1-r0", "c1-r0@0", holder=99, ours=True)[0] == KillProcess(pid=99)
    # Not this system's, a supervised server's own process, or an earlier address: never killed.
    assert of_type(supervisor.refused("c1-r0", "c1-r0@0", holder=99, ours=False), KillProcess) == []
    assert of_type(supervisor.refused("c1-r0", "c1-r0@0", holder=41, ours=True), KillProcess) == []
    assert supervisor.refused("c1-r0", "c1-r0@stale", holder=99, ours=True) == []


def test_a_server_that_keeps_failing_to_start_is_restarted_with_a_growing_backoff_until_it_starts():
    shell = Shell(ONE_HOST)
    supervisor = shell.supervisor
    delays = []
    for generation in range(1, 7):
        [*_, restart] = supervisor.exited(f"c1-r0@{generation - 1}")
        delays.append(restart.delay)
        shell.carry_out(supervisor.restart("c1-r0", generation, START + generation))
    assert delays == [0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    supervisor.started("c1-r0", "c1-r0@6", pid=7, now=START + 10)
    assert supervisor.exited("c1-r0@6")[-1].delay == RESTART_BACKOFF
