"""MLflow file stores: a run per ``mlruns/<experiment id>/<run id>`` directory.

A run directory contains ``meta.yaml`` (name, status, start and end times in
milliseconds), ``params/<name>`` and ``tags/<name>`` (one value per file) and
``metrics/<name>``. A metric file has a line ``timestamp_ms value step`` per
point; a line ``timestamp_ms value`` has step 0, as MLflow's own file store
reads it. Names containing ``/`` are nested directories. The experiment's
``meta.yaml`` one level up names it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from assay import protocol
from assay.importers._documents import load_yaml, to_config
from assay.importers._model import History, Report, SourceRun

META_FILE = "meta.yaml"
PARTS = ("metrics", "params", "tags")

#: MLflow's ``RunStatus`` numbers, as ``meta.yaml`` stores them.
STATUS_NAMES = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
#: The exit code sent in ``finish`` per status; None leaves the run running.
EXIT_CODES: dict[str, int | None] = {
    "RUNNING": None,
    "SCHEDULED": None,
    "FINISHED": 0,
    "FAILED": 1,
    "KILLED": 1,
}
RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"
MAX_TAG_LENGTH = 128


def is_mlflow_run(directory: Path) -> bool:
    """Tell whether ``directory`` is an MLflow run, including one missing its ``meta.yaml``."""
    parts = [part for part in PARTS if (directory / part).is_dir()]
    if not parts:
        return False
    return len(parts) >= 2 or (directory / META_FILE).is_file()


def read_mlflow(
    directory: Path, key: str, label: tuple[str, ...], report: Report
) -> list[SourceRun]:
    run = SourceRun("mlflow", directory, key, label, History(report, directory))
    meta = _read_meta(directory, report)
    experiment = _experiment_name(directory.parent, report)
    params = _read_values(directory / "params", report)
    tags = _read_values(directory / "tags", report)
    times = _read_metrics(directory / "metrics", run.history, report)

    status = _status(meta.get("status"))
    if not meta:
        status = "FINISHED"
    elif status is None:
        report.warn(
            directory / META_FILE,
            f"has the unknown status {meta.get('status')!r}; the run is imported as finished",
        )
        status = "FINISHED"
    run.exit_code = EXIT_CODES[status]
    run.created_at = _seconds(meta.get("start_time")) or (min(times) if times else None)
    run.finished_at = _seconds(meta.get("end_time")) or (max(times) if times else None)
    run.name = tags.get(RUN_NAME_TAG) or _text(meta.get("run_name"))
    run.notes = tags.get(NOTE_TAG)
    run.group = experiment
    stage = _text(meta.get("lifecycle_stage"))
    run.tags = _assay_tags(tags, stage)

    config: dict[str, Any] = dict(params)
    details = {
        "run_id": _text(meta.get("run_id") or meta.get("run_uuid")) or directory.name,
        "experiment_id": _text(meta.get("experiment_id")) or directory.parent.name,
        "experiment": experiment,
        "status": status,
        "lifecycle_stage": stage,
        "user_id": _text(meta.get("user_id")),
        "tags": tags,
    }
    details_key = "mlflow"
    if details_key in config:
        details_key = "mlflow (import)"
        report.warn(
            directory / "params",
            f"has a param named 'mlflow'; the MLflow run details are in {details_key!r}",
        )
    config[details_key] = details
    run.config = to_config(config, report, directory)
    return [run]


def _read_meta(directory: Path, report: Report) -> dict[str, Any]:
    path = directory / META_FILE
    if not path.is_file():
        report.warn(
            path,
            "is missing: the run's status, start and end times are unknown; it is imported "
            "as finished, with the times of its first and last metric points",
        )
        return {}
    meta = load_yaml(path, report)
    if not isinstance(meta, dict):
        if meta is not None:
            report.warn(path, "does not hold a mapping; the run's status and times are unknown")
        return {}
    return meta


def _experiment_name(experiment: Path, report: Report) -> str:
    path = experiment / META_FILE
    if not path.is_file():
        report.warn_once(
            path,
            "missing-experiment",
            f"is missing; the experiment is named after its directory, {experiment.name!r}",
        )
        return experiment.name
    meta = load_yaml(path, report)
    name = meta.get("name") if isinstance(meta, dict) else None
    return str(name) if name is not None else experiment.name


def _read_values(directory: Path, report: Report) -> dict[str, str]:
    """Read ``params/`` or ``tags/``: the file's path is the name, its text the value."""
    values: dict[str, str] = {}
    if not directory.is_dir():
        return values
    for path in sorted(directory.rglob("*")):
        if not path.is_file():
            continue
        try:
            values[path.relative_to(directory).as_posix()] = path.read_text(
                encoding="utf-8", errors="replace"
            )
        except OSError as exc:
            report.warn(path, f"cannot be read: {exc.strerror or exc}")
    return values


def _read_metrics(directory: Path, history: History, report: Report) -> list[float]:
    """Add every metric file's points to ``history``; return the points' times."""
    times: list[float] = []
    if not directory.is_dir():
        return times
    for path in sorted(directory.rglob("*")):
        if not path.is_file():
            continue
        name = path.relative_to(directory).as_posix()
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            report.warn(path, f"cannot be read: {exc.strerror or exc}")
            continue
        if not text.strip():
            report.warn(path, "is empty; the metric has no points")
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            point = _parse_line(line)
            if isinstance(point, str):
                report.warn(path, f"{point}; line skipped", f"line {number}")
                continue
            timestamp, value, step = point
            history.add(step, timestamp, name, value, path)
            times.append(timestamp)
    return times


def _parse_line(line: str) -> tuple[float, float, int] | str:
    """Parse ``timestamp_ms value [step]``; return the problem as text if it is not valid."""
    fields = line.split()
    if len(fields) not in (2, 3):
        return f"expected 'timestamp value step', got {line.strip()[:80]!r}"
    try:
        milliseconds = int(fields[0])
        value = float(fields[1])
        step = int(fields[2]) if len(fields) == 3 else 0
    except ValueError:
        return f"expected 'timestamp value step' as numbers, got {line.strip()[:80]!r}"
    timestamp = milliseconds / 1000
    if not (math.isfinite(timestamp) and timestamp > 0):
        return f"the timestamp {fields[0]} is not a time after 1970"
    if not 0 <= step <= protocol.MAX_STEP:
        return f"step {step} is outside 0 to {protocol.MAX_STEP}"
    return timestamp, value, step


def _status(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return STATUS_NAMES.get(value)
    if isinstance(value, str) and value.upper() in EXIT_CODES:
        return value.upper()
    return None


def _seconds(value: object) -> float | None:
    """Milliseconds since the epoch from ``meta.yaml`` as seconds; None if absent or invalid."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value) / 1000
    return None


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _assay_tags(tags: dict[str, str], stage: str | None) -> list[str]:
    """Tags set by the user (not ``mlflow.*``) become ``name=value`` run tags where they fit."""
    result = [
        f"{name}={value}"
        for name, value in tags.items()
        if not name.startswith("mlflow.") and 0 < len(f"{name}={value}") <= MAX_TAG_LENGTH
    ]
    if stage not in (None, "active"):
        result.append(f"mlflow.lifecycle_stage={stage}")
    return result[:100]
