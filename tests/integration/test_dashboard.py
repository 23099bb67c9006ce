"""`raftline metrics` and `raftline dashboard` against a running system, and
the dashboard's page in headless Chromium: every cluster's leader shown,
a killed leader's replacement listed as a leader change, a sleeping follower
shown asleep.

The page's screenshot in the README, docs/dashboard.png, is written anew with
RAFTLINE_UPDATE_SCREENSHOT=1 (after a longer load, so the charts fill);
otherwise it goes to the test's temporary directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clerk import connect
from clerk.errors import RaftlineError
from raftline.metrics import CONTENT_TYPE
from tests.integration.conftest import admin_options, wait_for

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
UPDATE_SCREENSHOT = os.environ.get("RAFTLINE_UPDATE_SCREENSHOT") == "1"
CHROMIUM_TIMEOUT = 60


def raftline(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raftline.cli", *args], capture_output=True, text=True, timeout=90,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def dashboard(cluster):
    """`raftline dashboard --port 0` on the module's system: its URL. Stopped by
    Ctrl-C (SIGINT), which must end it with status 0; killed if the test failed first."""
    process = subprocess.Popen([sys.executable, "-m", "raftline.cli", "dashboard", "--port", "0",
                                *admin_options(cluster)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, f"no URL in {line!r}; stderr: {process.stderr.read() if process.poll() is not None else ''}"
        yield url.group(0)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def load(cluster):
    """Puts from a background thread while the module's tests run, so the counters move."""
    stop = threading.Event()

    def put_until_stopped() -> None:
        with connect(admin=cluster.admin) as store:  # a Store is used from the thread that owns it
            n = 0
            while not stop.is_set():
                with contextlib.suppress(RaftlineError):  # while a killed leader is replaced
                    store.put(f"dashboard-{n % 200}", n)
                n += 1

    worker = threading.Thread(target=put_until_stopped, daemon=True)
    worker.start()
    yield
    stop.set()
    worker.join(timeout=30)


def get(url: str):
    return urllib.request.urlopen(url, timeout=10)


def state(url: str) -> dict:
    with get(url + "state.json") as response:
        return json.load(response)


def metric_families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_metrics_prints_the_prometheus_text_format(cluster):
    result = raftline("metrics", *admin_options(cluster))
    assert result.returncode == 0, result.stderr
    metric_families(result.stdout)  # parses, whichever metrics the actors report


def test_dashboard_serves_the_state_and_the_metrics(cluster, dashboard, load):
    shown = wait_for(lambda: (s := state(dashboard))["status"] and len(s["points"]) >= 2 and s, timeout=30)
    assert set(shown["status"]["clusters"]) == {"c1", "c2"} and shown["error"] is None
    for cluster_name in ("c1", "c2"):
        assert f'data-cluster="{cluster_name}"' in shown["panels"]
    with get(dashboard + "metrics") as response:
        assert response.headers["Content-Type"] == CONTENT_TYPE
        families = metric_families(response.read().decode())
    if "raftline_client_operations" in families:  # once clerks report it: the load shows as client ops/s
        wait_for(lambda: any(p["client_ops_per_s"] for p in state(dashboard)["points"]), timeout=20)
    if "raftline_applied_entries" in families:
        wait_for(lambda: any(p["applied_per_s"] for p in state(dashboard)["points"]), timeout=20)


def processes_with(fragment: str) -> list[int]:
    """PIDs of processes whose command line contains `fragment`."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and fragment.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def chromium(profile: Path, *args: str) -> str:
    """Run headless Chromium in a process group of its own; whatever it leaves is killed."""
    command = [shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={profile}", "--virtual-time-budget=3000", *args]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, _ = process.communicate(timeout=CHROMIUM_TIMEOUT)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not processes_with(str(profile)), "chromium left processes behind"
    return out


def test_the_page_in_a_browser_shows_leaders_a_leader_change_and_a_sleeping_follower(cluster, dashboard, load, tmp_path):
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not on PATH (.ci/run installs it when it can): the page is not loaded in a browser")
    status = cluster.status()
    dom = chromium(tmp_path / "profile", "--dump-dom", dashboard)
    for name, info in status["clusters"].items():
        leader = re.search(rf'data-cluster="{name}" data-leader="({name}-r\d+)"', dom)
        assert leader, f"cluster {name} shows no leader"
    assert "<polyline" in dom or not any(p["applied_per_s"] or p["client_ops_per_s"]
                                         for p in state(dashboard)["points"]), "the script drew no chart"

    if UPDATE_SCREENSHOT:
        time.sleep(20)  # a fuller chart for the README
    cluster.kill(status["clusters"]["c2"]["leader"])
    wait_for(lambda: any(change["group"] == "c2" for change in state(dashboard)["leader_changes"]), timeout=10)
    c1 = status["clusters"]["c1"]
    follower = next(r for r in sorted(c1["replicas"]) if r != c1["leader"])
    cluster.sleep(follower, 8)
    wait_for(lambda: f'data-replica="{follower}" data-state="asleep"' in state(dashboard)["panels"], timeout=5)
    if UPDATE_SCREENSHOT:
        time.sleep(3)  # the charts show the election
    dom = chromium(tmp_path / "profile", "--dump-dom", dashboard)
    assert f'data-replica="{follower}" data-state="asleep"' in dom
    assert re.search(r'<section id="leader-changes">.*data-group="c2"', dom, re.DOTALL), "no leader change shown"
    screenshot = SCREENSHOT if UPDATE_SCREENSHOT else tmp_path / "dashboard.png"
    chromium(tmp_path / "profile", f"--screenshot={screenshot}", "--window-size=1280,900", dashboard)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
