"""Start a raftline actor system, or join a host to one (docs/DESIGN.md
section 7); the launcher processes that do it. `coordinator.admin` attaches
to a running system and stops it.

How a system runs:
- `start` spawns a detached launcher process (`python -m coordinator.system
  serve ...`) whose output goes to `<data_dir>/raftline.log`, never to the
  caller's terminal or pipes. The launcher starts the Thespian actor system
  (its admin keeps running after the launcher exits), creates every
  coordinator replica under its global name and sends each `Boot`.
- Anyone can then attach through the admin port: `Cluster` for operators,
  `clerk.connect` for applications.

Multi-host (the topology lists `hosts:`; docs/DESIGN.md section 12, "conventions"):
- `start` runs on the first host, the convention leader: its actor system
  has the capabilities `Admin Port`, `Convention Address.IPv4` (its own
  address), `node` (its host name) and `raftline data dir`; it boots the
  coordinator replicas placed on this host and returns once the coordinator
  acts, or, when most of its replicas are placed on other hosts, right away:
  the other hosts' replicas (servers and coordinator replicas alike) start
  only when those hosts join.
- `join` runs on every other host: a member actor system (same capabilities,
  the convention address being the leader's), launched detached like
  `start`; it returns once the member is registered with the leader.
- Every host advertises exactly the address its topology entry gives
  (THESPIAN_BASE_IPADDR), never a guess. Thespian's re-registration period
  is left at its default: shortened, members were declared dead between
  check-ins (its sends back off) and flapped; the coordinator's own
  heartbeat finds dead hosts instead.
- `stop` on the leader also stops the servers on the members (their actor
  systems keep running); `stop` on a member stops that member and every
  process of it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from actors.datadir import DataDirInUse, holder_of
from actors.messages import Boot
from actors.process import DATA_DIR_CAPABILITY
from actors.transport import SECRET_CAPABILITY, SECRET_FILE, ensure_secret, keep_secret
from coordinator.admin import (
    COORDINATORS_CAPABILITY,
    DEFAULT_BASE,
    LOOPBACK,
    MEMBER_CAPABILITY,
    Cluster,
    admin_listening,
    free_port,
    host_environment,
    kill_recorded,
    listener_session,
    member_registered,
    parse_admin,
    prepare_environment,
    remember_secret,
    session_processes,
    stop_member,
)
from coordinator.errors import AlreadyRunning, Unavailable
from coordinator.state import PIDS_FILE
from coordinator.topology import HOST_NAME, Topology, load_topology, topology_file

LOG_FILE = "raftline.log"
RAFTLINE_LOGGER = "raftline"
BOOT_WAIT = 10.0
"""Seconds the launcher waits for its coordinator replicas to say they booted."""


def start(
    topology: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    admin_port: int | None = None,
    *,
    timeout: float = 60.0,
) -> Cluster:
    """Start the system `topology` describes (default: ./topology.yaml, else
    the embedded default) in the background; return once every cluster has a
    leader. `admin_port=0` picks a free port.
    Multi-host: run on the first host of `hosts:` (its admin port is the
    default); returns once the coordinator has booted, before the other
    hosts join (`join`), or, when most coordinator replicas are placed on
    other hosts, once this host's have booted: the coordinator acts once
    enough of those hosts join."""
    topology = topology_file(topology)
    topo = load_topology(topology)
    leader = topo.leader_host
    port = admin_port if admin_port is not None else topo.system_admin_port
    if port == 0:
        port = free_port()
    admin = f"{LOOPBACK}:{port}"
    if admin_listening(LOOPBACK, port):
        raise AlreadyRunning(f"something already listens on {admin}: a raftline system? (`raftline stop` stops it)")
    data = Path(data_dir if data_dir is not None else topo.data_dir).absolute()
    refuse_data_in_use(data, ["coordinator", *topo.coordinator.replica_ids])  # "coordinator": an older version's
    data.mkdir(parents=True, exist_ok=True)
    remember_secret(port, ensure_secret(data / SECRET_FILE))
    env = host_environment(leader.address if leader else None)
    with open(data / LOG_FILE, "ab") as log:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "coordinator.system", "serve", os.fspath(Path(topology).absolute()), os.fspath(data), str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    if launcher.wait(timeout=timeout) != 0:
        raise Unavailable(f"the system failed to start; see {data / LOG_FILE}")
    try:
        cluster = Cluster(admin, data, topo.base)
    except BaseException:
        kill_recorded(data)
        raise
    try:
        if leader is None:
            cluster.wait_ready(timeout)
        elif not coordinator_needs_members(topo, coordinator_placement(topo, data)):
            cluster.wait_booted(timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def refuse_data_in_use(data: Path, directories: list[str]) -> None:
    """AlreadyRunning when a process holds one of `directories` under `data`:
    refused before anything starts, since two systems on one data directory
    lose acknowledged writes."""
    for directory in sorted(directories):
        holder = holder_of(data / directory)
        if holder is not None:
            raise AlreadyRunning(f"{DataDirInUse(data / directory, holder)}: a raftline system runs on it "
                                 "(`raftline stop` stops it)")


def join(
    leader: str,
    name: str,
    address: str,
    data_dir: str | os.PathLike,
    admin_port: int,
    *,
    base: str = DEFAULT_BASE,
    secret_file: str | os.PathLike | None = None,
    timeout: float = 30.0,
) -> str:
    """Start this host's member actor system in the background and return its
    admin address once it is registered with the convention leader at
    `leader` ("HOST:PORT"). `address` is this host's address as the topology
    gives it; `name` its host name there. The coordinator then starts this
    host's servers, under `data_dir`. `secret_file` is a copy of the
    deployment's secret (the leader's `data/secret`); it is kept as this
    host's `data_dir/secret`, so later joins need not give it again."""

    leader_host, leader_port = parse_admin(leader)
    if not HOST_NAME.fullmatch(name):
        raise ValueError(f"invalid host name {name!r}; expected letters, digits, '.', '-' or '_'")
    if not 0 < admin_port < 65536:
        raise ValueError(f"admin port must be 1..65535, got {admin_port}")
    admin = f"{LOOPBACK}:{admin_port}"
    if admin_listening(LOOPBACK, admin_port):
        raise AlreadyRunning(f"something already listens on {admin}: a raftline member? "
                             f"(`raftline stop --admin {admin}` stops it)")
    data = Path(data_dir).absolute()
    refuse_data_in_use(data, [path.name for path in data.iterdir() if path.is_dir()] if data.exists() else [])
    data.mkdir(parents=True, exist_ok=True)
    remember_secret(admin_port, keep_secret(data / SECRET_FILE, secret_file))
    with open(data / LOG_FILE, "ab") as log:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "coordinator.system", "member", name, os.fspath(data), str(admin_port),
             leader_host, str(leader_port), base],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=host_environment(address),
        )
    if launcher.wait(timeout=timeout) != 0:
        raise Unavailable(f"the member actor system failed to start; see {data / LOG_FILE}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if member_registered(admin_port, base):
            return admin
        time.sleep(0.1)
    stop_member(admin_port, data, base, grace=3.0)
    raise Unavailable(f"{name} could not register with the convention leader at {leader} within {timeout:g} s "
                      f"(is `raftline start` running there, and is {leader} reachable from here?); "
                      f"see {data / LOG_FILE}")


def log_definitions(data_dir: Path) -> dict:
    """Thespian logDefs for the system log file: raftline's routine events
    (INFO, under the `raftline` logger) and everyone's warnings and errors.
    Actor processes forward records at the lowest level named here, whatever
    their logger, so Thespian's own INFO chatter is held back by a filter."""
    return {
        "version": 1,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(actorAddress)s %(message)s"}},
        "filters": {
            "actor": {"()": "coordinator.system.ActorAddressFilter"},
            "raftline_info": {"()": "coordinator.system.RaftlineInfoFilter"},
        },
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "filename": os.fspath(Path(data_dir) / LOG_FILE),
                "formatter": "plain",
                "filters": ["actor", "raftline_info"],
                "level": "INFO",
            }
        },
        "loggers": {RAFTLINE_LOGGER: {"level": "INFO"}},
        "root": {"handlers": ["file"], "level": "WARNING"},
    }


class RaftlineInfoFilter:
    """Passes INFO only from raftline's loggers; warnings and errors from any."""

    def filter(self, record) -> bool:
        return record.levelno >= logging.WARNING or record.name.startswith(RAFTLINE_LOGGER + ".")


class ActorAddressFilter:
    """Gives every record an `actorAddress` (Thespian sets it only for actor logs)."""

    def filter(self, record) -> bool:
        if not hasattr(record, "actorAddress"):
            record.actorAddress = "-"
        return True


def _serve(topology: str, data_dir: str, port: int) -> int:
    """The launcher: start the actor system and boot the coordinator replicas
    placed on this host, then exit (the actor system's admin process keeps
    running). The other hosts' replicas start when their hosts join."""
    prepare_environment()
    from thespian.actors import ActorSystem

    from actors.messages import CoordinatorStarted
    from coordinator.coordinator import Coordinator, coordinator_name

    topo: Topology = load_topology(topology)
    placement = coordinator_placement(topo, Path(data_dir))
    here_hosts = {"", topo.leader_host.name} if topo.leader_host else {""}
    here = [replica for replica, host in placement.items() if host in here_hosts]
    capabilities: dict = {
        "Admin Port": port,
        COORDINATORS_CAPABILITY: tuple(here),
        SECRET_CAPABILITY: os.fspath(Path(data_dir) / SECRET_FILE),
    }
    if topo.leader_host is not None:
        capabilities.update({
            "Convention Address.IPv4": (topo.leader_host.address, port),
            "node": topo.leader_host.name,
            DATA_DIR_CAPABILITY: data_dir,
        })
    system = ActorSystem(topo.base, capabilities, logDefs=log_definitions(Path(data_dir)))
    record_session(Path(data_dir), port)
    peers = {replica: system.createActor(Coordinator, globalName=coordinator_name(replica)) for replica in here}
    text = Path(topology).read_text()
    for replica, address in peers.items():
        system.tell(address, Boot(topology=text, source=topology, data_dir=data_dir, replica=replica, peers=peers,
                                  placement=placement))
    booted: set[str] = set()
    deadline = time.monotonic() + BOOT_WAIT
    while len(booted) < len(peers) and (left := deadline - time.monotonic()) > 0:
        answer = system.listen(left)
        if isinstance(answer, CoordinatorStarted):
            booted.add(answer.replica)
    elsewhere = sorted(set(placement.values()) - here_hosts)
    print(f"raftline: actor system up on {LOOPBACK}:{port}; coordinator replicas booted here: "
          f"{', '.join(sorted(booted)) or 'none'}" + (f"; the others start when {', '.join(elsewhere)} join"
                                                      if elsewhere else ""), flush=True)
    return 0


def coordinator_placement(topo: Topology, data: Path) -> dict[str, str]:
    """Each coordinator replica's host: spread over the hosts, except that a
    replica whose data directory is on this (the first) host stays here."""
    return topo.coordinator_placement(kept_on_first_host=[replica for replica in topo.coordinator.replica_ids
                                                          if (data / replica).is_dir()])


def coordinator_needs_members(topo: Topology, placement: dict[str, str]) -> bool:
    """Whether the coordinator group can act only once other hosts join: the
    first host holds no majority of its replicas."""
    if topo.leader_host is None:
        return False
    return 2 * sum(1 for host in placement.values() if host == topo.leader_host.name) <= len(placement)


def record_session(data_dir: Path, port: int) -> None:
    """Record the processes of the actor system whose admin listens on `port`,
    before any of them can do anything, for `stop`: Thespian starts the admin
    in a session of its own, which its logger and every actor it forks
    inherit, so even after the admin dies `stop` finds them all."""
    session = listener_session(port)
    pids = sorted(session_processes(session) - {os.getpid()})
    path = data_dir / PIDS_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"pids": pids, "session": session, "admin_port": port}))
    temporary.replace(path)


def _member(name: str, data_dir: str, port: int, leader_host: str, leader_port: int, base: str) -> int:
    """The member launcher: start this host's actor system in the leader's
    convention, record its processes, then exit (its admin keeps running)."""
    prepare_environment()
    from thespian.actors import ActorSystem

    capabilities = {
        "Admin Port": port,
        SECRET_CAPABILITY: os.fspath(Path(data_dir) / SECRET_FILE),
        "Convention Address.IPv4": (leader_host, leader_port),
        "node": name,
        DATA_DIR_CAPABILITY: data_dir,
        MEMBER_CAPABILITY: f"{leader_host}:{leader_port}",
    }
    ActorSystem(base, capabilities, logDefs=log_definitions(Path(data_dir)))
    record_session(Path(data_dir), port)
    print(f"raftline: member {name} up on {LOOPBACK}:{port}, joining {leader_host}:{leader_port}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coordinator.system")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="(internal) launch the actor system and boot the coordinator")
    serve.add_argument("topology")
    serve.add_argument("data_dir")
    serve.add_argument("port", type=int)
    member = sub.add_parser("member", help="(internal) launch a member actor system in a convention")
    member.add_argument("name")
    member.add_argument("data_dir")
    member.add_argument("port", type=int)
    member.add_argument("leader_host")
    member.add_argument("leader_port", type=int)
    member.add_argument("base")
    args = parser.parse_args(argv)
    if args.command == "member":
        return _member(args.name, args.data_dir, args.port, args.leader_host, args.leader_port, args.base)
    return _serve(args.topology, args.data_dir, args.port)


if __name__ == "__main__":
    sys.exit(main())
