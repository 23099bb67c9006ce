"""The JSON codec for commands and snapshots: exact, deterministic round trips."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import codec
from actors.messages import (
    AckDecision,
    CommitOnePhase,
    Decide,
    DropSlot,
    FreezeSlot,
    InstallSlot,
    Prepare,
    ReadCheck,
    TrimRecords,
    ValidateReads,
)
from actors.messages.txn import LOG_TYPES, TXN_COMMANDS
from actors.raft.messages import ConfState, Entry, HardState, Snapshot, VoteReply


def assert_identical(actual, expected, path="value"):
    """Equality that also demands equal types, so 1, 1.0 and True, or a
    tuple and a list, are told apart; floats compare by repr (-0.0 != 0.0)."""
    assert type(actual) is type(expected), f"{path}: {type(actual).__name__} != {type(expected).__name__}"
    if isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_identical(a, e, f"{path}[{i}]")
    elif isinstance(expected, dict):
        assert set(actual) == set(expected), path
        for key in expected:
            assert_identical(actual[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(expected, float):
        assert repr(actual) == repr(expected), path
    elif hasattr(expected, "__dataclass_fields__"):
        for name in expected.__dataclass_fields__:
            assert_identical(getattr(actual, name), getattr(expected, name), f"{path}.{name}")
    else:
        assert actual == expected, path


def round_trip(value):
    decoded = codec.decode(codec.encode(value))
    assert_identical(decoded, value)
    return decoded


# Keys that look like the codec's own tags, to prove user data is never read as one.
tag_like_keys = st.sampled_from(["#b", "#t", "#d", "#m", "#", "#other", "type", ""])
keys = tag_like_keys | st.text(max_size=8)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.binary(max_size=16)
)
json_ish = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.lists(children, max_size=4).map(tuple)
    | st.dictionaries(keys, children, max_size=4),
    max_leaves=20,
)
clusters = st.sampled_from(["c1", "c2", "c3"])
txids = st.text(min_size=1, max_size=6)
stamps = st.tuples(st.integers(0, 10**9), st.text(max_size=6))
client_values = st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.lists(st.integers(), max_size=3)
small_keys = st.text(max_size=6)
read_checks = st.builds(ReadCheck, txid=txids, ts=st.integers(0, 10**9),
                        reads=st.dictionaries(small_keys, stamps, max_size=3))
messages = st.one_of(
    st.builds(Prepare, txid=txids, ts=st.integers(0, 10**9), reads=st.dictionaries(small_keys, stamps, max_size=3),
              writes=st.dictionaries(keys, client_values, max_size=3), deletes=st.lists(small_keys, max_size=2).map(tuple),
              primary=clusters, participants=st.lists(clusters, max_size=3).map(tuple), epoch=st.integers(0, 9)),
    st.builds(Decide, txid=txids, ts=st.integers(0, 10**9), commit=st.booleans()),
    st.builds(CommitOnePhase, txid=txids, ts=st.integers(0, 10**9),
              reads=st.dictionaries(small_keys, stamps, max_size=3),
              writes=st.dictionaries(keys, client_values, max_size=3), deletes=st.lists(small_keys, max_size=2).map(tuple),
              epoch=st.integers(0, 9)),
    st.builds(ValidateReads, checks=st.lists(read_checks, max_size=3).map(tuple)),
    st.builds(AckDecision, txid=txids, participant=clusters),
    st.builds(TrimRecords, txids=st.lists(txids, max_size=3).map(tuple)),
    st.builds(FreezeSlot, move=txids, slot=st.integers(0, 63), destination=clusters),
    st.builds(InstallSlot, move=txids, slot=st.integers(0, 63), source=clusters, chunk=st.integers(0, 3),
              chunks=st.integers(1, 4), threshold=stamps,
              keys=st.lists(st.tuples(small_keys, client_values, stamps, stamps, st.integers(0, 9), st.booleans()),
                            max_size=2).map(tuple)),
    st.builds(DropSlot, move=txids, slot=st.integers(0, 63)),
)
values_with_messages = st.recursive(
    scalars | messages,
    lambda children: st.lists(children, max_size=3)
    | st.lists(children, max_size=3).map(tuple)
    | st.dictionaries(keys, children, max_size=3),
    max_leaves=12,
)

deterministic = settings(derandomize=True, database=None, max_examples=200, deadline=None)


@deterministic
@given(json_ish)
def test_json_ish_values_round_trip_exactly_and_deterministically(value):
    encoded = codec.encode(value)
    assert_identical(codec.decode(encoded), value)
    assert codec.encode(codec.decode(encoded)) == encoded
    json.loads(encoded)  # always standard JSON


@deterministic
@given(values_with_messages)
def test_messages_nested_in_values_round_trip(value):
    round_trip(value)


def test_examples_round_trip_with_their_types():
    round_trip(None)
    round_trip([True, 1, 1.0, -0.0, 1e300, 2**100, "é\u2028\ud800", b"", b"\x00\xff"])
    round_trip((1, [2, (3,)], ()))
    round_trip({"a": (1, 2), "b": [1, 2], "c": {"d": b"x"}})
    round_trip(ValidateReads(checks=(ReadCheck(txid="r1", ts=5, reads={"a": (4, "t1")}),)))
    round_trip(InstallSlot(move="m1", slot=3, source="c1", chunk=0, chunks=1,
                           keys=(("a", [1, {"b": None}], (4, "t1"), (5, "r2"), 2, False),), threshold=(5, "t9")))


def test_every_command_is_registered_and_only_log_types_are():
    assert set(TXN_COMMANDS) <= set(LOG_TYPES)
    assert {kind.__name__ for kind in LOG_TYPES} == {kind.__name__ for kind in TXN_COMMANDS} | {"ReadCheck", "LoggedRead"}


@pytest.mark.parametrize(
    "message",
    [
        Entry(index=1, term=2),
        VoteReply(term=1, voter="c1-r0", granted=True),
        Snapshot(index=3, term=2, conf=ConfState(voters=("c1-r0",)), data=b"x"),
    ],
)
def test_a_message_that_is_no_log_type_is_refused_both_ways(message):
    with pytest.raises(TypeError):
        codec.encode(message)
    name = type(message).__name__
    with pytest.raises(ValueError, match=f"unknown message type '{name}'"):
        codec.decode(b'{"#m":["%s",{}]}' % name.encode())


def test_a_prepare_keeps_stamps_as_tuples_and_client_values_as_given():
    prepare = Prepare(
        txid="t7",
        ts=42,
        reads={"alice": (40, "t3"), "bob": (0, "")},
        writes={"alice": {"#t": ["not", "a", "tuple"]}, "carol": [1, 2.5, None, {"nested": True}]},
        deletes=("dave",),
        primary="c1",
        participants=("c1", "c2"),
        epoch=3,
    )
    decoded = round_trip(prepare)
    assert decoded == prepare and type(decoded.reads["alice"]) is tuple


@pytest.mark.parametrize(
    "user_dict",
    [{"#t": [1, 2]}, {"#b": "AAAA"}, {"#d": {}}, {"#m": ["Entry", {}]}, {"#x": 1}, {"#t": {"#t": [1]}}],
)
def test_user_dicts_that_look_like_tags_stay_dicts(user_dict):
    round_trip(user_dict)
    round_trip([user_dict, (user_dict,)])


def test_output_is_compact_sorted_json():
    assert codec.encode({"b": 1, "a": [1, 2], "c": (True, None)}) == b'{"a":[1,2],"b":1,"c":{"#t":[true,null]}}'
    assert codec.encode(b"hi") == b'{"#b":"aGk="}'
    assert codec.encode(Decide(txid="t1", ts=2, commit=True)) == b'{"#m":["Decide",{"commit":true,"ts":2,"txid":"t1"}]}'


def test_equal_dicts_encode_to_equal_bytes_whatever_their_insertion_order():
    assert codec.encode({"x": 1, "y": {"p": 1, "q": 2}}) == codec.encode({"y": {"q": 2, "p": 1}, "x": 1})


@pytest.mark.parametrize(
    "value, error",
    [
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ({1: "a"}, TypeError),
        ({"ok": {(1, 2): "a"}}, TypeError),
        ({1, 2}, TypeError),
        (bytearray(b"x"), TypeError),
        (HardState(term=1), TypeError),  # a dataclass, but not a message
        (ConfState, TypeError),  # the class, not an instance
    ],
)
def test_values_outside_the_contract_are_refused(value, error):
    with pytest.raises(error):
        codec.encode(value)


@pytest.mark.parametrize(
    "data, match",
    [
        (b'{"#m":["NoSuchMessage",{}]}', "unknown message type 'NoSuchMessage'"),
        (b'{"#m":["ENTRY_NOOP",{}]}', "unknown message type"),
        (b'{"#m":["json",{}]}', "unknown message type"),
        (b'{"#m":["Decide",{"txid":"t1"}]}', "cannot build Decide"),
        (b'{"#m":["Decide",{"txid":"t1","ts":1,"commit":true,"colour":"red"}]}', "cannot build Decide"),
        (b'{"#b":"not base64!"}', "base64"),
        (b'{"#t":{"a":1}}', "malformed or unknown"),
        (b'{"#q":1}', "malformed or unknown"),
        (b"[1,NaN]", "NaN is not JSON"),
        (b"{not json", None),
        (b"\xff\xfe", None),
    ],
)
def test_malformed_input_raises_value_error(data, match):
    with pytest.raises(ValueError, match=match):
        codec.decode(data)


def test_floats_keep_full_precision():
    for value in (0.1, 1 / 3, math.pi, 5e-324, -1.7976931348623157e308):
        assert codec.decode(codec.encode(value)) == value
