"""One simulated Raft cluster: replicas of `actors.raft.RaftNode` over the
harness network, figure-3 invariants checked after every step, seeded
random runs."""
