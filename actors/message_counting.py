"""CountsMessages: the part of an actor shell that counts its traffic into its
`metrics` (docs/DESIGN.md section 14), shared by the database server, the
coordinator replica and the clerk. Every message received (timers aside) and
sent counts once, by class, so `raftline bench` can report messages per
operation for all actors together."""

from __future__ import annotations

from thespian.actors import WakeupMessage

from actors.metrics import Metrics


class CountsMessages:
    """Mixin before ActorTypeDispatcher: `class Server(CountsMessages, ActorTypeDispatcher)`."""

    metrics: Metrics

    def receiveMessage(self, message, sender):
        if not isinstance(message, WakeupMessage):
            self.metrics.count("raftline_messages_received_total", kind=type(message).__name__)
        return super().receiveMessage(message, sender)

    def send(self, targetAddr, msg):
        self.metrics.count("raftline_messages_sent_total", kind=type(msg).__name__)
        super().send(targetAddr, msg)
