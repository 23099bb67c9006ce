"""The Stores of one application process share one clerk (clerk/client.py):
threads each open their own Store, the system runs one clerk for them all,
the last Store to close ends it, and a Store opened after it died gets a new one."""

from __future__ import annotations

import os
import signal
import threading
import time

from actors.process import process_running
from clerk.client import connect
from tests.integration.conftest import wait_for


def test_the_stores_of_one_process_share_one_clerk_until_the_last_closes(cluster):
    first = connect(admin=cluster.admin)
    seen = {}

    def other_thread() -> None:
        with connect(admin=cluster.admin) as second:
            second.put("shared-a", 1)
            seen.update(pid=second.clerk_pid, value=second.get("shared-a"))

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(timeout=60)
    assert seen == {"pid": first.clerk_pid, "value": 1}
    # The second Store's close left the clerk to the first.
    first.put("shared-b", 2)
    assert first.get("shared-b") == 2
    clerk = first.clerk_pid
    first.close()
    wait_for(lambda: not process_running(clerk))


def test_a_store_opened_after_the_shared_clerk_died_gets_a_new_one(cluster):
    first = connect(admin=cluster.admin)
    dead = first.clerk_pid
    os.kill(dead, signal.SIGKILL)
    wait_for(lambda: not process_running(dead))
    began = time.monotonic()
    with connect(admin=cluster.admin) as second:
        assert second.clerk_pid not in (0, dead)
        # A dead clerk's address refuses at once: no wait for the check's timeout.
        assert time.monotonic() - began < 5
        second.put("after-death", 1)
        assert second.get("after-death") == 1
    first.close()  # a Store of the dead clerk closes quietly
