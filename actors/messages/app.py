"""The application and its clerk: the Python API's process talks to its clerk
actor through `ActorSystem.ask` (docs/DESIGN.md section 7).
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.messages.txn import ReadResult, Stamp


@dataclass(frozen=True, kw_only=True, slots=True)
class ClerkOpen:
    """The application's first message to its new clerk.

    Fields:
        owner_pid: the application's process id; the clerk exits when that
            process is gone (an application that died without closing).
        coordinators: every coordinator replica's address: the clerk
            subscribes to each, so whichever acts sends it MapUpdates.
    """

    owner_pid: int
    coordinators: tuple[object, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class ClerkOpenReply:
    """The clerk's answer to ClerkOpen.

    Fields:
        pid: the clerk actor's process id (fault injection kills it to test
            recovery from a clerk that dies mid-transaction).
    """

    pid: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ClerkRead:
    """Read keys at their leaders.

    Fields:
        req: the application's request id, echoed in the reply.
        keys: the keys.
    """

    req: int
    keys: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ClerkGet:
    """Read keys as one read-only transaction, validated where it is read:
    `Store.get`, in one round trip to each owning leader. "aborted" means
    the read met a concurrent writer; a ClerkRead then ClerkCommit reads it.

    Fields:
        req: the application's request id, echoed in the reply.
        keys: the keys.
    """

    req: int
    keys: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ClerkCommit:
    """Commit a transaction: versions read, writes and deletes buffered by the application.

    Fields:
        req: the application's request id, echoed in the reply.
        reads: key -> version stamp read.
        writes: key -> JSON value.
        deletes: keys deleted.
    """

    req: int
    reads: dict[str, Stamp]
    writes: dict[str, object]
    deletes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class ClerkReply:
    """The clerk's answer to ClerkRead, ClerkGet or ClerkCommit.

    Fields:
        req: the request answered.
        outcome: "ok" (read done / committed), "aborted", "unavailable", or
            "too_large" (a commit that can never fit one log entry; nothing sent).
        values: for a read or a get, key -> ReadResult.
        txid: for a commit or a get, the transaction's id.
        reason: why, when not ok.
        hops: messages on this operation's critical path (the application's
            ask included), as counted by clerk.session.CriticalPath; benchmarks
            multiply it by the measured cost of one message.
    """

    req: int
    outcome: str
    values: dict[str, ReadResult] | None = None
    txid: str = ""
    reason: str = ""
    hops: int = 0
