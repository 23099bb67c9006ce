"""The dashboard's HTML, rendered from its state (history.History.state()).

One renderer for both ways the page gets it: the server renders the whole
page for `/`, and `/state.json` carries the same panels, which the page's
script swaps in every second before it draws the charts, so the HTML is
written in one place only. Pure: a function of the state.

Elements carry stable ids and data attributes for scripts and tests:
`data-cluster` and `data-leader` on each cluster, `data-replica`,
`data-state` and `data-role` on each replica's row, `#coordinator`,
`#leader-changes`, `#jobs`, `#hosts`, `#error`.
"""

from __future__ import annotations

import time
from html import escape
from importlib.resources import files

from raftline.dashboard.history import COORDINATOR

ADMIN_MARK, PANELS_MARK = "<!--admin-->", "<!--panels-->"  # where page.html takes them


def page(state: dict, admin: str) -> str:
    """The whole page: page.html with the panels of `state` in place."""
    template = files(__package__).joinpath("page.html").read_text(encoding="utf-8")
    return template.replace(ADMIN_MARK, escape(admin)).replace(PANELS_MARK, panels(state))


def panels(state: dict) -> str:
    status = state.get("status")
    parts = [error_banner(state)]
    if status is None:
        parts.append('<p class="waiting">waiting for the first status…</p>')
    else:
        parts += [
            f'<p class="updated">epoch {status.get("epoch", 0)} · updated {clock(state["updated"])}</p>',
            '<div class="clusters">', *(cluster(name, info) for name, info in status["clusters"].items()),
            "</div>", coordinator(status.get("coordinator")), leader_changes(state.get("leader_changes", [])),
            jobs(status.get("jobs", [])), hosts(status.get("hosts", {})),
        ]
    return "\n".join(part for part in parts if part)


def clock(wall: float | None) -> str:
    # The server's local time: the dashboard is read on the machine that serves it, or next to it.
    return "-" if wall is None else time.strftime("%H:%M:%S", time.localtime(wall))


def error_banner(state: dict) -> str:
    if not state.get("error"):
        return ""
    return (f'<div id="error" class="error" role="alert">status poll failed at {clock(state["error_time"])}: '
            f'{escape(state["error"])}; retrying every second (the figures below are older)</div>')


def replica_state(info: dict) -> tuple[str, str]:
    """A replica's state and its reason: alive, asleep, isolated, down,
    unresponsive, failing, host-down or unreachable (as `raftline status` says)."""
    if info.get("failing"):
        return "failing", str(info["failing"])
    if info.get("host_down"):
        return "host-down", f"host {info.get('host', '?')} is down"
    if info.get("unreachable"):
        return "unreachable", "the coordinator cannot reach it"
    if info.get("asleep"):
        return "asleep", "put to sleep"
    if not info.get("alive"):
        return ("unresponsive", "did not answer") if info.get("role") == "unresponsive" else ("down", "not running")
    if info.get("isolated"):
        return "isolated", "cut off from its peers"
    return "alive", ""


def cluster(name: str, info: dict) -> str:
    leader = info.get("leader")
    head = info["replicas"].get(leader or "", {}).get("last_index", 0)
    rows = []
    for replica, shown in info["replicas"].items():
        state, reason = replica_state(shown)
        role = "learner" if shown.get("learner") and shown.get("role") == "follower" else shown.get("role", "?")
        lag = max(0, head - shown.get("applied", 0)) if leader else 0
        label = f"{state}: {reason}" if state == "failing" else state
        rows.append(
            f'<tr data-replica="{escape(replica)}" data-state="{state}" data-role="{escape(role)}">'
            f"<td>{escape(replica)}</td><td class=\"role\">{escape(role)}</td>"
            + "".join(f'<td class="num">{shown.get(field, 0)}</td>'
                      for field in ("term", "commit", "applied", "last_index"))
            + f'<td class="num">{lag}</td><td class="num">{shown.get("pid") or "-"}</td>'
            f"<td>{escape(str(shown.get('host', 'local')))}</td>"
            f'<td class="state"><span class="badge {state}" title="{escape(reason)}">{escape(label)}</span></td></tr>')
    return (f'<section class="cluster" data-cluster="{escape(name)}" data-leader="{escape(leader or "")}">'
            f"<h2>cluster {escape(name)}</h2>"
            f'<p class="summary">leader <b class="leader">{escape(leader or "(none)")}</b>, term {info.get("term", 0)}, '
            f'{len(info.get("slots", []))} slots</p>'
            "<table><thead><tr><th>replica</th><th>role</th><th>term</th><th>commit</th><th>applied</th>"
            "<th>last</th><th>lag</th><th>pid</th><th>host</th><th>state</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></section>")


def coordinator(group: dict | None) -> str:
    if not group:
        return ""
    replicas = "".join(
        f'<li data-replica="{escape(name)}" data-role="{escape(info["role"])}">{escape(name)} '
        f'<span class="role">{escape(info["role"])}</span> pid {info.get("pid") or "-"}'
        + (f' on {escape(info["host"])}' if info.get("host", "local") != "local" else "")
        + (f', lag {info["lag"]}' if info.get("lag") else "") + "</li>"
        for name, info in group.get("replicas", {}).items())
    failing = (f'<p class="error">its storage fails: {escape(group["storage_failure"])}</p>'
               if group.get("storage_failure") else "")
    return (f'<section id="coordinator" data-leader="{escape(group.get("leader") or "")}"><h2>coordinator</h2>'
            f'<p class="summary">leader <b class="leader">{escape(group.get("leader") or "(none)")}</b>, '
            f'term {group.get("term", 0)}, commit {group.get("commit", 0)}</p>{failing}<ul>{replicas}</ul></section>')


def leader_changes(changes: list[dict]) -> str:
    items = "".join(
        f'<li data-group="{escape(change["group"])}">{clock(change["time"])} '
        f'{"coordinator group" if change["group"] == COORDINATOR else "cluster " + escape(change["group"])}: '
        f'{escape(change["old"] or "(none)")} → <b>{escape(change["new"])}</b>, term {change["term"]}</li>'
        for change in reversed(changes))
    body = f"<ul>{items}</ul>" if items else '<p class="quiet">none in the last 5 minutes</p>'
    return f'<section id="leader-changes"><h2>leader changes</h2>{body}</section>'


def jobs(shown: list[dict]) -> str:
    if not shown:
        return ""
    items = []
    for job in reversed(shown):  # newest first
        waiting = f'<div class="waiting">waiting: {escape(job["waiting"])}</div>' if job.get("waiting") else ""
        error = f'<div class="error">{escape(job["error"])}</div>' if job.get("error") else ""
        items.append(
            f'<li data-job="{escape(job["id"])}" data-state="{escape(job["state"])}"><b>{escape(job["id"])}</b> '
            f'{escape(job["kind"].replace("_", "-"))} {escape(str(job["target"]))} '
            f'<span class="badge job-{escape(job["state"])}">{escape(job["state"])}</span>'
            f'<div class="step">{escape(job["step"])}</div>{waiting}{error}</li>')
    return f'<section id="jobs"><h2>reconfiguration jobs</h2><ul>{"".join(items)}</ul></section>'


def hosts(shown: dict) -> str:
    if not shown:
        return ""
    rows = []
    for name, host in shown.items():
        state = "up" if host["up"] else f"down ({host['why']}, {host['down_seconds']:g} s)"
        if host.get("replacement"):
            state += f"; not replaced: {host['replacement']}"
        rows.append(
            f'<tr data-host="{escape(name)}" data-state="{"up" if host["up"] else "down"}"><td>{escape(name)}</td>'
            f"<td>{escape(host['address'])}{' (convention leader)' if host['leader'] else ''}</td>"
            f"<td>{escape(state)}</td><td>{escape(', '.join(host['replicas']) or '-')}</td></tr>")
    return ('<section id="hosts"><h2>hosts</h2><table><thead><tr><th>host</th><th>address</th><th>state</th>'
            f'<th>replicas</th></tr></thead><tbody>{"".join(rows)}</tbody></table></section>')
