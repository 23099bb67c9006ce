"""Small helpers shared by the actor shells (server, coordinator, clerk)."""

from __future__ import annotations


def set_process_title(title: str) -> None:
    """Give this actor's process a readable title in `ps` (setproctitle is a dependency)."""
    import setproctitle

    setproctitle.setproctitle(title)
