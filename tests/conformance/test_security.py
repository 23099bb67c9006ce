"""What raftline's base adds to the stock one (README, Security): its listeners bind
only the advertised address; a connection that has not proven it knows the
deployment secret is refused before anything it sent is unpickled, be it a crafted
pickle, a stock Thespian frame or garbage; an outside process with another secret
fails with AuthenticationFailed; and none of this stops the system answering.
The stock base does none of the first three, so those checks run on raftline's only."""

from __future__ import annotations

import os
import pickle
import random
import shlex
import socket
import struct
import subprocess
import sys
from pathlib import Path

from thespian.system.messages.status import Thespian_StatusReq, Thespian_SystemStatus
from thespian.system.transport.streamBuffer import toSendBuffer

from tests.conformance.actors_for_tests import ConfChildReport, ConfEcho, ConfParent, ConfPing, ConfPong, ConfSpawnChild
from tests.conformance.harness import LOOPBACK, PROJECT_ROOT, ask, listening_addresses, raw_connection

FORGED_MAC = bytes(16)
BAD_CONNECTIONS = 50


def system_answers(system) -> None:
    """The admin answers a status request and creates an actor that answers."""
    ask(system.handle, system.admin_address, Thespian_StatusReq(), Thespian_SystemStatus)
    ask(system.handle, system.handle.createActor(ConfEcho), ConfPing(), ConfPong)


def test_listeners_bind_only_the_advertised_address(base, system):
    base.skip_on_stock("stock base listens on every interface")
    parent = system.handle.createActor(ConfParent)
    ask(system.handle, parent, ConfSpawnChild(), ConfChildReport)  # actors listen too, not only the admin

    addresses = listening_addresses(system.processes())

    assert sorted(address for address in addresses if not address.startswith(f"{LOOPBACK}:")) == []
    assert f"{LOOPBACK}:{system.port}" in addresses


class RunsCommand:
    """Unpickling it runs `command` in a shell."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class CreatesFile:
    """Unpickling it creates the file at `path`."""

    def __init__(self, path: Path):
        self.path = os.fspath(path)

    def __reduce__(self):
        return open, (self.path, "w")


def send_raw(port: int, data: bytes) -> None:
    """Send `data` on a connection of its own, then wait until the server closes it
    (at most 5 s): by then the server has done with it whatever it does."""
    with raw_connection(port) as connection:
        try:
            connection.sendall(data)
            connection.shutdown(socket.SHUT_WR)
            while connection.recv(65536):
                pass
        except OSError:
            pass  # refused and closed while we were still sending, or timed out


def test_unauthenticated_pickles_are_never_unpickled(base, system, tmp_path):
    base.skip_on_stock("stock base executes unauthenticated pickles")
    markers = [tmp_path / f"marker-{number}" for number in range(4)]
    attacks = [
        toSendBuffer((None, RunsCommand(f"touch {shlex.quote(os.fspath(markers[0]))}"))),  # stock Thespian's framing
        pickle.dumps(RunsCommand(f"touch {shlex.quote(os.fspath(markers[1]))}")),
        pickle.dumps(CreatesFile(markers[2])),
    ]
    forged = pickle.dumps(CreatesFile(markers[3]))
    attacks.append(struct.pack(">I", len(forged)) + FORGED_MAC + forged)  # raftline's framing, no handshake

    for attack in attacks:
        send_raw(system.port, attack)

    system_answers(system)
    assert [marker.name for marker in markers if marker.exists()] == []


def test_outside_process_with_another_secret_is_refused(base, system, tmp_path):
    base.skip_on_stock("stock base has no secret")
    other_secret = tmp_path / "other-secret"
    base.transport.create_secret(other_secret)
    stdout, stderr = tmp_path / "attach.out", tmp_path / "attach.err"

    # Output to files: should the outside process start an actor system, its admin inherits them.
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        attach = subprocess.run(
            [sys.executable, "-m", "tests.conformance.attach_with_secret", str(system.port), os.fspath(other_secret)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=PROJECT_ROOT, timeout=60,
        )

    printed = stdout.read_text()
    assert attach.returncode != 0 and printed.startswith("AuthenticationFailed"), (
        f"exit {attach.returncode}, printed {printed!r}, stderr:\n{stderr.read_text()}")
    system_answers(system)


def bad_frames() -> list[bytes]:
    """What a confused or hostile client might send first, in both bases' framings."""
    rng = random.Random(7)
    truncated_stock = toSendBuffer((None, "x" * 1000))
    return [
        rng.randbytes(rng.randint(1, 4096)),  # garbage
        b"\xff\xff\xff\xff" + FORGED_MAC + rng.randbytes(64),  # raftline framing, oversize length
        b"4294967295>" + rng.randbytes(64),  # stock framing, oversize length
        struct.pack(">I", 1000) + FORGED_MAC + b"x" * 100,  # raftline framing, truncated
        truncated_stock[:len(truncated_stock) // 2],  # stock framing, truncated
        b"",  # connect and say nothing
    ]


def test_system_answers_after_bad_frames(system):
    frames = bad_frames()
    connections = [raw_connection(system.port) for _ in range(BAD_CONNECTIONS)]
    try:
        for number, connection in enumerate(connections):
            try:
                connection.sendall(frames[number % len(frames)])
            except OSError:
                pass  # already refused
        system_answers(system)  # while the bad connections are still open
    finally:
        for number, connection in enumerate(connections):
            if number % 2:
                # Abort (RST) rather than close: the peer vanishes mid-frame.
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()
    system_answers(system)
