"""Cursors come back from clients: any shape but the one the service issued is a 422 naming `cursor`, never a
query that fails later (found by fuzzing: an empty list or an object in a cursor reached the database)."""
from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, strategies as st

from common.errors import Problem
from common.pagination import cursor_key, decode_cursor, encode_cursor


def raw(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", ["%%%", raw([]), raw({"a": 1}), raw([{"a": 1}]), raw([1.5]), raw([True]),
                                    raw([None]), raw(["a"] * 5), raw("x")])
def test_bad_cursors_are_422_naming_the_field(cursor):
    with pytest.raises(Problem) as info:
        decode_cursor(cursor)
    assert info.value.status == 422
    assert [e["field"] for e in info.value.errors] == ["cursor"]


def nested(depth: int) -> str:
    return base64.urlsafe_b64encode(("[" * depth + "]" * depth).encode()).decode()


# nested deeper than the JSON parser recurses (a RecursionError, once a 500), and integers no column holds
@pytest.mark.parametrize("cursor", [nested(100_000), raw([2 ** 63]), raw([-(2 ** 63) - 1]), raw(["a", 10 ** 30])])
def test_nested_and_oversized_cursors_are_422_naming_the_field(cursor):
    with pytest.raises(Problem) as info:
        decode_cursor(cursor)
    assert info.value.status == 422
    assert [e["field"] for e in info.value.errors] == ["cursor"]


@pytest.mark.parametrize("cursor", [raw(["abc"]), raw(["12x"]), raw([str(10 ** 30)])])
def test_integer_keys_refuse_what_is_not_one(cursor):
    with pytest.raises(Problem):
        cursor_key(cursor, int)


@given(st.one_of(st.text(max_size=40), st.integers(min_value=0, max_value=2 ** 62)))
def test_issued_cursors_round_trip(value):
    kind = int if isinstance(value, int) else str
    assert cursor_key(encode_cursor(value), kind) == value
    assert cursor_key(None) is None
