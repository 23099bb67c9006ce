"""Which host each replica runs on, in a multi-host deployment.

Rules:
- Pure: no Thespian, no clock, no randomness; the same input always gives
  the same placement.
- A placement maps replica id -> host name. A replica keeps its host for
  life, since its data is there: these functions only ever add entries.
- spread "hosts": no two replicas of a cluster on one host. The initial
  placement gives each replica, in file order, the least loaded host not
  holding its cluster (a cluster's first replica: also the host with the
  fewest first replicas, since they tend to lead; then host order), so the
  hosts get even shares of replicas and of first replicas.
- spread "none": every replica of the cluster on the first host, the
  convention leader's.
- A replica added later goes to the least loaded usable host that holds no
  replica of its cluster (ties: the earlier host in `hosts:`). Under spread
  "hosts", when every usable host holds one already, there is no host for it:
  placing it anyway would put two replicas of the cluster on one host, so a
  lost host's replica is not replaced until a host can take it. Under spread
  "none", the first usable host.

A caller error (no usable host, or none without breaking spread) raises
PlacementError; a topology without hosts has the empty placement and every
replica runs on the coordinator's own host.
"""

from __future__ import annotations

from collections import Counter
from typing import Collection, Iterable, Mapping

from coordinator.topology import Topology


class PlacementError(ValueError):
    """No host can take the replica; the message is the line the user sees."""


def initial_placement(topology: Topology) -> dict[str, str]:
    """Every replica the topology starts with -> its host; {} without hosts."""
    names = [host.name for host in topology.hosts]
    placement: dict[str, str] = {}
    if not names:
        return placement
    firsts = dict.fromkeys(names, 0)  # first replicas per host: they tend to lead
    for cluster in topology.clusters:
        ids = cluster.replica_ids
        for index, replica in enumerate(ids):
            if cluster.spread != "hosts":
                placement[replica] = names[0]
                continue
            load = Counter(placement.values())
            taken = {placement[sibling] for sibling in ids[:index]}
            placement[replica] = min(
                (host for host in names if host not in taken),
                key=lambda host: (load[host], firsts[host] if index == 0 else 0, names.index(host)))
            if index == 0:
                firsts[placement[replica]] += 1
    return placement


def place_replica(
    placement: Mapping[str, str],
    siblings: Iterable[str],
    hosts: Iterable[str],
    unavailable: Collection[str] = (),
    *,
    cluster: str = "its cluster",
    spread: str = "hosts",
) -> str:
    """The host for a new replica of `cluster`, which already has `siblings`.
    `hosts` in topology order; hosts in `unavailable` (lost, not joined) are
    never chosen. Raises PlacementError when no host is usable, or (spread
    "hosts") when every usable host holds a replica of the cluster."""
    usable = [host for host in hosts if host not in unavailable]
    if not usable:
        raise PlacementError("no host is up to run a new replica on")
    if spread != "hosts":
        return usable[0]
    load = {host: 0 for host in usable}
    for host in placement.values():
        if host in load:
            load[host] += 1
    taken = {placement.get(sibling) for sibling in siblings}
    free = [host for host in usable if host not in taken]
    if not free:
        raise PlacementError(
            f"no host can take a replica of {cluster} without breaking spread: hosts "
            f"(every host up holds one: {', '.join(usable)}); add a host with raftline join "
            "(one the topology lists that is not up), or bring the lost host back")
    # min() keeps the first of equals: ties go to the earlier host in `hosts:`.
    return min(free, key=lambda host: load[host])
