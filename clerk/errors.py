"""Errors raftline's Python API raises to applications (DESIGN.md section 7).

Caller-facing errors only: each says what happened and what to do. Bugs
(invariant violations) are not represented here: they crash the actor that
found them, and its supervisor restarts it.
"""


class RaftlineError(Exception):
    """Base class of every error raftline raises to an application."""


class TransactionAborted(RaftlineError):
    """The transaction was aborted (a conflict, usually): nothing it wrote is
    visible anywhere. Retry it, e.g. with `Store.transactional`."""


class Unavailable(RaftlineError):
    """The operation could not be completed in its time budget (no leader
    answered, or the system is overloaded). For a commit, the outcome is not
    known only when the message says so."""


class ClusterNotRunning(RaftlineError):
    """No raftline system answers at the admin address; the message says how to start one."""


class AlreadyRunning(RaftlineError):
    """A system (or another program) already listens on the admin port."""


class AdminError(RaftlineError):
    """The coordinator refused an administrative request (unknown server, busy, ...)."""
