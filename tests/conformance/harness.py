"""Actor systems for the conformance tests: started on loopback on a free admin port,
on either Thespian base, and stopped leaving no process behind.

Each system is started by a launcher subprocess (`start_system`), never forked from
pytest itself: a forked admin would inherit pytest's sockets (the listeners of the
outside handles of earlier tests, bound by another base) and its captured output.
Thespian's admin runs in a session of its own, which its logger and every actor
inherit; the session is recorded at start, and every process still in it after
`shutdown()` is SIGKILLed.

Nothing here installs raftline's base (`coordinator.admin.prepare_environment`
would): the stock runs must not depend on it, and run Thespian as it comes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from actors.process import process_running
from coordinator.admin import LOOPBACK, free_port, listener_session, session_processes, set_thespian_environment

STOCK_BASE = "multiprocTCPBase"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
LAUNCH_TIMEOUT = 60.0
"""Seconds a launcher may take; generous: the machine is shared."""

LOG_FILE = "system.log"

prepare_environment = set_thespian_environment
"""Thespian's environment as raftline sets it; call before the first thespian import."""


def log_definitions(directory: Path) -> dict:
    """Thespian logDefs: warnings and errors of the system go to a file in `directory`."""
    return {
        "version": 1,
        "formatters": {"plain": {"format": "%(asctime)s %(process)d %(levelname)s %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": os.fspath(directory / LOG_FILE),
                              "formatter": "plain"}},
        "root": {"handlers": ["file"], "level": "WARNING"},
    }


@dataclass
class Base:
    """The Thespian system base under test, and the capabilities every system
    and handle on it needs (raftline's base: the deployment secret file)."""

    name: str
    secret_capabilities: dict = field(default_factory=dict)
    transport: ModuleType | None = None
    """`actors.transport` for raftline's base; None for the stock one."""

    @property
    def is_stock(self) -> bool:
        return self.transport is None

    def capabilities(self, port: int, extra: dict | None = None) -> dict:
        return {"Admin Port": port, **(extra or {}), **self.secret_capabilities}

    def skip_on_stock(self, reason: str) -> None:
        if self.is_stock:
            pytest.skip(reason)


@dataclass
class RunningSystem:
    port: int
    handle: object
    """An outside ActorSystem handle on the system (transientUnique)."""

    @property
    def admin_address(self):
        return self.handle._systemBase.adminAddr

    def processes(self) -> set[int]:
        """Every live process of the system (its admin's session)."""
        return session_processes(listener_session(self.port))


class Systems:
    """Starts actor systems for one test; `stop_all` in teardown stops them
    and kills every process of theirs, and any process the test learned of."""

    def __init__(self, base: Base, directory: Path):
        self.base = base
        self.directory = directory
        self.started: list[RunningSystem] = []
        self.sessions: set[int] = set()
        self.learned_pids: set[int] = set()

    def start(self, port: int | None = None, capabilities: dict | None = None) -> RunningSystem:
        """Start a system with `capabilities` besides its admin port (default: a free one)."""
        port = port or free_port()
        all_capabilities = self.base.capabilities(port, capabilities)
        log_dir = self.directory / f"system-{port}"
        log_dir.mkdir()
        try:
            with open(log_dir / "launcher.log", "wb") as output:
                launcher = subprocess.run(
                    [sys.executable, "-m", "tests.conformance.start_system", self.base.name, repr(all_capabilities),
                     os.fspath(log_dir)],
                    stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT,
                    timeout=LAUNCH_TIMEOUT,
                )
        finally:
            # Recorded even when the launcher failed: its admin may run all the same.
            self.sessions.add(listener_session(port))
        if launcher.returncode != 0:
            pytest.fail(f"the actor system on port {port} failed to start:\n"
                        f"{(log_dir / 'launcher.log').read_text(errors='replace')}")
        system = RunningSystem(port, self.handle(port))
        self.started.append(system)
        return system

    def handle(self, port: int):
        """A new outside handle on the running system at `port`."""
        from thespian.actors import ActorSystem

        return ActorSystem(self.base.name, self.base.capabilities(port), transientUnique=True)

    def learn_pid(self, pid: int) -> None:
        self.learned_pids.add(pid)

    def stop_all(self) -> None:
        try:
            # Members before their convention leader.
            for system in reversed(self.started):
                system.handle.shutdown()
        finally:
            pids = set(self.learned_pids)
            for session in self.sessions:
                pids |= session_processes(session)
            pids -= {os.getpid()}
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            all_gone = wait_for(lambda: not any(process_running(pid) for pid in pids), timeout=10.0, fail=False)
            assert all_gone, f"processes left behind: {sorted(pid for pid in pids if process_running(pid))}"


def wait_for(condition, timeout: float = 20.0, interval: float = 0.05, fail: bool = True):
    """Poll `condition` until it returns something truthy and return that; after
    `timeout`, fail the test (or return the last value when `fail` is False)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            break
        time.sleep(interval)
    if not value and fail:
        pytest.fail(f"condition not met within {timeout:g} s")
    return value


def ask(handle, address, message, expect: type, timeout: float = 10.0):
    """Ask `address` through `handle`; the reply, which must be an `expect`."""
    reply = handle.ask(address, message, timeout)
    assert isinstance(reply, expect), f"asked {type(message).__name__}, expected {expect.__name__}, got {reply!r}"
    return reply


def process_gone(pid: int) -> bool:
    return not process_running(pid)


# -- processes and sockets, from /proc ---------------------------------------------------


def raw_connection(port: int, timeout: float = 5.0) -> socket.socket:
    """A plain TCP connection to `port` on loopback, bypassing any transport."""
    return socket.create_connection((LOOPBACK, port), timeout=timeout)


def listening_addresses(pids: set[int]) -> set[str]:
    """"HOST:PORT" of every TCP socket in LISTEN state held by one of `pids`."""
    sockets = _listening_sockets()
    return {sockets[inode] for pid in pids for inode in _socket_inodes(pid) if inode in sockets}


def _listening_sockets() -> dict[str, str]:
    """Every TCP socket in LISTEN state: its inode -> "HOST:PORT"."""
    found = {}
    for table, decode in (("/proc/net/tcp", _ipv4), ("/proc/net/tcp6", _ipv6)):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A":  # LISTEN
                host, port = fields[1].split(":")
                found[fields[9]] = f"{decode(host)}:{int(port, 16)}"
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    except OSError:
        pass  # exited meanwhile, or not ours to read
    return inodes


def _ipv4(hex_address: str) -> str:
    return socket.inet_ntop(socket.AF_INET, bytes.fromhex(hex_address)[::-1])


def _ipv6(hex_address: str) -> str:
    # /proc prints the address as four host-order 32-bit words.
    raw = bytes.fromhex(hex_address)
    return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
