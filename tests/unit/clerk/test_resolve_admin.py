"""Which admin address a client or command uses when given a topology file
rather than --admin (docs/DESIGN.md sections 7 and 8)."""

import pytest

from clerk.client import resolve_admin
from clerk.errors import ClusterNotRunning

ONE_HOST = "admin_port: 19005\nclusters: {c1: {replicas: 3}}\n"
HOSTS = (
    "admin_port: 19005\nclusters: {c1: {replicas: 3}}\n"
    "hosts:\n  - {name: a, address: 10.0.0.1, admin_port: 19100}\n  - {name: b, address: 10.0.0.2}\n"
    "  - {name: c, address: 10.0.0.3}\n"
)


def topology(tmp_path, text: str):
    path = tmp_path / "topology.yaml"
    path.write_text(text)
    return path


def test_one_host_uses_the_top_level_admin_port(tmp_path):
    assert resolve_admin(topology(tmp_path, ONE_HOST), None)[0] == "127.0.0.1:19005"


def test_several_hosts_use_the_first_hosts_admin_port_as_start_does(tmp_path):
    assert resolve_admin(topology(tmp_path, HOSTS), None)[0] == "127.0.0.1:19100"


def test_an_explicit_admin_wins_and_a_free_port_topology_needs_one(tmp_path):
    assert resolve_admin(topology(tmp_path, HOSTS), "127.0.0.1:19200")[0] == "127.0.0.1:19200"
    with pytest.raises(ClusterNotRunning, match="admin_port 0"):
        resolve_admin(topology(tmp_path, "admin_port: 0\nclusters: {c1: {replicas: 3}}\n"), None)
