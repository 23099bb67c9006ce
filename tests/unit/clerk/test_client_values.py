"""Values and keys are refused at the client, before anything is sent (docs/DESIGN.md section 7)."""

import math
import random

import pytest

from clerk.client import MAX_KEY_BYTES, MAX_VALUE_BYTES, check_key, check_value


@pytest.mark.parametrize("value", [None, True, 3, 2.5, "text", [1, "two", None], {"a": {"b": [1, 2]}}])
def test_json_values_are_accepted_as_they_will_be_stored(value):
    assert check_value(value) == value


def test_tuples_are_stored_as_lists():
    assert check_value((1, 2)) == [1, 2]


@pytest.mark.parametrize("value", [{1, 2}, b"bytes", object(), {1: "int key"}, math.nan, math.inf])
def test_values_that_are_not_json_are_refused_with_one_clear_error(value):
    with pytest.raises(ValueError, match="not JSON"):
        check_value(value)


def test_values_over_the_size_limit_are_refused():
    check_value("x" * (MAX_VALUE_BYTES - 2))
    with pytest.raises(ValueError, match="value too large"):
        check_value("x" * MAX_VALUE_BYTES)


def test_keys_are_non_empty_strings_within_the_limit():
    assert check_key("alice") == "alice"
    for bad in ("", 7, None):
        with pytest.raises(TypeError):
            check_key(bad)
    with pytest.raises(ValueError, match="key too long"):
        check_key("k" * (MAX_KEY_BYTES + 1))


def test_retries_after_an_abort_wait_a_random_while_under_a_doubling_cap():
    from clerk.client import RETRY_BASE_SECONDS, RETRY_CAP_SECONDS, retry_delay

    random.seed(3)
    for attempt in range(1, 12):
        cap = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2**attempt)
        delays = [retry_delay(attempt) for _ in range(200)]
        assert all(0 <= delay <= cap for delay in delays)
        assert max(delays) > cap / 2  # spread over the whole window, not stuck near zero


def test_what_json_cannot_hold_is_a_string_on_the_command_line():
    from raftline.cli import parse_value

    assert parse_value('{"n": 1}') == {"n": 1} and parse_value("null") is None
    assert [parse_value(text) for text in ("NaN", "1e400", "-Infinity", "plain")] == ["NaN", "1e400", "-Infinity",
                                                                                        "plain"]
