"""The fault scheduler of `raftline verify`: faults injected into a running system while its workload runs.

Rules and invariants:
- Kinds: `sleep` (a leader or a follower goes silent for 1-3 s, then
  repairs its log), `isolate` (a leader or a follower is cut off from its
  peers for 1-3 s but keeps ticking: PreVote must keep it from disrupting
  the cluster when it returns), `kill` (SIGKILL a server; the coordinator restarts it),
  `clerk` (SIGKILL one client process and its clerk actor mid-run, as when
  the client's machine dies; the runner records its open operation as
  `info` and the servers recover the clerk's transaction). `all` is every kind, mixed at random.
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

import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

FAULT_KINDS = ("sleep", "isolate", "kill", "clerk")
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
        kind: "sleep", "isolate", "kill" or "clerk".
        target: the server name, or for "clerk" the client's process number.
        role: the server's role when chosen ("leader", "follower"); "" for a clerk.
        seconds: how long a sleep or an isolation lasts; 0 otherwise.
        time: when it was injected (monotonic ns); 0 while only chosen.
    """

    kind: str
    target: str | int
    role: str = ""
    seconds: float = 0.0
    time: int = 0

    def describe(self) -> str:
        if self.kind == "clerk":
            return f"clerk: killed client process {self.target} and its clerk"
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
            try:
                fault = choose_fault(self.rng, self.kinds, cluster.status(), self.clients())
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
        else:
            self.kill_client(fault.target)
        self.injected.append(
            Fault(
                kind=fault.kind, target=fault.target, role=fault.role, seconds=fault.seconds, time=time.monotonic_ns()
            )
        )
