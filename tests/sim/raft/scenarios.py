"""What named Raft scenarios share: one election timeout in ticks, and
committing commands through the leader."""

from __future__ import annotations

from actors.raft.node import RaftConfig
from tests.sim.raft.cluster import RaftSim

E = RaftConfig(id="defaults").election_max
"""One (maximal) election timeout, in ticks."""


def commit_all(sim: RaftSim, commands: list[bytes], expected: int, via: str | None = None) -> None:
    """Propose `commands` back to back to `via` (default: the leader, once
    there is one) and run until `expected` replicas applied them all."""
    target = via if via is not None else sim.wait_leader()
    proposals = [sim.propose(data, to=target) for data in commands]
    assert all(proposals), "the leader refused a proposal"

    def done() -> bool:
        for proposal in proposals:
            count, data = sim.applied_count(proposal.index)
            if count < expected or data != proposal.data:
                return False
        return True

    assert sim.run_until(done, max_ticks=10 * E), f"{len(commands)} commands were not applied on {expected} replicas"
