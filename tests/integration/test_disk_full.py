"""Storage errors fail safe and heal (docs/DESIGN.md section 2, "Storage"):
a system whose data directory is a small tmpfs that fills up. Its servers
fail on "disk full", are restarted with backoff and shown failing with the
reason; once space returns the system recovers by itself, and nothing
acknowledged is lost. Needs root (to mount the tmpfs): skipped otherwise."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest

from actors.process import process_running
from clerk import RaftlineError, connect
from coordinator.system import start
from tests.integration.conftest import system_pids, wait_for, write_topology

DISK_MB = 64


@pytest.fixture
def small_disk(tmp_path):
    """A DISK_MB tmpfs at tmp_path/disk, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk) -> None:
    """Take every free byte of `disk`."""
    descriptor = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(descriptor, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(descriptor)


def test_a_full_disk_fails_servers_safely_and_the_system_heals_once_space_returns(small_disk):
    cluster = start(write_topology(small_disk), data_dir=small_disk / "data", admin_port=0)
    pids = system_pids(cluster)
    try:
        acknowledged: dict[str, str] = {}
        with connect(admin=cluster.admin) as store:
            for number in range(20):
                store.put(f"before-{number}", "x" * 1000)
                acknowledged[f"before-{number}"] = "x" * 1000
            fill(small_disk)
            outcome: dict[str, object] = {}

            def write_while_full() -> None:
                with connect(admin=cluster.admin) as writer:
                    try:
                        for number in range(50):
                            writer.put(f"during-{number}", "y" * 20_000)
                            outcome[f"during-{number}"] = "y" * 20_000
                    except RaftlineError as error:
                        outcome["error"] = error

            writing = threading.Thread(target=write_while_full, daemon=True)
            writing.start()

            def failing() -> list[str]:
                clusters = cluster.status()["clusters"].values()
                return [name for info in clusters for name, replica in info["replicas"].items()
                        if replica["failing"] == "disk full"]

            assert wait_for(failing, timeout=60)
            pids |= system_pids(cluster)
            (small_disk / "filler").unlink()

            def heals() -> bool:
                try:
                    store.put("after", "healed")
                    return store.get("after") == "healed"
                except RaftlineError:
                    return False

            wait_for(heals, timeout=90, interval=0.5)
            writing.join(120)
            assert not writing.is_alive()
            acknowledged.update({key: value for key, value in outcome.items() if key != "error"})
            with store.transaction() as txn:
                assert txn.get_many(list(acknowledged)) == acknowledged
            pids |= system_pids(cluster)
    finally:
        cluster.stop()
    leftovers = [pid for pid in pids if process_running(pid)]
    assert not leftovers, f"processes left behind: {leftovers}"
