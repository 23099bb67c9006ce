"""DatabaseServer: the Thespian shell around one Replica (docs/DESIGN.md sections 1, 2, 5).

Everything a server decides lives in actors/replica.py. This shell only:
- turns `wakeupAfter` into logical ticks, tagged with a generation so a stale
  wakeup (wakeups cannot be cancelled) is ignored;
- reads the clocks before every input and hands them to the Replica
  (`observe_clock`: the monotonic one times the leader's lease, the Unix one
  sets a new leader's read floor);
- hands every message to the Replica and sends what it returns, resolving
  destinations through the coordinator's MapUpdate (the Replica persisted
  everything those messages depend on before returning them);
- reports to every coordinator replica (ToCoordinator, ServerStarted,
  ServerRefused), so whichever acts next knows this server: its address
  and PID, its cluster's leader, the answers of a job in flight. A MapUpdate
  from an older coordinator term than one already seen is ignored;
- sleeps on request: while asleep it neither ticks nor processes messages
  (they are dropped, as a frozen peer's are), then wakes and repairs its log;
- runs on the host the coordinator asked for: `actorSystemCapabilityCheck`
  accepts an actor system whose `node` capability matches the `node`
  requirement, and a relative data directory resolves against that actor
  system's `raftline data dir` capability (the host's own data directory);
- writes one log line per notable event to `<data_dir>/server.log`: time,
  replica, term, role, commit, last index, applied, then the event (slot
  move steps and membership changes included, as the Replica reports them).
  Entries a restart replays from storage were logged when first applied:
  one summary line stands for them. Errors go to the system log as well.
- keeps this process's metrics (docs/DESIGN.md section 14): it counts every
  message it receives (timers aside) and sends, its storage times each
  write, the Replica counts the rest; a status reply carries them.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from thespian.actors import (
    ActorExitRequest,
    ActorTypeDispatcher,
    ChildActorExited,
    PoisonMessage,
    WakeupMessage,
)

from actors.datadir import DataDirInUse, lock_data_dir
from actors.message_counting import CountsMessages
from actors.messages import (
    Isolate,
    MapUpdate,
    ReplicaStatusReply,
    ReplicaStatusRequest,
    ServerConfig,
    ServerFailed,
    ServerRefused,
    ServerStarted,
    Sleep,
)
from actors.metrics import Metrics
from actors.process import DATA_DIR_CAPABILITY, on_required_node, set_process_title
from actors.raft.messages import RAFT_MESSAGES, ConfState, RepairLogReply, RepairLogRequest
from actors.raft.node import RaftConfig
from actors.raft.storage import MemoryStorage, StorageUnavailable
from actors.replica import (
    Replica,
    ReplicaConfig,
    ToClient,
    ToCoordinator,
    ToLeaderOf,
    ToReplica,
)
from actors.sqlite_storage import SqliteStorage
from actors.transport import write_now


class DatabaseServer(CountsMessages, ActorTypeDispatcher):
    @staticmethod
    def actorSystemCapabilityCheck(capabilities: dict, requirements: dict) -> bool:
        return on_required_node(capabilities, requirements)

    def __init__(self, capabilities=None, requirements=None):
        # Thespian passes these by name (docs/DESIGN.md section 12, "conventions").
        super().__init__()
        self.home = (capabilities or {}).get(DATA_DIR_CAPABILITY)
        self.config: ServerConfig | None = None
        self.replica: Replica | None = None
        self.storage = None
        self.data_dir_lock = None
        self.coordinators: tuple[object, ...] = ()
        self.coordinator_term = 0
        self.addresses: dict[str, object] = {}
        self.clients: dict[str, object] = {}  # reply token -> the address it stands for
        self.leaders: dict[str, str | None] = {}
        self.tick_generation = 0
        self.asleep_until = 0.0
        self.isolated_until = 0.0
        self.log: logging.Logger | None = None
        self.last_role: str | None = None
        self.metrics = Metrics()

    # -- start ----------------------------------------------------------------

    def receiveMsg_ServerConfig(self, config: ServerConfig, sender) -> None:
        if self.config is not None:
            return  # re-run after an exception, or a duplicate: already running
        if not os.path.isabs(config.data_dir):
            if self.home is None:
                raise RuntimeError(f"{config.replica}: relative data_dir {config.data_dir!r} "
                                   f"but this actor system has no {DATA_DIR_CAPABILITY!r} capability")
            config = replace(config, data_dir=os.path.join(self.home, config.data_dir))
        self.config = config
        self.coordinators = config.coordinators or (sender,)
        set_process_title(f"raftline server {config.replica}")
        Path(config.data_dir).mkdir(parents=True, exist_ok=True)
        self.log = _replica_logger(config)
        try:
            # Held until this process ends: one owner per data directory, always.
            self.data_dir_lock = lock_data_dir(config.data_dir)
        except DataDirInUse as error:
            self.alert("%s: %s; exiting without opening its storage", config.replica, error)
            self.send(sender, ServerRefused(replica=config.replica, holder_pid=error.holder or 0))
            self.send(self.myAddress, ActorExitRequest())
            return
        try:
            if config.engine == "sqlite":
                self.storage = SqliteStorage(os.path.join(config.data_dir, "raft.db"), fsync=config.fsync,
                                             metrics=self.metrics)
            else:
                self.storage = MemoryStorage()
        except StorageUnavailable as error:
            self.fail(error)
            return
        raft = RaftConfig(
            id=config.replica,
            election_min=config.election_min,
            election_max=config.election_max,
            heartbeat_ticks=config.heartbeat_ticks,
        )
        try:
            self.replica = Replica(
                ReplicaConfig(
                    cluster=config.cluster,
                    raft=raft,
                    initial_conf=ConfState(voters=config.voters),
                    snapshot_entries=config.snapshot_entries,
                    prepare_timeout_ticks=config.prepare_timeout_ticks,
                    retention_ticks=config.retention_ticks,
                    read_from_followers=config.read_from_followers,
                    slot_count=config.slot_count,
                    founding_slots=config.founding_slots,
                    tick_ms=config.tick_ms,
                    lease_reads=config.lease_reads,
                    max_clock_offset=config.max_clock_offset,
                ),
                self.storage,
                random.Random(config.seed),
                metrics=self.metrics,
                send_before_saving=self.send_before_saving,
            )
        except StorageUnavailable as error:
            self.fail(error)
            return
        # Re-applying the stored entries repeated events logged when they were
        # first applied: written again now, they would read as new slot moves.
        self.replica.take_events()
        self.event(f"started (pid {os.getpid()}), recovered from storage: {self.replay_summary()}")
        self.tell_coordinators(ServerStarted(replica=config.replica, pid=os.getpid()))
        self.schedule_tick()

    def schedule_tick(self) -> None:
        self.wakeupAfter(timedelta(milliseconds=self.config.tick_ms), payload=("tick", self.tick_generation))

    # -- routing ----------------------------------------------------------------

    def receiveMsg_MapUpdate(self, update: MapUpdate, sender) -> None:
        if update.coordinator_term < self.coordinator_term:
            return
        self.coordinator_term = update.coordinator_term
        self.coordinators = update.coordinators or self.coordinators
        self.addresses = dict(update.addresses)
        self.leaders = dict(update.leaders)

    def tell_coordinators(self, message) -> None:
        for coordinator in self.coordinators:
            self.send(coordinator, message)

    def resolve(self, destination):
        if isinstance(destination, ToReplica):
            return self.addresses.get(destination.replica)
        if isinstance(destination, ToClient):
            return self.clients.get(destination.token)
        if isinstance(destination, ToLeaderOf):
            leader = self.leaders.get(destination.cluster)
            return self.addresses.get(leader) if leader else None
        raise TypeError(f"unknown destination {destination!r}")

    def flush(self) -> None:
        self.send_all(self.replica.take_output())
        for line in self.replica.take_events():
            self.event(line)
        role = self.replica.role
        if role != self.last_role:
            self.last_role = role
            self.event(f"became {role}")

    def send_before_saving(self, appends: list) -> None:
        """A leader's AppendLogs, handed over before its fsync: on the wire now,
        so its followers write while it writes."""
        self.send_all(appends)
        write_now(self)

    def send_all(self, output: list) -> None:
        cut_off = self.isolated()
        for destination, message in output:
            if cut_off and isinstance(destination, ToReplica):
                continue
            if isinstance(message, RepairLogRequest):
                self.event(f"found a gap after index {message.last_index}: asking the leader to repair the log")
            if isinstance(destination, ToCoordinator):
                self.tell_coordinators(message)
                continue
            address = self.resolve(destination)
            if address is not None:
                self.send(address, message)

    # -- the protocol ------------------------------------------------------------

    def asleep(self) -> bool:
        return self.asleep_until > time.monotonic()

    def isolated(self) -> bool:
        return self.isolated_until > time.monotonic()

    def deliver(self, message, sender) -> None:
        if self.replica is None or self.asleep():
            return
        if isinstance(message, RAFT_MESSAGES) and self.isolated():
            return  # cut off from its peers (but not from clients)
        if isinstance(message, RepairLogReply):
            what = "a snapshot chunk" if message.snapshot is not None else f"{len(message.entries)} entries"
            self.event(f"repair from {message.leader}: {what}")
        token = str(sender)  # the Replica keys replies by token; addresses are not hashable
        self.clients[token] = sender
        self.guarded(lambda: self.replica.receive(message, token))

    def guarded(self, step) -> None:
        """Hand the Replica the clocks, run one step of it, then send its output.
        An exception is a bug that may have left the Replica half-updated:
        rather than let Thespian re-run the handler on that state, crash, and
        let the coordinator restart this server from its storage."""
        try:
            self.replica.observe_clock(monotonic=time.monotonic(), unix=time.time())
            step()
            self.flush()
        except StorageUnavailable as error:
            self.fail(error)
        except Exception:
            self.alert("%s: crashed; exiting to be restarted from storage", self.config.replica, exc_info=True)
            self.replica = None
            if self.storage is not None:
                self.storage.close()
                self.storage = None
            self.send(self.myAddress, ActorExitRequest())

    def fail(self, error: StorageUnavailable) -> None:
        """Storage failed outside the process: say why to the coordinators, then
        exit; the restart (with backoff) reopens the storage, which keeps
        everything acknowledged, since nothing of a failed write took effect."""
        self.alert("%s: storage failed (%s); exiting to be restarted", self.config.replica, error.reason)
        self.tell_coordinators(ServerFailed(replica=self.config.replica, reason=error.reason))
        self.replica = None
        if self.storage is not None:
            self.storage.close()
            self.storage = None
        self.send(self.myAddress, ActorExitRequest())

    receiveMsg_VoteRequest = deliver
    receiveMsg_VoteReply = deliver
    receiveMsg_AppendLog = deliver
    receiveMsg_AppendLogReply = deliver
    receiveMsg_RepairLogRequest = deliver
    receiveMsg_RepairLogReply = deliver
    receiveMsg_TimeoutNow = deliver
    receiveMsg_ClientBatch = deliver
    receiveMsg_ClientBatchReply = deliver
    # From the coordinator; the Replica answers them ToCoordinator.
    receiveMsg_MoveSlot = deliver
    receiveMsg_ChangeMembership = deliver

    def receiveMsg_WakeupMessage(self, message: WakeupMessage, sender) -> None:
        kind, generation = message.payload
        if generation != self.tick_generation or self.replica is None:
            return  # a stale timer from before a sleep
        if kind == "wake":
            self.asleep_until = 0.0
            self.event("woke up")
        else:
            self.guarded(self.replica.tick)
        self.schedule_tick()

    def receiveMsg_Sleep(self, message: Sleep, sender) -> None:
        if self.replica is None:
            return
        self.asleep_until = time.monotonic() + message.seconds
        self.tick_generation += 1  # the running tick chain stops here
        self.event(f"sleeping for {message.seconds:g} s")
        self.wakeupAfter(timedelta(seconds=message.seconds), payload=("wake", self.tick_generation))

    def receiveMsg_Isolate(self, message: Isolate, sender) -> None:
        self.isolated_until = time.monotonic() + message.seconds
        self.event(f"cut off from its peers for {message.seconds:g} s")

    def receiveMsg_ReplicaStatusRequest(self, message: ReplicaStatusRequest, sender) -> None:
        if self.replica is None or self.asleep():
            return
        status = dict(self.replica.status())
        status["pid"] = os.getpid()
        if message.with_metrics:
            status["metrics"] = self.replica.metrics_snapshot()
        self.send(sender, ReplicaStatusReply(round=message.round, replica=self.config.replica, status=status))

    # -- lifecycle ----------------------------------------------------------------

    def receiveMsg_ActorExitRequest(self, message: ActorExitRequest, sender) -> None:
        if self.storage is not None:
            self.storage.close()
            self.storage = None
        self.replica = None

    def receiveMsg_ChildActorExited(self, message: ChildActorExited, sender) -> None:
        """Servers have no children; nothing to supervise."""

    def receiveMsg_PoisonMessage(self, message: PoisonMessage, sender) -> None:
        if self.log is not None:
            self.event(f"undeliverable: {type(message.poisonMessage).__name__}")

    # -- logging ------------------------------------------------------------------

    def replay_summary(self) -> str:
        """What the Replica re-applied from storage when it was created: one line
        standing for the events of those entries."""
        status = self.replica.status()
        first, last = status["snapshot_index"] + 1, status["applied"]
        replay = f"replayed entries {first}..{last}" if last >= first else "no entries to replay"
        return f"snapshot at index {status['snapshot_index']}, {replay}"

    def alert(self, message: str, *args, exc_info: bool = False) -> None:
        """An error in this server's log and, for the operator, in the system log."""
        for logger in (self.log, logging.getLogger("raftline.server")):
            logger.error(message, *args, exc_info=exc_info)

    def event(self, what: str) -> None:
        if self.log is None:
            return
        status = self.replica.status() if self.replica is not None else {}
        self.log.info(
            "%s term=%s %s commit=%s last=%s applied=%s %s",
            self.config.replica,
            status.get("term", 0),
            status.get("role", "-"),
            status.get("commit", 0),
            status.get("last_index", 0),
            status.get("applied", 0),
            what,
        )


def _replica_logger(config: ServerConfig) -> logging.Logger:
    logger = logging.getLogger(f"raftline.server.{config.replica}")
    logger.setLevel(logging.INFO)
    logger.propagate = False  # its own file; not the actor system's log
    handler = logging.FileHandler(os.path.join(config.data_dir, "server.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.handlers[:] = [handler]
    return logger

