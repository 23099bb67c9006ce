"""The fault scheduler of `raftline verify`: faults injected into a running system while its workload runs.

Rules and invariants:
- Kinds: `sleep` (a leader or a follower goes silent for 1-3 s, then
  repairs its log), `isolate` (a leader or a follower is cut off from its
  peers for 1-3 s but keeps ticking: PreVote must keep it from disrupting
  the cluster when it returns), `kill` (SIGKILL a server; the coordinator restarts it),
  `clerk` (SIGKILL one client process and its clerk actor mid-run, as when
  the client's machine dies; the runner records its open operation as
  `info` and the servers recover the clerk's transaction), `coordinator`
  (SIGKILL the acting coordinator replica; another takes over and re-creates
  it), `admin` (SIGKILL the Thespian admin, once: the store serves on, but
  nothing new can attach, so from then on killed clients are not replaced
  and `clerk` faults stop; a dead coordinator replica is not re-created
  either, since that goes through the admin's global names). `all` is every
  kind, mixed at random.
- One fault every FAULT_INTERVAL seconds, the first after FIRST_FAULT_DELAY.
  What and whom is drawn from the injected `random.Random` alone; only the
  status it is shown (and so the moment) varies between runs.
- A server fault targets only a cluster whose replicas are all alive and
  awake: faults never overlap inside one cluster, so each cluster keeps a
  majority and the run measures correctness under faults, not a cluster
  that is down. When no target qualifies, the turn passes.
- `choose_fault` is pure; `FaultScheduler` applies its choices from a
  background thread with its own admin handle (Thespian handles are not
  shared between threads).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from actors.process import process_running

FAULT_KINDS = ("sleep", "isolate", "kill", "clerk", "coordinator", "admin")
PROCESS_KINDS = ("coordinator", "admin")
"""Faults that SIGKILL a process of this host by its PID."""
TIMED_KINDS = ("sleep", "isolate")
FAULT_INTERVAL = 1.5
FIRST_FAULT_DELAY = 0.5
SLEEP_SECONDS = (1.0, 3.0)


class FaultUsageError(ValueError):
    """A --faults value that names no known fault."""


def parse_faults(text: str) -> tuple[str, ...]:
    """The kinds --faults names: "none" -> (), "all" -> every kind, else a comma-separated list."""
    if text == "none":
        return ()
    if text == "all":
        return FAULT_KINDS
    kinds = tuple(part.strip() for part in text.split(","))
    unknown = [kind for kind in kinds if kind not in FAULT_KINDS]
    if unknown or not kinds:
        raise FaultUsageError(
            f"--faults expects none, all or a comma-separated list of {', '.join(FAULT_KINDS)}; got {text!r}"
        )
    return tuple(dict.fromkeys(kinds))


@dataclass(frozen=True, kw_only=True, slots=True)
class Fault:
    """One fault, chosen or injected.

    Fields:
        kind: one of FAULT_KINDS.
        target: the server or coordinator replica, the client's process
            number for "clerk", "admin" for the admin.
        role: the server's role when chosen ("leader", "follower"); "" for a clerk.
        seconds: how long a sleep or an isolation lasts; 0 otherwise.
        time: when it was injected (monotonic ns); 0 while only chosen.
    """

    kind: str
    target: str | int
    role: str = ""
    seconds: float = 0.0
    time: int = 0
    pid: int = 0

    def describe(self) -> str:
        if self.kind == "clerk":
            return f"clerk: killed client process {self.target} and its clerk"
        if self.kind == "coordinator":
            return f"coordinator: killed the acting replica {self.target} (pid {self.pid})"
        if self.kind == "admin":
            return f"admin: killed the Thespian admin (pid {self.pid})"
        extra = f" for {self.seconds:.1f} s" if self.kind in TIMED_KINDS else ""
        return f"{self.kind}: {self.role} {self.target}{extra}"


def healthy_servers(status: dict) -> list[tuple[str, str]]:
    """(server, role) of every replica in a cluster whose replicas are all alive, awake and connected."""
    servers = []
    for name in sorted(status.get("clusters", {})):
        replicas = status["clusters"][name]["replicas"]
        if all(info["alive"] and not info["asleep"] and not info.get("isolated") for info in replicas.values()):
            servers += [(server, replicas[server]["role"]) for server in sorted(replicas)]
    return servers


def choose_fault(rng: random.Random, kinds: Sequence[str], status: dict, clients: Sequence[int]) -> Fault | None:
    """The next fault: a kind drawn from `kinds`, then its target; None when none qualifies."""
    if not kinds:
        return None
    kind = rng.choice(list(kinds))
    if kind == "clerk":
        return Fault(kind="clerk", target=rng.choice(list(clients))) if clients else None
    if kind == "coordinator":
        group = status.get("coordinator") or {}
        replicas = group.get("replicas", {})
        if len(replicas) < 2 or any(info["role"] == "down" for info in replicas.values()):
            return None  # one replica down already: another death would cost the group its quorum
        leader = group["leader"]
        return Fault(kind="coordinator", target=leader, role="leader", pid=replicas[leader]["pid"])
    if kind == "admin":
        return Fault(kind="admin", target="admin", pid=status.get("admin_pid", 0))
    servers = healthy_servers(status)
    if not servers:
        return None
    # A leader and a follower are equally likely, although a cluster has more followers.
    role = rng.choice(("leader", "follower"))
    candidates = [server for server, server_role in servers if server_role == role] or [s for s, _ in servers]
    server = rng.choice(candidates)
    role = dict(servers)[server]
    seconds = round(rng.uniform(*SLEEP_SECONDS), 2) if kind in TIMED_KINDS else 0.0
    return Fault(kind=kind, target=server, role=role, seconds=seconds)


class FaultScheduler:
    """Injects faults into the system at `admin` from a background thread until stopped.

    `clients()` lists the client processes that may be killed;
    `kill_client(number)` kills one (the runner records its open operation).
    """

    def __init__(
        self,
        admin: str,
        kinds: Sequence[str],
        rng: random.Random,
        *,
        clients: Callable[[], list[int]],
        kill_client: Callable[[int], None],
        interval: float = FAULT_INTERVAL,
    ):
        self.admin = admin
        self.kinds = tuple(kinds)
        self.rng = rng
        self.clients = clients
        self.kill_client = kill_client
        self.interval = interval
        self.injected: list[Fault] = []
        self.errors: list[str] = []
        self.admin_dead = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faults", daemon=True)

    def start(self) -> None:
        if self.kinds:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def counts(self) -> dict[str, int]:
        return {kind: sum(1 for fault in self.injected if fault.kind == kind) for kind in self.kinds}

    def _run(self) -> None:
        from clerk.errors import RaftlineError
        from coordinator.admin import Cluster

        cluster = Cluster(self.admin)
        delay = FIRST_FAULT_DELAY
        while not self._stop.wait(delay):
            delay = self.interval
            # Without the admin, a killed client cannot be replaced, nor the admin killed twice.
            kinds = [kind for kind in self.kinds if not (self.admin_dead and kind in ("clerk", "admin"))]
            try:
                fault = choose_fault(self.rng, kinds, cluster.status(), self.clients())
                if fault is not None:
                    self._inject(cluster, fault)
            except RaftlineError as error:
                # A busy coordinator or a server that just died is part of the weather: note it, go on.
                self.errors.append(str(error))

    def _inject(self, cluster, fault: Fault) -> None:
        if fault.kind == "sleep":
            cluster.sleep(fault.target, fault.seconds)
        elif fault.kind == "isolate":
            cluster.isolate(fault.target, fault.seconds)
        elif fault.kind == "kill":
            cluster.kill(fault.target)
        elif fault.kind in PROCESS_KINDS:
            if not process_running(fault.pid):
                self.errors.append(f"{fault.kind}: pid {fault.pid} does not run on this host; not injected")
                return
            os.kill(fault.pid, signal.SIGKILL)
            self.admin_dead = self.admin_dead or fault.kind == "admin"
        else:
            self.kill_client(fault.target)
        self.injected.append(replace(fault, time=time.monotonic_ns()))

    def notes(self) -> list[str]:
        """What the run could not do because of the faults it injected."""
        if not self.admin_dead:
            return []
        return ["after the admin's death nothing new could attach: killed clients were not replaced and no "
                "clerk fault followed; a dead coordinator replica could not be re-created (global names)"]
