"""Placement of replicas on hosts: deterministic, spread, and stable for new replicas."""

from collections import Counter

import pytest

from coordinator.placement import PlacementError, initial_placement, place_replica
from coordinator.topology import parse_topology

THREE_HOSTS = (
    "hosts:\n"
    "  - {name: a, address: 10.0.0.1}\n"
    "  - {name: b, address: 10.0.0.2}\n"
    "  - {name: c, address: 10.0.0.3}\n"
)


def test_a_single_host_topology_places_nothing():
    assert initial_placement(parse_topology("clusters:\n  c1: {replicas: 3}\n")) == {}


def test_spread_puts_no_two_replicas_of_a_cluster_on_one_host_and_balances_first_replicas():
    topology = parse_topology(THREE_HOSTS + "clusters:\n  c1: {replicas: 3}\n  c2: {replicas: 3}\n  c3: {replicas: 3}\n")
    placement = initial_placement(topology)
    for cluster in topology.clusters:
        assert sorted(placement[replica] for replica in cluster.replica_ids) == ["a", "b", "c"]
    assert sorted(placement[f"{cluster.name}-r0"] for cluster in topology.clusters) == ["a", "b", "c"]
    assert placement == initial_placement(topology), "deterministic"


def test_small_clusters_fill_the_least_loaded_hosts():
    topology = parse_topology(THREE_HOSTS + "clusters:\n  c1: {replicas: 2}\n  c2: {replicas: 2}\n  c3: {replicas: 2}\n")
    load = Counter(initial_placement(topology).values())
    assert load == {"a": 2, "b": 2, "c": 2}


def test_spread_none_keeps_a_cluster_on_the_first_host():
    topology = parse_topology(THREE_HOSTS + "clusters:\n  c1: {replicas: 3, spread: none}\n  c2: {replicas: 1}\n")
    placement = initial_placement(topology)
    assert sorted(replica for replica, host in placement.items() if host == "a") == ["c1-r0", "c1-r1", "c1-r2"]
    assert placement["c2-r0"] == "b"


def test_a_new_replica_goes_to_the_least_loaded_host_without_its_cluster():
    placement = {"c1-r0": "a", "c1-r1": "b", "c2-r0": "b", "c2-r1": "c", "c3-r0": "a"}
    assert place_replica(placement, ["c1-r0", "c1-r1"], ["a", "b", "c", "d"]) == "d"
    assert place_replica(placement, ["c1-r0", "c1-r1"], ["a", "b", "c"]) == "c"
    # c holds c2 already; a and b tie on load, a is earlier; but a holds nothing of c2
    assert place_replica(placement, ["c2-r0", "c2-r1"], ["a", "b", "c"]) == "a"


def test_a_new_replica_never_goes_to_an_unavailable_host():
    placement = {"c1-r0": "a", "c1-r1": "b", "c1-r2": "c"}
    assert place_replica(placement, ["c1-r0", "c1-r1", "c1-r2"], ["a", "b", "c", "d"], unavailable={"c"}) == "d"
    with pytest.raises(PlacementError, match="no host is up"):
        place_replica(placement, [], ["a"], unavailable={"a"})


def test_no_replacement_when_every_host_up_holds_the_cluster_already():
    placement = {"c1-r0": "a", "c1-r1": "b", "c1-r2": "c"}
    # Replacing c1-r2 while c is lost: a and b hold c1 already, d has not joined.
    with pytest.raises(PlacementError, match="no host can take a replica of c1 without breaking spread: hosts "
                                             r"\(every host up holds one: a, b\); add a host with raftline join"):
        place_replica(placement, ["c1-r0", "c1-r1", "c1-r2"], ["a", "b", "c", "d"], unavailable={"c", "d"},
                      cluster="c1")
    # d joins: the next sweep places the replacement there.
    assert place_replica(placement, ["c1-r0", "c1-r1", "c1-r2"], ["a", "b", "c", "d"], unavailable={"c"},
                         cluster="c1") == "d"


def test_spread_none_places_a_new_replica_on_the_first_usable_host():
    placement = {"c1-r0": "a", "c1-r1": "a"}
    assert place_replica(placement, ["c1-r0", "c1-r1"], ["a", "b"], spread="none") == "a"
