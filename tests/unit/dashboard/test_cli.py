"""`raftline dashboard` and `raftline metrics` keep the command line's conventions
without a running system: bad input is status 2, a failed operation 1, one line each."""

import socket
import subprocess
import sys

import pytest

from coordinator.admin import free_port
from raftline.cli import EXIT_ERROR, EXIT_USAGE, main


def nobody() -> str:
    return f"127.0.0.1:{free_port()}"


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("argv, message", [
    (["dashboard", "--port", "70000"], "--port must be 0..65535, got 70000"),
    (["dashboard", "--host", ""], "--host must name an address"),
    (["dashboard", "--host", "no-such-host.invalid"], "--host no-such-host.invalid: not an address of this machine"),
    (["dashboard", "--host", "192.0.2.1", "--port", "0"], "--host 192.0.2.1: not an address of this machine"),
])
def test_a_bad_address_is_bad_input(argv, message, capsys):
    assert main([*argv, "--admin", nobody()]) == EXIT_USAGE
    assert message in error_line(capsys)


def test_a_port_in_use_is_a_failed_operation(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["dashboard", "--port", str(port), "--admin", nobody()]) == EXIT_ERROR
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in error_line(capsys)


@pytest.mark.parametrize("command", [["metrics"], ["dashboard", "--port", "0"]])
def test_no_system_running_is_a_failed_operation(command):
    # A process of its own: an attempt to connect must leave nothing behind in the test's.
    result = subprocess.run([sys.executable, "-m", "raftline.cli", *command, "--admin", nobody()],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == EXIT_ERROR, result.stderr
    assert "no raftline system is running" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
