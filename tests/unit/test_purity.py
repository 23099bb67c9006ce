"""The pure cores (docs/DESIGN.md section 10) import nothing from Thespian,
read no clock, do no I/O of their own and use no global randomness, so the
deterministic simulator and plain unit tests can drive them. Checked on the
source, by parsing it."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE_CORES = [
    "actors/budgets.py",
    "actors/codec.py",
    "actors/keyspace.py",
    "actors/messages",
    "actors/metrics.py",
    "actors/pickling.py",
    "actors/raft",
    "actors/replica.py",
    "actors/slot_shipping.py",
    "actors/store",
    "actors/transport/wire.py",
    "actors/txn_recovery.py",
    "clerk/core.py",
    "clerk/session.py",
    "clerk/timestamps.py",
    "coordinator/group.py",
    "coordinator/placement.py",
    "coordinator/reconfig.py",
    "coordinator/shardmap.py",
    "coordinator/status.py",
    "coordinator/supervisor.py",
    "raftline/check/bank.py",
    "raftline/check/elle.py",
    "raftline/check/linearizable.py",
    "raftline/check/result.py",
    "raftline/check/rw_register.py",
    "raftline/check/serializable.py",
    "raftline/dashboard/history.py",
]
FORBIDDEN_MODULES = {"thespian", "time", "datetime", "sqlite3", "socket", "subprocess", "threading", "select"}


def pure_sources() -> list[Path]:
    found = []
    for core in PURE_CORES:
        path = ROOT / core
        assert path.exists(), f"{core} is listed as a pure core but does not exist"
        found.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return found


def impurities(source: str) -> list[str]:
    """Forbidden imports, and uses of the `random` module other than `random.Random`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if root in FORBIDDEN_MODULES:
                found.append(node.module)
            elif root == "random":
                found += [f"random.{alias.name}" for alias in node.names if alias.name != "Random"]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "random":
            if node.attr != "Random":
                found.append(f"random.{node.attr}")
    return found


def test_the_raft_core_is_among_the_checked_sources():
    names = {path.relative_to(ROOT).as_posix() for path in pure_sources()}
    assert {"actors/raft/node.py", "actors/raft/log.py"} <= names


@pytest.mark.parametrize("path", pure_sources(), ids=lambda path: path.relative_to(ROOT).as_posix())
def test_pure_core_module_has_no_thespian_clock_io_or_global_randomness(path):
    assert impurities(path.read_text()) == []


def test_the_check_catches_each_kind_of_impurity():
    assert impurities("import thespian.actors") == ["thespian.actors"]
    assert impurities("from thespian.actors import Actor") == ["thespian.actors"]
    assert impurities("import time\nfrom datetime import datetime") == ["time", "datetime"]
    assert impurities("import sqlite3\nimport socket") == ["sqlite3", "socket"]
    assert impurities("import random\nx = random.randint(1, 2)") == ["random.randint"]
    assert impurities("from random import choice, Random") == ["random.choice"]
    assert impurities("import random\nrng = random.Random(7)") == []
