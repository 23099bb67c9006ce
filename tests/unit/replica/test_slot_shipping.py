"""The source leader's side of a slot move (docs/DESIGN.md section 6), driven by
hand with explicit ticks over a real Machine: every entry is applied to the
machine first, then passed to `on_applied`, as the Replica does."""

from actors.messages import (
    MOVE_DROPPED,
    MOVE_NOT_OWNED,
    Decide,
    DropSlot,
    FreezeSlot,
    InstallSlotResult,
    MoveProgress,
    MoveSlot,
)
from actors.slot_shipping import (
    MOVE_DRAINING,
    MOVE_DROPPING,
    MOVE_FREEZING,
    MOVE_SHIPPING,
    SHIP_WINDOW,
    Note,
    Report,
    SlotShipping,
)
from actors.store.machine import Machine
from actors.txn_recovery import Ask, Propose
from tests.unit.replica.replica_helpers import SLOTS, commit_one_phase, keys_of, prepare

PUSH = 5
FIRST_INDEX = 7
ENTRY_BYTES = 2_000  # small chunks, so a slot of 60 keys ships in several
MOVE = MoveSlot(move="m1", slot=0, destination="c2")
KEYS = keys_of(0, 60)


def loaded_source() -> Machine:
    """c1 owning slots 0 and 1, with 60 keys of slot 0."""
    machine = Machine("c1", SLOTS, (0, 1))
    machine.apply(commit_one_phase("load", 1, writes={key: "v" * 40 for key in KEYS}))
    return machine


def shipping_of(machine: Machine) -> SlotShipping:
    return SlotShipping(
        cluster="c1", machine=machine, first_index=FIRST_INDEX, push_interval=PUSH, max_entry_bytes=ENTRY_BYTES
    )


def apply(shipping: SlotShipping, machine: Machine, command, now: int) -> list:
    return shipping.on_applied(command, machine.apply(command), now)


def progress(stage, **counts) -> Report:
    return Report(MoveProgress(move="m1", cluster="c1", stage=stage, **counts))


def asks_for(machine: Machine, *numbers: int) -> list[Ask]:
    chunks = machine.slot_chunks(0, ENTRY_BYTES)
    return [Ask("c2", chunks[number]) for number in numbers]


def test_a_new_leader_is_silent_until_it_applied_its_first_entry():
    shipping = shipping_of(loaded_source())
    assert shipping.on_move_slot(MOVE, applied=FIRST_INDEX - 1, now=1) == []
    assert shipping.on_move_slot(MOVE, applied=FIRST_INDEX, now=1) != []


def test_an_owned_slot_is_frozen_and_reported_freezing():
    shipping = shipping_of(loaded_source())
    assert shipping.on_move_slot(MOVE, applied=FIRST_INDEX, now=1) == [
        Propose(FreezeSlot(move="m1", slot=0, destination="c2")),
        progress(MOVE_FREEZING, keys=60),
    ]


def test_a_slot_not_owned_here_is_reported_so():
    shipping = shipping_of(loaded_source())
    elsewhere = MoveSlot(move="m2", slot=2, destination="c2")
    assert shipping.on_move_slot(elsewhere, applied=FIRST_INDEX, now=1) == [
        Report(MoveProgress(move="m2", cluster="c1", stage=MOVE_NOT_OWNED))
    ]


def test_a_frozen_slot_drains_before_it_ships_and_ships_the_moment_the_last_decision_applies():
    machine = loaded_source()
    machine.apply(prepare("held", 100, writes={KEYS[0]: "h"}, participants=("c1",)))
    shipping = shipping_of(machine)
    assert apply(shipping, machine, FreezeSlot(move="m1", slot=0, destination="c2"), now=2) == []
    assert shipping.on_move_slot(MOVE, applied=FIRST_INDEX, now=3) == [progress(MOVE_DRAINING, keys=60, prepared=1)]
    machine.apply(Decide(txid="held", ts=100, commit=False))
    chunks = machine.slot_chunks(0, ENTRY_BYTES)
    assert len(chunks) > SHIP_WINDOW
    assert shipping.ship_drained(now=4) == [
        Note(f"shipping slot 0 (move m1) to c2: {len(chunks)} chunks"),
        *asks_for(machine, 0, 1),
    ]


def frozen_and_shipping(now: int) -> tuple[Machine, SlotShipping]:
    """Slot 0 frozen, drained, and its first window sent at tick `now`."""
    machine = loaded_source()
    shipping = shipping_of(machine)
    actions = apply(shipping, machine, FreezeSlot(move="m1", slot=0, destination="c2"), now=now)
    assert actions[1:] == asks_for(machine, 0, 1)
    return machine, shipping


def test_unanswered_chunks_are_sent_again_every_push_interval():
    machine, shipping = frozen_and_shipping(now=10)
    assert shipping.due(14) == []
    assert shipping.due(15) == asks_for(machine, 0, 1)
    assert shipping.due(19) == []
    assert shipping.due(20) == asks_for(machine, 0, 1)


def test_an_answer_opens_the_window_and_a_report_counts_without_resending():
    machine, shipping = frozen_and_shipping(now=10)
    answer = InstallSlotResult(move="m1", chunk=0, complete=False)
    assert shipping.on_chunk_answer("c3", answer, now=11) == []  # not the destination
    assert shipping.on_chunk_answer("c2", answer, now=11) == asks_for(machine, 2)
    chunks = len(machine.slot_chunks(0, ENTRY_BYTES))
    assert shipping.on_move_slot(MOVE, applied=FIRST_INDEX, now=12) == [
        progress(MOVE_SHIPPING, keys=60, chunks=chunks, acked=1)
    ]
    assert shipping.due(15) == asks_for(machine, 1)  # chunk 2 went at 11
    assert shipping.due(16) == asks_for(machine, 2)


def test_the_last_acknowledgement_proposes_the_drop_and_the_applied_drop_is_reported():
    machine, shipping = frozen_and_shipping(now=10)
    done = InstallSlotResult(move="m1", chunk=1, complete=True)
    assert shipping.on_chunk_answer("c2", done, now=11) == [Propose(DropSlot(move="m1", slot=0))]
    chunks = len(machine.slot_chunks(0, ENTRY_BYTES))
    assert shipping.on_move_slot(MOVE, applied=FIRST_INDEX, now=12) == [
        Propose(DropSlot(move="m1", slot=0)),
        progress(MOVE_DROPPING, keys=60, chunks=chunks, acked=chunks),
    ]
    assert apply(shipping, machine, DropSlot(move="m1", slot=0), now=13) == [progress(MOVE_DROPPED)]
    assert shipping.shipments == {}
    assert shipping.due(100) == []
    assert shipping.on_move_slot(MOVE, applied=FIRST_INDEX, now=14) == [progress(MOVE_DROPPED)]


def test_a_new_leader_cuts_the_same_chunks_at_the_next_move_slot():
    machine, _ = frozen_and_shipping(now=10)
    successor = shipping_of(machine)
    chunks = len(machine.slot_chunks(0, ENTRY_BYTES))
    assert successor.on_move_slot(MOVE, applied=FIRST_INDEX, now=30) == [
        Note(f"shipping slot 0 (move m1) to c2: {chunks} chunks"),
        *asks_for(machine, 0, 1),
        progress(MOVE_SHIPPING, keys=60, chunks=chunks, acked=0),
    ]
