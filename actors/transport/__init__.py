"""raftline's own Thespian system base: every raftline process talks over
persistent, authenticated TCP connections (docs/DESIGN.md section 13).

    install()                     # once per process, before the first ActorSystem()
    ActorSystem(BASE_NAME, {"Admin Port": port, SECRET_CAPABILITY: "data/secret"})

Thespian finds a base by importing `thespian.system.<name>`; `install`
registers this package's base under that name without touching Thespian's
files. Forked actors inherit the registration. Importing this package does
not import Thespian (whose environment must be set first).
"""

import sys

from actors.transport.secret import (
    SECRET_FILE,
    SecretFileError,
    create_secret,
    ensure_secret,
    keep_secret,
    read_secret,
)

BASE_NAME = "raftlineTCPBase"

SECRET_CAPABILITY = "raftline secret file"
"""Capability naming the deployment secret's file (its path, never its bytes)."""


class AuthenticationFailed(Exception):
    """An outside process could not authenticate with the actor system it
    addressed: the system holds a different secret, or is not on raftline's
    transport. Raised out of ActorSystem(...) and ask()."""


def install() -> None:
    """Make `ActorSystem(BASE_NAME, ...)` find raftline's base, and tune
    Thespian for it (`thespian_tuning`); idempotent."""
    from actors.transport import base, thespian_tuning

    sys.modules.setdefault(f"thespian.system.{BASE_NAME}", base)
    thespian_tuning.apply()


def write_now(actor) -> None:
    """Write what `actor` has sent so far to its sockets now, instead of when
    its handler returns (a leader's AppendLogs before its own fsync). A no-op
    on another base, which has no such call."""
    transport = getattr(getattr(actor, "_myRef", None), "transport", None)
    flush_now = getattr(transport, "flush_now", None)
    if flush_now is not None:
        flush_now()


__all__ = [
    "BASE_NAME",
    "SECRET_CAPABILITY",
    "SECRET_FILE",
    "AuthenticationFailed",
    "SecretFileError",
    "create_secret",
    "ensure_secret",
    "install",
    "keep_secret",
    "read_secret",
    "write_now",
]
