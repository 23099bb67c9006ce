"""Measure one actor round trip in a running actor system, for `raftline bench`.

Two probe actors ping-pong inside the system, so the figure is what one
request/response between two raftline actors costs on this machine right now
(the unit behind ClerkReply.hops). The driver times each round trip itself;
the outside asker only starts it and collects the figures.

Message class names start with "Probe": Thespian dispatches on bare class
names, which must be unique across the application.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from thespian.actors import ActorExitRequest, ActorTypeDispatcher

ROUND_TRIPS = 200
PROBE_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, kw_only=True, slots=True)
class ProbeRun:
    """Asks the driver to ping the echo actor `count` times, one at a time.

    Fields:
        echo: the ProbeEcho actor's address.
        count: round trips to time.
    """

    echo: object
    count: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ProbePing:
    """Fields:
    seq: the round trip's number, echoed back."""

    seq: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ProbePong:
    """Fields:
    seq: the ProbePing's number."""

    seq: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ProbeReport:
    """The driver's answer to ProbeRun.

    Fields:
        round_trips_ms: every round trip's duration, in order.
    """

    round_trips_ms: tuple[float, ...]


class ProbeEcho(ActorTypeDispatcher):
    def receiveMsg_ProbePing(self, message: ProbePing, sender) -> None:
        self.send(sender, ProbePong(seq=message.seq))


class ProbeDriver(ActorTypeDispatcher):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asker = None
        self.echo = None
        self.remaining = 0
        self.sent_at = 0.0
        self.round_trips: list[float] = []

    def receiveMsg_ProbeRun(self, message: ProbeRun, sender) -> None:
        self.asker, self.echo, self.remaining = sender, message.echo, message.count
        self.round_trips = []
        self.ping()

    def ping(self) -> None:
        self.sent_at = time.perf_counter()
        self.send(self.echo, ProbePing(seq=self.remaining))

    def receiveMsg_ProbePong(self, message: ProbePong, sender) -> None:
        if message.seq != self.remaining:
            return  # not the ping in flight
        self.round_trips.append((time.perf_counter() - self.sent_at) * 1000)
        self.remaining -= 1
        if self.remaining > 0:
            self.ping()
        else:
            self.send(self.asker, ProbeReport(round_trips_ms=tuple(self.round_trips)))


def measure_round_trip(system, count: int = ROUND_TRIPS) -> float:
    """The median round trip between two fresh actors of `system` (an
    ActorSystem handle), in ms; the actors exit afterwards."""
    echo = system.createActor(ProbeEcho)
    driver = system.createActor(ProbeDriver)
    try:
        reply = system.ask(driver, ProbeRun(echo=echo, count=count), PROBE_TIMEOUT_SECONDS)
        deadline = time.monotonic() + PROBE_TIMEOUT_SECONDS
        while reply is not None and not isinstance(reply, ProbeReport) and time.monotonic() < deadline:
            reply = system.listen(max(0.0, deadline - time.monotonic()))
        if not isinstance(reply, ProbeReport):
            raise TimeoutError(f"the round-trip probe did not finish within {PROBE_TIMEOUT_SECONDS:g} s")
        return statistics.median(reply.round_trips_ms)
    finally:
        system.tell(echo, ActorExitRequest())
        system.tell(driver, ActorExitRequest())
