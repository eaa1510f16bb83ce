"""Turning records (a CSV row or a JSON object per step) into a run's history.

CSV and JSONL histories share the rules: which field is the step, which is
the wall time, and what happens to text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assay import protocol
from assay._errors import InvalidValueError
from assay._values import describe_clash, describe_empty_segment
from assay.importers._model import SourceRun, Value, is_epoch_seconds

#: Fields taken as the step, in order of preference; the first one present wins.
STEP_FIELDS = ("step", "_step", "global_step", "iteration", "training_iteration", "epoch")
#: Fields taken as the wall time when every value is seconds or milliseconds since the epoch.
TIME_FIELDS = ("_timestamp", "timestamp", "wall_time", "walltime", "time")
#: Text cells shown one by one before the rest are only counted.
MAX_CELL_WARNINGS = 3

_INTEGER = re.compile(r"[+-]?\d+")
_BOOLEANS = {"true": True, "false": False}
_NULLS = ("none", "null")

#: A record: the line it started on and its fields, with values already typed.
Record = tuple[int, dict[str, Any]]


def parse_cell(text: str) -> Value | str:
    """Type one CSV cell: int, float (NaN and infinities included), bool, None or text.

    ``None`` and ``null`` are a logged null; an empty cell is handled by the caller.
    """
    cell = text.strip()
    # Longer digit strings go through float(): int() rejects more than 4,300 digits.
    if len(cell) <= 18 and _INTEGER.fullmatch(cell):
        return int(cell)
    try:
        return float(cell)
    except ValueError:
        pass
    lowered = cell.lower()
    if lowered in _BOOLEANS:
        return _BOOLEANS[lowered]
    if lowered in _NULLS:
        return None
    return text


@dataclass
class _TextField:
    values: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)


def add_records(
    run: SourceRun, records: Sequence[Record], path: Path, fallback_time: float
) -> None:
    """Add ``records`` to ``run``: numbers become points, text constants become config.

    When a field contains wall times, they also set the run's start and end.
    """
    report = run.history.report
    step_field = _step_field(records)
    time_field, time_scale = _time_field(records)
    numeric: set[str] = set()
    text: dict[str, _TextField] = {}
    times: list[float] = []
    for index, (line, record) in enumerate(records):
        where = f"line {line}"
        if step_field is None:
            step = index
        else:
            parsed = _step(record.get(step_field))
            if parsed is None:
                report.warn(
                    path,
                    f"{step_field!r} is {record.get(step_field)!r}, not a step from 0 to "
                    f"{protocol.MAX_STEP}; row skipped",
                    where,
                )
                continue
            step = parsed
        time = fallback_time
        if time_field is not None and isinstance(record.get(time_field), int | float):
            time = float(record[time_field]) / time_scale
            times.append(time)
        for key, value in record.items():
            if key == step_field or key == time_field:
                continue
            if value is None or isinstance(value, bool | int | float):
                run.history.add(step, time, key, value, path)
                numeric.add(key)
            elif isinstance(value, str):
                entry = text.setdefault(key, _TextField())
                entry.values.append(value)
                entry.lines.append(line)
            else:
                report.warn_once(
                    path,
                    f"type:{key}",
                    f"{key!r} holds a {type(value).__name__}, which is not a metric value; "
                    "such values are not imported",
                    where,
                )
    _handle_text(run, path, text, numeric)
    if times:
        run.created_at = min(times)
        run.finished_at = max(times)


def _handle_text(
    run: SourceRun, path: Path, text: dict[str, _TextField], numeric: set[str]
) -> None:
    report = run.history.report
    for key, entry in text.items():
        if key in numeric:
            for value, line in list(zip(entry.values, entry.lines, strict=True))[
                :MAX_CELL_WARNINGS
            ]:
                report.warn(
                    path, f"{key!r} is {value[:80]!r}, not a number; cell skipped", f"line {line}"
                )
            more = len(entry.values) - MAX_CELL_WARNINGS
            if more > 0:
                report.warn(path, f"{key!r} has {more} more cells that are not numbers; skipped")
        elif len(set(entry.values)) == 1:
            run.config.setdefault(key, entry.values[0])
        else:
            report.warn(
                path,
                f"{key!r} holds text that changes from row to row "
                f"({entry.values[0][:40]!r}, {entry.values[-1][:40]!r}, ...); not imported",
            )


def _step_field(records: Sequence[Record]) -> str | None:
    present = set().union(*(record.keys() for _, record in records)) if records else set()
    return next((name for name in STEP_FIELDS if name in present), None)


def _time_field(records: Sequence[Record]) -> tuple[str | None, float]:
    """Find the wall time field and its divisor to seconds: one whose every value is a time."""
    for name in TIME_FIELDS:
        values = [record[name] for _, record in records if record.get(name) is not None]
        if not values or not all(
            isinstance(value, int | float) and not isinstance(value, bool) for value in values
        ):
            continue
        if all(is_epoch_seconds(float(value)) for value in values):
            return name, 1.0
        if all(is_epoch_seconds(float(value) / 1000) for value in values):
            return name, 1000.0
    return None, 1.0


def _step(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= protocol.MAX_STEP:
        return value
    return None


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """Join nested keys with ``/``, as ``run.log`` does.

    Raises ``InvalidValueError`` when keys join to the same name, such as
    ``{"a/b": 1, "a": {"b": 2}}``, and when a key leaves an empty segment in
    the name, such as ``{"a": {"": 1}}`` or ``{"a/": 1}``, which ``run.log``
    rejects too.
    """
    flat: dict[str, Any] = {}
    _flatten_into(flat, "", (), record, record)
    return flat


def _flatten_into(
    flat: dict[str, Any],
    prefix: str,
    keys: tuple[str, ...],
    fields: dict[str, Any],
    record: dict[str, Any],
) -> None:
    for key, value in fields.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            _flatten_into(flat, name + "/", (*keys, key), value, record)
        elif name and protocol.has_empty_segment(name):
            raise InvalidValueError(describe_empty_segment((*keys, key), name))
        elif isinstance(value, dict):
            continue
        elif name in flat:
            raise InvalidValueError(describe_clash(record, name))
        else:
            flat[name] = value
