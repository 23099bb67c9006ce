"""What bench and verify share to run clients against a system: the system,
the client processes, and progress on stderr.

Rules and invariants:
- Without --admin a run starts its own system (C clusters x R replicas, the
  default deployment's settings otherwise) in a temporary directory on a
  free port and always stops it; with --admin it uses the running one.
- Each client is its own OS process (`python3 -m MODULE SPEC.json`) with its
  own Store and clerk. It says on stdout "ready [CLERK_PID]" once connected,
  "ops N" as it goes and "done N" at its deadline; it starts on a "go" line
  on stdin, and stdin closing tells it to close its store and exit.
- Everything is bounded: a client has CLIENT_START_TIMEOUT to connect and
  CLIENT_GRACE_SECONDS past the run's deadline to finish.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

TICK_MS = 50
DEFAULT_CLUSTERS = 3
PRELOAD_BATCH = 50
"""Keys per preload transaction: keeps each Prepare far under Thespian's message limit."""
CLIENT_START_TIMEOUT = 60.0
CLIENT_GRACE_SECONDS = 90.0
"""How long past its deadline a client may take: a commit may wait out the clerk's 30 s budget."""
PROGRESS_INTERVAL = 0.2


# -- the system ----------------------------------------------------------------------------------


def topology_text(clusters: int, replicas: int, election_ms: tuple[int, int] = (300, 600)) -> str:
    """A topology like the embedded default, with C clusters x R replicas and
    the election timeout converted to ticks."""
    low, high = max(1, round(election_ms[0] / TICK_MS)), max(2, round(election_ms[1] / TICK_MS))
    high = max(high, low + 1)
    heartbeat = 2 if low > 2 else 1  # a heartbeat must come well within the shortest timeout
    lines = ["admin_port: 0", "data_dir: ./data", "slots: 64", "clusters:"]
    lines += [f"  c{number}: {{replicas: {replicas}}}" for number in range(1, clusters + 1)]
    lines += [
        "raft:",
        f"  tick_ms: {TICK_MS}",
        f"  heartbeat_ticks: {heartbeat}",
        f"  election_ticks: [{low}, {high}]",
        "  snapshot_entries: 10000",
        "transactions:",
        "  prepare_timeout_ms: 2000",
        "  read_from: leader",
        "storage:",
        "  engine: sqlite",
        "  fsync: true",
    ]
    return "\n".join(lines) + "\n"


@contextmanager
def system_for_run(directory: Path, *, admin: str | None, clusters: int, replicas: int, election_ms=(300, 600)):
    """The running system at `admin`, else a new one in `directory` that is stopped on exit."""
    from coordinator.admin import Cluster
    from coordinator.system import start

    if admin is not None:
        yield Cluster(admin)
        return
    directory.mkdir(parents=True, exist_ok=True)
    topology = directory / "topology.yaml"
    topology.write_text(topology_text(clusters, replicas, election_ms))
    progress_line(f"starting {clusters} cluster(s) x {replicas} replicas ...")
    cluster = start(topology, data_dir=directory / "data", admin_port=0)
    try:
        yield cluster
    finally:
        cluster.stop()


def preload(store, keys: list[str], value) -> None:
    """Put `value` into every key, PRELOAD_BATCH keys per transaction."""
    for begin in range(0, len(keys), PRELOAD_BATCH):
        with store.transaction() as txn:
            for key in keys[begin : begin + PRELOAD_BATCH]:
                txn.put(key, value)


# -- progress ------------------------------------------------------------------------------------


def progress_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class ProgressBar:
    """`[#####.....] 4.2/10 s  1234 ops` on stderr: redrawn in place on a
    terminal, a line every couple of seconds otherwise."""

    def __init__(self, label: str, total: float):
        self.label = label
        self.total = total
        self.tty = sys.stderr.isatty()
        self.last_line = -math.inf

    def show(self, elapsed: float, ops: int) -> None:
        line = self._line(elapsed, ops)
        if self.tty:
            print("\r" + line, end="", file=sys.stderr, flush=True)
        elif elapsed < self.total and time.monotonic() - self.last_line >= 2.0:
            # The line at the end is close()'s: a full bar is printed once.
            print(line, file=sys.stderr, flush=True)
            self.last_line = time.monotonic()

    def close(self, elapsed: float, ops: int) -> None:
        line = self._line(elapsed, ops)
        print(("\r" if self.tty else "") + line, file=sys.stderr, flush=True)

    def _line(self, elapsed: float, ops: int) -> str:
        filled = min(10, int(10 * elapsed / self.total))
        return (f"{self.label} [{'#' * filled}{'.' * (10 - filled)}] {min(elapsed, self.total):.1f}/{self.total:g} s"
                f"  {ops} ops")


# -- client processes ----------------------------------------------------------------------------


@dataclass(kw_only=True, slots=True)
class ClientHandle:
    """One client process as the driver sees it.

    Fields:
        number: its number in the run.
        process: the OS process.
        result: where it writes its records.
        stderr: where its stderr goes.
        ops: operations it reported done so far.
        ready, done: its "ready" and "done" lines arrived.
        clerk_pid: its clerk actor's process id, when its "ready" line gave it.
    """

    number: int
    process: subprocess.Popen
    result: Path
    stderr: Path
    ops: int = 0
    ready: bool = False
    done: bool = False
    clerk_pid: int = 0

    def follow(self) -> None:
        """Read the client's stdout lines until it closes (runs in a thread)."""
        for line in self.process.stdout:
            word, _, value = line.strip().partition(" ")
            if word == "ready":
                self.clerk_pid = int(value or 0)
                self.ready = True
            elif word == "ops":
                self.ops = int(value)
            elif word == "done":
                self.ops = int(value or self.ops)
                self.done = True

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()


def start_client(module: str, number: int, spec: dict, directory: Path, result: Path) -> ClientHandle:
    """Start client `number` of a run: `python3 -m module SPEC.json`, its spec
    and stderr kept in `directory`, its records written to `result`."""
    spec_path = directory / f"client-{number}.spec.json"
    spec_path.write_text(json.dumps(spec))
    stderr = directory / f"client-{number}.stderr"
    with open(stderr, "w") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", module, os.fspath(spec_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    handle = ClientHandle(number=number, process=process, result=result, stderr=stderr)
    threading.Thread(target=handle.follow, daemon=True).start()
    return handle


def check_running(handles: Iterable[ClientHandle]) -> None:
    """RuntimeError naming the first client that exited before saying "done", with its last stderr line."""
    for handle in handles:
        if not handle.done and handle.process.poll() is not None:
            lines = handle.stderr.read_text().strip().splitlines()
            raise RuntimeError(
                f"client {handle.number} exited with status {handle.process.returncode}: "
                f"{lines[-1] if lines else 'no output'}"
            )


def wait_until_connected(handles: list[ClientHandle]) -> None:
    deadline = time.monotonic() + CLIENT_START_TIMEOUT
    while not all(handle.ready for handle in handles):
        check_running(handles)
        if time.monotonic() > deadline:
            raise TimeoutError(f"clients did not connect within {CLIENT_START_TIMEOUT:g} s")
        time.sleep(0.05)


def stop_client(handle: ClientHandle) -> None:
    """Close its stdin (it then closes its store and exits); kill it if it does not."""
    try:
        handle.process.stdin.close()
    except OSError:
        pass
    try:
        handle.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        handle.process.kill()
        handle.process.wait()
