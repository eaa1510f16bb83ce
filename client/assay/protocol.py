"""The ingest wire protocol shared by the SDK and the server.

Every frame on the ingest websocket is one msgpack map with a ``type`` key.
Metric values travel in columns: a batch carries one array of steps and one of
timestamps for its rows, and per metric the positions of the rows that hold it,
their values as little-endian float64, and a kind byte per value when any value
is not a plain float. NaN, +Inf and -Inf are ordinary float64 bit patterns, so
they cross the wire unchanged, and null is a kind of its own. ``docs/protocol.md``
describes every message.
"""

from __future__ import annotations

import math
import unicodedata
from array import array
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack

PROTOCOL_VERSION = 1
INGEST_PATH = "/api/v1/ingest"

#: Value kinds. A batch's ``kinds`` array contains one of these bytes per value.
KIND_FLOAT = 0
KIND_NULL = 1
KIND_INT = 2
KIND_BOOL = 3

#: Integers beyond this magnitude cannot ride in a float64 exactly.
MAX_EXACT_INT = 2**53

MAX_KEY_LENGTH = 256
MAX_KEYS_PER_BATCH = 10_000
MAX_ROWS_PER_BATCH = 100_000
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: The SDK's bound on an encoded config, and on one update of a config or
#: summary. A quarter of a message, so that a batch that carries one still fits.
MAX_DOCUMENT_BYTES = MAX_MESSAGE_BYTES // 4
MAX_STEP = 2**62

#: Names that the history rows of the read API use for their own columns.
RESERVED_KEYS = frozenset({"step", "_timestamp"})

RESUME_MODES = ("never", "allow", "must")


class ProtocolError(ValueError):
    """A message that does not follow the ingest protocol.

    ``code`` is a short machine-readable name that the server sends back in its
    ``error`` message.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def pack(message: Mapping[str, Any]) -> bytes:
    return msgpack.packb(message, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(frame: bytes) -> dict[str, Any]:
    """Decode one frame and check that it is a map with a string ``type``."""
    try:
        message = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        detail = str(exc) or type(exc).__name__
        raise ProtocolError("malformed", f"frame is not valid msgpack: {detail}") from None
    if not isinstance(message, dict):
        raise ProtocolError(
            "malformed", f"frame must be a msgpack map, got {type(message).__name__}"
        )
    kind = message.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("malformed", f"frame needs a string 'type', got {kind!r}")
    return message


def check_key(key: object) -> str:
    """Return ``key`` if it is a valid metric name, else raise ``ProtocolError``."""
    if not isinstance(key, str):
        raise ProtocolError(
            "invalid_key", f"metric name must be a string, got {type(key).__name__} {key!r}"
        )
    if not key:
        raise ProtocolError("invalid_key", "metric name must not be empty")
    if has_empty_segment(key):
        raise ProtocolError(
            "invalid_key",
            f"metric name {key!r} has an empty segment (a leading, trailing or doubled '/'); "
            "remove the extra '/' or name the segment",
        )
    if len(key) > MAX_KEY_LENGTH:
        raise ProtocolError(
            "invalid_key",
            f"metric name {key[:40]!r}... is {len(key)} characters long; "
            f"the maximum is {MAX_KEY_LENGTH}",
        )
    if key in RESERVED_KEYS:
        raise ProtocolError(
            "invalid_key",
            f"metric name {key!r} is reserved; pass the step as log(..., step=N) "
            "or rename the metric, for example to 'train/step'",
        )
    for char in key:
        if unicodedata.category(char) in ("Cc", "Cf", "Cs"):
            raise ProtocolError(
                "invalid_key",
                f"metric name {key!r} contains the control character {char!r}; "
                "use printable characters only",
            )
    return key


def has_empty_segment(name: str) -> bool:
    """Return True if ``name``, split at ``/``, has an empty segment, as ``""`` also has."""
    return not name or name.startswith("/") or name.endswith("/") or "//" in name


def encode_value(value: object) -> tuple[float, int]:
    """Map one metric value to its float64 payload and kind byte."""
    if value is None:
        return 0.0, KIND_NULL
    if isinstance(value, bool):
        return float(value), KIND_BOOL
    if isinstance(value, float):
        return value, KIND_FLOAT
    if isinstance(value, int):
        if abs(value) > MAX_EXACT_INT:
            raise ProtocolError(
                "invalid_value",
                f"integer {value!r} is too large to store exactly (limit 2**53); "
                "log it as a float",
            )
        return float(value), KIND_INT
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        # NumPy scalars and zero-dimensional arrays become their Python value.
        return encode_value(item())
    raise ProtocolError(
        "invalid_value",
        f"metric value must be a float, int, bool or None, got {type(value).__name__} "
        f"{_short_repr(value)}",
    )


def decode_value(payload: float, kind: int) -> float | int | bool | None:
    if kind == KIND_FLOAT:
        return payload
    if kind == KIND_NULL:
        return None
    if kind == KIND_INT:
        return int(payload)
    return payload != 0.0


def encode_rows(rows: Sequence[tuple[int, float, Mapping[str, object]]]) -> dict[str, Any]:
    """Turn logged rows into the columnar body of a ``batch`` message.

    Each row is ``(step, timestamp, values)`` with already validated names.
    """
    steps = array("q")
    times = array("d")
    columns: dict[str, tuple[array[int], array[float], array[int]]] = {}
    for index, (step, timestamp, values) in enumerate(rows):
        steps.append(step)
        times.append(timestamp)
        for key, value in values.items():
            column = columns.get(key)
            if column is None:
                column = columns[key] = (array("I"), array("d"), array("B"))
            payload, kind = encode_value(value)
            column[0].append(index)
            column[1].append(payload)
            column[2].append(kind)
    metrics: dict[str, dict[str, bytes | None]] = {}
    for key, (positions, payloads, kinds) in columns.items():
        metrics[key] = {
            "rows": None if len(positions) == len(rows) else _little_endian(positions),
            "values": _little_endian(payloads),
            "kinds": _little_endian(kinds) if any(kinds) else None,
        }
    return {"steps": _little_endian(steps), "times": _little_endian(times), "metrics": metrics}


def decode_rows(body: Mapping[str, Any]) -> list[tuple[int, float, dict[str, object]]]:
    """Invert ``encode_rows``; the server and ``assay sync`` use numpy instead."""
    steps = _from_little_endian("q", body["steps"])
    times = _from_little_endian("d", body["times"])
    rows: list[tuple[int, float, dict[str, object]]] = [
        (int(step), float(timestamp), {}) for step, timestamp in zip(steps, times, strict=True)
    ]
    for key, column in body["metrics"].items():
        payloads = _from_little_endian("d", column["values"])
        positions = (
            range(len(rows))
            if column["rows"] is None
            else _from_little_endian("I", column["rows"])
        )
        kinds = (
            [KIND_FLOAT] * len(payloads)
            if column["kinds"] is None
            else _from_little_endian("B", column["kinds"])
        )
        for position, payload, kind in zip(positions, payloads, kinds, strict=True):
            rows[position][2][key] = decode_value(payload, kind)
    return rows


def _little_endian(values: array[Any]) -> bytes:
    if array("H", [1]).tobytes()[0] == 0:  # big-endian host
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _from_little_endian(typecode: str, data: bytes) -> array[Any]:
    values = array(typecode)
    values.frombytes(data)
    if array("H", [1]).tobytes()[0] == 0:
        values.byteswap()
    return values


def is_nonfinite(value: object) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_FLOAT_TAG = "$float"
_FLOAT_TOKENS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def tag_floats(value: Any) -> Any:
    """Make ``value`` JSON-safe, writing NaN and infinities as ``{"$float": "NaN"}``.

    JSON has no NaN or infinity, and a string would be mistaken for a string,
    so the read API and the JSON columns use this one-key object instead.
    """
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {_FLOAT_TAG: "NaN" if math.isnan(value) else repr(value).replace("inf", "Infinity")}
    if isinstance(value, dict):
        return {key: tag_floats(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [tag_floats(item) for item in value]
    return value


def untag_floats(value: Any) -> Any:
    """Invert ``tag_floats``."""
    if isinstance(value, dict):
        if len(value) == 1 and _FLOAT_TAG in value:
            token = value[_FLOAT_TAG]
            if token in _FLOAT_TOKENS:
                return _FLOAT_TOKENS[token]
        return {key: untag_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [untag_floats(item) for item in value]
    return value


MAX_DOCUMENT_DEPTH = 32


def check_document(value: Any, what: str, path: str = "", depth: int = 0) -> None:
    """Check that a config or summary value holds only JSON types and floats.

    Raises ``ProtocolError`` naming the first offending path.
    """
    where = f"{what}[{path}]" if path else what
    if depth > MAX_DOCUMENT_DEPTH:
        raise ProtocolError("invalid_value", f"{where} is nested deeper than {MAX_DOCUMENT_DEPTH}")
    if value is None or isinstance(value, bool | int | float | str):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63 - 1:
            raise ProtocolError("invalid_value", f"{where} integer {value!r} exceeds 64 bits")
        if isinstance(value, str) and "\x00" in value:
            raise ProtocolError(
                "invalid_value",
                f"{where} string {_short_repr(value)} contains a NUL character, "
                "which databases cannot store; remove it",
            )
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_document(item, what, f"{path}.{index}" if path else str(index), depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ProtocolError(
                    "invalid_value", f"{where} has a non-string key {key!r}; use string keys"
                )
            if "\x00" in key:
                raise ProtocolError(
                    "invalid_value", f"{where} key {key!r} contains a NUL character; remove it"
                )
            if key == _FLOAT_TAG:
                raise ProtocolError(
                    "invalid_value", f"{where} uses the reserved key {_FLOAT_TAG!r}; rename it"
                )
            check_document(item, what, f"{path}.{key}" if path else key, depth + 1)
        return
    raise ProtocolError(
        "invalid_value",
        f"{where} must be a JSON value (dict, list, str, int, float, bool or None), "
        f"got {type(value).__name__} {_short_repr(value)}",
    )
