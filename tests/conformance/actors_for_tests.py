"""Actors and messages of the conformance tests. They live in an importable module
since actor processes import them by name; every class name starts with `Conf`
because Thespian dispatches on bare class names, which must stay unique in the app."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

from thespian.actors import ActorTypeDispatcher

# -- messages ---------------------------------------------------------------------------


class ConfAck:
    pass


class ConfPing:
    """Answered with a ConfPong naming the answering process."""


class ConfPong:
    def __init__(self, pid: int, node: str | None = None):
        self.pid = pid
        self.node = node


class ConfPayload:
    def __init__(self, data: bytes):
        self.data = data


class ConfNumbered:
    def __init__(self, tag: str, number: int):
        self.tag = tag
        self.number = number


class ConfSendNumbered:
    """Asks a ConfSequenceSender to send ConfNumbered(tag, 0..count-1) to `target`."""

    def __init__(self, target, tag: str, count: int):
        self.target = target
        self.tag = tag
        self.count = count


class ConfGetReceived:
    pass


class ConfReceived:
    def __init__(self, items: list[tuple[str, int]]):
        self.items = items


class ConfSpawnChild:
    pass


class ConfChildReport:
    def __init__(self, child, child_pid: int, parent_pid: int):
        self.child = child
        self.child_pid = child_pid
        self.parent_pid = parent_pid


class ConfGetExits:
    pass


class ConfExits:
    def __init__(self, children: list):
        self.children = children


class ConfHandleDeadLetters:
    pass


class ConfGetDeadLetters:
    pass


class ConfDeadLetters:
    def __init__(self, items: list[tuple[str, int]]):
        self.items = items


class ConfTalkTo:
    """Asks a ConfRelay to exchange a ping with `target`, then answer ConfAck."""

    def __init__(self, target):
        self.target = target


class ConfForward:
    """Asks a ConfRelay to send `messages` to `target`."""

    def __init__(self, target, messages: list):
        self.target = target
        self.messages = messages


class ConfKillThenForward(ConfForward):
    """As ConfForward, after SIGKILLing process `pid` (the target's)."""

    def __init__(self, target, messages: list, pid: int):
        super().__init__(target, messages)
        self.pid = pid


class ConfStartTimer:
    def __init__(self, seconds: float):
        self.seconds = seconds


class ConfTimerFired:
    def __init__(self, elapsed: float):
        self.elapsed = elapsed


class ConfWatchConvention:
    pass


class ConfGetConventionUpdates:
    pass


class ConfConventionUpdates:
    def __init__(self, items: list[tuple[str | None, bool]]):
        self.items = items


# -- actors -----------------------------------------------------------------------------


class ConfEcho(ActorTypeDispatcher):
    def receiveMsg_ConfPing(self, message, sender):
        self.send(sender, ConfPong(os.getpid()))

    def receiveMsg_ConfPayload(self, message, sender):
        self.send(sender, message)


class ConfRecorder(ActorTypeDispatcher):
    """Records every ConfNumbered in the order received."""

    def __init__(self):
        super().__init__()
        self.items = []

    def receiveMsg_ConfNumbered(self, message, sender):
        self.items.append((message.tag, message.number))

    def receiveMsg_ConfGetReceived(self, message, sender):
        self.send(sender, ConfReceived(self.items))


class ConfSequenceSender(ActorTypeDispatcher):
    def receiveMsg_ConfSendNumbered(self, message, sender):
        for number in range(message.count):
            self.send(message.target, ConfNumbered(message.tag, number))


class ConfParent(ActorTypeDispatcher):
    """Creates a ConfEcho child on request and reports it once the child has
    answered; records the children whose exit it was told of."""

    def __init__(self):
        super().__init__()
        self.asker = None
        self.exited = []

    def receiveMsg_ConfSpawnChild(self, message, sender):
        self.asker = sender
        self.send(self.createActor(ConfEcho), ConfPing())

    def receiveMsg_ConfPong(self, message, sender):
        self.send(self.asker, ConfChildReport(sender, message.pid, os.getpid()))

    def receiveMsg_ChildActorExited(self, message, sender):
        self.exited.append(message.childAddress)

    def receiveMsg_ConfGetExits(self, message, sender):
        self.send(sender, ConfExits(self.exited))


class ConfDeadLetterSink(ActorTypeDispatcher):
    """Once asked, handles the system's dead letters; records the ConfNumbered ones."""

    def __init__(self):
        super().__init__()
        self.items = []

    def receiveMsg_ConfHandleDeadLetters(self, message, sender):
        self.handleDeadLetters(startHandling=True)

    def receiveMsg_DeadEnvelope(self, message, sender):
        if isinstance(message.deadMessage, ConfNumbered):
            self.items.append((message.deadMessage.tag, message.deadMessage.number))

    def receiveMsg_ConfGetDeadLetters(self, message, sender):
        self.send(sender, ConfDeadLetters(self.items))


class ConfRelay(ActorTypeDispatcher):
    """Talks to other actors on request, so that the sends under test are an
    actor's, over the connections that actor has."""

    def __init__(self):
        super().__init__()
        self.asker = None

    def receiveMsg_ConfTalkTo(self, message, sender):
        self.asker = sender
        self.send(message.target, ConfPing())

    def receiveMsg_ConfPong(self, message, sender):
        self.send(self.asker, ConfAck())

    def receiveMsg_ConfKillThenForward(self, message, sender):
        os.kill(message.pid, signal.SIGKILL)
        self.receiveMsg_ConfForward(message, sender)

    def receiveMsg_ConfForward(self, message, sender):
        for each in message.messages:
            self.send(message.target, each)


class ConfTimer(ActorTypeDispatcher):
    """Answers ConfStartTimer with the seconds its wakeup took to arrive."""

    def __init__(self):
        super().__init__()
        self.asker = None
        self.started = 0.0

    def receiveMsg_ConfStartTimer(self, message, sender):
        self.asker = sender
        self.started = time.monotonic()
        self.wakeupAfter(timedelta(seconds=message.seconds))

    def receiveMsg_WakeupMessage(self, message, sender):
        self.send(self.asker, ConfTimerFired(time.monotonic() - self.started))


class ConfConventionWatcher(ActorTypeDispatcher):
    """Once asked, records the convention's updates as (node capability, added)."""

    def __init__(self):
        super().__init__()
        self.items = []

    def receiveMsg_ConfWatchConvention(self, message, sender):
        self.notifyOnSystemRegistrationChanges(True)
        self.send(sender, ConfAck())

    def receiveMsg_ActorSystemConventionUpdate(self, message, sender):
        self.items.append(((message.remoteCapabilities or {}).get("node"), message.remoteAdded))

    def receiveMsg_ConfGetConventionUpdates(self, message, sender):
        self.send(sender, ConfConventionUpdates(self.items))


class ConfPlaced(ActorTypeDispatcher):
    """Runs only on a system whose capabilities match every requirement; answers
    ConfPing with its process and the `node` capability of its system."""

    @staticmethod
    def actorSystemCapabilityCheck(capabilities, requirements):
        return all(capabilities.get(name) == value for name, value in (requirements or {}).items())

    def __init__(self, capabilities=None, requirements=None):
        super().__init__()
        self.node = (capabilities or {}).get("node")

    def receiveMsg_ConfPing(self, message, sender):
        self.send(sender, ConfPong(os.getpid(), self.node))
