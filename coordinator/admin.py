"""Reach a running raftline system from outside it, operate it, and stop it
(docs/DESIGN.md section 7).

- `attach` gives a private ActorSystem handle on the system whose admin
  listens at "HOST:PORT" (never starting one: ClusterNotRunning when nothing
  listens there). `Cluster` is the operator's API on it: status, sleep,
  isolate, kill, reconfiguration jobs, stop. Applications use `clerk.connect`.
- `coordinator_addresses` finds every coordinator replica by its global name
  (their number is the actor system's `raftline coordinator replicas`
  capability). `AdminClient` asks one; a replica that does not act passes
  the request to the one that does, which answers; a replica that is dead
  (its ask returns at once) or silent is skipped for the next.
- `stop_system` asks the coordinator for every process it knows, shuts the
  actor system down, then SIGKILLs whatever survived, by PID and by session
  (Thespian's shutdown does not remove orphans; docs/DESIGN.md section 12,
  "orphans"). On a multi-host leader the members' servers stop too; at a
  member's admin, that member and every process of it stop.

Thespian reads its environment when first imported, so `prepare_environment`
runs before any thespian import in every process that talks to a system.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

from actors.messages import (
    AddCluster,
    AddReplica,
    AdminReply,
    CoordinatorUnavailable,
    Isolate,
    Kill,
    ProcessList,
    ReconfigStatus,
    RemoveCluster,
    RemoveReplica,
    Sleep,
    StatusReply,
    StatusRequest,
)
from actors.process import DATA_DIR_CAPABILITY, process_running
from actors.transport import (
    BASE_NAME,
    SECRET_CAPABILITY,
    SECRET_FILE,
    AuthenticationFailed,
    SecretFileError,
    install,
    read_secret,
)
from coordinator.errors import AdminError, ClusterNotRunning, NotAuthorized, Unavailable
from coordinator.state import PIDS_FILE

COORDINATORS_CAPABILITY = "raftline coordinator replicas"
"""The first host's actor system's capability: the ids of the coordinator
replicas it runs (the others, on other hosts, are reached through these)."""

REPLICA_WAIT = 3.0
"""Seconds to wait for one coordinator replica before asking the next."""


DEFAULT_BASE = BASE_NAME


LOOPBACK = "127.0.0.1"


MEMBER_CAPABILITY = "raftline member of"
"""A member actor system's capability: the leader's HOST:PORT (how `stop` tells a member)."""


THESPIAN_ENVIRONMENT = {
    # Every listener binds the advertised address: loopback unless a
    # multi-host deployment gives the host's own (README, Security).
    "THESPIAN_BASE_IPADDR": LOOPBACK,
    # Sends to one frozen peer must not stall sends to healthy ones.
    "THESPIAN_MAX_PENDING_TRANSMITS": "5000",
}


def prepare_environment() -> None:
    """Set Thespian's environment and make raftline's base known to it; call
    before the first thespian import."""
    set_thespian_environment()
    install()


def set_thespian_environment() -> None:
    """Thespian's environment alone (for measuring its stock base as it comes)."""
    for name, value in THESPIAN_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


_secret_files: dict[int, Path] = {}
"""The deployment secret's file of each system this process started or was
told of, by admin port (a handle always reaches its admin on this host)."""


def remember_secret(port: int, secret_file: str | os.PathLike) -> Path:
    _secret_files[port] = Path(secret_file).absolute()
    return _secret_files[port]


def secret_file_for(port: int) -> Path:
    """The secret of the system on admin `port`: the one given for it before
    (`start`, `connect(secret_file=...)`, `--secret-file`), else `secret` in the
    default topology's data directory (./data unless ./topology.yaml says
    otherwise)."""
    known = _secret_files.get(port)
    if known is not None:
        return known
    from coordinator.topology import TopologyError, load_topology, topology_file

    try:
        candidate = Path(load_topology(topology_file(None)).data_dir) / SECRET_FILE
    except (TopologyError, OSError):
        candidate = None
    if candidate is None or not candidate.exists():
        raise SecretFileError(f"no deployment secret for the system on port {port}: give --secret-file F "
                              f"(the file `{SECRET_FILE}` in the data directory of the host that started it)")
    return remember_secret(port, candidate)


def host_environment(address: str | None) -> dict[str, str]:
    """The environment of a process that starts an actor system: Thespian's
    settings, and on a multi-host deployment the host's own `address` as the
    advertised one."""
    env = dict(os.environ)
    env.update({name: env.get(name, value) for name, value in THESPIAN_ENVIRONMENT.items()})
    if address is not None:
        env["THESPIAN_BASE_IPADDR"] = address
    return env


def parse_admin(admin: str) -> tuple[str, int]:
    """"HOST:PORT" -> (host, port); ValueError with the expected form otherwise."""
    host, sep, port = admin.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--admin expects HOST:PORT (e.g. {LOOPBACK}:19000), got {admin!r}")
    return host, int(port)


def admin_listening(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def how_to_start(admin: str) -> str:
    return f"no raftline system is running at {admin}; start one with `raftline start` (or `raftline demo`)"


def attach(admin: str, base: str = DEFAULT_BASE, secret_file: str | os.PathLike | None = None):
    """A private ActorSystem handle on the running system at `admin` (never
    starts one: ClusterNotRunning when nothing listens there, Unavailable
    when its admin is dead); `secret_file` as `secret_file_for` finds it
    unless given."""
    host, port = parse_admin(admin)
    if secret_file is not None:
        remember_secret(port, secret_file)
    if not admin_listening(host, port):
        if survivors(port):
            raise admin_is_dead(admin)
        raise ClusterNotRunning(how_to_start(admin))
    return _handle(port, base, admin)


def admin_is_dead(admin: str) -> Unavailable:
    return Unavailable(f"the actor system's admin at {admin} is dead: the store keeps serving the clients "
                       "already connected, but nobody new can attach; `raftline stop` then `raftline start` "
                       "recovers")


def survivors(port: int, data_dir: Path | None = None) -> set[int]:
    """The live processes of the system last started on admin `port`: its
    session as recorded in its data directory (`data_dir`, else where its
    secret is). Its admin may be dead and its port closed, and they run on."""
    if data_dir is None:
        try:
            data_dir = secret_file_for(port).parent
        except SecretFileError:
            return set()
    return session_processes(_recorded_session(data_dir, port))


def _handle(port: int, base: str, admin: str):
    prepare_environment()
    from thespian.actors import ActorSystem, InvalidActorAddress

    secret_file = secret_file_for(port)
    read_secret(secret_file)  # an unsafe or malformed file is the user's to fix: said plainly, here
    capabilities = {"Admin Port": port, SECRET_CAPABILITY: os.fspath(secret_file)}
    try:
        return ActorSystem(base, capabilities, transientUnique=True)
    except InvalidActorAddress:
        raise admin_is_dead(admin) from None
    except AuthenticationFailed as refused:
        raise NotAuthorized(f"{refused}: {secret_file} is not its secret (give --secret-file, "
                            f"the file `{SECRET_FILE}` in the data directory of the host that started it)") from None


def coordinator_addresses(system, admin: str, base: str = DEFAULT_BASE) -> dict[str, object]:
    """Replica id -> address of every coordinator replica the actor system at
    `admin` runs, looked up through `system` (an attached handle)."""
    _, port = parse_admin(admin)
    status = admin_status(port, base)
    replicas = (status.capabilities if status is not None else {}).get(COORDINATORS_CAPABILITY)
    if not replicas:
        raise ClusterNotRunning(f"the actor system at {admin} runs no raftline coordinator "
                                "(another program, a member host, or an older raftline); `raftline stop` stops it")
    return {replica: coordinator_address(system, replica) for replica in replicas}


def coordinator_address(system, replica: str):
    """Coordinator replica `replica`'s current address, by its global name."""
    from coordinator.coordinator import Coordinator, coordinator_name

    return system.createActor(Coordinator, globalName=coordinator_name(replica))


class AdminClient:
    """A handle on a running system, from outside it: asks the coordinator group."""

    def __init__(self, admin: str, base: str = DEFAULT_BASE, secret_file: str | os.PathLike | None = None):
        self.admin = admin
        self.system = attach(admin, base, secret_file)
        self.replicas = coordinator_addresses(self.system, admin, base)
        """The coordinator replicas on the attached host; they pass requests on to one acting elsewhere."""
        self.order = list(self.replicas)
        self.preferred = 0

    def ask(self, message, expect: type, timeout: float = 10.0):
        """Send `message` to a coordinator replica and wait for the reply of type
        `expect` (a late answer to an earlier, timed-out question is skipped);
        a replica that is dead or silent for REPLICA_WAIT is skipped for the next."""
        deadline = time.monotonic() + timeout
        unavailable = ""
        for _ in range(max(1, len(self.order)) * 3):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wait = min(remaining, REPLICA_WAIT)
            until = time.monotonic() + wait
            replica = self.order[self.preferred]
            reply = self.system.ask(self.replicas[replica], message, wait)
            while reply is not None and not isinstance(reply, (expect, CoordinatorUnavailable)):
                reply = self.system.listen(max(0.0, until - time.monotonic()))
            if isinstance(reply, expect):
                return reply
            if isinstance(reply, CoordinatorUnavailable):
                unavailable = f"{reply.replica or 'a replica'}: {reply.reason}"
                time.sleep(0.1)
            elif reply is None and time.monotonic() < until:
                # An ask to a dead actor ends at once: the replica was re-created elsewhere, or will be.
                self.replicas[replica] = coordinator_address(self.system, replica)
                time.sleep(0.05)
            self.preferred = (self.preferred + 1) % len(self.order)
        if unavailable:
            raise Unavailable(f"the coordinator at {self.admin} cannot answer: {unavailable} (on several hosts, "
                              "`raftline join` the others; on one, `raftline stop` then `raftline start` recovers)")
        raise Unavailable(f"no coordinator replica at {self.admin} answered within {timeout:g} s "
                          "(are most of them down? `raftline stop` then `raftline start` recovers)")

    def admin_request(self, message, timeout: float = 10.0):
        reply = self.ask(message, AdminReply, timeout)
        if not reply.ok:
            raise AdminError(reply.message)
        return reply.value

    def close(self) -> None:
        # A transient handle: closing it leaves the system running.
        self.system = None


class Cluster:
    """A running raftline system, as `start` returns it (also a context manager
    that stops everything on exit)."""

    def __init__(self, admin: str, data_dir: Path | None = None, base: str = DEFAULT_BASE,
                 secret_file: str | os.PathLike | None = None):
        self.admin = admin
        self.data_dir = data_dir
        self.base = base
        self._client = AdminClient(admin, base, secret_file)
        self.secret_file = secret_file_for(parse_admin(admin)[1])

    def status(self, timeout: float = 10.0) -> dict:
        return self._client.ask(StatusRequest(), StatusReply, timeout).status

    def leader(self, cluster: str) -> str | None:
        clusters = self.status()["clusters"]
        if cluster not in clusters:
            raise AdminError(f"unknown cluster {cluster!r} (clusters: {', '.join(sorted(clusters))})")
        return clusters[cluster]["leader"]

    def sleep(self, server: str, seconds: float) -> None:
        self._client.admin_request(Sleep(server=server, seconds=float(seconds)))

    def isolate(self, server: str, seconds: float) -> None:
        """Cut `server` off from its peers for `seconds`; it keeps ticking."""
        self._client.admin_request(Isolate(server=server, seconds=float(seconds)))

    def kill(self, server: str) -> None:
        self._client.admin_request(Kill(server=server))

    # -- reconfiguration: each call starts a job and waits until it is done ----------------

    def add_replica(self, cluster: str, *, timeout: float = 300.0, progress=None) -> str:
        """Add a replica to `cluster` (a learner until it has caught up, then a
        voter); returns its id."""
        return self.run_job(AddReplica(cluster=cluster), timeout, progress)["replicas"][0]

    def remove_replica(self, server: str, *, timeout: float = 300.0, progress=None) -> None:
        """Remove `server` from its cluster (leadership moves first when it
        leads); its process stops and its data directory is set aside."""
        self.run_job(RemoveReplica(server=server), timeout, progress)

    def add_cluster(self, replicas: int = 3, *, timeout: float = 600.0, progress=None) -> str:
        """Create a cluster of `replicas` replicas and move slots to it until
        every cluster owns an even share; returns its name."""
        return self.run_job(AddCluster(replicas=replicas), timeout, progress)["target"]

    def remove_cluster(self, cluster: str, *, timeout: float = 600.0, progress=None) -> None:
        """Move every slot off `cluster`, let its transactions settle, stop its replicas."""
        self.run_job(RemoveCluster(cluster=cluster), timeout, progress)

    def jobs(self) -> list[dict]:
        """Reconfiguration jobs, running and recently finished, oldest first."""
        return self._client.admin_request(ReconfigStatus())["jobs"]

    def run_job(self, request, timeout: float, progress=None) -> dict:
        """Start a reconfiguration job and poll it until it is done; returns the
        finished job. `progress(job)` is called whenever the job changes.
        AdminError when it is refused (busy, unknown cluster) or fails;
        Unavailable when it is still running after `timeout` (it goes on)."""
        job_id = self._client.admin_request(request)["job"]
        deadline = time.monotonic() + timeout
        last = None
        while True:
            jobs = self._client.admin_request(ReconfigStatus(job=job_id))["jobs"]
            job = jobs[0]
            if job != last and progress is not None:
                progress(job)
            last = job
            if job["state"] == "done":
                return job
            if job["state"] == "failed":
                raise AdminError(f"{job_id} failed: {job['error']}")
            if time.monotonic() > deadline:
                raise Unavailable(f"{job_id} is still running after {timeout:g} s ({job['step']}); "
                                  "it goes on in the background (raftline status shows it)")
            time.sleep(0.2)

    def wait_booted(self, timeout: float = 60.0) -> dict:
        """Block until the coordinator has booted; returns its status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status = self.status(timeout=5.0)
            except Unavailable:
                status = {}
            if status.get("clusters"):
                return status
            time.sleep(0.1)
        raise Unavailable(f"the coordinator at {self.admin} has not booted after {timeout:g} s")

    def wait_ready(self, timeout: float = 60.0) -> dict:
        """Block until every cluster has a leader; returns that status."""
        deadline = time.monotonic() + timeout
        status: dict = {}
        while time.monotonic() < deadline:
            try:
                status = self.status(timeout=5.0)
            except Unavailable:
                status = {}
            clusters = status.get("clusters", {})
            if clusters and all(c["leader"] for c in clusters.values()):
                return status
            time.sleep(0.1)
        raise Unavailable(f"the system at {self.admin} has no leader in every cluster after {timeout:g} s")

    def stop(self) -> None:
        """Stop every process of the system; leaves no process behind."""
        stop_system(self.admin, self.data_dir, self.base)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def admin_status(port: int, base: str = DEFAULT_BASE, timeout: float = 5.0):
    """Thespian's own status of the actor system whose admin listens on `port`
    (capabilities, convention leader and members), or None without an answer."""
    from thespian.system.messages.status import Thespian_StatusReq

    system = _handle(port, base, f"{LOOPBACK}:{port}")
    # As thespian.shell does: the admin's address from its host and port.
    admin = system._systemBase.transport.getAddressFromString((LOOPBACK, port))
    return system.ask(admin, Thespian_StatusReq(), timeout)


def member_registered(port: int, base: str) -> bool:
    """Whether the member whose admin listens on `port` is in a convention with its leader."""
    try:
        status = admin_status(port, base, timeout=2.0)
    except Unavailable:
        return False  # not up yet
    return status is not None and bool(status.conventionLeader) and bool(status.conventionAttendees)


def stop_member(port: int, data_dir: Path | None, base: str, grace: float) -> list[int]:
    """Shut down the member actor system on `port` with its servers; SIGKILL
    survivors. Its processes: those in its pids file and every process of its
    session (the launcher started one; the servers the leader placed here are
    forked by this member's admin, so they are in it too)."""
    pids = set(_recorded_pids(data_dir)) if data_dir is not None else set()
    pids |= session_processes(_recorded_session(data_dir, port)) | session_processes(listener_session(port))
    try:
        _handle(port, base, f"{LOOPBACK}:{port}").shutdown()
    except (Unavailable, NotAuthorized, SecretFileError):
        pass  # its processes are reaped all the same
    return _reap(sorted(pids), grace)


def session_processes(session: int) -> set[int]:
    """Every live process of session `session` (from /proc); empty for 0."""
    found = set()
    if not session:
        return found
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def listener_session(port: int) -> int:
    """The session of the processes listening on TCP `port` (an actor system's
    admin and its logger: Thespian starts the admin in a session of its own),
    or 0 when none is found."""
    listeners = _listeners(port)
    if not listeners:
        return 0
    try:
        return int((Path("/proc") / str(listeners[0]) / "stat").read_text().rsplit(")", 1)[1].split()[3])
    except OSError:
        return 0


def _listeners(port: int) -> list[int]:
    """The processes holding a socket that listens on TCP `port`, by PID."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    found = []
    for entry in sorted(Path("/proc").iterdir(), key=lambda path: path.name):
        if not entry.name.isdigit() or not inodes:
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def recorded_admin_port(data_dir: Path) -> int | None:
    """The admin port of the last system started on `data_dir`, as it recorded it (None: none recorded)."""
    try:
        return int(json.loads((Path(data_dir) / PIDS_FILE).read_text())["admin_port"]) or None
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _recorded_session(data_dir: Path | None, port: int | None = None) -> int:
    """The session of the system recorded in `data_dir` (0: none), if it ran
    on admin `port` when one is given: a data directory records only the last
    system started on it, maybe on another port."""
    try:
        recorded = json.loads((Path(data_dir) / PIDS_FILE).read_text())
        if port is not None and recorded.get("admin_port", port) != port:
            return 0
        return int(recorded.get("session", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def stop_system(admin: str, data_dir: Path | None = None, base: str = DEFAULT_BASE, grace: float = 3.0) -> list[int]:
    """Shut the system at `admin` down and SIGKILL any survivor; returns the PIDs
    that had to be killed. When nothing listens there, every process of the
    session recorded in `data_dir` (else where its secret is) is killed (the
    admin died, its system lives on); ClusterNotRunning when there is none.
    On a multi-host leader, the members' servers stop too; at a member's
    admin, that member and its servers stop."""

    host, port = parse_admin(admin)
    if not admin_listening(host, port):
        # What the system recorded may run on without its admin.
        recorded = survivors(port, data_dir)
        if not recorded:
            raise ClusterNotRunning(how_to_start(admin))
        return _reap(sorted(recorded), grace)
    status = admin_status(port, base)
    capabilities = status.capabilities if status is not None else {}
    if capabilities.get(MEMBER_CAPABILITY):
        home = capabilities.get(DATA_DIR_CAPABILITY)
        return stop_member(port, data_dir or (Path(home) if home else None), base, grace)
    # The launcher started the admin in a session of its own, and every process
    # of this host's system (logger, coordinator, servers, clerks) is forked in
    # it: the logger appears in no list, and outlived shutdown now and then.
    session = session_processes(listener_session(port))
    client = AdminClient(admin, base)
    pids: list[int] = []
    try:
        processes = client.ask(ProcessList(), AdminReply, timeout=5.0).value or {}
        data_dir = data_dir or (Path(processes["data_dir"]) if processes.get("data_dir") else None)
        pids = processes.get("pids", [])
    except Unavailable:
        pass
    if data_dir is not None:
        pids = sorted(set(pids) | set(_recorded_pids(data_dir)))
    client.system.shutdown()
    return _reap(sorted(set(pids) | session), grace)


def _recorded_pids(data_dir: Path) -> list[int]:
    try:
        return list(json.loads((Path(data_dir) / PIDS_FILE).read_text()).get("pids", []))
    except (OSError, ValueError):
        return []


def kill_recorded(data_dir: Path) -> list[int]:
    """SIGKILL every process of the system recorded in `data_dir`: for one that
    started but cannot be reached (its start failed half way)."""
    return _reap(sorted(session_processes(_recorded_session(data_dir))), 0.0)


def _reap(pids: list[int], grace: float) -> list[int]:
    """Wait up to `grace` seconds for `pids` to exit, SIGKILL the rest and wait
    for them to be gone; returns the PIDs that had to be killed."""
    pids = [pid for pid in pids if pid > 1 and pid != os.getpid()]  # never init, never this process
    _wait_gone(pids, grace)
    killed = []
    for pid in pids:
        if process_running(pid):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    _wait_gone(killed, grace)
    return killed


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(process_running(pid) for pid in pids):
        time.sleep(0.05)
