"""Clerk: the Thespian shell around one ClerkSession, one per application process (docs/DESIGN.md section 4).

The application's process talks to its clerk with ClerkRead / ClerkGet / ClerkCommit
(through ActorSystem.ask); the session (clerk/session.py) decides everything
else. Each handler reads the clock once, hands the message to the session and
carries out the actions it returns. The shell itself only subscribes to the
coordinator, answers its ClerkMetricsRequest with the session's metrics
(CountsMessages adds every message in and out to them), and exits when its
application's process is gone.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from datetime import timedelta

from thespian.actors import (
    ActorExitRequest,
    ActorTypeDispatcher,
    ChildActorExited,
    PoisonMessage,
    WakeupMessage,
)

from actors.message_counting import CountsMessages
from actors.messages import (
    ClerkCommit,
    ClerkGet,
    ClerkMetricsReply,
    ClerkMetricsRequest,
    ClerkOpen,
    ClerkOpenReply,
    ClerkRead,
    ClientBatchReply,
    MapUpdate,
    Subscribe,
    Unsubscribe,
)
from actors.process import set_process_title
from clerk.session import (
    Action,
    AnswerDue,
    ClerkSession,
    Reply,
    RerunDue,
    Send,
    SessionConfig,
    TickDue,
    WakeAfter,
)

OWNER_CHECK = timedelta(seconds=2)


@dataclass(frozen=True, slots=True)
class OwnerCheck:
    """Wakeup: time to check that the application's process `pid` is still alive."""

    pid: int


class Clerk(CountsMessages, ActorTypeDispatcher):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        clerk_id = f"k{os.getpid()}-{random.getrandbits(24):06x}"
        # Read once: timestamps are Unix time, the session's clock the monotonic one.
        config = SessionConfig(clerk=clerk_id, wall_offset=time.time() - time.monotonic())
        self.session = ClerkSession(config, random.Random())
        self.metrics = self.session.metrics
        self.coordinators: tuple[object, ...] = ()
        self.coordinator_term = 0

    def carry_out(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case Send(address=address, batch=batch):
                    self.send(address, batch)
                case Reply(asker=asker, reply=reply):
                    self.send(asker, reply)
                case WakeAfter(seconds=seconds, wakeup=wakeup):
                    self.wakeupAfter(timedelta(seconds=seconds), payload=wakeup)

    # -- the application ------------------------------------------------------------

    def receiveMsg_ClerkOpen(self, message: ClerkOpen, sender) -> None:
        if not self.coordinators:
            set_process_title("raftline clerk")
            self.coordinators = message.coordinators
            for coordinator in self.coordinators:
                self.send(coordinator, Subscribe(pid=os.getpid()))
            self.wakeupAfter(OWNER_CHECK, payload=OwnerCheck(message.owner_pid))
        # Again to every later Store of the same process: it asks to know this clerk still runs.
        self.send(sender, ClerkOpenReply(pid=os.getpid()))

    def receiveMsg_ClerkRead(self, message: ClerkRead, sender) -> None:
        self.carry_out(self.session.on_app_request(message, sender, time.monotonic()))

    def receiveMsg_ClerkGet(self, message: ClerkGet, sender) -> None:
        self.carry_out(self.session.on_app_request(message, sender, time.monotonic()))

    def receiveMsg_ClerkCommit(self, message: ClerkCommit, sender) -> None:
        self.carry_out(self.session.on_app_request(message, sender, time.monotonic()))

    def check_owner(self, pid: int) -> None:
        """An application that died without closing leaves its clerk behind: exit then."""
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            self.send(self.myAddress, ActorExitRequest())
            return
        except PermissionError:
            pass
        self.wakeupAfter(OWNER_CHECK, payload=OwnerCheck(pid))

    # -- the coordinator and the servers ----------------------------------------------

    def receiveMsg_MapUpdate(self, update: MapUpdate, sender) -> None:
        if update.coordinator_term < self.coordinator_term:
            return  # from a replica that acted earlier
        self.coordinator_term = update.coordinator_term
        self.coordinators = update.coordinators or self.coordinators
        self.carry_out(self.session.on_map(update, time.monotonic()))

    def receiveMsg_ClientBatchReply(self, message: ClientBatchReply, sender) -> None:
        self.carry_out(self.session.on_server_reply(message, time.monotonic()))

    def receiveMsg_ClerkMetricsRequest(self, message: ClerkMetricsRequest, sender) -> None:
        self.send(sender, ClerkMetricsReply(clerk=self.session.clerk, metrics=self.metrics.snapshot()))

    def receiveMsg_WakeupMessage(self, message: WakeupMessage, sender) -> None:
        wakeup = message.payload
        if isinstance(wakeup, OwnerCheck):
            self.check_owner(wakeup.pid)
        elif isinstance(wakeup, TickDue):
            self.carry_out(self.session.tick(time.monotonic()))
        elif isinstance(wakeup, RerunDue):
            self.carry_out(self.session.on_rerun_due(wakeup, time.monotonic()))
        elif isinstance(wakeup, AnswerDue):
            self.carry_out(self.session.on_answer_due(wakeup, time.monotonic()))

    # -- lifecycle ----------------------------------------------------------------------

    def receiveMsg_ActorExitRequest(self, message: ActorExitRequest, sender) -> None:
        for coordinator in self.coordinators:
            self.send(coordinator, Unsubscribe())

    def receiveMsg_ChildActorExited(self, message: ChildActorExited, sender) -> None:
        """A clerk has no children."""

    def receiveMsg_PoisonMessage(self, message: PoisonMessage, sender) -> None:
        """Undeliverable: the core's timeouts retry whatever mattered."""
