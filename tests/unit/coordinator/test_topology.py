"""Topology loading: the embedded default, and one clear error per mistake
with its key path and YAML line."""

from pathlib import Path

import pytest

from coordinator.topology import (
    DEFAULT_TOPOLOGY_FILE,
    HOSTS_CLOCK_OFFSET_MS,
    ClusterSpec,
    HostSpec,
    PlacementSettings,
    RaftSettings,
    StorageSettings,
    Topology,
    TopologyError,
    TransactionSettings,
    load_topology,
    parse_replica_id,
    parse_topology,
    replica_id,
    topology_file,
)

DEFAULT_TOPOLOGY = DEFAULT_TOPOLOGY_FILE
ONE_CLUSTER = "clusters:\n  c1: {replicas: 3}\n"


def test_the_embedded_default_loads_with_documented_values(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    topology = load_topology(DEFAULT_TOPOLOGY)
    assert topology == Topology(
        clusters=tuple(ClusterSpec(name=name, replicas=3) for name in ("c1", "c2", "c3")),
        source=str(DEFAULT_TOPOLOGY),
        admin_port=19000,
        base="raftlineTCPBase",
        data_dir=tmp_path / "data",  # where raftline runs, not inside the package
        slots=64,
        raft=RaftSettings(tick_ms=50, heartbeat_ticks=2, election_min=6, election_max=12,
                          snapshot_entries=10000),
        transactions=TransactionSettings(prepare_timeout_ms=2000, read_from="leader"),
        storage=StorageSettings(engine="sqlite", fsync=True),
    )
    assert topology.members()["c2"] == ("c2-r0", "c2-r1", "c2-r2")


def test_a_command_uses_the_topology_named_else_the_local_one_else_the_embedded_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert topology_file(None) == DEFAULT_TOPOLOGY_FILE
    (tmp_path / "topology.yaml").write_text(ONE_CLUSTER)
    assert topology_file(None) == Path("topology.yaml")
    assert topology_file("other.yaml") == Path("other.yaml")
    with pytest.raises(TopologyError, match="no such file .name an existing topology with -t FILE"):
        load_topology("other.yaml")


def test_omitted_settings_take_the_defaults_of_the_embedded_file():
    assert parse_topology(ONE_CLUSTER) == Topology(clusters=(ClusterSpec(name="c1", replicas=3),))
    assert parse_topology(ONE_CLUSTER) == parse_topology(
        DEFAULT_TOPOLOGY.read_text().replace("c2: {replicas: 3}\n", "").replace("c3: {replicas: 3}\n", ""))


def test_every_setting_can_be_changed():
    topology = parse_topology(
        "admin_port: 19005\ndata_dir: /srv/raftline\nslots: 8\n"
        "hosts:\n  - {name: h1, address: 10.0.0.1}\n  - {name: h2, address: 10.0.0.2, admin_port: 19001}\n"
        "clusters:\n  a_1: {replicas: 1, spread: hosts}\n  b: {replicas: 9, spread: none}\n"
        "raft: {tick_ms: 10, heartbeat_ticks: 1, election_ticks: [2, 3], snapshot_entries: 5, lease_reads: false}\n"
        "transactions: {prepare_timeout_ms: 10, read_from: follower, max_clock_offset_ms: 3}\n"
        "storage: {engine: memory, fsync: false}\n")
    assert topology.admin_port == 19005 and topology.slots == 8
    assert topology.data_dir == Path("/srv/raftline")
    assert topology.hosts == (HostSpec(name="h1", address="10.0.0.1", admin_port=19005),
                              HostSpec(name="h2", address="10.0.0.2", admin_port=19001))
    assert topology.cluster("a_1") == ClusterSpec(name="a_1", replicas=1, spread="hosts")
    assert topology.cluster("b").replica_ids[-1] == "b-r8"
    assert topology.raft == RaftSettings(tick_ms=10, heartbeat_ticks=1, election_min=2, election_max=3,
                                         snapshot_entries=5, lease_reads=False)
    assert topology.transactions == TransactionSettings(prepare_timeout_ms=10, read_from="follower",
                                                        max_clock_offset_ms=3)
    assert topology.storage == StorageSettings(engine="memory", fsync=False)


def test_with_hosts_commits_wait_out_a_clock_offset_by_default_and_on_one_host_none():
    assert parse_topology(ONE_CLUSTER).transactions.max_clock_offset_ms == 0
    hosts = parse_topology("hosts:\n  - {name: h1, address: 10.0.0.1}\nclusters:\n  c1: {replicas: 1}\n")
    assert hosts.transactions.max_clock_offset_ms == HOSTS_CLOCK_OFFSET_MS


def test_with_hosts_clusters_spread_over_them_by_default():
    topology = parse_topology(
        "hosts:\n  - {name: h1, address: a}\n  - {name: h2, address: b}\n  - {name: h3, address: c}\n"
        "clusters:\n  c1: {replicas: 3}\n  c2: {replicas: 5, spread: none}\n"
        "placement: {on_host_loss: replace, replace_after_ms: 500}\n")
    assert topology.cluster("c1").spread == "hosts" and topology.cluster("c2").spread == "none"
    assert topology.leader_host == topology.host("h1") == HostSpec(name="h1", address="a", admin_port=19000)
    assert topology.placement == PlacementSettings(on_host_loss="replace", replace_after_ms=500)
    assert parse_topology(ONE_CLUSTER).leader_host is None
    assert parse_topology(ONE_CLUSTER).placement == PlacementSettings(on_host_loss="report")


def hosts_topology(hosts: int, coordinators: int) -> Topology:
    listed = "".join(f"  - {{name: h{n}, address: 10.0.0.{n}}}\n" for n in range(1, hosts + 1))
    return parse_topology(f"hosts:\n{listed}coordinator: {{replicas: {coordinators}}}\nclusters: {{c1: {{replicas: 1}}}}\n")


def test_coordinator_replicas_spread_over_the_hosts_in_turn_the_first_host_first():
    assert hosts_topology(3, 3).coordinator_placement() == {
        "coordinator-0": "h1", "coordinator-1": "h2", "coordinator-2": "h3"}
    assert hosts_topology(2, 3).coordinator_placement() == {
        "coordinator-0": "h1", "coordinator-1": "h2", "coordinator-2": "h1"}
    assert hosts_topology(5, 3).coordinator_placement() == {
        "coordinator-0": "h1", "coordinator-1": "h2", "coordinator-2": "h3"}
    assert hosts_topology(3, 1).coordinator_placement() == {"coordinator-0": "h1"}
    assert parse_topology(ONE_CLUSTER).coordinator_placement() == {
        "coordinator-0": "", "coordinator-1": "", "coordinator-2": ""}


def test_a_coordinator_replica_whose_data_is_on_the_first_host_stays_there():
    """A deployment an earlier version started holds every replica's log on the
    first host: a replica started afresh elsewhere could vote twice in one term."""
    placement = hosts_topology(3, 3).coordinator_placement(kept_on_first_host=["coordinator-1", "coordinator-2"])
    assert placement == {"coordinator-0": "h1", "coordinator-1": "h1", "coordinator-2": "h1"}


def test_admin_port_zero_means_a_free_port_chosen_at_start():
    assert parse_topology("admin_port: 0\n" + ONE_CLUSTER).admin_port == 0


def test_relative_data_dir_resolves_against_the_topology_files_directory(tmp_path):
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "t.yaml"
    path.write_text(ONE_CLUSTER + "data_dir: ../state\n")
    assert load_topology(path).data_dir == tmp_path / "conf" / ".." / "state"
    assert parse_topology(ONE_CLUSTER + "data_dir: ./state\n").data_dir == Path("state")


def test_replica_ids_round_trip():
    assert replica_id("c1", 0) == "c1-r0"
    assert parse_replica_id("c1_x-r12") == ("c1_x", 12)
    for bad in ("c1", "c1-r", "c1-r01", "C1-r0", "c1-x0"):
        with pytest.raises(ValueError):
            parse_replica_id(bad)


def refusal(text: str) -> TopologyError:
    with pytest.raises(TopologyError) as caught:
        parse_topology(text, "t.yaml")
    return caught.value


@pytest.mark.parametrize(("text", "line", "key", "fragment"), [
    # YAML syntax
    (ONE_CLUSTER + "raft: {tick_ms: 5\n", 4, "", "invalid YAML: expected ',' or '}', but got '<stream end>' "
                                                "(while parsing a flow mapping, from line 3)"),
    (ONE_CLUSTER + "slots: 8\n  oops: 1\n", 4, "", "invalid YAML"),
    ("", 1, "", "the file is empty"),
    ("- c1\n", 1, "", "expected a mapping at the top level, got a list"),
    # unknown and duplicate keys
    (ONE_CLUSTER + "slot: 8\n", 3, "slot", "did you mean 'slots'?"),
    (ONE_CLUSTER + "raft:\n  tick_ms: 5\n  heartbeat: 1\n", 5, "raft.heartbeat",
     "did you mean 'heartbeat_ticks'?"),
    ("clusters:\n  c1: {replica: 3}\n", 2, "clusters.c1.replica", "did you mean 'replicas'?"),
    (ONE_CLUSTER + "zzz: 1\n", 3, "zzz", "expected one of admin_port, base"),
    (ONE_CLUSTER + "slots: 8\nslots: 9\n", 4, "slots", "duplicate key (first on line 3)"),
    (ONE_CLUSTER + "yes: 1\n", 3, "", "keys must be strings, got a boolean yes"),
    # missing keys: the line of the mapping that lacks them
    ("slots: 8\nraft: {tick_ms: 5}\n", 1, "clusters", "missing"),
    ("clusters:\n  c1: {replicas: 3}\n  c2:\n    spread: none\n", 3, "clusters.c2.replicas", "missing"),
    (ONE_CLUSTER + "hosts:\n  - {address: 10.0.0.1}\n", 4, "hosts[0].name", "missing"),
    # wrong types
    ("clusters:\n  c1: {replicas: '3'}\n", 2, "clusters.c1.replicas", "got a string '3'"),
    ("clusters:\n  c1: {replicas: 2.5}\n", 2, "clusters.c1.replicas", "got a number 2.5"),
    ("clusters:\n  c1: 3\n", 2, "clusters.c1", "expected a mapping, got an integer 3"),
    (ONE_CLUSTER + "raft:\n", 3, "raft", "expected a mapping, got nothing (null)"),
    (ONE_CLUSTER + "storage: {fsync: 1}\n", 3, "storage.fsync", "expected true or false, got an integer 1"),
    (ONE_CLUSTER + "raft: {lease_reads: yes please}\n", 3, "raft.lease_reads", "expected true or false"),
    (ONE_CLUSTER + "data_dir: [a]\n", 3, "data_dir", "expected a non-empty string, got a list ['a']"),
    (ONE_CLUSTER + "hosts: {h1: 10.0.0.1}\n", 3, "hosts", "expected a list of hosts, got a mapping"),
    (ONE_CLUSTER + "admin_port: true\n", 3, "admin_port", "got a boolean true"),
    # out-of-range numbers
    (ONE_CLUSTER + "admin_port: 65536\n", 3, "admin_port",
     "expected a port from 0 to 65535 (0 = a free port)"),
    (ONE_CLUSTER + "admin_port: -1\n", 3, "admin_port", "got -1"),
    ("clusters:\n  c1: {replicas: 0}\n", 2, "clusters.c1.replicas", "expected an integer from 1 to 9, got 0"),
    ("clusters:\n  c1: {replicas: 10}\n", 2, "clusters.c1.replicas", "got 10"),
    ("slots: 4097\n" + ONE_CLUSTER, 1, "slots", "expected an integer from 1 to 4096, got 4097"),
    ("slots: 2\nclusters: {a: {replicas: 1}, b: {replicas: 1}, c: {replicas: 1}}\n", 1, "slots",
     "2 slots cannot give each of the 3 clusters one; expected at least 3"),
    (ONE_CLUSTER + "raft:\n  tick_ms: 0\n", 4, "raft.tick_ms", "expected an integer >= 1, got 0"),
    (ONE_CLUSTER + "raft:\n  snapshot_entries: 0\n", 4, "raft.snapshot_entries", "got 0"),
    (ONE_CLUSTER + "transactions: {prepare_timeout_ms: 0}\n", 3, "transactions.prepare_timeout_ms", "got 0"),
    (ONE_CLUSTER + "raft:\n  election_ticks: [12, 6]\n", 4, "raft.election_ticks",
     "expected [min, max] with 1 <= min < max, got [12, 6]"),
    (ONE_CLUSTER + "raft:\n  election_ticks: [0, 6]\n", 4, "raft.election_ticks", "got [0, 6]"),
    (ONE_CLUSTER + "raft:\n  election_ticks: 6\n", 4, "raft.election_ticks", "got 6"),
    (ONE_CLUSTER + "raft:\n  election_ticks: [6, 12, 18]\n", 4, "raft.election_ticks", "got [6, 12, 18]"),
    (ONE_CLUSTER + "raft:\n  election_ticks: [6, '12']\n", 4, "raft.election_ticks", "got [6, '12']"),
    (ONE_CLUSTER + "raft:\n  heartbeat_ticks: 6\n", 4, "raft.heartbeat_ticks",
     "must be below the election timeout minimum (6 ticks), got 6"),
    (ONE_CLUSTER + "raft:\n  election_ticks: [2, 4]\n", 4, "raft.election_ticks",
     "min must be above heartbeat_ticks (2), got 2"),
    # empty clusters and bad names
    ("clusters: {}\n", 1, "clusters", "no clusters; at least one is required"),
    ("clusters:\n  C1: {replicas: 3}\n", 2, "clusters.C1", "invalid cluster name"),
    ("clusters:\n  c-1: {replicas: 3}\n", 2, "clusters.c-1", "invalid cluster name"),
    # bad enum values
    (ONE_CLUSTER + "base: raftlineTcpBase\n", 3, "base", "did you mean 'raftlineTCPBase'?"),
    (ONE_CLUSTER + "base: simpleSystemBase\n", 3, "base", "expected raftlineTCPBase, got 'simpleSystemBase'"),
    (ONE_CLUSTER + "base: multiprocTCPBase\n", 3, "base",
     "expected raftlineTCPBase, got 'multiprocTCPBase': Thespian's stock TCP base listens on every interface"),
    (ONE_CLUSTER + "transactions: {read_from: any}\n", 3, "transactions.read_from",
     "expected leader or follower, got 'any'"),
    (ONE_CLUSTER + "storage:\n  engine: sqllite\n", 4, "storage.engine", "did you mean 'sqlite'?"),
    ("clusters:\n  c1: {replicas: 3, spread: all}\n", 2, "clusters.c1.spread", "expected none or hosts"),
    # hosts for the later multi-host deployment
    ("clusters:\n  c1:\n    replicas: 3\n    spread: hosts\n", 4, "clusters.c1.spread",
     "spread: hosts needs a top-level `hosts:` list"),
    (ONE_CLUSTER + "hosts:\n  - {name: h1, address: a}\n  - {name: h1, address: b}\n", 5, "hosts[1].name",
     "duplicate host name 'h1'"),
    (ONE_CLUSTER + "hosts:\n  - {name: h1, address: a}\n  - {name: h2, address: a}\n", 5, "hosts[1]",
     "same address and admin_port as host 'h1'"),
    (ONE_CLUSTER + "hosts:\n  - {name: h1, address: ''}\n", 4, "hosts[0].address",
     "expected a non-empty string"),
    (ONE_CLUSTER + "hosts:\n  - {name: 'h 1', address: a}\n", 4, "hosts[0].name", "invalid host name"),
    ("admin_port: 0\n" + ONE_CLUSTER + "hosts:\n  - {name: h1, address: a}\n", 5, "hosts[0].admin_port",
     "a host needs a fixed admin port, not 0"),

    # multi-host: spread over hosts by default, so too few hosts is refused
    (ONE_CLUSTER + "hosts:\n  - {name: h1, address: a}\n  - {name: h2, address: b}\n", 2, "clusters.c1.replicas",
     "3 replicas with spread: hosts (the default with hosts:) need 3 hosts, but `hosts:` lists 2"),
    ("hosts:\n  - {name: h1, address: a}\nclusters:\n  c1:\n    spread: hosts\n    replicas: 2\n", 6,
     "clusters.c1.replicas", "2 replicas with spread: hosts need 2 hosts, but `hosts:` lists 1"),
    (ONE_CLUSTER + "placement: {on_host_loss: replace}\n", 3, "placement",
     "placement needs a top-level `hosts:` list"),
    ("hosts:\n  - {name: h1, address: a}\nclusters:\n  c1: {replicas: 1}\nplacement: {on_host_loss: move}\n", 5,
     "placement.on_host_loss", "expected report or replace, got 'move'"),
])
def test_each_mistake_is_one_error_with_its_key_and_line(text, line, key, fragment):
    error = refusal(text)
    assert (error.source, error.line, error.key) == ("t.yaml", line, key)
    assert fragment in error.problem
    prefix = f"t.yaml:{line}: {key}: " if key else f"t.yaml:{line}: "
    assert str(error) == prefix + error.problem


def test_errors_in_the_default_file_name_its_real_lines():
    lines = DEFAULT_TOPOLOGY.read_text().splitlines()
    line = next(number for number, text in enumerate(lines, 1) if "election_ticks: [6, 12]" in text)
    lines[line - 1] = lines[line - 1].replace("[6, 12]", "[12, 6]")
    assert str(refusal("\n".join(lines))) == (
        f"t.yaml:{line}: raft.election_ticks: expected [min, max] with 1 <= min < max, got [12, 6]")


def test_a_topology_error_is_a_value_error():
    assert issubclass(TopologyError, ValueError)


def test_file_problems_are_topology_errors(tmp_path):
    with pytest.raises(TopologyError, match=r"missing\.yaml: no such file \(name an existing topology with -t"):
        load_topology(tmp_path / "missing.yaml")
    with pytest.raises(TopologyError, match="is a directory"):
        load_topology(tmp_path)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(ONE_CLUSTER.encode() + b"# caf\xe9\n")
    with pytest.raises(TopologyError, match=r"latin1\.yaml:3: not UTF-8 text$"):
        load_topology(latin1)
