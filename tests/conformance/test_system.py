"""What raftline's launcher, `attach` and multi-host deployments rely on from the
actor system, on both bases: outside handles attach by admin port and share global
names; a member system joins a convention, is announced to the leader's actors and
hosts the actors placed on it by capability; the admin answers Thespian's status request."""

from __future__ import annotations

from thespian.system.messages.status import Thespian_StatusReq, Thespian_SystemStatus

from tests.conformance.actors_for_tests import (
    ConfAck,
    ConfConventionUpdates,
    ConfConventionWatcher,
    ConfEcho,
    ConfGetConventionUpdates,
    ConfPing,
    ConfPlaced,
    ConfPong,
    ConfWatchConvention,
)
from tests.conformance.harness import LOOPBACK, ask, free_port, wait_for

CONVENTION_ADDRESS = "Convention Address.IPv4"


def test_outside_handles_share_a_global_name(system, systems):
    other_handle = systems.handle(system.port)

    first = system.handle.createActor(ConfEcho, globalName="conf-global")
    again = system.handle.createActor(ConfEcho, globalName="conf-global")
    from_other_handle = other_handle.createActor(ConfEcho, globalName="conf-global")

    assert first == again == from_other_handle
    ask(other_handle, first, ConfPing(), ConfPong)


def test_member_joins_the_convention_and_hosts_actors_placed_on_it(systems):
    leader_port = free_port()
    leader = systems.start(leader_port, {CONVENTION_ADDRESS: (LOOPBACK, leader_port), "node": "A"})
    watcher = leader.handle.createActor(ConfConventionWatcher)
    ask(leader.handle, watcher, ConfWatchConvention(), ConfAck)

    member = systems.start(capabilities={CONVENTION_ADDRESS: (LOOPBACK, leader_port), "node": "B"})

    def member_announced():
        return ("B", True) in ask(leader.handle, watcher, ConfGetConventionUpdates(), ConfConventionUpdates).items

    wait_for(member_announced)
    placed = leader.handle.createActor(ConfPlaced, targetActorRequirements={"node": "B"})
    answer = ask(leader.handle, placed, ConfPing(), ConfPong)
    assert answer.node == "B"
    assert answer.pid in member.processes()


def test_admin_answers_the_status_request(system):
    status = ask(system.handle, system.admin_address, Thespian_StatusReq(), Thespian_SystemStatus)

    assert status.capabilities["Admin Port"] == system.port
