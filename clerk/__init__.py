"""raftline clients: the clerk actor, the Python API and the `raftline` command."""

__version__ = "0.1.0"
