"""Decoding and validation of ingest batches into per-metric numpy columns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from assay import protocol
from assay.protocol import ProtocolError
from assay_server import schema

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]
UInt8Array = npt.NDArray[np.uint8]

MAX_SEQ = 2**63 - 1


@dataclass
class Column:
    """One metric's values from one batch, with the statistics stored beside them."""

    key: str
    steps: Int64Array
    times: Float64Array
    values: Float64Array
    kinds: UInt8Array | None

    def __post_init__(self) -> None:
        floats = np.ones(len(self.values), bool) if self.kinds is None else self.kinds == 0
        nulls = np.zeros(len(self.values), bool) if self.kinds is None else self.kinds == 1
        nans = floats & np.isnan(self.values)
        ordered = self.values[~nans & ~nulls]
        self.has_nan = bool(nans.any())
        self.has_inf = bool((floats & np.isinf(self.values)).any())
        self.has_null = bool(nulls.any())
        self.value_min = float(ordered.min()) if len(ordered) else None
        self.value_max = float(ordered.max()) if len(ordered) else None
        self.last_step = int(self.steps[-1])
        self.last_kind = _sql_kind(float(self.values[-1]), self.kinds)
        self.last_value = (
            float(self.values[-1])
            if self.last_kind not in (schema.SQL_KIND_NAN, schema.SQL_KIND_NULL)
            else None
        )

    @property
    def count(self) -> int:
        return len(self.steps)


@dataclass
class Batch:
    seq: int
    row_count: int
    max_step: int | None
    columns: list[Column]
    config: dict[str, Any] | None
    summary: dict[str, Any] | None

    @property
    def point_count(self) -> int:
        return sum(column.count for column in self.columns)


def decode_batch(message: Mapping[str, Any]) -> Batch:
    """Check a ``batch`` message and split it into columns; raise ``ProtocolError``."""
    seq = message.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
        raise ProtocolError("invalid_batch", f"batch 'seq' must be an integer >= 0, got {seq!r}")
    steps = _array(message, "steps", "<i8")
    times = _array(message, "times", "<f8")
    if len(steps) > protocol.MAX_ROWS_PER_BATCH:
        raise ProtocolError(
            "too_large",
            f"batch {seq} has {len(steps)} rows; the maximum is {protocol.MAX_ROWS_PER_BATCH}, "
            "so split it",
        )
    if len(times) != len(steps):
        raise ProtocolError(
            "invalid_batch",
            f"batch {seq} has {len(steps)} steps but {len(times)} timestamps; "
            "they must be the same length",
        )
    _check_steps(seq, steps)
    bad_times = times[~np.isfinite(times)]
    if len(bad_times):
        raise ProtocolError(
            "invalid_batch",
            f"batch {seq} has the timestamp {float(bad_times[0])!r}; timestamps must be finite",
        )
    metrics = message.get("metrics", {})
    if not isinstance(metrics, dict):
        raise ProtocolError(
            "invalid_batch", f"batch 'metrics' must be a map, got {type(metrics).__name__}"
        )
    if len(metrics) > protocol.MAX_KEYS_PER_BATCH:
        raise ProtocolError(
            "too_many_keys",
            f"batch {seq} has {len(metrics)} metric names; the maximum is "
            f"{protocol.MAX_KEYS_PER_BATCH} per batch",
        )
    columns = [_column(seq, key, spec, steps, times) for key, spec in metrics.items()]
    return Batch(
        seq=seq,
        row_count=len(steps),
        max_step=int(steps.max()) if len(steps) else None,
        columns=columns,
        config=_document(message, "config"),
        summary=_document(message, "summary"),
    )


def _column(seq: int, key: object, spec: object, steps: Int64Array, times: Float64Array) -> Column:
    name = protocol.check_key(key)
    if not isinstance(spec, dict):
        raise ProtocolError(
            "invalid_batch", f"metric {name!r} in batch {seq} must be a map of arrays"
        )
    values = _array(spec, "values", "<f8", where=f"metric {name!r}")
    rows = spec.get("rows")
    if rows is None:
        positions = None
        expected = len(steps)
    else:
        positions = _array(spec, "rows", "<u4", where=f"metric {name!r}").astype(np.int64)
        expected = len(positions)
        _check_positions(seq, name, positions, len(steps))
    if len(values) != expected:
        raise ProtocolError(
            "invalid_batch",
            f"metric {name!r} in batch {seq} has {len(values)} values for {expected} rows",
        )
    if expected == 0:
        raise ProtocolError("invalid_batch", f"metric {name!r} in batch {seq} has no values")
    kinds = None
    if spec.get("kinds") is not None:
        kinds = _array(spec, "kinds", "u1", where=f"metric {name!r}")
        values = _check_kinds(seq, name, values, kinds)
    column_steps = steps if positions is None else steps[positions]
    column_times = times if positions is None else times[positions]
    return Column(name, column_steps, column_times, values, kinds)


def _check_steps(seq: int, steps: Int64Array) -> None:
    if len(steps) == 0:
        return
    low = int(steps.min())
    high = int(steps.max())
    if low < 0 or high > protocol.MAX_STEP:
        bad = low if low < 0 else high
        raise ProtocolError(
            "invalid_step",
            f"batch {seq} has step {bad}; steps must be between 0 and {protocol.MAX_STEP}",
        )


def _check_positions(seq: int, name: str, positions: Int64Array, row_count: int) -> None:
    if len(positions) and (positions[-1] >= row_count or (np.diff(positions) <= 0).any()):
        raise ProtocolError(
            "invalid_batch",
            f"metric {name!r} in batch {seq} has row positions that are not increasing "
            f"or not below the row count {row_count}",
        )


def _check_kinds(seq: int, name: str, values: Float64Array, kinds: UInt8Array) -> Float64Array:
    if len(kinds) != len(values):
        raise ProtocolError(
            "invalid_batch",
            f"metric {name!r} in batch {seq} has {len(kinds)} kinds for {len(values)} values",
        )
    if len(kinds) and int(kinds.max()) > protocol.KIND_BOOL:
        raise ProtocolError(
            "invalid_value",
            f"metric {name!r} in batch {seq} has value kind {int(kinds.max())}; "
            "kinds are 0 (float), 1 (null), 2 (int) and 3 (bool)",
        )
    ints = values[kinds == protocol.KIND_INT]
    bad_ints = ints[
        ~np.isfinite(ints) | (np.floor(ints) != ints) | (np.abs(ints) > protocol.MAX_EXACT_INT)
    ]
    if len(bad_ints):
        raise ProtocolError(
            "invalid_value",
            f"metric {name!r} in batch {seq} has the int value {float(bad_ints[0])!r}; "
            "int values must be integers within 2**53",
        )
    bools = values[kinds == protocol.KIND_BOOL]
    bad_bools = bools[~np.isin(bools, (0.0, 1.0))]
    if len(bad_bools):
        raise ProtocolError(
            "invalid_value",
            f"metric {name!r} in batch {seq} has the bool value {float(bad_bools[0])!r}; "
            "bool values must be 0 or 1",
        )
    # A null's payload carries no meaning; zero it so stored chunks compare equal.
    return np.where(kinds == protocol.KIND_NULL, 0.0, values)


def _array(
    spec: Mapping[str, Any], field: str, dtype: str, where: str = "batch"
) -> npt.NDArray[Any]:
    data = spec.get(field)
    if not isinstance(data, bytes):
        raise ProtocolError(
            "invalid_batch",
            f"{where} field {field!r} must be binary data, got {type(data).__name__}",
        )
    size = np.dtype(dtype).itemsize
    if len(data) % size:
        raise ProtocolError(
            "invalid_batch",
            f"{where} field {field!r} has {len(data)} bytes, not a multiple of {size}",
        )
    return np.frombuffer(data, dtype=dtype).astype(np.dtype(dtype).newbyteorder("="))


def _document(message: Mapping[str, Any], field: str) -> dict[str, Any] | None:
    value = message.get(field)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError(
            "invalid_batch", f"batch {field!r} must be a map, got {type(value).__name__}"
        )
    protocol.check_document(value, field)
    return value


def _sql_kind(last: float, kinds: UInt8Array | None) -> int:
    kind = protocol.KIND_FLOAT if kinds is None else int(kinds[-1])
    if kind == protocol.KIND_FLOAT and np.isnan(last):
        return schema.SQL_KIND_NAN
    return kind
