"""The Raft consensus core: a pure state machine (`RaftNode`: step, tick,
propose in; `Ready` out), its in-memory log view, and its storage seams."""

from actors.raft.log import InvariantViolation, RaftLog
from actors.raft.messages import HardState
from actors.raft.node import (
    CANDIDATE,
    FOLLOWER,
    LEADER,
    PRE_CANDIDATE,
    ConfChangeBusy,
    NotLeader,
    RaftConfig,
    RaftError,
    RaftNode,
    Ready,
    SoftState,
)

__all__ = [
    "CANDIDATE",
    "FOLLOWER",
    "LEADER",
    "PRE_CANDIDATE",
    "ConfChangeBusy",
    "HardState",
    "InvariantViolation",
    "NotLeader",
    "RaftConfig",
    "RaftError",
    "RaftLog",
    "RaftNode",
    "Ready",
    "SoftState",
]
