"""The README's five-minute tour, run in order against a fresh system.

A reader follows the tour top to bottom, so every example must work in the
state the examples before it left: this test extracts the fenced code blocks
of the section "## A five-minute tour" and runs them in order, as the reader
would, in a temporary directory holding the embedded default topology (on a
free admin port) as ./topology.yaml, which every command finds there.

- A ``` block's lines starting with `$ ` are commands (a command whose quotes
  are still open continues on the next lines); the lines after a command, up
  to the next one, are its shown output. `raftline` and `python3` run as this
  interpreter's; other commands (grep, sleep, ls) as they are.
- A command's exit status must be the one its comment names ("exit status N"),
  else 0. When the README shows output, the real output (stdout and stderr
  together) must be it, line by line, under four rules only: `...` inside a
  line stands for any text on that line (a blank beside it, for whitespace), a
  line that is only `...` for any number of lines, a run of blanks for any
  whitespace (`ls` prints columns on a terminal, lines in a pipe), and the
  test's admin port reads as the default topology's. Shown output that stops
  before the real output does ends with a `...` line. A command shown without
  output may print anything.
- A ```python block runs in a fresh interpreter in the same directory and
  must exit 0: it finds the system through ./topology.yaml and ./data/secret,
  as the README says.
- A block preceded by `<!-- not run in the tour test: REASON -->` is skipped;
  the README says why, so no example is left out silently.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from coordinator.admin import listener_session, session_processes
from coordinator.topology import DEFAULT_TOPOLOGY_FILE

README = Path(__file__).resolve().parents[2] / "README.md"
TOUR_HEADING = "## A five-minute tour"
SKIP_MARKER = re.compile(r"<!-- not run in the tour test: (.+?) -->")
EXIT_STATUS_NOTE = re.compile(r"exit status (\d+)")
DEFAULT_ADMIN_PORT = re.compile(r"(?m)^admin_port: (\d+)")
COMMAND_TIMEOUT = 90  # seconds; the slowest step (moving a cluster's slots away) takes about 10


@dataclass
class Command:
    text: str
    shown_output: list[str] = field(default_factory=list)

    @property
    def expected_status(self) -> int:
        note = EXIT_STATUS_NOTE.search(self.text)
        return int(note.group(1)) if note else 0


@dataclass
class Block:
    line: int  # of the opening fence in README.md, for messages
    language: str
    body: list[str]
    skip_reason: str | None

    def commands(self) -> list[Command]:
        commands: list[Command] = []
        for text in self.body:
            if commands and not complete(commands[-1].text):
                commands[-1].text += "\n" + text
            elif text.startswith("$ "):
                commands.append(Command(text[2:]))
            elif commands:
                commands[-1].shown_output.append(text)
            elif text.strip():
                raise AssertionError(f"README.md:{self.line}: output before any command: {text!r}")
        return commands


def complete(command: str) -> bool:
    """Whether `command` has no quote left open (else it goes on on the next line)."""
    try:
        shlex.split(command, comments=True)
    except ValueError:
        return False
    return True


def tour_blocks(readme: str) -> list[Block]:
    lines = readme.splitlines()
    start = lines.index(TOUR_HEADING) + 1
    end = next(n for n in range(start, len(lines)) if lines[n].startswith("## "))
    blocks, body, opened = [], None, None
    for number in range(start, end):
        line = lines[number]
        if body is None and line.startswith("```"):
            previous = next((lines[n] for n in range(number - 1, start - 1, -1) if lines[n].strip()), "")
            marker = SKIP_MARKER.fullmatch(previous.strip())
            opened = Block(number + 1, line[3:].strip(), [], marker.group(1) if marker else None)
            body = opened.body
        elif body is not None and line.strip() == "```":
            blocks.append(opened)
            body = None
        elif body is not None:
            body.append(line)
    assert body is None, f"README.md:{opened.line}: a code block is never closed"
    return blocks


def output_pattern(shown: list[str]) -> re.Pattern:
    """The real output a command's shown output stands for (see the module docstring)."""
    parts = []
    for line in shown:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            pieces = [(r"\s" if piece[:1].isspace() else "") + r"\s+".join(map(re.escape, piece.split()))
                      + (r"\s" if piece[-1:].isspace() else "") for piece in line.strip().split("...")]
            parts.append(r"[ \t]*" + r"[^\n]*?".join(pieces) + r"[ \t]*\n")
    return re.compile("".join(parts))


def normalized(output: str) -> str:
    """`output` with trailing blanks removed and a final newline, as the README shows it."""
    return "".join(line.rstrip() + "\n" for line in output.splitlines())


def argv(command: str) -> list[str]:
    words = shlex.split(command, comments=True)
    if words[0] == "raftline":
        return [sys.executable, "-m", "raftline.cli", *words[1:]]
    if words[0] == "python3":
        return [sys.executable, *words[1:]]
    return words


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(args: list[str], directory: Path) -> subprocess.CompletedProcess:
    # `raftline start` leaves nothing holding these pipes: its launcher is
    # detached and writes to data/raftline.log (coordinator/system.py).
    return subprocess.run(args, cwd=directory, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=COMMAND_TIMEOUT)


def test_tour_runs_in_order(tmp_path):
    blocks = tour_blocks(README.read_text())
    assert any(block.language == "python" for block in blocks) and any(block.language == "" for block in blocks)
    default_topology = DEFAULT_TOPOLOGY_FILE.read_text()
    default_port = DEFAULT_ADMIN_PORT.search(default_topology).group(1)
    port = free_port()
    topology = DEFAULT_ADMIN_PORT.sub(f"admin_port: {port}", default_topology)
    (tmp_path / "topology.yaml").write_text(topology)
    session = 0
    try:
        for block in blocks:
            if block.skip_reason:
                continue
            where = f"README.md:{block.line}"
            if block.language == "python":
                result = run([sys.executable, "-c", "\n".join(block.body)], tmp_path)
                assert result.returncode == 0, f"{where}: the Python block failed:\n{result.stdout}"
                continue
            assert block.language == "", f"{where}: unknown block language {block.language!r}"
            for command in block.commands():
                result = run(argv(command.text), tmp_path)
                # The session of the system's processes, for teardown, as soon as it listens.
                session = session or listener_session(port)
                assert result.returncode == command.expected_status, (
                    f"{where}: `{command.text}` exited {result.returncode}, the README implies "
                    f"{command.expected_status}; its output:\n{result.stdout}")
                shown_as = normalized(result.stdout).replace(f"127.0.0.1:{port}", f"127.0.0.1:{default_port}")
                assert not command.shown_output or output_pattern(command.shown_output).fullmatch(shown_as), (
                    f"{where}: `{command.text}` printed\n{result.stdout}\nnot what the README shows:\n"
                    + "\n".join(command.shown_output))
    finally:
        stopped = run(argv("raftline stop"), tmp_path)
        leftovers = session_processes(session)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):  # it may have exited since
                os.kill(pid, signal.SIGKILL)
    assert stopped.returncode == 0, f"raftline stop failed:\n{stopped.stdout}"
    assert not leftovers, f"raftline stop left processes behind: {sorted(leftovers)}"
