"""The shard map: which cluster owns each slot of the keyspace, who the
clusters' replicas are, and plans that rebalance slots between clusters.

Rules:
- A key lives in slot `actors.keyspace.slot_of(key, slots)`.
- The number of slots is fixed for the life of a deployment; only owners move.
- A ShardMap is immutable. Every change (`with_*`) returns a new map with
  epoch + 1, so clerks and servers detect a stale map by comparing epochs.
- A rebalancing plan moves as few slots as possible to reach an even spread
  (every cluster owns floor or ceil of slots/clusters); it depends only on
  the map and the set of clusters wanted, ties broken by cluster name, then
  slot number.

Invariants of a ShardMap (checked on construction; a breach is a ValueError):
epoch >= 1; at least one slot; every slot's owner is a member cluster; every
member has at least one replica; no replica id appears twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Iterable, Mapping, Sequence

from actors.keyspace import slot_of


@dataclass(frozen=True, kw_only=True, slots=True)
class SlotMove:
    """One step of a rebalancing plan.

    Fields:
        slot: the slot number.
        source: the cluster that owns it now.
        destination: the cluster that owns it after the move.
    """

    slot: int
    source: str
    destination: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ShardMap:
    """Slot ownership and membership at one epoch.

    Fields:
        epoch: version of the map, from 1; every change adds one.
        slots: `slots[i]` is the cluster that owns slot i.
        members: (cluster, replica ids) pairs, in the order clusters joined; a
            mapping is accepted and stored as pairs so the map stays hashable
            and picklable. A member may own no slots (just added, or drained
            before removal).
    """

    epoch: int
    slots: tuple[str, ...]
    members: tuple[tuple[str, tuple[str, ...]], ...]

    def __post_init__(self) -> None:
        members = self.members.items() if isinstance(self.members, Mapping) else self.members
        # Normalising in place is safe: the instance is not yet visible to anyone.
        object.__setattr__(self, "members", tuple((name, tuple(replicas)) for name, replicas in members))
        object.__setattr__(self, "slots", tuple(self.slots))
        if isinstance(self.epoch, bool) or not isinstance(self.epoch, int) or self.epoch < 1:
            raise ValueError(f"epoch must be an integer >= 1, got {self.epoch!r}")
        if not self.slots:
            raise ValueError("a shard map needs at least one slot")
        names = [name for name, _ in self.members]
        if len(set(names)) != len(names):
            raise ValueError(f"a cluster is listed twice among members: {names}")
        seen: set[str] = set()
        for name, replicas in self.members:
            if not replicas:
                raise ValueError(f"cluster {name!r} has no replicas")
            for replica in replicas:
                if replica in seen:
                    raise ValueError(f"replica {replica!r} is listed twice")
                seen.add(replica)
        strangers = sorted(set(self.slots) - set(names))
        if strangers:
            raise ValueError(f"slots are owned by clusters that are not members: {strangers}")

    @classmethod
    def initial(cls, clusters: Sequence[str], members: Mapping[str, Sequence[str]], slots: int) -> ShardMap:
        """Epoch 1: `slots` slots split into contiguous runs over `clusters`,
        in order, each run floor or ceil of slots/clusters long. `members`
        gives each cluster's replica ids and must name exactly `clusters`."""
        if not clusters:
            raise ValueError("at least one cluster is needed")
        if set(members) != set(clusters) or len(set(clusters)) != len(clusters):
            raise ValueError(f"members {sorted(members)} must name each of the clusters {list(clusters)} "
                             "exactly once")
        if slots < len(clusters):
            raise ValueError(f"{slots} slots cannot give each of {len(clusters)} clusters one")
        count = len(clusters)
        owners = tuple(clusters[slot * count // slots] for slot in range(slots))
        return cls(epoch=1, slots=owners, members=tuple((name, tuple(members[name])) for name in clusters))

    @property
    def clusters(self) -> tuple[str, ...]:
        """Member clusters, in the order they joined."""
        return tuple(name for name, _ in self.members)

    def replicas(self, cluster: str) -> tuple[str, ...]:
        """Replica ids of `cluster`; KeyError when it is not a member."""
        for name, replicas in self.members:
            if name == cluster:
                return replicas
        raise KeyError(f"no cluster {cluster!r} in the shard map")

    def _require_member(self, cluster: str) -> None:
        self.replicas(cluster)

    def owner(self, key: str) -> str:
        """The cluster that owns `key`."""
        return self.slots[slot_of(key, len(self.slots))]

    def slots_of(self, cluster: str) -> tuple[int, ...]:
        """The slots `cluster` owns, ascending; KeyError when it is not a member."""
        self._require_member(cluster)
        return tuple(slot for slot, owner in enumerate(self.slots) if owner == cluster)

    def slot_counts(self) -> dict[str, int]:
        """How many slots each member owns (0 for none), in member order."""
        counts = dict.fromkeys(self.clusters, 0)
        for owner in self.slots:
            counts[owner] += 1
        return counts

    def clusters_for(self, keys: Iterable[str]) -> dict[str, list[str]]:
        """`keys` grouped by owning cluster; clusters and keys in first-seen order."""
        groups: dict[str, list[str]] = {}
        for key in keys:
            groups.setdefault(self.owner(key), []).append(key)
        return groups

    def with_move(self, move: SlotMove) -> ShardMap:
        """The map after `move`. Refuses a move whose source no longer owns the
        slot, so a stale plan cannot be applied twice."""
        if not 0 <= move.slot < len(self.slots):
            raise ValueError(f"no slot {move.slot}; slots are 0..{len(self.slots) - 1}")
        if self.slots[move.slot] != move.source:
            raise ValueError(f"slot {move.slot} is owned by {self.slots[move.slot]!r}, not {move.source!r}")
        self._require_member(move.destination)
        if move.destination == move.source:
            raise ValueError(f"slot {move.slot} already belongs to {move.source!r}")
        owners = list(self.slots)
        owners[move.slot] = move.destination
        return replace(self, epoch=self.epoch + 1, slots=tuple(owners))

    def with_cluster(self, cluster: str, replicas: Sequence[str]) -> ShardMap:
        """The map with a new member `cluster` that owns no slots yet."""
        if cluster in self.clusters:
            raise ValueError(f"cluster {cluster!r} is already a member")
        return replace(self, epoch=self.epoch + 1, members=self.members + ((cluster, tuple(replicas)),))

    def with_cluster_removed(self, cluster: str) -> ShardMap:
        """The map without `cluster`, which must own no slots any more."""
        owned = self.slots_of(cluster)
        if owned:
            raise ValueError(f"cluster {cluster!r} still owns {len(owned)} slots; move them first")
        members = tuple(pair for pair in self.members if pair[0] != cluster)
        return replace(self, epoch=self.epoch + 1, members=members)

    def with_replicas(self, cluster: str, replicas: Sequence[str]) -> ShardMap:
        """The map with `cluster`'s replica ids replaced by `replicas`."""
        self._require_member(cluster)
        members = tuple((name, tuple(replicas) if name == cluster else ids) for name, ids in self.members)
        return replace(self, epoch=self.epoch + 1, members=members)

    def to_json(self) -> str:
        """JSON text of the map, read back by `from_json`."""
        return json.dumps({
            "epoch": self.epoch,
            "slots": list(self.slots),
            "members": {name: list(replicas) for name, replicas in self.members},
        })

    @classmethod
    def from_json(cls, text: str | bytes) -> ShardMap:
        """The map `to_json` wrote; ValueError when `text` is not one."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"not a shard map: invalid JSON: {error}") from None
        if not isinstance(data, dict) or set(data) != {"epoch", "slots", "members"}:
            raise ValueError("not a shard map: expected an object with epoch, slots and members")
        slots, members = data["slots"], data["members"]
        if not (isinstance(slots, list) and all(isinstance(owner, str) for owner in slots)):
            raise ValueError("not a shard map: slots must be a list of cluster names")
        if not isinstance(members, dict) or not all(
                isinstance(ids, list) and all(isinstance(rid, str) for rid in ids) for ids in members.values()):
            raise ValueError("not a shard map: members must map cluster names to lists of replica ids")
        return cls(epoch=data["epoch"], slots=tuple(slots), members=members)


def plan_rebalance(shard_map: ShardMap, clusters_after: Iterable[str]) -> list[SlotMove]:
    """Moves that leave exactly `clusters_after` owning slots, each owning
    floor or ceil of slots/clusters, with as few moves as possible.

    Every slot of a cluster left out moves; a kept cluster gives up only its
    surplus, its highest-numbered slots, so the runs it keeps stay
    contiguous. Each move takes from the cluster with the most slots still
    to give and gives to the least loaded cluster still short; apply the
    moves in order. The result does not depend on the order of
    `clusters_after`. `clusters_after` must be members of the map (add a
    new cluster with `with_cluster` first).
    """
    after = list(clusters_after)
    total = len(shard_map.slots)
    if not after:
        raise ValueError("at least one cluster must remain")
    if len(set(after)) != len(after):
        raise ValueError(f"a cluster is listed twice: {after}")
    strangers = sorted(set(after) - set(shard_map.clusters))
    if strangers:
        raise ValueError(f"not members of the shard map: {strangers}")
    if len(after) > total:
        raise ValueError(f"{total} slots cannot give each of {len(after)} clusters one")

    counts = shard_map.slot_counts()
    base, extra = divmod(total, len(after))
    # The `extra` clusters that already own the most keep the one slot more:
    # any other choice would move a slot that could have stayed.
    by_load = sorted(after, key=lambda name: (-counts[name], name))
    target = {name: base + (1 if rank < extra else 0) for rank, name in enumerate(by_load)}
    to_give = {
        name: list(shard_map.slots_of(name)[target.get(name, 0):])
        for name in sorted(shard_map.clusters)
    }
    load = dict(counts)
    moves = []
    while any(to_give.values()):
        source = min((name for name, slots in to_give.items() if slots),
                     key=lambda name: (-len(to_give[name]), name))
        destination = min((name for name in after if load[name] < target[name]),
                          key=lambda name: (load[name], name))
        moves.append(SlotMove(slot=to_give[source].pop(0), source=source, destination=destination))
        load[source] -= 1
        load[destination] += 1
    return moves
