"""What the system log keeps, and at which level the supervisor reports a
restart: routine at INFO, what needs an operator at WARNING."""

import logging
from pathlib import Path

from coordinator.shardmap import ShardMap
from coordinator.supervisor import Log, Supervisor
from coordinator.system import RaftlineInfoFilter, log_definitions
from coordinator.topology import parse_topology

START = 1000.0


def record(logger: str, level: int) -> logging.LogRecord:
    return logging.LogRecord(logger, level, __file__, 1, "a line", None, None)


def test_the_system_log_keeps_raftline_info_and_everyone_s_warnings():
    keeps = RaftlineInfoFilter().filter
    assert keeps(record("raftline.coordinator", logging.INFO))
    assert not keeps(record("Thespian", logging.INFO)), "Thespian's own start and stop chatter"
    assert not keeps(record("root", logging.INFO))
    assert keeps(record("Thespian", logging.WARNING))
    definitions = log_definitions(Path("/nowhere"))
    assert definitions["root"]["level"] == "WARNING"
    assert definitions["loggers"]["raftline"]["level"] == "INFO"
    assert definitions["handlers"]["file"]["level"] == "INFO"


def test_a_restart_is_routine_but_a_server_that_keeps_failing_to_start_is_a_warning():
    topology = parse_topology("clusters:\n  c1: {replicas: 3}\n")
    supervisor = Supervisor(topology, {}, {})
    supervisor.place_unplaced(ShardMap.initial(topology.cluster_names, topology.members(), topology.slots))
    supervisor.supervise("c1", "c1-r0", START)
    supervisor.created("c1-r0", "first")
    supervisor.started("c1-r0", "first", pid=4242, now=START)
    [ran_then_exited] = [action for action in supervisor.exited("first") if isinstance(action, Log)]
    assert not ran_then_exited.warning
    supervisor.restart("c1-r0", 1, START + 1)
    supervisor.created("c1-r0", "second")
    [exited_before_starting] = [action for action in supervisor.exited("second") if isinstance(action, Log)]
    assert exited_before_starting.warning and "restarting it in 0.4 s" in exited_before_starting.text
