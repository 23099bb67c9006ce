"""Errors raftline's Python API raises to applications (docs/DESIGN.md
section 7): the transaction's own, and the system-wide ones from
`coordinator.errors`, so `from clerk.errors import ...` finds them all."""

from coordinator.errors import AdminError, AlreadyRunning, ClusterNotRunning, RaftlineError, Unavailable


class TransactionAborted(RaftlineError):
    """The transaction was aborted (a conflict, usually): nothing it wrote is
    visible anywhere. Retry it, e.g. with `Store.transactional`."""


__all__ = ["AdminError", "AlreadyRunning", "ClusterNotRunning", "RaftlineError", "TransactionAborted", "Unavailable"]
