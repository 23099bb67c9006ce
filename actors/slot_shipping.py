"""The source leader's side of a slot move, for one term (docs/DESIGN.md section 6),
without Thespian and without a clock.

The Replica builds a SlotShipping when it wins an election and drops it when
it loses the lead. Each MoveSlot from the coordinator (`on_move_slot`) makes
the leader take the move's next step from what its applied state says, and
report the stage:

    freezing -> draining -> shipping -> dropping -> dropped   (or not-owned)

Rules and invariants:
- The machine decides; this class reads it and returns actions: Propose
  (FreezeSlot, DropSlot), Ask (an InstallSlot chunk for the destination's
  leader), Report (a MoveProgress for the coordinator) and Note (a line for
  the replica's event log). Times are the replica's ticks, passed in.
- A new leader stays silent until it has applied its term's first entry:
  until then its machine may lag what earlier leaders committed (a slot
  installed here, say). The coordinator asks again.
- A freeze never aborts a transaction that voted yes: a frozen slot ships
  once no prepared transaction holds its keys. Shipping starts the moment
  the slot drains (its freeze or a decision applied), not at the next MoveSlot.
- Shipping is volatile: at most SHIP_WINDOW chunks unacknowledged, each sent
  again every `push_interval` ticks until answered. A frozen, drained slot
  cannot change, so a new leader cuts the same chunks again.
- Once every chunk is acknowledged the leader proposes DropSlot; once that is
  applied it reports `dropped` unprompted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from actors.messages import (
    MOVE_DRAINING,
    MOVE_DROPPED,
    MOVE_DROPPING,
    MOVE_FREEZING,
    MOVE_FROZEN,
    MOVE_NOT_OWNED,
    MOVE_SHIPPING,
    DropSlot,
    FreezeSlot,
    InstallSlot,
    InstallSlotResult,
    MoveProgress,
    MoveSlot,
    MoveStage,
)
from actors.store.machine import Machine
from actors.txn_recovery import Ask, Propose

MAX_CHUNK_BYTES = 40_000
"""Encoded size of one InstallSlot chunk: it travels alone in a ClientBatch
(under the 60 KB message limit) and is logged as one entry at the destination."""

SHIP_WINDOW = 2
"""InstallSlot chunks of one move in flight at once, so a large slot neither
floods the destination's log nor the network."""


@dataclass(frozen=True, slots=True)
class Report:
    """Action: send `progress` to the coordinator."""

    progress: MoveProgress


@dataclass(frozen=True, slots=True)
class Note:
    """Action: add `line` to the replica's event log, for people to read."""

    line: str


ShippingAction = Propose | Ask | Report | Note


class Shipment:
    """A frozen, drained slot this leader is shipping to `destination`."""

    def __init__(self, *, slot: int, destination: str, chunks: tuple[InstallSlot, ...]) -> None:
        self.slot = slot
        self.destination = destination
        self.chunks = chunks
        self.acked: set[int] = set()
        self.sent_at: dict[int, int] = {}  # chunk -> tick it was last sent

    @property
    def done(self) -> bool:
        return len(self.acked) == len(self.chunks)

    def window(self) -> list[int]:
        """The lowest unacknowledged chunks, at most SHIP_WINDOW of them."""
        return [number for number in range(len(self.chunks)) if number not in self.acked][:SHIP_WINDOW]


class SlotShipping:
    """The source leader's slot moves for one term; see the module rules."""

    def __init__(
        self, *, cluster: str, machine: Machine, first_index: int, push_interval: int, max_entry_bytes: int
    ) -> None:
        """`first_index` is the index of the term's first entry; `machine` is read,
        never changed, and stays the same object for the term (only a follower
        installs a snapshot)."""
        self._cluster = cluster
        self._machine = machine
        self._first_index = first_index
        self._push_interval = push_interval
        self._chunk_bytes = min(MAX_CHUNK_BYTES, max_entry_bytes)
        # move -> its shipment, from the moment this leader saw the slot drained.
        self.shipments: dict[str, Shipment] = {}

    def on_move_slot(self, message: MoveSlot, *, applied: int, now: int) -> list[ShippingAction]:
        """Take the move's next step from the applied state (the last entry applied
        is `applied`), and report it."""
        if applied < self._first_index:
            return []
        machine, move, slot = self._machine, message.move, message.slot
        progress = MoveProgress(move=move, cluster=self._cluster, stage=MOVE_DROPPED)
        applied_stage = machine.move_stage(move)
        if applied_stage == MOVE_DROPPED:
            return [Report(progress)]
        keys = len(machine.slot_keys(slot))
        frozen = machine.frozen_slots().get(slot)
        if frozen is None or frozen.move != move:
            if frozen is None and applied_stage is None and slot in machine.owned_slots():
                freeze = FreezeSlot(move=move, slot=slot, destination=message.destination)
                return [Propose(freeze), Report(replace(progress, stage=MOVE_FREEZING, keys=keys))]
            # Not this cluster's, frozen for another move, or installed here by this move.
            return [Report(replace(progress, stage=MOVE_NOT_OWNED))]
        prepared = machine.prepared_on(slot)
        if prepared:
            return [Report(replace(progress, stage=MOVE_DRAINING, keys=keys, prepared=len(prepared)))]
        # Chunks already sent go again from `due`, not here.
        actions = [] if move in self.shipments else self._start(move, slot, frozen.destination, now)
        shipment = self.shipments[move]
        stage: MoveStage = MOVE_SHIPPING
        if shipment.done:
            actions.append(Propose(DropSlot(move=move, slot=slot)))
            stage = MOVE_DROPPING
        chunks, acked = len(shipment.chunks), len(shipment.acked)
        actions.append(Report(replace(progress, stage=stage, keys=keys, chunks=chunks, acked=acked)))
        return actions

    def on_applied(self, command: Any, result: Any, now: int) -> list[ShippingAction]:
        """React to a slot entry just applied: a fresh freeze may ship at once;
        an applied drop ends the shipment and is reported."""
        match command:
            case FreezeSlot() if result.stage == MOVE_FROZEN:
                return self.ship_drained(now)
            case DropSlot(move=move) if result.stage == MOVE_DROPPED:
                self.shipments.pop(move, None)
                return [Report(MoveProgress(move=move, cluster=self._cluster, stage=MOVE_DROPPED))]
        return []

    def ship_drained(self, now: int) -> list[ShippingAction]:
        """Start shipping every frozen slot that has drained, without waiting for
        the coordinator's next MoveSlot (a move then costs its round trips, not
        its polls)."""
        actions: list[ShippingAction] = []
        for slot, frozen in self._machine.frozen_slots().items():
            if frozen.move not in self.shipments and not self._machine.prepared_on(slot):
                actions += self._start(frozen.move, slot, frozen.destination, now)
        return actions

    def on_chunk_answer(self, cluster: str, result: InstallSlotResult, now: int) -> list[ShippingAction]:
        """The destination's leader applied a chunk (or the whole move): open the
        window further, or propose the drop once every chunk is acknowledged."""
        shipment = self.shipments.get(result.move)
        if shipment is None or cluster != shipment.destination:
            return []
        if result.complete:
            shipment.acked.update(range(len(shipment.chunks)))
        else:
            shipment.acked.add(result.chunk)
        if shipment.done:
            return [Propose(DropSlot(move=result.move, slot=shipment.slot))]
        return self._send_window(shipment, now)

    def due(self, now: int) -> list[Ask]:
        """Chunks of every shipment's window not answered for a push interval, sent again."""
        return [ask for shipment in self.shipments.values() for ask in self._send_window(shipment, now)]

    def _start(self, move: str, slot: int, destination: str, now: int) -> list[ShippingAction]:
        chunks = self._machine.slot_chunks(slot, self._chunk_bytes)
        shipment = Shipment(slot=slot, destination=destination, chunks=chunks)
        self.shipments[move] = shipment
        note = Note(f"shipping slot {slot} (move {move}) to {destination}: {len(chunks)} chunks")
        return [note, *self._send_window(shipment, now)]

    def _send_window(self, shipment: Shipment, now: int) -> list[Ask]:
        """The window's chunks not sent yet, or not answered for a push interval."""
        asks = []
        for number in shipment.window():
            sent = shipment.sent_at.get(number)
            if sent is None or now - sent >= self._push_interval:
                shipment.sent_at[number] = now
                asks.append(Ask(shipment.destination, shipment.chunks[number]))
        return asks
