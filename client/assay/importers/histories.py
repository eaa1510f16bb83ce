"""JSON histories: JSONL files (an object per step) and Keras ``history.json``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from assay._errors import InvalidValueError
from assay.importers._documents import (
    load_config,
    load_json,
    modified_time,
    read_text,
    to_config,
)
from assay.importers._model import History, Report, SourceRun
from assay.importers._records import Record, add_records, flatten

#: The config file read beside a JSONL or Keras history.
CONFIG_FILE = "config.json"
KERAS_FILE = "history.json"


def read_jsonl(path: Path, key: str, label: tuple[str, ...], report: Report) -> list[SourceRun]:
    """Read a JSONL history, with ``config.json`` beside it as the config.

    An empty file still makes a run, carrying the config and no points, since
    a run that logged nothing before it stopped is a run too.
    """
    run = SourceRun("jsonl", path, key, label, History(report, path))
    config = path.parent / CONFIG_FILE
    if config.is_file():
        run.config = load_config(config, report)
    end = modified_time(path)
    run.created_at = min(end, modified_time(config)) if config.is_file() else end
    run.finished_at = end
    text = read_text(path, report)
    if text is None:
        return [run]
    if not text.strip():
        report.warn(path, "is empty; the run is imported without points")
        return [run]
    records: list[Record] = []
    # JSON strings may hold U+2028 and other line separators that
    # str.splitlines() would split on, so split on newlines only.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            report.warn(
                path,
                f"is not valid JSON ({exc.msg}, column {exc.colno}); line skipped",
                f"line {number}",
            )
            continue
        if not isinstance(record, dict):
            report.warn(
                path,
                f"holds a {type(record).__name__}, not an object; line skipped",
                f"line {number}",
            )
            continue
        try:
            fields = flatten(record)
        except InvalidValueError as exc:
            report.warn(path, f"has {exc}; line skipped", f"line {number}")
            continue
        records.append((number, fields))
    add_records(run, records, path, end)
    return [run]


def read_keras(path: Path, key: str, label: tuple[str, ...], report: Report) -> list[SourceRun]:
    """Read a Keras history: a list of values per metric, an epoch per position.

    Accepted layouts are ``History.history`` itself (``{"loss": [...], ...}``)
    and a wrapper with ``epochs`` (or ``epoch``), ``metrics`` (or ``history``)
    and optionally ``params``, as ``json.dump`` of a ``History`` object's
    fields gives.
    """
    document = load_json(path, report)
    if document is None:
        return []
    layout = _keras_layout(document)
    if layout is None:
        report.warn(
            path,
            "is not a Keras history (expected lists of values per metric, or 'metrics' "
            "with 'epochs'); skipped",
        )
        return []
    metrics, epochs, params = layout
    run = SourceRun("keras", path, key, label, History(report, path))
    config = path.parent / CONFIG_FILE
    if config.is_file():
        run.config = load_config(config, report)
    if params:
        run.config.update(to_config(params, report, path))
    time = modified_time(path)
    run.created_at = run.finished_at = time
    steps = _epoch_steps(epochs, path, report)
    for name, values in metrics.items():
        if not isinstance(values, list):
            report.warn(path, f"{name!r} is not a list of values; skipped")
            continue
        if steps is not None and len(values) != len(steps):
            report.warn(
                path,
                f"{name!r} has {len(values)} values for {len(steps)} epochs; "
                "values beyond the epochs get their position as the step",
            )
        for position, value in enumerate(values):
            step = steps[position] if steps is not None and position < len(steps) else position
            if value is None or isinstance(value, bool | int | float):
                run.history.add(step, time, name, value, path)
            else:
                report.warn_once(
                    path,
                    f"type:{name}",
                    f"{name!r} holds a {type(value).__name__} at position {position}, "
                    "which is not a metric value; such values are skipped",
                )
    return [run]


def _keras_layout(
    document: Any,
) -> tuple[dict[str, Any], list[Any] | None, dict[str, Any] | None] | None:
    if not isinstance(document, dict):
        return None
    metrics = document.get("metrics", document.get("history"))
    if isinstance(metrics, dict):
        epochs = document.get("epochs", document.get("epoch"))
        params = document.get("params")
        return (
            metrics,
            epochs if isinstance(epochs, list) else None,
            params if isinstance(params, dict) else None,
        )
    if document and all(isinstance(values, list) for values in document.values()):
        return document, None, None
    return None


def _epoch_steps(epochs: list[Any] | None, path: Path, report: Report) -> list[int] | None:
    """Epoch numbers as steps, or None to number the values by position."""
    if epochs is None:
        return None
    steps: list[int] = []
    for epoch in epochs:
        if isinstance(epoch, bool) or not isinstance(epoch, int | float):
            break
        if not (math.isfinite(epoch) and float(epoch).is_integer() and epoch >= 0):
            break
        steps.append(int(epoch))
    else:
        return steps
    report.warn(
        path, "'epochs' holds values that are not whole numbers from 0; positions are the steps"
    )
    return None
