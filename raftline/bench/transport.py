"""`raftline bench transport`: Thespian's stock multiprocTCPBase and raftline's
own system base (actors.transport) measured side by side.

    raftline bench transport [--rounds 5] [--bases stock,raftline] [--json]
    python3 -m raftline.bench.transport --one-round BASE --port P --directory D   (one round, JSON on stdout)

What one round measures, on a fresh actor system of one base with three
actors (a driver and two echoes, each its own process):
- round trip: the driver pings an echo and waits for its pong, one at a
  time; the median, timed inside the driver with time.perf_counter.
- CPU per message: the driver's and the echo's CPU time (time.process_time,
  asked of each actor before and after) over those round trips, divided by
  the messages (a ping and a pong per round trip): what one message costs its
  sender plus its receiver.
- pipelined: the driver keeps 32 pings (the window) in flight to an echo, sending a
  new one per pong, for the phase's seconds; pongs per second.
- leader to 2 followers: the driver pings both echoes and waits for both
  pongs; the median of such rounds.
Every phase stops after its count or its seconds, whichever comes first.

How a run works:
- Each round runs in its own process (Thespian keeps one system base per
  process), on a free admin port, and leaves nothing behind: after shutdown
  it SIGKILLs whatever of the admin's session survived. A round that does not
  finish within ROUND_TIMEOUT is killed with that session.
- Rounds alternate between the bases, the order flipping every round, so the
  machine's noise falls on both alike; each figure's ratio is the median of
  the stock/raftline ratios of rounds run back to back, not of the medians.
- A base whose round fails (raftline's not importable yet, say) runs no more
  rounds; the report gives its reason in one line.
- Speed targets are printed beside the figures, never checked.

Class names start with "TransportBench": Thespian dispatches on bare class
names, which must be unique across the application.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from coordinator.admin import (
    free_port,
    host_environment,
    listener_session,
    session_processes,
    set_thespian_environment,
)

# Thespian reads its environment when first imported. raftline's base (and its
# tuning of Thespian) is installed only in the rounds that measure it.
set_thespian_environment()
from thespian.actors import ActorExitRequest, ActorTypeDispatcher

from actors.process import process_running
from raftline.bench.probe import ProbePing, ProbePong
from raftline.bench.report import load_line
from raftline.harness import progress_line

BASES = ("stock", "raftline")
STOCK_BASE = "multiprocTCPBase"
WARMUP_ROUNDS = 20
"""Pings to both echoes before anything is timed, so every connection is open."""
ROUND_TIMEOUT = 30.0
"""Seconds a round's process may take, system start and shutdown included."""
ASK_TIMEOUT = 10.0
FIGURES = ("round_trip_us", "cpu_per_message_us", "pipelined_per_s", "fanout_us")
LABELS = {
    "round_trip_us": "actor round trip µs",
    "cpu_per_message_us": "CPU per message µs (both ends)",
    "pipelined_per_s": "pipelined msg/s",
    "fanout_us": "leader to 2 followers µs",
}
TARGETS = {"round_trip_us": "≤ 250", "cpu_per_message_us": "≤ 120", "pipelined_per_s": "≥ 20000"}
"""The issue's targets for raftline's base."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TransportBenchSettings:
    """How much one round measures.

    Fields:
        round_trips: round trips timed (and their CPU counted).
        window: pings in flight in the pipelined phase.
        fanout_rounds: leader-to-2-followers rounds timed.
        phase_seconds: the most any phase takes; the pipelined phase takes exactly this.
    """

    round_trips: int = 500
    window: int = 32
    fanout_rounds: int = 300
    phase_seconds: float = 1.0


# -- the actors -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class TransportBenchCpuQuery:
    """Asks an actor for its process's CPU time (answered with TransportBenchCpu)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TransportBenchCpu:
    """Fields:
    seconds: the actor process's CPU time so far (user + system)."""

    seconds: float


@dataclass(frozen=True, kw_only=True, slots=True)
class TransportBenchSteps:
    """Asks the driver for `count` steps, each one ping to every target and
    the wait for all their pongs, stopping after `seconds`; answered with
    TransportBenchTimings.

    Fields:
        targets: the echoes' addresses.
        count: steps to time.
        seconds: the most the steps may take.
    """

    targets: tuple
    count: int
    seconds: float


@dataclass(frozen=True, kw_only=True, slots=True)
class TransportBenchTimings:
    """Fields:
    durations_us: every step's duration, in order."""

    durations_us: tuple[float, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class TransportBenchPipeline:
    """Asks the driver to keep `window` pings in flight to `echo` for
    `seconds`; answered with TransportBenchThroughput.

    Fields:
        echo: the echo's address.
        window: pings in flight.
        seconds: how long to keep sending.
    """

    echo: object
    window: int
    seconds: float


@dataclass(frozen=True, kw_only=True, slots=True)
class TransportBenchThroughput:
    """Fields:
    messages: pongs received before the deadline.
    seconds: from the first ping to the last of those pongs."""

    messages: int
    seconds: float


class TransportBenchActor(ActorTypeDispatcher):
    """What every bench actor answers: its CPU time, and the request to exit."""

    def receiveMsg_TransportBenchCpuQuery(self, message: TransportBenchCpuQuery, sender) -> None:
        # process_time, not os.times or /proc: those count in 10 ms clock ticks.
        self.send(sender, TransportBenchCpu(seconds=time.process_time()))

    def receiveMsg_ActorExitRequest(self, message: ActorExitRequest, sender) -> None:
        pass  # nothing to release


class TransportBenchEcho(TransportBenchActor):
    def receiveMsg_ProbePing(self, message: ProbePing, sender) -> None:
        self.send(sender, ProbePong(seq=message.seq))


class TransportBenchDriver(TransportBenchActor):
    """Runs a phase per request (TransportBenchSteps, TransportBenchPipeline) and answers with its figures."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asker = None
        self.targets: tuple = ()
        self.pipelined = False
        self.seq = 0
        self.deadline = 0.0
        # steps
        self.remaining = 0
        self.awaited = 0
        self.step_began = 0.0
        self.durations_us: list[float] = []
        # pipelined
        self.in_flight = 0
        self.acked = 0
        self.began = 0.0
        self.last_ack = 0.0

    def receiveMsg_TransportBenchSteps(self, message: TransportBenchSteps, sender) -> None:
        self.asker, self.targets, self.pipelined = sender, message.targets, False
        self.remaining, self.durations_us = message.count, []
        self.deadline = time.perf_counter() + message.seconds
        self.step()

    def step(self) -> None:
        self.seq += 1
        self.awaited = len(self.targets)
        self.step_began = time.perf_counter()
        for target in self.targets:
            self.send(target, ProbePing(seq=self.seq))

    def receiveMsg_TransportBenchPipeline(self, message: TransportBenchPipeline, sender) -> None:
        self.asker, self.targets, self.pipelined = sender, (message.echo,), True
        self.in_flight, self.acked = 0, 0
        self.began = self.last_ack = time.perf_counter()
        self.deadline = self.began + message.seconds
        for _ in range(message.window):
            self.pipeline_ping()

    def pipeline_ping(self) -> None:
        self.seq += 1
        self.in_flight += 1
        self.send(self.targets[0], ProbePing(seq=self.seq))

    def receiveMsg_ProbePong(self, message: ProbePong, sender) -> None:
        now = time.perf_counter()
        if self.pipelined:
            self.in_flight -= 1
            if now < self.deadline:
                self.acked, self.last_ack = self.acked + 1, now
                self.pipeline_ping()
            elif self.in_flight == 0:  # drained: the next phase starts with nothing in flight
                self.send(self.asker, TransportBenchThroughput(messages=self.acked, seconds=self.last_ack - self.began))
            return
        if message.seq != self.seq:
            return  # not the step's
        self.awaited -= 1
        if self.awaited:
            return
        self.durations_us.append((now - self.step_began) * 1e6)
        self.remaining -= 1
        if self.remaining > 0 and now < self.deadline:
            self.step()
        else:
            self.send(self.asker, TransportBenchTimings(durations_us=tuple(self.durations_us)))


# -- one round ------------------------------------------------------------------------------------


def start_system(base: str, port: int, directory: Path):
    """A new actor system of `base` whose admin listens on `port`, logging to `directory`."""
    from thespian.actors import ActorSystem

    from coordinator.system import log_definitions

    log_defs = log_definitions(directory)
    if base == "stock":
        return ActorSystem(STOCK_BASE, {"Admin Port": port}, logDefs=log_defs)
    import actors.transport as transport

    transport.install()
    secret = directory / "secret"
    transport.create_secret(secret)
    capabilities = {"Admin Port": port, transport.SECRET_CAPABILITY: os.fspath(secret)}
    return ActorSystem(transport.BASE_NAME, capabilities, logDefs=log_defs)


def ask(system, actor, message, expect: type):
    """`actor`'s reply of type `expect` to `message`; TimeoutError after ASK_TIMEOUT."""
    deadline = time.monotonic() + ASK_TIMEOUT
    reply = system.ask(actor, message, ASK_TIMEOUT)
    while reply is not None and not isinstance(reply, expect) and time.monotonic() < deadline:
        reply = system.listen(max(0.0, deadline - time.monotonic()))
    if not isinstance(reply, expect):
        raise TimeoutError(f"no {expect.__name__} within {ASK_TIMEOUT:g} s")
    return reply


def measure(system, settings: TransportBenchSettings) -> dict:
    """The round's figures, measured by three new actors of `system`."""
    driver = system.createActor(TransportBenchDriver)
    echo, follower = system.createActor(TransportBenchEcho), system.createActor(TransportBenchEcho)
    both = (echo, follower)
    seconds = settings.phase_seconds
    ask(system, driver, TransportBenchSteps(targets=both, count=WARMUP_ROUNDS, seconds=seconds), TransportBenchTimings)

    def cpu_seconds() -> float:
        return sum(ask(system, actor, TransportBenchCpuQuery(), TransportBenchCpu).seconds for actor in (driver, echo))

    cpu_before = cpu_seconds()
    trips = ask(system, driver, TransportBenchSteps(targets=(echo,), count=settings.round_trips, seconds=seconds),
                TransportBenchTimings).durations_us
    cpu = cpu_seconds() - cpu_before
    pipeline = ask(system, driver, TransportBenchPipeline(echo=echo, window=settings.window, seconds=seconds),
                   TransportBenchThroughput)
    if not pipeline.messages:
        raise TimeoutError(f"no pipelined ping was answered within {seconds:g} s")
    fanout = ask(system, driver, TransportBenchSteps(targets=both, count=settings.fanout_rounds, seconds=seconds),
                 TransportBenchTimings).durations_us
    return {
        "round_trip_us": round(statistics.median(trips), 1),
        "round_trips": len(trips),
        "cpu_per_message_us": round(cpu / (2 * len(trips)) * 1e6, 1),
        "pipelined_per_s": round(pipeline.messages / pipeline.seconds),
        "pipelined": pipeline.messages,
        "fanout_us": round(statistics.median(fanout), 1),
        "fanout_rounds": len(fanout),
    }


def run_round(base: str, port: int, directory: Path, settings: TransportBenchSettings) -> dict:
    """One round on a new system of `base`: its figures and the PIDs of its
    processes, none of which runs any more when this returns."""
    directory.mkdir(parents=True, exist_ok=True)
    system = None
    try:
        system = start_system(base, port, directory)
        figures = measure(system, settings)
    finally:
        # Found before shutdown, and even when the start failed half-way: its admin may run.
        session = admin_session(port)
        processes = session_processes(session)
        if system is not None:
            system.shutdown()
        kill_processes(processes | session_processes(session))
    return {"base": base, **figures, "processes": sorted(processes)}


def admin_session(port: int) -> int:
    """The session of the admin listening on `port` (Thespian starts it in one of
    its own, which every actor inherits), or 0: none, or this process's own."""
    session = listener_session(port)
    return 0 if session == os.getsid(0) else session


def kill_processes(pids: set[int]) -> None:
    """SIGKILL `pids` (never this process) and wait, a few seconds at most, until they are gone."""
    pids = {pid for pid in pids if pid > 1 and pid != os.getpid()}
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(process_running(pid) for pid in pids):
        time.sleep(0.02)


def round_command(base: str, port: int, directory: Path, settings: TransportBenchSettings) -> list[str]:
    options = [f"--{name.replace('_', '-')}={value}" for name, value in asdict(settings).items()]
    return [sys.executable, "-m", "raftline.bench.transport", "--one-round", base, "--port", str(port),
            "--directory", os.fspath(directory), *options]


def round_in_process(base: str, directory: Path, settings: TransportBenchSettings) -> dict:
    """Run one round in a process of its own: its JSON, or {"error": one line}."""
    directory.mkdir(parents=True)
    port = free_port()
    output = directory / "output.txt"
    # Into a file, never a pipe: the actor system's admin inherits the round's stdout.
    with open(output, "w") as sink:
        child = subprocess.Popen(round_command(base, port, directory, settings), stdin=subprocess.DEVNULL,
                                 stdout=sink, stderr=subprocess.STDOUT, env=host_environment(None))
    try:
        child.wait(ROUND_TIMEOUT)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        kill_processes(session_processes(admin_session(port)))
        return {"error": f"a round took over {ROUND_TIMEOUT:g} s"}
    lines = output.read_text().strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        return {"error": f"a round exited with status {child.returncode}: {lines[-1] if lines else 'no output'}"}


# -- the run and its report ---------------------------------------------------------------------


def parse_bases(text: str) -> list[str]:
    bases = text.split(",")
    if any(base not in BASES for base in bases) or len(set(bases)) != len(bases):
        raise ValueError(f"--bases expects some of {','.join(BASES)} separated by commas, got {text!r}")
    return bases


def run_transport(bases: list[str], rounds: int, directory: Path,
                  settings: TransportBenchSettings = TransportBenchSettings()) -> dict:
    """`rounds` rounds per base, alternated; the report dict (format_transport)."""
    done: dict[str, list[dict]] = {base: [] for base in bases}
    failed: dict[str, str] = {}
    for number in range(1, rounds + 1):
        for base in bases if number % 2 else bases[::-1]:
            if base in failed:
                continue
            outcome = round_in_process(base, directory / f"round-{number}-{base}", settings)
            if "error" in outcome:
                failed[base] = outcome["error"]
                progress_line(f"transport round {number}/{rounds} {base}: {outcome['error']}; no more {base} rounds")
                continue
            done[base].append(outcome)
            progress_line(f"transport round {number}/{rounds} {base}: "
                          + "  ".join(f"{LABELS[name]} {outcome[name]:g}" for name in FIGURES))
    if not any(done.values()):
        raise RuntimeError("; ".join(f"{base}: {reason}" for base, reason in failed.items()))
    medians = {base: {name: statistics.median(outcome[name] for outcome in outcomes) for name in FIGURES}
               for base, outcomes in done.items() if outcomes}
    ratios = {}
    if done.get("stock") and done.get("raftline"):
        pairs = list(zip(done["stock"], done["raftline"]))
        ratios = {name: round(statistics.median(stock[name] / raftline[name] for stock, raftline in pairs), 2)
                  for name in FIGURES}
    return {
        "workload": "transport",
        "bases": bases,
        "rounds": {base: len(outcomes) for base, outcomes in done.items()},
        "settings": asdict(settings),
        "medians": medians,
        "ratios": ratios,
        "failed": failed,
        "targets": TARGETS,
        "round_results": [outcome for outcomes in done.values() for outcome in outcomes],
        "load": round(os.getloadavg()[0], 2),
    }


def format_transport(result: dict) -> str:
    settings, bases = result["settings"], result["bases"]
    shown = [base for base in bases if base in result["medians"]]
    counts = ", ".join(f"{result['rounds'][base]} {base}" for base in bases)
    ratio = "stock/raftline" if result["ratios"] else ""
    lines = [
        f"bench transport: medians of {counts} alternated rounds, each on a fresh actor system",
        f"  (per round: {settings['round_trips']} round trips, {settings['window']} pipelined in flight, "
        f"{settings['fanout_rounds']} fan-out rounds; each phase at most {settings['phase_seconds']:g} s)",
        f"  {'':<32}" + "".join(f"{base:>10}" for base in shown) + f"{ratio:>16}  target for raftline",
    ]
    for name in FIGURES:
        decimals = 0 if name == "pipelined_per_s" else 1
        row = f"  {LABELS[name]:<32}" + "".join(f"{result['medians'][base][name]:>10.{decimals}f}" for base in shown)
        row += f"{result['ratios'][name]:>15.2f}x" if result["ratios"] else f"{'':>16}"
        lines.append(f"{row}  {TARGETS.get(name, '')}".rstrip())
    if result["ratios"]:
        lines.append("  stock/raftline: the median of the ratios of rounds run back to back")
    for base, reason in result["failed"].items():
        lines.append(f"  {base}: {'stopped' if result['rounds'][base] else 'skipped'}: {reason}")
    lines.append(load_line(result["load"], width=32))
    return "\n".join(lines)


# -- a round's process -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """`--one-round BASE`: run one round, print its JSON (or {"error": ...}) as the last line."""
    parser = argparse.ArgumentParser(prog="python3 -m raftline.bench.transport",
                                     description="one round of raftline bench transport")
    parser.add_argument("--one-round", required=True, choices=BASES, metavar="BASE")
    parser.add_argument("--port", type=int, required=True, help="the new system's admin port")
    parser.add_argument("--directory", type=Path, required=True, help="for the system's log")
    defaults = TransportBenchSettings()
    parser.add_argument("--round-trips", type=int, default=defaults.round_trips)
    parser.add_argument("--window", type=int, default=defaults.window)
    parser.add_argument("--fanout-rounds", type=int, default=defaults.fanout_rounds)
    parser.add_argument("--phase-seconds", type=float, default=defaults.phase_seconds)
    args = parser.parse_args(argv)
    settings = TransportBenchSettings(round_trips=args.round_trips, window=args.window,
                                      fanout_rounds=args.fanout_rounds, phase_seconds=args.phase_seconds)
    try:
        result = run_round(args.one_round, args.port, args.directory, settings)
    except Exception as error:  # the parent reports it in one line
        print(json.dumps({"error": f"{type(error).__name__}: {error}".splitlines()[0]}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    # Run as a script this file is __main__: the actors and messages must be the importable module's.
    from raftline.bench.transport import main as module_main

    sys.exit(module_main())
