"""The state machine's slots: ownership, WrongEpoch, freeze / install / drop,
deterministic chunks and snapshots (docs/DESIGN.md sections 3 and 6)."""

import random

import pytest

from actors import codec
from actors.messages import (
    MOVE_DROPPED,
    MOVE_FROZEN,
    MOVE_NOT_OWNED,
    TXN_ABORTED,
    TXN_COMMITTED,
    ZERO_STAMP,
    CommitOnePhaseResult,
    Decide,
    DropSlot,
    FreezeSlot,
    InstallSlot,
    InstallSlotResult,
    PrepareResult,
    ReadCheck,
    ReadCheckResult,
    SlotMoveResult,
    TrimRecords,
    ValidateReads,
    WrongEpoch,
)
from actors.store.machine import Machine
from tests.unit.replica.replica_helpers import SLOTS, commit_one_phase, keys_of, prepare

A0, B0 = keys_of(0, 2)  # two keys of slot 0
(A1,) = keys_of(1, 1)
(A2,) = keys_of(2, 1)


def source(slots=(0, 1)):
    return Machine("c1", SLOTS, slots)


def test_slot_count_zero_serves_everything_and_moves_nothing():
    machine = Machine("c1")
    assert machine.unserved([A0, A2], writing=True) == ()
    assert machine.apply(FreezeSlot(move="m1", slot=0, destination="c2")) == SlotMoveResult(
        move="m1", stage=MOVE_NOT_OWNED
    )
    chunk = InstallSlot(move="m1", slot=0, source="c2", chunk=0, chunks=1, keys=(), threshold=ZERO_STAMP)
    assert machine.apply(chunk) == InstallSlotResult(move="m1", chunk=0, complete=False)
    assert machine.violations  # a bug upstream, never an install


def test_unowned_slot_answers_wrong_epoch_recorded_as_an_abort_and_repeated():
    machine = source()
    wrong = machine.apply(prepare("t1", 5, writes={A0: 1, A2: 2}))
    assert wrong == WrongEpoch(txid="t1", slots=(2,), reason="slot 2 is not served by c1")
    assert machine.status("t1") == TXN_ABORTED
    assert machine.apply(prepare("t1", 5, writes={A0: 1, A2: 2})) == wrong  # the duplicate
    assert machine.apply(Decide(txid="t1", ts=5, commit=True)).status == TXN_ABORTED
    assert not machine.prepared() and not machine.read(A0).exists

    one_phase = machine.apply(commit_one_phase("t2", 6, reads={A2: ZERO_STAMP}))
    assert isinstance(one_phase, WrongEpoch) and one_phase.slots == (2,)
    assert machine.apply(commit_one_phase("t2", 6, reads={A2: ZERO_STAMP})) == one_phase
    assert machine.apply(commit_one_phase("t3", 7, writes={A0: 1})) == CommitOnePhaseResult(txid="t3", committed=True)


def test_read_checks_on_unserved_slots_get_wrong_epoch_and_raise_nothing():
    machine = source()
    result = machine.apply(
        ValidateReads(
            checks=(
                ReadCheck(txid="r1", ts=9, reads={A2: ZERO_STAMP}),
                ReadCheck(txid="r2", ts=9, reads={A0: ZERO_STAMP}),
            )
        )
    )
    assert result.results == (
        WrongEpoch(txid="r1", slots=(2,), reason="slot 2 is not served by c1"),
        ReadCheckResult(txid="r2", ok=True),
    )
    # r2 raised A0's read stamp: an earlier write of A0 is refused now.
    assert machine.apply(commit_one_phase("w", 8, writes={A0: 1})).committed is False


def test_freeze_refuses_new_work_but_drains_prepared_transactions():
    machine = source()
    assert machine.apply(prepare("t1", 5, writes={A0: "v"})).vote
    assert machine.apply(FreezeSlot(move="m1", slot=0, destination="c2")).stage == MOVE_FROZEN
    assert machine.prepared_on(0) == ("t1",)

    late = machine.apply(prepare("t2", 6, writes={B0: 1}))
    assert late == WrongEpoch(txid="t2", slots=(0,), reason="slot 0 is moving to c2")
    assert machine.apply(commit_one_phase("t3", 7, reads={A0: ZERO_STAMP})).slots == (0,)
    assert machine.apply(prepare("t1", 5, writes={A0: "v"})) == PrepareResult(txid="t1", vote=True)
    assert machine.unserved([A0, B0], writing=False) == ()  # reads are still served
    assert machine.unserved([A0, A1], writing=True) == (0,)
    assert machine.apply(commit_one_phase("t4", 8, writes={A1: 1})).committed  # other slots go on

    assert machine.apply(Decide(txid="t1", ts=5, commit=True)).status == TXN_COMMITTED
    assert machine.read(A0).value == "v" and machine.prepared_on(0) == ()


def test_freeze_is_idempotent_and_refuses_what_it_does_not_own():
    machine = source()
    freeze = FreezeSlot(move="m1", slot=0, destination="c2")
    assert machine.apply(freeze).stage == MOVE_FROZEN
    assert machine.apply(freeze).stage == MOVE_FROZEN
    assert machine.apply(FreezeSlot(move="m2", slot=0, destination="c3")).stage == MOVE_NOT_OWNED
    assert machine.apply(FreezeSlot(move="m3", slot=2, destination="c3")).stage == MOVE_NOT_OWNED
    assert machine.apply(DropSlot(move="m2", slot=0)).stage == MOVE_NOT_OWNED
    assert machine.move_stage("m1") == MOVE_FROZEN and machine.move_stage("m2") is None


def loaded_source(count=1_000, seed=3):
    """A source holding `count` keys in slot 0: values, tombstones and read-only keys."""
    machine = source()
    rng = random.Random(seed)
    keys = keys_of(0, count)
    ts = 0
    for start in range(0, count, 50):
        ts += 1
        writes = {key: {"n": rng.randrange(10**6), "pad": "x" * rng.randrange(60)} for key in keys[start : start + 40]}
        reads = dict.fromkeys(keys[start + 40 : start + 50], ZERO_STAMP)  # read-only keys: an rts, no value
        assert machine.apply(commit_one_phase(f"w{ts}", ts, reads=reads, writes=writes)).committed
    ts += 1
    assert machine.apply(commit_one_phase(f"d{ts}", ts, deletes=tuple(keys[:5]))).committed  # tombstones
    assert machine.apply(commit_one_phase("other", ts + 1, writes={A1: 1})).committed
    machine.apply(TrimRecords(txids=("w1", "w2")))
    return machine, keys


def test_chunks_are_deterministic_cover_the_slot_in_order_and_stay_under_the_limit():
    machine, keys = loaded_source()
    machine.apply(FreezeSlot(move="m1", slot=0, destination="c2"))
    chunks = machine.slot_chunks(0, 40_000)
    assert len(chunks) > 2
    assert all(len(codec.encode(chunk)) < 40_000 for chunk in chunks)
    assert [chunk.chunk for chunk in chunks] == list(range(len(chunks)))
    assert {chunk.chunks for chunk in chunks} == {len(chunks)}
    assert [row[0] for chunk in chunks for row in chunk.keys] == sorted(keys)
    assert all(chunk.threshold == machine.threshold != ZERO_STAMP for chunk in chunks)
    assert Machine.restore("c1", machine.snapshot()).slot_chunks(0, 40_000) == chunks

    # A later trim changes the threshold the chunks carry, never the cut.
    machine.apply(TrimRecords(txids=tuple(record.txid for record in machine.records())))
    again = machine.slot_chunks(0, 40_000)
    assert [chunk.keys for chunk in again] == [chunk.keys for chunk in chunks]
    with pytest.raises(ValueError):
        machine.slot_chunks(1, 40_000)  # not frozen


def test_an_empty_slot_ships_one_empty_chunk():
    machine = source()
    machine.apply(FreezeSlot(move="m1", slot=1, destination="c2"))
    (chunk,) = machine.slot_chunks(1, 40_000)
    assert (chunk.chunk, chunk.chunks, chunk.keys) == (0, 1, ())
    destination = Machine("c2", SLOTS, (2, 3))
    assert destination.apply(chunk) == InstallSlotResult(move="m1", chunk=0, complete=True)
    assert destination.owned_slots() == (1, 2, 3)


def test_install_is_idempotent_per_chunk_and_owns_the_slot_after_the_last():
    machine, keys = loaded_source()
    machine.apply(FreezeSlot(move="m1", slot=0, destination="c2"))
    chunks = machine.slot_chunks(0, 40_000)
    destination = Machine("c2", SLOTS, (2, 3))
    order = list(chunks[1:]) + [chunks[1]]  # out of order, with a repeat
    for chunk in order:
        assert destination.apply(chunk) == InstallSlotResult(move="m1", chunk=chunk.chunk, complete=False)
        assert destination.unserved([A0], writing=False) == (0,)  # held, not served
        assert isinstance(destination.apply(commit_one_phase(f"early{chunk.chunk}", 10**6, writes={A0: 1})), WrongEpoch)
    assert destination.incoming_moves()["m1"].applied == tuple(range(1, len(chunks)))
    assert destination.apply(chunks[0]) == InstallSlotResult(move="m1", chunk=0, complete=True)
    assert destination.apply(chunks[2]) == InstallSlotResult(move="m1", chunk=2, complete=True)
    assert destination.owned_slots() == (0, 2, 3) and not destination.incoming_moves()
    assert destination.threshold == machine.threshold  # raised to the shipped one

    # Every key arrived exactly: values, versions, counters, read stamps, tombstones.
    for key in keys:
        assert destination.read(key) == machine.read(key)
    destination.apply(FreezeSlot(move="m2", slot=0, destination="c3"))
    shipped_back = destination.slot_chunks(0, 40_000)
    assert [chunk.keys for chunk in shipped_back] == [chunk.keys for chunk in chunks]

    # A read-only key kept its read stamp: an earlier write of it is refused.
    read_only = keys[-5]  # read by the last load commit, at ts 20
    assert not destination.read(read_only).exists
    destination.apply(DropSlot(move="m2", slot=0))
    fresh = Machine("c2", SLOTS, (2, 3))
    for chunk in chunks:
        fresh.apply(chunk)
    result = fresh.apply(commit_one_phase("late", 15, writes={read_only: 1}))
    assert result.committed is False and "read by a later transaction" in result.reason


def test_install_of_a_slot_owned_here_is_a_violation_not_an_install():
    destination = Machine("c2", SLOTS, (0, 2))
    chunk = InstallSlot(move="m1", slot=0, source="c1", chunk=0, chunks=1, keys=(), threshold=ZERO_STAMP)
    assert destination.apply(chunk).complete is False
    assert destination.violations and destination.owned_slots() == (0, 2)


def test_drop_forgets_the_slot_and_is_idempotent():
    machine, keys = loaded_source()
    total = machine.key_count()
    assert machine.apply(DropSlot(move="m1", slot=0)).stage == MOVE_NOT_OWNED  # never frozen
    machine.apply(FreezeSlot(move="m1", slot=0, destination="c2"))
    assert machine.apply(DropSlot(move="m1", slot=0)) == SlotMoveResult(move="m1", stage=MOVE_DROPPED)
    assert machine.key_count() == total - len(keys) and machine.slot_keys(0) == ()
    assert machine.owned_slots() == (1,) and not machine.frozen_slots()
    assert machine.unserved([A0], writing=False) == (0,)
    assert machine.apply(DropSlot(move="m1", slot=0)).stage == MOVE_DROPPED
    assert machine.apply(FreezeSlot(move="m1", slot=0, destination="c2")).stage == MOVE_DROPPED
    assert machine.move_stage("m1") == MOVE_DROPPED
    wrong = machine.apply(prepare("t9", 10**6, writes={A0: 1}))
    assert wrong == WrongEpoch(txid="t9", slots=(0,), reason="slot 0 is not served by c1")


def test_snapshots_carry_the_slot_state_and_equal_machines_give_equal_bytes():
    machine, _ = loaded_source(count=300)
    assert machine.apply(prepare("held", 10**5, writes={A1: "h"})).vote
    machine.apply(FreezeSlot(move="m1", slot=0, destination="c2"))
    machine.apply(prepare("refused", 10**5 + 1, writes={A2: 1}))
    chunks = machine.slot_chunks(0, 4_000)
    assert len(chunks) > 2
    destination = Machine("c2", SLOTS, (2, 3))
    destination.apply(chunks[0])
    destination.apply(FreezeSlot(move="m0", slot=2, destination="c1"))
    destination.apply(DropSlot(move="m0", slot=2))

    for original, cluster in ((machine, "c1"), (destination, "c2")):
        data = original.snapshot()
        restored = Machine.restore(cluster, data)
        assert restored.snapshot() == data
        assert (restored.owned_slots(), restored.frozen_slots(), restored.incoming_moves()) == (
            original.owned_slots(),
            original.frozen_slots(),
            original.incoming_moves(),
        )
    again = Machine.restore("c2", destination.snapshot())
    for chunk in chunks[1:]:
        assert destination.apply(chunk) == again.apply(chunk)
    assert again.snapshot() == destination.snapshot() and again.owned_slots() == (0, 3)
    assert again.apply(DropSlot(move="m0", slot=2)).stage == MOVE_DROPPED  # finished moves survive
    restored_source = Machine.restore("c1", machine.snapshot())
    assert restored_source.apply(prepare("refused", 10**5 + 1, writes={A2: 1})).slots == (2,)
