"""Small helpers shared by the actor shells (server, coordinator, clerk)."""

from __future__ import annotations

import os

DATA_DIR_CAPABILITY = "raftline data dir"
"""The actor-system capability naming the host's raftline data directory."""


def on_required_node(capabilities: dict, requirements: dict | None) -> bool:
    """An actor's `actorSystemCapabilityCheck` for placement by host: Thespian
    asks each actor system of the convention, and only the one whose `node`
    capability matches the `node` requirement (if any) takes the actor."""
    node = (requirements or {}).get("node")
    return node is None or capabilities.get("node") == node


def set_process_title(title: str) -> None:
    """Give this actor's process a readable title in `ps` (setproctitle is a dependency)."""
    import setproctitle

    setproctitle.setproctitle(title)


def process_running(pid: int) -> bool:
    """Whether process `pid` runs (a zombie does not); reaps it when it is a
    dead child of the caller, which Thespian does not always do."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child, or already reaped
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
