"""One owner per data directory (actors/datadir.py): a lock held for the
owner's life, refused to a second taker with the holder's PID, freed by the
kernel when the holder dies, even by SIGKILL."""

import os
import signal
import subprocess
import sys
import time

import pytest

from actors.datadir import DataDirInUse, holder_of, lock_data_dir

HOLD = (
    "import sys, time; from actors.datadir import lock_data_dir; "
    "lock = lock_data_dir(sys.argv[1]); print('locked', flush=True); time.sleep(60)"
)


def test_a_second_taker_is_refused_with_the_holders_pid_until_the_holder_lets_go(tmp_path):
    directory = tmp_path / "c1-r0"
    held = lock_data_dir(directory)
    assert holder_of(directory) == os.getpid()
    with pytest.raises(DataDirInUse, match=f"data directory {directory} is in use by process {os.getpid()}"):
        lock_data_dir(directory)
    held.close()
    assert holder_of(directory) is None
    lock_data_dir(directory).close()


def test_a_directory_never_locked_is_free(tmp_path):
    assert holder_of(tmp_path / "never") is None


def test_the_lock_of_a_killed_holder_is_free_at_once(tmp_path):
    directory = tmp_path / "coordinator"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DataDirInUse) as refused:
            lock_data_dir(directory)
        assert refused.value.holder == holder.pid
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        assert holder_of(directory) is None
        lock_data_dir(directory).close()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


HOLD_AND_FORK = (
    "import os, sys, time; from actors.datadir import lock_data_dir; "
    "lock = lock_data_dir(sys.argv[1]); child = os.fork(); "
    "child or time.sleep(60); print('locked', child, flush=True); time.sleep(60)"
)


def test_a_child_forked_by_the_holder_does_not_keep_the_lock_after_the_holder_is_killed(tmp_path):
    """Thespian forks a coordinator's servers from it: killed, it must not leave its directory locked."""
    directory = tmp_path / "coordinator-0"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_AND_FORK, str(directory)], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        word, child_pid = holder.stdout.readline().split()
        assert word == "locked"
        child = int(child_pid)
        assert holder_of(directory) == holder.pid
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        # The child closes its copy as soon as it first runs, which may be a moment after the fork.
        deadline = time.monotonic() + 10
        while holder_of(directory) is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert holder_of(directory) is None
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
        if child:
            os.kill(child, signal.SIGKILL)


def test_joining_a_host_whose_data_directory_is_in_use_is_refused_before_anything_starts(tmp_path):
    from coordinator.admin import free_port
    from coordinator.errors import AlreadyRunning
    from coordinator.system import join

    held = lock_data_dir(tmp_path / "data" / "c1-r1")
    try:
        with pytest.raises(AlreadyRunning, match=rf"c1-r1 is in use by process {os.getpid()}"):
            join("127.0.0.1:1", "b", "127.0.0.1", tmp_path / "data", free_port())
        assert not (tmp_path / "data" / "raftline.log").exists()
    finally:
        held.close()
