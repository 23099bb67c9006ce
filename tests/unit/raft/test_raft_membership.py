"""Membership: single-replica changes checked when proposed and applied when
appended, the membership at each retained index, and quorums (thesis 4.1)."""

import pytest

from actors.raft.log import InvariantViolation
from actors.raft.membership import ConfHistory, apply_conf_change, check_conf_change, quorum
from actors.raft.messages import CONF_ADD_LEARNER, CONF_PROMOTE, CONF_REMOVE, ConfChange, ConfState


def test_a_quorum_is_a_majority_of_the_voters():
    assert [quorum(("v",) * count) for count in range(1, 8)] == [1, 2, 2, 3, 3, 4, 4]


def test_a_proposed_change_must_fit_the_membership():
    conf = ConfState(voters=("a", "b"), learners=("c",))
    check_conf_change(conf, ConfChange(op=CONF_ADD_LEARNER, replica="d"))
    check_conf_change(conf, ConfChange(op=CONF_PROMOTE, replica="c"))
    check_conf_change(conf, ConfChange(op=CONF_REMOVE, replica="c"))
    check_conf_change(conf, ConfChange(op=CONF_REMOVE, replica="a"))
    refused = [
        (CONF_ADD_LEARNER, "a", "already a member"),
        (CONF_ADD_LEARNER, "c", "already a member"),
        (CONF_PROMOTE, "a", "not a learner"),
        (CONF_REMOVE, "d", "not a member"),
        ("rename", "a", "unknown membership change"),
    ]
    for op, replica, reason in refused:
        with pytest.raises(ValueError, match=reason):
            check_conf_change(conf, ConfChange(op=op, replica=replica))
    with pytest.raises(ValueError, match="no voter"):
        check_conf_change(ConfState(voters=("a",)), ConfChange(op=CONF_REMOVE, replica="a"))


def test_conf_changes_apply_one_replica_at_a_time():
    conf = ConfState(voters=("a", "b"), learners=())
    conf = apply_conf_change(conf, ConfChange(op=CONF_ADD_LEARNER, replica="c"))
    assert conf == ConfState(voters=("a", "b"), learners=("c",))
    assert apply_conf_change(conf, ConfChange(op=CONF_ADD_LEARNER, replica="a")) == conf
    conf = apply_conf_change(conf, ConfChange(op=CONF_PROMOTE, replica="c"))
    assert conf == ConfState(voters=("a", "b", "c"), learners=())
    assert apply_conf_change(conf, ConfChange(op=CONF_PROMOTE, replica="a")) == conf
    conf = apply_conf_change(conf, ConfChange(op=CONF_REMOVE, replica="a"))
    assert conf == ConfState(voters=("b", "c"), learners=())
    with pytest.raises(InvariantViolation):
        apply_conf_change(conf, ConfChange(op="rename", replica="b"))


def test_conf_history_knows_the_membership_at_each_retained_index():
    base = ConfState(voters=("a", "b", "c"))
    history = ConfHistory(index=0, conf=base)
    history.append(5, ConfChange(op=CONF_ADD_LEARNER, replica="d"))
    history.append(9, ConfChange(op=CONF_PROMOTE, replica="d"))
    assert history.at(4) == base
    assert history.at(5).learners == ("d",)
    assert history.at(100).voters == ("a", "b", "c", "d")
    assert history.last_change_index == 9
    with pytest.raises(InvariantViolation):
        history.append(9, ConfChange(op=CONF_REMOVE, replica="d"))

    history.truncate(9)  # the promotion was overwritten by a new leader: it reverts
    assert history.current.learners == ("d",) and history.last_change_index == 5

    history.compact(7)
    assert history.at(7).learners == ("d",)
    with pytest.raises(InvariantViolation):
        history.at(6)
    history.truncate(1)  # the compaction point's membership never reverts
    assert history.current.learners == ("d",)

    history.restore(20, base)
    assert history.current == base and history.last_change_index == 20
