"""Two changes to Thespian 4.0.1's behaviour that raftline's base makes when
it is installed, kept apart here because they reach into Thespian rather
than plug into it (docs/DESIGN.md section 13). Both are candidates to offer
upstream; an upgrade of Thespian must re-check them (the conformance suite
does).

1. Lazy descriptions. For every message, Thespian's actor loop logs
   `envelope.identify()` and `intent.identify()` at DEBUG level, and the
   description (the message's repr, truncated) is built before the logging
   call can drop it: about a tenth of an actor's CPU per message. Here
   `identify()` returns an object that is formatted only if logged.
2. The send governor. Thespian sleeps an actor for 0.1 s whenever it sends
   more than ~4,480 messages a second (`systemCommon.RATE_THROTTLE`, sized
   for 2 KB messages on a 100 Mb/s link). On raftline's transport one actor
   can send several times that over loopback, and a tenth of a second's
   stall in a Raft leader is an election; the transport bounds what waits
   for each receiver instead (`tcp.PEER_BACKLOG_BYTES`).
"""

from thespian.system import systemCommon
from thespian.system.transport import ReceiveEnvelope, TransmitIntent

SEND_RATE_CEILING = 1_000_000
"""Messages a second above which Thespian's governor would stall an actor."""


class _Description:
    """A description formatted only when someone turns it into text."""

    __slots__ = ("_describe",)

    def __init__(self, describe):
        self._describe = describe

    def __str__(self) -> str:
        return self._describe()

    __repr__ = __str__


def _lazy(identify):
    def lazily(self):
        return _Description(lambda: identify(self))

    lazily.__name__ = identify.__name__
    lazily.__doc__ = identify.__doc__
    lazily.eager = identify
    return lazily


def apply() -> None:
    """Make both changes (idempotent)."""
    if not hasattr(ReceiveEnvelope.identify, "eager"):
        eager = ReceiveEnvelope.identify
        ReceiveEnvelope.identify = _lazy(eager)
        ReceiveEnvelope.__str__ = eager  # it returned identify(): it must stay a str
    if not hasattr(TransmitIntent.identify, "eager"):
        TransmitIntent.identify = _lazy(TransmitIntent.identify)
    systemCommon.RATE_THROTTLE = max(systemCommon.RATE_THROTTLE, SEND_RATE_CEILING)
