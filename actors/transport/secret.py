"""The deployment secret: 32 random bytes that every process of one raftline
deployment, and every client of it, holds (docs/DESIGN.md section 13).

It lives in a file readable only by its owner, never in the environment,
where child processes and /proc/<pid>/environ would expose it. Processes
are given the file's path (the SECRET_CAPABILITY of their actor system);
actors are forked and inherit the bytes in memory.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from actors.transport.wire import SECRET_BYTES

SECRET_FILE = "secret"
"""The secret's file name in a data directory."""


class SecretFileError(Exception):
    """The secret file is missing, unsafe or malformed (one clear line)."""


def create_secret(path: str | os.PathLike) -> Path:
    """Write a new random secret to `path` (created owner-only; an existing
    file is an error, so no running deployment's secret is ever replaced)."""
    return _write_new(Path(path), secrets.token_bytes(SECRET_BYTES))


def _write_new(path: Path, secret: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SecretFileError(f"{path} exists already; a deployment's secret is never replaced") from None
    with os.fdopen(descriptor, "w") as file:
        file.write(secret.hex() + "\n")
    return path


def keep_secret(kept: str | os.PathLike, given: str | os.PathLike | None) -> Path:
    """A member host's copy of the deployment secret at `kept`, written from
    `given` the first time; later `given` may be left out, and a different
    one is refused (this host's servers and tools use the kept one)."""
    kept = Path(kept)
    if given is None:
        if not kept.exists():
            raise SecretFileError(f"this host has no copy of the deployment secret: give --secret-file F, "
                                  f"a copy of `{SECRET_FILE}` in the leader's data directory")
        read_secret(kept)
        return kept
    secret = read_secret(given)
    if not kept.exists():
        return _write_new(kept, secret)
    if read_secret(kept) != secret:
        raise SecretFileError(f"{kept} holds another deployment's secret than {given}")
    return kept


def ensure_secret(path: str | os.PathLike) -> Path:
    """The secret at `path`, created first if there is none."""
    path = Path(path)
    if not path.exists():
        create_secret(path)
    read_secret(path)
    return path


def read_secret(path: str | os.PathLike) -> bytes:
    path = Path(path)
    try:
        status = path.stat()
        text = path.read_text().strip()
    except FileNotFoundError:
        raise SecretFileError(f"no deployment secret at {path}") from None
    except OSError as error:
        raise SecretFileError(f"cannot read the deployment secret {path}: {error.strerror}") from None
    if status.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretFileError(f"the deployment secret {path} is readable by others: `chmod 600 {path}`")
    if status.st_uid != os.getuid():
        raise SecretFileError(f"the deployment secret {path} belongs to another user")
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != SECRET_BYTES:
        raise SecretFileError(f"{path} is not a raftline secret ({SECRET_BYTES * 2} hex digits)")
    return secret
