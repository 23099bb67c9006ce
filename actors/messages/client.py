"""The client protocol: clerk -> database server, and server -> server across
clusters (decision pushes, status queries). One request/response shape
serves both, so a leader talking to another cluster's leader is just a
client (docs/DESIGN.md section 4).
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.messages.txn import (
    CommitOnePhase,
    CommitOnePhaseResult,
    Decide,
    DecideResult,
    InstallSlot,
    InstallSlotResult,
    LoggedRead,
    LoggedReadResult,
    Prepare,
    PrepareResult,
    ReadCheck,
    ReadCheckResult,
    ReadResult,
    WrongEpoch,
)


@dataclass(frozen=True, kw_only=True, slots=True)
class ReadKeys:
    """Read keys from the replica's applied state, without touching the log
    (a stale answer is caught later by validation).

    Fields:
        keys: the keys to read, all owned by the addressed cluster.
    """

    keys: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ReadKeysResult:
    """Answer to ReadKeys.

    Fields:
        values: one ReadResult per key, in the request's order.
    """

    values: tuple[ReadResult, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class TxnStatus:
    """Ask T's primary cluster for T's outcome (docs/DESIGN.md section 4, step 5).

    Fields:
        txid: the transaction.
        ts: its timestamp, to tell a trimmed transaction from an unknown one.
    """

    txid: str
    ts: int


@dataclass(frozen=True, kw_only=True, slots=True)
class TxnStatusResult:
    """The primary's answer to TxnStatus.

    Fields:
        txid: the transaction.
        status: TXN_COMMITTED or TXN_ABORTED (settled), or TXN_PREPARED
            (still undecided and not yet timed out: ask again later).
    """

    txid: str
    status: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Redirect:
    """The addressed replica is not the leader (a caller error: retry elsewhere).

    Fields:
        leader: the best known leader of the cluster, or None.
        term: the replica's term, so a client can ignore an older hint.
    """

    leader: str | None
    term: int


ClientOp = ReadKeys | Prepare | Decide | CommitOnePhase | ReadCheck | LoggedRead | TxnStatus | InstallSlot
ClientResult = (
    ReadKeysResult
    | PrepareResult
    | DecideResult
    | CommitOnePhaseResult
    | ReadCheckResult
    | LoggedReadResult
    | TxnStatusResult
    | InstallSlotResult
    | WrongEpoch
    | Redirect
)


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientRequest:
    """One operation inside a ClientBatch.

    Fields:
        req: the client's id for this request, unique per client.
        op: the operation.
    """

    req: int
    op: ClientOp


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientBatch:
    """Every request a client has for one replica, in one message.

    Fields:
        client: the sender's id (a clerk id, or a replica id when a leader
            asks another cluster).
        cluster: the cluster the client believes it addresses.
        epoch: the shard-map epoch the client routed by.
        requests: the requests; answered in any order, possibly across
            several ClientBatchReply messages.
    """

    client: str
    cluster: str
    epoch: int
    requests: tuple[ClientRequest, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientReply:
    """The answer to one ClientRequest.

    Fields:
        req: the request's id.
        result: the operation's result, or Redirect.
    """

    req: int
    result: ClientResult


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientBatchReply:
    """Answers for one client from one replica, batched.

    Fields:
        cluster: the answering replica's cluster.
        replica: the answering replica's id.
        term: its term when answering.
        responses: the answers.
    """

    cluster: str
    replica: str
    term: int
    responses: tuple[ClientReply, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class LeaderChange:
    """A replica won an election (docs/DESIGN.md section 2): routing changes.

    Fields:
        cluster: the cluster.
        leader: the new leader's replica id.
        term: its term.
    """

    cluster: str
    leader: str
    term: int
