"""The message vocabulary's conventions (docs/DESIGN.md sections 10 and 11):
every message is a frozen, keyword-only dataclass documenting its fields, and
bare class names are unique across the application, because Thespian's
ActorTypeDispatcher dispatches on the bare name."""

import ast
import dataclasses
import importlib
import pickle
from pathlib import Path

import pytest

from actors.messages import ClientBatch, ClientRequest, CommitOnePhase
from actors.pickling import _getstate, _setstate
from actors.raft.messages import AppendLog, Entry

ROOT = Path(__file__).resolve().parents[2]
MESSAGE_MODULES = [
    "actors.raft.messages",
    "actors.messages.txn",
    "actors.messages.client",
    "actors.messages.control",
    "actors.messages.reconfig",
    "actors.messages.app",
]
PACKAGES = ["actors", "coordinator", "clerk", "raftline"]


def messages() -> list[type]:
    found = []
    for name in MESSAGE_MODULES:
        module = importlib.import_module(name)
        found += [
            value
            for value in vars(module).values()
            if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == name
        ]
    return found


@pytest.mark.parametrize("message", messages(), ids=lambda message: message.__name__)
def test_a_message_is_a_frozen_keyword_only_dataclass_that_documents_its_fields(message):
    params = message.__dataclass_params__
    assert params.frozen and all(field.kw_only for field in dataclasses.fields(message))
    if dataclasses.fields(message):
        assert "Fields:" in (message.__doc__ or "")


def test_class_names_are_unique_across_the_application():
    defined: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef):
                    defined.setdefault(node.name, []).append(path.relative_to(ROOT).as_posix())
    assert {name: places for name, places in defined.items() if len(places) > 1} == {}


def test_the_index_re_exports_every_message_of_the_application_protocols():
    index = importlib.import_module("actors.messages")
    for message in messages():
        if message.__module__.startswith("actors.messages."):
            assert getattr(index, message.__name__) is message


@pytest.mark.parametrize("message", messages(), ids=lambda message: message.__name__)
def test_every_message_pickles_by_its_slots(message):
    assert (message.__getstate__, message.__setstate__) == (_getstate, _setstate)


def test_a_nested_message_pickles_back_to_an_equal_one():
    batch = ClientBatch(client="k1", cluster="c1", epoch=1, requests=(
        ClientRequest(req=1, op=CommitOnePhase(txid="k-1", ts=5, reads={}, writes={"a": 1}, deletes=(), epoch=1)),))
    append = AppendLog(term=2, leader="c1-r0", prev_index=1, prev_term=1, entries=(Entry(index=2, term=2),), commit=1)
    for message in (batch, append):
        assert pickle.loads(pickle.dumps(message, pickle.HIGHEST_PROTOCOL)) == message
