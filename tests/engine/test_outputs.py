"""Node outputs that are not JSON are refused in the user's words, not the encoder's."""

from __future__ import annotations

import datetime

import pytest

from engine.nodes.base import NodeError
from engine.outputs import serialize_outputs


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (2**100, "an integer too large to store"),
        ("\ud800", "lone UTF-16 surrogate"),
        ({1: "x"}, "an object key that is not text"),
        (datetime.datetime(2026, 1, 1), "a datetime value, which JSON has no type for"),
    ],
)
def test_values_that_are_not_json_are_worded(value: object, words: str) -> None:
    with pytest.raises(NodeError) as failure:
        serialize_outputs({"main": [{"x": value}]})
    message = failure.value.message
    assert failure.value.error_type == "NODE_OUTPUT_INVALID"
    assert words in message
    assert "64-bit" not in message and "serializable" not in message and "utf-8" not in message
