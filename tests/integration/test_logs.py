"""The logs an operator reads: routine events reach the system log
(raftline.log) at INFO, and a restarted server's server.log says once that it
replayed its history rather than writing that history again as new events."""

from __future__ import annotations

import re
from pathlib import Path

from coordinator.system import LOG_FILE
from tests.integration.conftest import wait_for

SYSTEM_LINE = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) (?P<logger>\S+) \S+ (?P<message>.*)$")
"""`log_definitions`' format: date, time, level, logger, actor address, message."""


def system_log(cluster) -> list[tuple[str, str, str]]:
    """(level, logger, message) of each line of the system log; other output
    that reaches the file (the launcher's) is left out."""
    text = (cluster.data_dir / LOG_FILE).read_text()
    return [(m["level"], m["logger"], m["message"]) for m in map(SYSTEM_LINE.match, text.splitlines()) if m]


def logged(cluster, level: str, pattern: str) -> list[str]:
    return [message for lvl, _, message in system_log(cluster) if lvl == level and re.search(pattern, message)]


def server_log(cluster, replica: str) -> list[str]:
    path: Path = cluster.data_dir / replica / "server.log"
    return path.read_text().splitlines()


def test_routine_events_reach_the_system_log_as_info(cluster):
    assert wait_for(lambda: logged(cluster, "INFO", r"^coordinator-\d acts in term \d+"))
    for name in ("c1", "c2"):
        assert wait_for(lambda: logged(cluster, "INFO", rf"^cluster {name}: leader {name}-r\d in term \d+$"))
    lines = system_log(cluster)
    assert [line for line in lines if line[0] not in ("INFO", "DEBUG")] == [], "a healthy start needs no attention"
    assert all(logger.startswith("raftline.") for _, logger, _ in lines), "only raftline's own routine events"


def test_a_restarted_server_does_not_log_its_replayed_history_again(cluster):
    added = cluster.add_replica("c1", timeout=20)
    assert logged(cluster, "INFO", rf"^job j\d+ started: adding replica {added}$")
    assert wait_for(lambda: logged(cluster, "INFO", rf"^job j\d+ finished: adding replica {added}$"))
    victim = cluster.leader("c1")
    changes = [f"membership change applied: add_learner {added}", f"membership change applied: promote {added}"]

    def membership_lines() -> list[str]:
        return [line for line in server_log(cluster, victim) if line.endswith(tuple(changes))]

    before = wait_for(lambda: len(found := membership_lines()) == 2 and found)
    old_pid = cluster.status()["clusters"]["c1"]["replicas"][victim]["pid"]
    cluster.kill(victim)

    def restarted() -> int:
        replica = cluster.status()["clusters"]["c1"]["replicas"][victim]
        return replica["alive"] and replica["pid"] not in (0, old_pid) and replica["pid"]

    new_pid = wait_for(restarted)
    started = f"started (pid {new_pid}), recovered from storage: snapshot at index 0, replayed entries 1.."

    def after_start() -> list[str]:
        lines = server_log(cluster, victim)
        start = next((i for i, line in enumerate(lines) if started in line), None)
        return start is not None and lines[start:]

    # The replica's first step after the start logs what it has to say (its
    # role at least): any replayed event would be written by then.
    assert len(wait_for(lambda: len(found := after_start()) > 1 and found)) > 1
    assert membership_lines() == before, "replayed membership changes were logged again"
    assert wait_for(lambda: logged(cluster, "INFO", rf"^server {victim} \(pid {old_pid}\) exited; restarting it"))
    assert wait_for(lambda: logged(cluster, "INFO", r"^cluster c1: leader c1-r\d in term ([2-9]|\d\d+)$"))
