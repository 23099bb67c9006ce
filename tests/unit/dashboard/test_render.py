"""The dashboard's page rendered on the server from a given state, and its
endpoints served in-process from a stand-in for the system's status."""

import json
import re
import threading
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from raftline.dashboard import Dashboard, render
from raftline.dashboard.history import History
from raftline.metrics import CONTENT_TYPE
from tests.unit.dashboard.samples import clerk, status


def state_of(*statuses: dict) -> dict:
    history = History()
    for n, shown in enumerate(statuses):
        history.observe(shown, now=float(n), wall=1_700_000_000.0 + n)
    return history.state()


def attribute(html: str, selector: str, name: str) -> str:
    """The value of attribute `name` on the element whose attributes include `selector`."""
    match = re.search(rf"<[^>]*{re.escape(selector)}[^>]*>", html)
    assert match, f"no element with {selector}"
    return re.search(rf'{name}="([^"]*)"', match.group(0)).group(1)


def test_the_page_shows_every_cluster_its_leader_and_each_replicas_state():
    shown = status(c1_r1={"asleep": True}, c1_r2={"isolated": True}, c2_r1={"alive": False, "role": "down"},
                   c2_r2={"failing": "disk full"})
    html = render.page(state_of(shown), "127.0.0.1:19000")
    assert attribute(html, 'data-cluster="c1"', "data-leader") == "c1-r0"
    assert attribute(html, 'data-cluster="c2"', "data-leader") == "c2-r0"
    states = dict(re.findall(r'data-replica="(c\d-r\d)" data-state="([^"]+)"', html))
    assert states == {"c1-r0": "alive", "c1-r1": "asleep", "c1-r2": "isolated", "c2-r0": "alive", "c2-r1": "down",
                      "c2-r2": "failing"}
    assert "failing: disk full" in html
    assert attribute(html, 'id="coordinator"', "data-leader") == "coordinator-0"
    assert "127.0.0.1:19000" in html and '<script src="/dashboard.js">' in html


def test_the_page_escapes_what_the_system_reports():
    shown = status(c1_r1={"failing": "<script>alert(1)</script>"})
    html = render.panels(state_of(shown))
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_leader_changes_jobs_hosts_and_a_poll_error_are_shown():
    moved = status(leaders={"c1": "c1-r2"}, term=3)
    moved["jobs"] = [{"id": "j1", "kind": "add_replica", "target": "c1", "state": "running",
                      "step": "adding c1-r3 to c1 as a learner", "waiting": "busy: the leader's first entry",
                      "error": ""}]
    moved["hosts"] = {"a": {"address": "10.0.0.1:19000", "up": False, "leader": False, "why": "no answer",
                            "replacement": "", "down_seconds": 4.0, "replicas": ["c1-r1"]}}
    history = History()
    history.observe(status(), now=0.0, wall=1_700_000_000.0)
    history.observe(moved, now=1.0, wall=1_700_000_001.0)
    history.failed("no coordinator replica answered", wall=1_700_000_002.0)
    html = render.panels(history.state())
    changes = re.search(r'<section id="leader-changes">.*?</section>', html).group(0)
    assert "c1-r0 → <b>c1-r2</b>, term 3" in changes
    assert 'data-job="j1" data-state="running"' in html and "waiting: busy: the leader&#x27;s first entry" in html
    assert 'data-host="a" data-state="down"' in html
    assert re.search(r'id="error"[^>]*>[^<]*no coordinator replica answered', html)


def test_before_the_first_status_the_page_says_it_waits():
    assert "waiting for the first status" in render.page(History().state(), "127.0.0.1:19000")


def unavailable() -> dict:
    raise TimeoutError("no coordinator replica answered within 10 s")


@pytest.fixture
def served():
    """A dashboard serving on a free loopback port; the test feeds it statuses with `poll_once`."""
    dashboard = Dashboard("127.0.0.1", 0, "127.0.0.1:19000")
    serving = threading.Thread(target=dashboard.server.serve_forever, daemon=True)
    serving.start()
    yield dashboard
    dashboard.server.shutdown()
    dashboard.close()
    serving.join(timeout=5)


def get(dashboard: Dashboard, path: str):
    return urllib.request.urlopen(dashboard.url.rstrip("/") + path, timeout=5)


def test_it_listens_only_on_the_address_it_was_given(served):
    host, port = served.server.server_address[:2]
    assert host == "127.0.0.1" and port > 0 and served.url == f"http://127.0.0.1:{port}/"


def test_the_endpoints_serve_the_page_the_state_and_parseable_metrics(served):
    with pytest.raises(urllib.error.HTTPError) as no_status:
        get(served, "/metrics")
    assert no_status.value.code == 503
    first = status(applied={"c1-r0": 10, "c2-r0": 10}, clerks={"clerk-1": clerk(operations=3, durations=(0.01,))})
    second = status(applied={"c1-r0": 20, "c2-r0": 15}, clerks={"clerk-1": clerk(operations=9, durations=(0.01,) * 4)})
    served.poll_once(lambda: first)
    served.poll_once(unavailable)  # shown as an error; the history is kept
    state = json.load(get(served, "/state.json"))
    assert "no coordinator replica answered" in state["error"] and 'data-cluster="c1"' in state["panels"]
    with pytest.raises(urllib.error.HTTPError) as stale:
        get(served, "/metrics")  # a scraper must not take the last figures for current ones
    assert stale.value.code == 503 and b"the last status poll failed" in stale.value.read()

    served.poll_once(lambda: second)
    state = json.load(get(served, "/state.json"))
    assert state["error"] is None
    assert state["points"][0]["applied_per_s"] > 0 and state["points"][0]["client_ops_per_s"] > 0
    with get(served, "/metrics") as response:
        assert response.headers["Content-Type"] == CONTENT_TYPE
        families = {family.name: family for family in text_string_to_metric_families(response.read().decode())}
    # prometheus_client's parser names a counter family without its _total.
    applied = {sample.labels["replica"]: sample.value for sample in families["raftline_applied_entries"].samples}
    assert applied == {"c1-r0": 20, "c2-r0": 15}
    assert families["raftline_client_operation_duration_seconds"].type == "histogram"

    with get(served, "/") as response:
        assert response.headers["Content-Type"].startswith("text/html")
        assert 'data-leader="c1-r0"' in response.read().decode()
    for path in ("/dashboard.js", "/dashboard.css"):
        with get(served, path) as response:
            assert response.read()
    with pytest.raises(urllib.error.HTTPError) as missing:
        get(served, "/nothing")
    assert missing.value.code == 404
