"""The column encoding and value checks shared by the SDK and the server."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from assay import protocol


def test_four_special_values_survive_encoding() -> None:
    rows = [
        (step, 1.5, {"x": value})
        for step, value in enumerate([math.nan, math.inf, -math.inf, None])
    ]

    decoded = protocol.decode_rows(
        protocol.unpack(protocol.pack({"type": "batch", **protocol.encode_rows(rows)}))
    )

    values = [row[2]["x"] for row in decoded]
    assert math.isnan(values[0])
    assert values[1] == math.inf
    assert values[2] == -math.inf
    assert values[3] is None


def test_sparse_columns_keep_their_rows() -> None:
    rows = [(0, 0.0, {"a": 1}), (1, 0.0, {"b": True}), (2, 0.0, {"a": 3, "b": False})]

    body = protocol.encode_rows(rows)

    assert body["metrics"]["a"]["rows"] is not None
    assert protocol.decode_rows(body) == rows


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=True, allow_infinity=True),
)


@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "c/d"]), scalars), max_size=30))
def test_rows_round_trip_exactly(values: list[dict[str, object]]) -> None:
    rows = [(step, float(step), row) for step, row in enumerate(values)]

    decoded = protocol.decode_rows(
        protocol.unpack(protocol.pack({"type": "batch", **protocol.encode_rows(rows)}))
    )

    assert len(decoded) == len(rows)
    for (_, _, sent), (_, _, received) in zip(rows, decoded, strict=True):
        assert sent.keys() == received.keys()
        for key, value in sent.items():
            assert type(received[key]) is type(value)
            assert received[key] == value or (math.isnan(value) and math.isnan(received[key]))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0.5", "got str '0.5'"),
        ([1.0], "got list [1.0]"),
        (2**53 + 1, "too large to store exactly"),
        (object(), "got object"),
    ],
)
def test_bad_values_are_named(value: object, message: str) -> None:
    with pytest.raises(protocol.ProtocolError, match=message.replace("[", r"\[")):
        protocol.encode_value(value)


def test_numpy_scalars_become_python_values() -> None:
    assert protocol.encode_value(np.float32(0.5)) == (0.5, protocol.KIND_FLOAT)
    assert protocol.encode_value(np.int64(3)) == (3.0, protocol.KIND_INT)
    assert protocol.encode_value(np.bool_(True)) == (1.0, protocol.KIND_BOOL)


def test_tagged_json_keeps_specials_apart_from_strings() -> None:
    document = {"a": math.nan, "b": [math.inf, -math.inf, None], "c": "NaN"}

    text = json.dumps(protocol.tag_floats(document), allow_nan=False)
    restored = protocol.untag_floats(json.loads(text))

    assert math.isnan(restored["a"])
    assert restored["b"] == [math.inf, -math.inf, None]
    assert restored["c"] == "NaN"


def test_reserved_tag_key_is_rejected() -> None:
    with pytest.raises(protocol.ProtocolError, match="reserved key '\\$float'"):
        protocol.check_document({"x": {"$float": "NaN"}}, "config")
