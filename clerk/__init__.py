"""raftline's client side: the clerk actor and the Python API (the `raftline` command is raftline/cli.py).

    from clerk import connect, TransactionAborted, Unavailable, ClusterNotRunning
"""

__version__ = "0.1.0"

from clerk.errors import (
    AdminError,
    ClusterNotRunning,
    NotAuthorized,
    RaftlineError,
    TransactionAborted,
    TransactionTooLarge,
    Unavailable,
)


def connect(topology=None, admin=None, secret_file=None):
    """Connect to a running raftline system (see `clerk.client.connect`)."""
    from clerk.client import connect as _connect

    return _connect(topology, admin=admin, secret_file=secret_file)


__all__ = [
    "AdminError",
    "ClusterNotRunning",
    "NotAuthorized",
    "RaftlineError",
    "TransactionAborted",
    "TransactionTooLarge",
    "Unavailable",
    "connect",
]
