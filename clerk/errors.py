"""Errors raftline's Python API raises to applications (docs/DESIGN.md
section 7): the transaction's own, and the system-wide ones from
`coordinator.errors`, so `from clerk.errors import ...` finds them all."""

from coordinator.errors import AdminError, AlreadyRunning, ClusterNotRunning, NotAuthorized, RaftlineError, Unavailable


class TransactionAborted(RaftlineError):
    """The transaction was aborted (a conflict, usually): nothing it wrote is
    visible anywhere. Retry it, e.g. with `Store.transactional`."""


class TransactionTooLarge(RaftlineError):
    """The transaction writes more to one cluster than one log entry holds
    (48,000 bytes of its encoding): it can never commit, so nothing was sent
    and it is never retried. Split it into smaller transactions."""


__all__ = ["AdminError", "AlreadyRunning", "ClusterNotRunning", "NotAuthorized", "RaftlineError", "TransactionAborted",
           "TransactionTooLarge", "Unavailable"]
