"""Membership: single-replica changes, checked when proposed and applied when
appended, and the membership in force at every retained log index (the
counterpart of etcd-io/raft's confchange/ and quorum/).

Rules and invariants:
- One replica changes per entry (Ongaro's thesis 4.1): add a learner,
  promote a learner to voter, or remove a voter or learner. A change that
  does not fit the membership is refused when proposed (`ValueError`, a
  caller error); once in the log it is applied as it stands, and one
  already done leaves the membership as it is.
- Changes take effect when their entry is appended, not when it commits,
  and revert when it is truncated (thesis 4.1). So the membership at index
  i is the snapshot's membership with every conf entry at or before i
  applied, in order.
- A quorum is a majority of the voters in force (paper 5.2); learners never
  count.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Sequence

from actors.raft.log import InvariantViolation
from actors.raft.messages import CONF_ADD_LEARNER, CONF_PROMOTE, CONF_REMOVE, ConfChange, ConfState


def quorum(voters: Sequence[str]) -> int:
    """How many of `voters` make a majority (paper 5.2)."""
    return len(voters) // 2 + 1


def check_conf_change(conf: ConfState, change: ConfChange) -> None:
    """Raise ValueError unless `change` fits `conf`: no one joins twice, only
    a learner is promoted, only a member leaves, and a voter always remains."""
    member = change.replica in conf.voters or change.replica in conf.learners
    if change.op == CONF_ADD_LEARNER:
        if member:
            raise ValueError(f"{change.replica} is already a member")
    elif change.op == CONF_PROMOTE:
        if change.replica not in conf.learners:
            raise ValueError(f"{change.replica} is not a learner")
    elif change.op == CONF_REMOVE:
        if not member:
            raise ValueError(f"{change.replica} is not a member")
        if conf.voters == (change.replica,):
            raise ValueError(f"removing {change.replica} would leave no voter")
    else:
        raise ValueError(f"unknown membership change {change.op!r}")


def apply_conf_change(conf: ConfState, change: ConfChange) -> ConfState:
    """The membership after `change` (thesis 4.1). Changes are validated when
    proposed; here an inapplicable one (already done) leaves `conf` as is."""
    voters = [replica for replica in conf.voters if replica != change.replica]
    learners = [replica for replica in conf.learners if replica != change.replica]
    if change.op == CONF_ADD_LEARNER:
        if change.replica in conf.voters or change.replica in conf.learners:
            return conf
        learners.append(change.replica)
    elif change.op == CONF_PROMOTE:
        if change.replica not in conf.learners:
            return conf
        voters.append(change.replica)
    elif change.op != CONF_REMOVE:
        raise InvariantViolation(f"unknown membership change {change.op!r}")
    return ConfState(voters=tuple(voters), learners=tuple(learners))


class ConfHistory:
    """The membership at every retained log index.

    Holds `(index, conf)` steps: the compaction point's membership, then one
    step per conf entry still in the log, so truncating the log can revert to
    the membership before a removed change and compaction can record the
    membership at its index.
    """

    def __init__(self, *, index: int, conf: ConfState) -> None:
        self._steps: list[tuple[int, ConfState]] = [(index, conf)]

    @property
    def current(self) -> ConfState:
        """The membership in force: the one after the last appended conf entry."""
        return self._steps[-1][1]

    @property
    def last_change_index(self) -> int:
        """Index of the last conf entry in the log, or the compaction point's index."""
        return self._steps[-1][0]

    def at(self, index: int) -> ConfState:
        """The membership in force at `index` (at or after the compaction point)."""
        if index < self._steps[0][0]:
            raise InvariantViolation(f"membership at {index} precedes the compaction point {self._steps[0][0]}")
        position = bisect_right(self._steps, index, key=lambda step: step[0])
        return self._steps[position - 1][1]

    def append(self, index: int, change: ConfChange) -> None:
        """A conf entry was appended at `index`: it takes effect now (thesis 4.1)."""
        if index <= self._steps[-1][0]:
            raise InvariantViolation(f"conf entry at {index} is not after the last one at {self._steps[-1][0]}")
        self._steps.append((index, apply_conf_change(self.current, change)))

    def truncate(self, index: int) -> None:
        """Entries at or after `index` were dropped: their changes revert."""
        while len(self._steps) > 1 and self._steps[-1][0] >= index:
            self._steps.pop()

    def compact(self, index: int) -> None:
        """The compaction point moved to `index`: fold older steps into it."""
        self._steps = [(index, self.at(index))] + [step for step in self._steps if step[0] > index]

    def restore(self, index: int, conf: ConfState) -> None:
        """A received snapshot replaced the log: start over from its membership."""
        self._steps = [(index, conf)]
