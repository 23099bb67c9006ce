"""The status dict `raftline status` shows (docs/DESIGN.md sections 5 and 7).

A status round is a scatter-gather: the coordinator asks every server that
should answer, and builds the status from the reports that came back by the
deadline. A server that did not answer shows its last report, marked down,
unresponsive or asleep.

Rules:
- Pure: no Thespian, no clock; `now` is the supervisor's monotonic clock.
- Plain JSON types only; the fields docs/DESIGN.md promises are always present.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from coordinator.reconfig import RUNNING, Job
from coordinator.shardmap import ShardMap
from coordinator.supervisor import ServerRecord, Supervisor

FINISHED_JOBS_SHOWN = 5


@dataclass
class StatusRound:
    """One status round in progress.

    Fields:
        round: its number (ReplicaStatusRequest.round), from 1.
        askers: the addresses to answer when it ends.
        reports: replica -> the status it reported in this round.
    """

    round: int
    askers: list
    reports: dict[str, dict] = field(default_factory=dict)


def build_status(
    *,
    shard_map: ShardMap,
    supervisor: Supervisor,
    reports: Mapping[str, dict],
    last_reports: Mapping[str, dict],
    leaders: Mapping[str, str | None],
    terms: Mapping[str, int],
    jobs: Sequence[Job],
    now: float,
    admin_pid: int,
    clerks: int,
    coordinator: dict,
    clerk_metrics: Mapping[str, dict],
) -> dict:
    """The status dict from a round's `reports` (and each silent server's last
    report); `coordinator` is the coordinator group's own part, `clerk_metrics`
    each subscribed clerk's latest metrics snapshot."""
    clusters = {}
    for cluster in shard_map.clusters:
        leader_report = reports.get(leaders.get(cluster) or "") or {}
        learners = set(leader_report.get("conf", {}).get("learners", ()))
        replicas = {}
        for replica in shard_map.replicas(cluster):
            # A replica a job is stopping is supervised no more.
            record = supervisor.servers.get(replica) or ServerRecord(cluster=cluster, replica=replica)
            replicas[replica] = replica_shown(record, reports.get(replica), last_reports.get(replica, {}), now,
                                              learner=replica in learners, host_up=supervisor.host_up(record.host))
        clusters[cluster] = {
            "leader": leaders.get(cluster),
            "term": terms.get(cluster, 0),
            "slots": list(shard_map.slots_of(cluster)),
            "replicas": replicas,
        }
    return {
        "epoch": shard_map.epoch,
        "admin_pid": admin_pid,
        "clerks": clerks,
        "clerk_metrics": dict(clerk_metrics),
        "coordinator": coordinator,
        "clusters": clusters,
        "hosts": hosts_shown(supervisor, now),
        "jobs": jobs_shown(jobs),
    }


def coordinator_shown(group: dict, pids: Mapping[str, int], running: Mapping[str, bool],
                      placement: Mapping[str, str]) -> dict:
    """The coordinator group as its acting replica sees it: `group` is that
    replica's CoordinatorGroup.status() (its metrics included); `pids` and
    `running` say what it knows of each replica's process, `placement` its host."""
    lag = group["lag"]
    replicas = {}
    for replica in sorted(pids):
        if replica == group["replica"]:
            role = "leader"
        else:
            role = "follower" if running.get(replica) else "down"
        replicas[replica] = {"role": role, "pid": pids[replica], "lag": lag.get(replica, 0),
                             "host": placement.get(replica) or "local"}
    return {"leader": group["replica"], "term": group["term"], "commit": group["commit"],
            "storage_failure": group.get("storage_failure", ""), "metrics": group["metrics"],
            "replicas": replicas}


def replica_shown(record: ServerRecord, report: dict | None, last_report: dict, now: float, *,
                  learner: bool, host_up: bool) -> dict:
    """One replica: its report in this round, else its last one, with what the supervisor knows."""
    entry = dict(report if report is not None else last_report)
    entry.setdefault("role", "unknown")
    for name in ("term", "commit", "applied", "last_index"):
        entry.setdefault(name, 0)
    entry["alive"] = record.alive and (report is not None or record.asleep(now))
    entry["asleep"] = record.asleep(now)
    entry["isolated"] = record.isolated_until > now
    entry["pid"] = record.pid
    entry["restarts"] = record.restarts
    if report is None and not entry["asleep"]:
        entry["role"] = "down" if not record.alive else "unresponsive"
    entry["failing"] = record.failing(now)
    entry["learner"] = learner
    entry["host"] = record.host or "local"
    entry["host_down"] = not host_up
    entry["unreachable"] = record.unreachable
    if entry["host_down"]:
        entry["role"] = "down"
    return entry


def hosts_shown(supervisor: Supervisor, now: float) -> dict:
    """Multi-host: each host, up or not and why, and the replicas placed on it."""
    shown = {}
    for host in supervisor.topology.hosts:
        state = supervisor.hosts[host.name]
        shown[host.name] = {
            "address": f"{host.address}:{host.admin_port}",
            "up": state.up,
            "leader": host.name == supervisor.topology.leader_host.name,
            "why": state.why,
            "replacement": state.replacement,
            "down_seconds": round(now - state.lost_since, 1) if state.lost_since is not None else 0,
            "replicas": sorted(r.replica for r in supervisor.servers.values() if r.host == host.name),
        }
    return shown


def jobs_shown(jobs: Sequence[Job]) -> list[dict]:
    """Running jobs and the last few finished ones, oldest first."""
    finished = [job for job in jobs if job.state != RUNNING][-FINISHED_JOBS_SHOWN:]
    return [job.to_dict() for job in jobs if job.state == RUNNING or job in finished]
