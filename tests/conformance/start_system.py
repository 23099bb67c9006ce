"""Launcher of a conformance test's actor system: starts it, then exits (its admin
keeps running, in a session of its own). Run from the project root as
`python -m tests.conformance.start_system BASE CAPABILITIES LOG_DIR`, where
CAPABILITIES is a Python literal (the convention address is a tuple).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from tests.conformance.harness import STOCK_BASE, log_definitions, prepare_environment


def main(argv: list[str]) -> int:
    base, capabilities, log_dir = argv
    prepare_environment()
    from thespian.actors import ActorSystem

    if base != STOCK_BASE:
        import actors.transport

        actors.transport.install()
    ActorSystem(base, ast.literal_eval(capabilities), logDefs=log_definitions(Path(log_dir)), transientUnique=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
