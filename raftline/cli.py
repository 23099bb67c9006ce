"""The `raftline` command (docs/DESIGN.md section 8): its parser, the commands
that operate a system, and the dispatch to the tools (bench, verify, check,
demo), each of which adds its own arguments.

A command accepts only the options it uses: those that talk to a running
system take -t/--topology (the deployment, its admin port included) or
--admin HOST:PORT. Exit status (EXIT_*): 0 ok, 1 the operation failed or
found a problem, 2 bad usage or input; `check` and `verify` keep their
verdict codes (raftline/check). Every error is one line on stderr, never a
traceback; an unexpected exception, a bug, says "internal error" and where
its traceback was written.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path

from actors.messages import MAX_FAULT_SECONDS
from actors.transport import SECRET_FILE, SecretFileError
from clerk import __version__
from clerk.errors import RaftlineError
from coordinator.admin import LOOPBACK, parse_admin, recorded_admin_port, remember_secret
from coordinator.topology import HOST_NAME, MAX_REPLICAS, TopologyError, load_topology, topology_file
from raftline import bench, check, demo, verify

EXIT_ERROR = 1
"""The operation failed or found a problem (no system running, a key not found, a refused request)."""
EXIT_USAGE = 2
"""Bad usage or input: the command line, a value, a topology file."""


class UsageError(Exception):
    """The command line itself is wrong."""


def parse_value(text: str):
    """VALUE parsed as JSON, else taken as a string; what JSON cannot hold
    (NaN, Infinity, 1e400) is not JSON, so it is a string too."""
    try:
        value = json.loads(text)
        json.dumps(value, allow_nan=False)
    except ValueError:
        return text
    return value


def parse_txn_op(text: str) -> tuple[str, str, object]:
    """'put KEY VALUE' | 'get KEY' | 'delete KEY' -> (op, key, value)."""
    words = text.split(None, 2)
    if len(words) >= 2 and words[0] == "get" and len(words) == 2:
        return "get", words[1], None
    if len(words) >= 2 and words[0] == "delete" and len(words) == 2:
        return "delete", words[1], None
    if len(words) == 3 and words[0] == "put":
        return "put", words[1], parse_value(words[2])
    raise UsageError(f"bad transaction operation {text!r}: expected 'put KEY VALUE', 'get KEY' or 'delete KEY'")


def checked_key(key: str) -> str:
    """`key` if the store takes it; UsageError, before anything is sent, otherwise."""
    from clerk.client import check_key

    try:
        return check_key(key)
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from None


def checked_value(value):
    """`value` as it will be stored; UsageError if the store cannot hold it."""
    from clerk.client import check_value

    try:
        return check_value(value)
    except ValueError as error:
        raise UsageError(str(error)) from None


def checked_seconds(seconds: float) -> float:
    if not 0 < seconds <= MAX_FAULT_SECONDS:
        raise UsageError(f"SECONDS must be more than 0 and at most {MAX_FAULT_SECONDS}, got {seconds:g}")
    return seconds


# -- helpers ------------------------------------------------------------------------------


def admin_of(args) -> tuple[str, str]:
    from clerk.client import resolve_admin

    secret_file = args.secret_file
    admin, data_dir = args.admin, getattr(args, "data_dir", None)
    if data_dir:
        if secret_file is None:
            secret_file = Path(data_dir) / SECRET_FILE  # the system's own data directory holds it
        if admin is None and args.topology is None and (port := recorded_admin_port(Path(data_dir))):
            admin = f"{LOOPBACK}:{port}"  # the system started on that directory, on whatever port it had
    return resolve_admin(args.topology, admin, secret_file)


def deployment_data_dir(args) -> Path | None:
    """The data directory of the deployment the command works on: --data-dir, else
    its topology's (coordinator.topology.topology_file); None when --admin names it."""
    if getattr(args, "data_dir", None):
        return Path(args.data_dir)
    if not getattr(args, "topology_is_deployment", False) or getattr(args, "admin", None) is not None:
        return None
    try:
        return load_topology(topology_file(args.topology)).data_dir
    except (TopologyError, OSError):
        return None


def open_store(args):
    from clerk.client import connect

    return connect(args.topology, admin=args.admin, secret_file=args.secret_file)


def open_cluster(args):
    from coordinator.admin import Cluster

    admin, base = admin_of(args)
    return Cluster(admin, base=base)


def show(value) -> str:
    return json.dumps(value)


# -- commands ------------------------------------------------------------------------------


def cmd_start(args) -> int:
    from coordinator.system import coordinator_needs_members, coordinator_placement, start
    from coordinator.topology import load_topology, topology_file

    if args.admin_port is not None and not 0 <= args.admin_port < 65536:
        raise UsageError(f"--admin-port must be 0..65535, got {args.admin_port}")
    cluster = start(args.topology, data_dir=args.data_dir, admin_port=args.admin_port)
    topology = load_topology(topology_file(args.topology))
    placement = coordinator_placement(topology, cluster.data_dir)
    if coordinator_needs_members(topology, placement):
        # No status yet: the coordinator acts once a majority of its replicas run.
        print(f"raftline is running at {cluster.admin} "
              f"(data in {cluster.data_dir}; log {cluster.data_dir / 'raftline.log'})")
        elsewhere = ", ".join(f"{replica} on {host}" for replica, host in placement.items()
                              if host != topology.leader_host.name)
        leader = f"{topology.leader_host.address}:{topology.leader_host.admin_port}"
        print(f"the coordinator acts once a majority of its replicas run ({elsewhere}): on each other host run "
              f"raftline join --leader {leader} --name NAME -t TOPOLOGY")
        return 0
    status = cluster.status()
    leaders = ", ".join(f"{name}: {c['leader']}" for name, c in status["clusters"].items())
    print(f"raftline is running at {cluster.admin} "
          f"(data in {cluster.data_dir}; log {cluster.data_dir / 'raftline.log'})")
    hosts = status.get("hosts", {})
    waiting = [name for name, host in hosts.items() if not host["up"]]
    if waiting:
        leader = next(host["address"] for host in hosts.values() if host["leader"])
        print(f"waiting for hosts {', '.join(waiting)} to join; on each run: "
              f"raftline join --leader {leader} --name NAME -t TOPOLOGY")
    else:
        print(f"leaders: {leaders}")
    return 0


def cmd_join(args) -> int:
    from coordinator.system import join

    if not HOST_NAME.fullmatch(args.name):
        raise UsageError(f"invalid host name {args.name!r}: expected letters, digits, '.', '-' or '_'")
    address, admin_port = args.address, args.admin_port
    if args.topology is not None:
        topo = load_topology(args.topology)
        try:
            host = topo.host(args.name)
        except KeyError:
            known = ", ".join(h.name for h in topo.hosts) or "none"
            raise UsageError(f"{args.topology} lists no host {args.name!r} (hosts: {known})") from None
        address = address or host.address
        admin_port = admin_port or host.admin_port
    if address is None:
        # Never guessed: the address other hosts reach this one at is the topology's.
        raise UsageError("this host's address is unknown: pass -t TOPOLOGY (listing this host) or --address")
    admin_port = admin_port or 19000
    if not 0 < admin_port < 65536:
        raise UsageError(f"--admin-port must be 1..65535, got {admin_port}")
    admin = join(checked_admin(args.leader, "--leader"), args.name, address, args.data_dir, admin_port,
                 secret_file=args.secret_file)
    print(f"{args.name} joined the convention at {args.leader} (admin {admin}; data in "
          f"{Path(args.data_dir).absolute()}); the coordinator starts this host's replicas")
    return 0


def cmd_stop(args) -> int:
    from coordinator.admin import stop_system

    admin, base = admin_of(args)
    killed = stop_system(admin, deployment_data_dir(args), base)
    extra = f" (killed {len(killed)} leftover process{'es' if len(killed) != 1 else ''})" if killed else ""
    print(f"raftline at {admin} stopped{extra}")
    return 0


def cmd_status(args) -> int:
    cluster = open_cluster(args)
    while True:
        status = cluster.status()
        if args.json:
            print(json.dumps(status, sort_keys=True))
        else:
            if args.watch and sys.stdout.isatty():
                print("\033[2J\033[H", end="")  # redraw in place; a pipe gets one table after another
            print(format_status(status))
        if not args.watch:
            return 0
        sys.stdout.flush()
        time.sleep(1.0)


def format_status(status: dict) -> str:
    lines = [f"epoch {status['epoch']}"]
    coordinator = status.get("coordinator")
    if coordinator:
        replicas = ", ".join(f"{name} {info['role']} (pid {info['pid'] or '-'}"
                             + (f" on {info['host']}" if info.get("host", "local") != "local" else "") + ")"
                             for name, info in coordinator["replicas"].items())
        failing = f"; its storage fails: {coordinator['storage_failure']}" if coordinator.get("storage_failure") else ""
        lines.append(f"coordinator: leader {coordinator['leader']}, term {coordinator['term']}; {replicas}{failing}")
    jobs = [job for job in status.get("jobs", []) if job["state"] == "running"]
    header = (f"  {'replica':<10} {'role':<13} {'term':>5} {'commit':>7} {'applied':>7} {'last':>7} {'lag':>5}"
              f"  {'pid':>7}  {'host':<10} state")
    for name, cluster in status["clusters"].items():
        slots = cluster["slots"]
        lines.append(f"cluster {name}: leader {cluster['leader'] or '(none)'}, term {cluster['term']}, "
                     f"{len(slots)} slots")
        lines.append(header)
        leader = cluster["replicas"].get(cluster["leader"] or "", {})
        head = leader.get("last_index", 0)
        for replica, info in cluster["replicas"].items():
            state = "asleep" if info.get("asleep") else ("alive" if info.get("alive") else "down")
            if info.get("isolated") and info.get("alive"):
                state = "isolated"
            if info.get("failing"):
                state = f"failing: {info['failing']}"
            elif info.get("host_down"):
                state = "host down"
            elif info.get("unreachable"):
                state = "unreachable"
            lag = max(0, head - info.get("applied", 0)) if leader else 0
            role = "learner" if info.get("learner") and info.get("role") == "follower" else info.get("role", "?")
            lines.append(
                f"  {replica:<10} {role:<13} {info.get('term', 0):>5} {info.get('commit', 0):>7}"
                f" {info.get('applied', 0):>7} {info.get('last_index', 0):>7} {lag:>5}  {info.get('pid', 0):>7}"
                f"  {info.get('host', 'local'):<10} {state}"
            )
    for name, host in status.get("hosts", {}).items():
        state = "up" if host["up"] else f"DOWN ({host['why']}, {host['down_seconds']:g} s)"
        if host.get("replacement"):
            state += f"; not replaced: {host['replacement']}"
        role = ", convention leader" if host["leader"] else ""
        lines.append(f"host {name} ({host['address']}{role}): {state}; replicas {', '.join(host['replicas']) or '-'}")
    for job in jobs:
        waiting = f" (waiting: {job['waiting']})" if job.get("waiting") else ""
        lines.append(f"job {job['id']} ({job['kind'].replace('_', '-')} {job['target']}): {job['step']}{waiting}")
    return "\n".join(lines)


def cmd_metrics(args) -> int:
    from raftline.metrics import exposition

    print(exposition(open_cluster(args).status()), end="")
    return 0


DASHBOARD_PORT = 19080


def cmd_dashboard(args) -> int:
    from raftline.dashboard import Dashboard

    if not 0 <= args.port < 65536:
        raise UsageError(f"--port must be 0..65535, got {args.port}")
    if not args.host.strip():
        raise UsageError("--host must name an address (an empty one would listen on every interface)")
    # Listen first: a bad address is bad input, told before anything talks to the system.
    try:
        dashboard = Dashboard(args.host, args.port, admin_of(args)[0])
    except OSError as error:
        if isinstance(error, socket.gaierror) or error.errno == errno.EADDRNOTAVAIL:
            raise UsageError(f"--host {args.host}: not an address of this machine ({error.strerror})") from None
        raise RuntimeError(f"cannot listen on {args.host}:{args.port}: {error.strerror}") from None
    try:
        cluster = open_cluster(args)
        print(f"raftline dashboard at {dashboard.url} (metrics at {dashboard.url}metrics); Ctrl-C stops it",
              flush=True)
        dashboard.run(cluster.status)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how it is meant to stop: success
    finally:
        dashboard.close()
    return 0


class JobProgress:
    """Prints a reconfiguration job's progress: one line per slot moved and
    per new step (never a spinner, so it reads well in a log too)."""

    def __init__(self):
        self.shown: set[str] = set()
        self.moves_done = 0

    def __call__(self, job: dict) -> None:
        moves = job["moves"]
        for index in range(self.moves_done, job["moves_done"]):
            slot, source, destination = moves[index]
            # Each finished move has its time: both are recorded in the same update.
            self.emit(f"slot {slot} {source} -> {destination} moved in {job['move_seconds'][index]:.2f} s "
                      f"({index + 1}/{len(moves)})")
        self.moves_done = job["moves_done"]
        # Each line shows once: the step right after a move says what the move's line said, and a
        # cluster leader repeats its refusal on every report until the step can be taken.
        if job["state"] == "running":
            for line in (job["step"], f"  waiting: {job['waiting']}" if job.get("waiting") else ""):
                if line and line not in self.shown:
                    self.emit(line)

    def emit(self, line: str) -> None:
        self.shown.add(line)
        print(line, flush=True)


def run_job(args, job) -> int:
    """Run `job(cluster, progress)`, which returns what was done; print its
    progress, then that and the elapsed time."""
    began = time.monotonic()
    done = job(open_cluster(args), JobProgress())
    print(f"{done} in {time.monotonic() - began:.1f} s")
    return 0


def cmd_add_replica(args) -> int:
    def job(cluster, progress) -> str:
        return f"added {cluster.add_replica(args.cluster, progress=progress)} to {args.cluster}"

    return run_job(args, job)


def cmd_remove_replica(args) -> int:
    def job(cluster, progress) -> str:
        cluster.remove_replica(args.server, progress=progress)
        return f"removed {args.server}; its data is set aside"

    return run_job(args, job)


def cmd_add_cluster(args) -> int:
    replicas = default_replicas(args.topology) if args.replicas is None else args.replicas
    if not 1 <= replicas <= MAX_REPLICAS:
        raise UsageError(f"--replicas must be 1..{MAX_REPLICAS}, got {replicas}")

    def job(cluster, progress) -> str:
        return f"added cluster {cluster.add_cluster(replicas, progress=progress)} with {replicas} replicas"

    return run_job(args, job)


def default_replicas(topology: str | None) -> int:
    """The replicas of the first cluster of the topology the command uses."""
    return load_topology(topology_file(topology)).clusters[0].replicas


def cmd_remove_cluster(args) -> int:
    def job(cluster, progress) -> str:
        cluster.remove_cluster(args.cluster, progress=progress)
        return f"removed cluster {args.cluster}; its replicas' data is set aside"

    return run_job(args, job)


def cmd_put(args) -> int:
    key = checked_key(args.key)
    if (args.value is None) == (args.file is None):
        raise UsageError("put takes a VALUE or --file F (- for standard input), one of them")
    if args.file is None:
        text = args.value
    elif args.file == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(args.file).read_text(encoding="utf-8")
        except OSError as error:
            raise UsageError(f"cannot read {args.file}: {error.strerror}") from None
    value = checked_value(parse_value(text))
    with open_store(args) as store:
        store.put(key, value)
    print("ok")
    return 0


def cmd_get(args) -> int:
    checked_key(args.key)
    with open_store(args) as store:
        with store.transaction() as txn:
            found = txn.exists(args.key)
            value = txn.get(args.key)
    if not found:
        # As etcdctl: nothing on stdout, so a stored null and a missing key differ.
        print(f"raftline get: {args.key}: not found", file=sys.stderr)
        return EXIT_ERROR
    print(show(value))
    return 0


def cmd_delete(args) -> int:
    checked_key(args.key)
    with open_store(args) as store:
        store.delete(args.key)
    print("ok")
    return 0


def cmd_txn(args) -> int:
    ops = [parse_txn_op(text) for text in args.ops]
    ops = [(op, checked_key(key), checked_value(value) if op == "put" else None) for op, key, value in ops]
    with open_store(args) as store:
        results = []
        with store.transaction() as txn:
            for op, key, value in ops:
                if op == "get":
                    results.append(f"{key} = {show(txn.get(key))}")
                elif op == "put":
                    txn.put(key, value)
                else:
                    txn.delete(key)
    for line in results:
        print(line)
    print("committed")
    return 0


def cmd_sleep(args) -> int:
    checked_seconds(args.seconds)
    open_cluster(args).sleep(args.server, args.seconds)
    print(f"{args.server} sleeps for {args.seconds:g} s; watch it repair with `raftline status --watch`")
    return 0


def cmd_isolate(args) -> int:
    checked_seconds(args.seconds)
    open_cluster(args).isolate(args.server, args.seconds)
    print(f"{args.server} is cut off from its peers for {args.seconds:g} s; it keeps ticking")
    return 0


def cmd_kill(args) -> int:
    open_cluster(args).kill(args.server)
    print(f"killed {args.server}; the coordinator restarts it")
    return 0


# -- parser ---------------------------------------------------------------------------------


TOPOLOGY_HELP = ("the topology file: the deployment, its admin port and data directory included"
                 " (default ./topology.yaml, else the embedded default)")
RUNNING_SYSTEM = {"topology_help": TOPOLOGY_HELP, "admin_help": "the running system's admin address (overrides -t)",
                  "secret_help": "the deployment's secret (default: `secret` in the topology's data directory)"}
"""The options of a command that talks to a running system."""
EXIT_STATUS_HELP = ("exit status: 0 ok, 1 the operation failed or found a problem, 2 bad usage or input;"
                    " check and verify: 0 valid, 1 invalid, 2 no verdict, 3 undetermined")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raftline", description="raftline: a sharded transactional key-value store "
                                     "on Raft", epilog=EXIT_STATUS_HELP, allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"raftline {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name, handler, help_text, *, topology_help=None, admin_help=None, secret_help=None):
        """A subcommand with only the connection options it uses."""
        # No abbreviations: `start --admin 19001` would be taken for --admin-port.
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        p.set_defaults(handler=handler, topology_is_deployment=topology_help is not None)
        if topology_help:
            p.add_argument("-t", "--topology", metavar="FILE", help=topology_help)
        if admin_help:
            p.add_argument("--admin", metavar="HOST:PORT", help=admin_help)
        if secret_help:
            p.add_argument("--secret-file", metavar="F", help=secret_help)
        return p

    p = command("start", cmd_start, "start the system in the background; returns when every cluster has a leader",
                topology_help=TOPOLOGY_HELP)
    p.add_argument("--data-dir", help="data directory (default: the topology's data_dir)")
    p.add_argument("--admin-port", type=int, help="override the topology's admin port (0 = a free port)")
    # This host's own address and port are --address and --admin-port; the leader's is --leader.
    p = command("join", cmd_join, "(multi-host) start this host's actor system and join the convention leader",
                topology_help="the deployment's topology file; this host's entry gives --address and --admin-port",
                secret_help="a copy of the deployment's secret (the leader's data/secret); "
                            "kept in --data-dir, so later joins need not give it")
    p.add_argument("--leader", required=True, metavar="HOST:PORT",
                   help="the convention leader's address and admin port")
    p.add_argument("--name", required=True, help="this host's name in the topology's hosts:")
    p.add_argument("--data-dir", default="data", help="this host's data directory (default ./data)")
    p.add_argument("--admin-port", type=int, help="this host's admin port (default: its topology entry, else 19000)")
    p.add_argument("--address", help="this host's address as other hosts reach it (default: its topology entry)")
    p = command("stop", cmd_stop, "stop the running system and every process it started (at a member: that member)",
                **RUNNING_SYSTEM)
    p.add_argument("--data-dir", help="data directory (to find leftover processes)")
    p = command("status", cmd_status, "clusters, replicas, roles, terms, indexes, lag", **RUNNING_SYSTEM)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.add_argument("--watch", action="store_true", help="refresh every second until interrupted")
    command("metrics", cmd_metrics, "print every process's metrics in the Prometheus text format", **RUNNING_SYSTEM)
    p = command("dashboard", cmd_dashboard, "serve a live web page of the system, and its metrics at /metrics, "
                "until interrupted", **RUNNING_SYSTEM)
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on, and only there (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DASHBOARD_PORT,
                   help=f"the port to listen on (default {DASHBOARD_PORT}; 0 = a free port)")
    p = command("put", cmd_put, "write KEY = VALUE (VALUE parsed as JSON, else taken as a string)", **RUNNING_SYSTEM)
    p.add_argument("key", metavar="KEY", help="the key: a non-empty string")
    p.add_argument("value", metavar="VALUE", nargs="?", help="the value (or give --file)")
    p.add_argument("--file", metavar="F", help="read the value from file F, or from standard input with -")
    p = command("get", cmd_get, "print KEY's value as JSON (a missing key: nothing printed, exit status 1)",
                **RUNNING_SYSTEM)
    p.add_argument("key", metavar="KEY", help="the key to read")
    p = command("delete", cmd_delete, "delete KEY", **RUNNING_SYSTEM)
    p.add_argument("key", metavar="KEY", help="the key to delete")
    p = command("txn", cmd_txn, "one atomic transaction: raftline txn 'put a 1' 'get b' 'delete c'", **RUNNING_SYSTEM)
    p.add_argument("ops", nargs="+", metavar="OP", help="an operation: 'put KEY VALUE', 'get KEY' or 'delete KEY'")
    seconds_help = f"how long, in seconds (at most {MAX_FAULT_SECONDS})"
    p = command("sleep", cmd_sleep, "put SERVER to sleep for SECONDS; it then repairs its log", **RUNNING_SYSTEM)
    p.add_argument("server", metavar="SERVER", help="the replica, e.g. c1-r0")
    p.add_argument("seconds", metavar="SECONDS", type=float, help=seconds_help)
    p = command("isolate", cmd_isolate, "cut SERVER off from its peers for SECONDS (it keeps ticking)",
                **RUNNING_SYSTEM)
    p.add_argument("server", metavar="SERVER", help="the replica, e.g. c1-r0")
    p.add_argument("seconds", metavar="SECONDS", type=float, help=seconds_help)
    p = command("kill", cmd_kill, "SIGKILL SERVER's process; the coordinator restarts it", **RUNNING_SYSTEM)
    p.add_argument("server", metavar="SERVER", help="the replica, e.g. c1-r0")
    p = command("add-replica", cmd_add_replica,
                "add a replica to CLUSTER: it joins as a learner, catches up, then votes", **RUNNING_SYSTEM)
    p.add_argument("cluster", metavar="CLUSTER", help="the cluster to grow, e.g. c1")
    p = command("remove-replica", cmd_remove_replica,
                "remove SERVER from its cluster (leadership moves first); its data is set aside", **RUNNING_SYSTEM)
    p.add_argument("server", metavar="SERVER", help="the replica to remove, e.g. c1-r2")
    p = command("add-cluster", cmd_add_cluster, "create a cluster and move slots to it until the spread is even",
                **RUNNING_SYSTEM)
    p.add_argument("--replicas", type=int, help="its replicas (default: as many as the topology's first cluster)")
    p = command("remove-cluster", cmd_remove_cluster,
                "move every slot off CLUSTER, let its transactions settle, stop its replicas", **RUNNING_SYSTEM)
    p.add_argument("cluster", metavar="CLUSTER", help="the cluster to remove, e.g. c3")
    # bench and verify start their own system unless --admin names one: -t has nothing to name.
    own_system = {"admin_help": "run on the system at this admin address instead of starting one",
                  "secret_help": "that system's secret (default: `secret` in ./data, or in the data_dir of "
                                 "./topology.yaml)"}
    bench.add_arguments(command("bench", bench.run, bench.HELP, **own_system))
    p = command("verify", verify.run, verify.HELP, **own_system)
    # A crash is no verdict, never "invalid".
    p.set_defaults(crash_status=check.EXIT_NO_VERDICT)
    verify.add_arguments(p)
    # A recorded history is judged offline: no system, so no connection options.
    p = command("check", check.run, check.HELP)
    p.set_defaults(crash_status=check.EXIT_NO_VERDICT)
    check.add_arguments(p)
    # demo's -t is what to start in a temporary directory on a free port: demo.add_arguments has it.
    demo.add_arguments(command("demo", demo.run, demo.HELP))
    return parser


def checked_admin(text: str, option: str) -> str:
    """HOST:PORT `text` of `option`; UsageError if it is not one."""
    try:
        parse_admin(text)
    except ValueError:
        raise UsageError(f"{option} expects HOST:PORT (e.g. 127.0.0.1:19000), got {text!r}") from None
    return text


def use_admin_option(args) -> None:
    """Check --admin, and remember --secret-file as the secret of the system it names."""
    if getattr(args, "admin", None) is None:
        return
    port = parse_admin(checked_admin(args.admin, "--admin"))[1]
    if args.secret_file:
        remember_secret(port, args.secret_file)


def os_error_text(error: OSError) -> str:
    if error.filename is None:
        return error.strerror or str(error)
    return f"cannot use {error.filename}: {error.strerror}"


def keep_traceback(text: str, data_dir: Path | None) -> Path:
    """Append `text` to `data_dir`'s raftline.log, else (no data directory, or
    one that cannot be written) to a new file in the temporary directory; its path."""
    from coordinator.system import LOG_FILE

    if data_dir is not None and data_dir.is_dir():
        try:
            with open(data_dir / LOG_FILE, "a", encoding="utf-8") as log:
                log.write(text)
            return data_dir / LOG_FILE
        except OSError:
            pass
    descriptor, path = tempfile.mkstemp(prefix="raftline-internal-error-", suffix=".log", text=True)
    with os.fdopen(descriptor, "w", encoding="utf-8") as log:
        log.write(text)
    return Path(path)


def report_internal_error(args, error: Exception) -> None:
    """A bug: one line on stderr naming the log that holds its traceback."""
    trace = f"raftline {args.command}: internal error\n{''.join(traceback.format_exception(error))}"
    log = keep_traceback(trace, deployment_data_dir(args))
    print(f"raftline {args.command}: internal error (a bug): {type(error).__name__}: {error}; traceback in {log}",
          file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:
        return int(exit.code or 0)
    try:
        use_admin_option(args)
        return args.handler(args)
    except (UsageError, bench.BenchUsageError, TopologyError) as error:
        print(f"raftline {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (RaftlineError, SecretFileError, TimeoutError, RuntimeError) as error:
        print(f"raftline {args.command}: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return bench.EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`raftline status | head`): not an error of ours.
        # Point stdout at nothing so the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:  # what the machine refused: a read-only data directory, a full disk
        print(f"raftline {args.command}: {os_error_text(error)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:
        report_internal_error(args, error)
        return getattr(args, "crash_status", EXIT_ERROR)


if __name__ == "__main__":
    sys.exit(main())
