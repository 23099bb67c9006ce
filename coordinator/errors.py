"""Errors raftline raises to the people and programs that use it
(docs/DESIGN.md section 7).

Caller-facing errors only: each says what happened and what to do. Bugs
(invariant violations) are not represented here: they crash the actor that
found them, and its supervisor restarts it. They live in the coordinator
layer because both the operator API (`coordinator.admin`) and the clerk
raise them; `clerk.errors` adds the transaction's own and re-exports these.
"""


class RaftlineError(Exception):
    """Base class of every error raftline raises to an application."""


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


class NotAuthorized(RaftlineError):
    """The system refused this process's deployment secret (or is not on raftline's transport)."""
