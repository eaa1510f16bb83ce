"""Runs as every format reader produces them, with their history, and the import report."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assay import protocol

#: A metric value as the protocol carries it.
Value = float | int | bool | None
#: One history row: step, wall time in seconds since the epoch, and values by metric name.
Row = tuple[int, float, dict[str, Value]]

#: Suffix appended to a metric name that the read API reserves for its own columns.
RESERVED_SUFFIX = " (logged)"


@dataclass(frozen=True)
class Problem:
    """A warning about the source data: which file, where in it, and what was wrong."""

    path: Path
    message: str
    where: str | None = None

    def __str__(self) -> str:
        location = f"{self.path}: {self.where}" if self.where else str(self.path)
        return f"{location}: {self.message}"


@dataclass(frozen=True)
class Skipped:
    """A file that the import did not read, with the reason."""

    path: Path
    reason: str


@dataclass
class Report:
    """Warnings and skipped files of one import.

    ``on_warning`` is called with each warning as it is found, so that a
    command can print it next to its progress bar.
    """

    on_warning: Callable[[Problem], None] | None = None
    warnings: list[Problem] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    _seen: set[tuple[Path, str]] = field(default_factory=set)

    def warn(self, path: Path, message: str, where: str | None = None) -> None:
        problem = Problem(path, message, where)
        self.warnings.append(problem)
        if self.on_warning is not None:
            self.on_warning(problem)

    def warn_once(self, path: Path, topic: str, message: str, where: str | None = None) -> None:
        """Warn about ``topic`` in ``path`` only the first time it comes up."""
        if (path, topic) in self._seen:
            return
        self._seen.add((path, topic))
        self.warn(path, message, where)

    def skip(self, path: Path, reason: str) -> None:
        self.skipped.append(Skipped(path, reason))


class History:
    """The points of one run, merged into rows by step and wall time.

    Points logged with the same step and time share a row. When the same
    metric appears twice in one row, the value added later wins, as the
    server does for a metric logged twice at one step.
    """

    def __init__(self, report: Report, path: Path) -> None:
        self.report = report
        self.path = path
        self.renamed: dict[str, str] = {}
        self._names: dict[str, str | None] = {}
        self._rows: dict[tuple[int, float], dict[str, Value]] = {}
        self.point_count = 0

    def add(self, step: int, time: float, raw_key: str, value: Value, source: Path) -> None:
        """Add one point; ``source`` is the file it came from, for warnings."""
        key = self.metric_name(raw_key, source)
        if key is None:
            return
        if type(value) is int and abs(value) > protocol.MAX_EXACT_INT:
            self.report.warn_once(
                source,
                f"big-int:{key}",
                f"metric {key!r} has the integer {value}, beyond 2**53; "
                "stored as the nearest float",
            )
            value = float(value)
        row = self._rows.setdefault((step, time), {})
        if key not in row:
            self.point_count += 1
        row[key] = value

    def metric_name(self, raw_key: str, source: Path) -> str | None:
        """Return the name under which ``raw_key`` is stored, or None to drop it."""
        if raw_key in self._names:
            return self._names[raw_key]
        name = valid_metric_name(raw_key)
        if name is None:
            self.report.warn(
                source, f"metric name {raw_key!r} {_skip_reason(raw_key)}; its values are skipped"
            )
        elif name != raw_key:
            self.renamed[raw_key] = name
            self.report.warn(
                source, f"metric {raw_key!r} is stored as {name!r}: {_rename_reason(raw_key)}"
            )
        self._names[raw_key] = name
        return name

    def rows(self) -> list[Row]:
        """Rows sorted by step, then wall time."""
        return [(step, time, values) for (step, time), values in sorted(self._rows.items())]

    @property
    def row_count(self) -> int:
        return len(self._rows)


def valid_metric_name(raw_key: str) -> str | None:
    """Map a name from a log file to one that ``protocol.check_key`` accepts, or None to skip it.

    Names with an empty segment, such as ``a//b`` or ``loss/``, are skipped
    because no rename can tell which name was meant.
    """
    name = "".join(
        "\ufffd" if unicodedata.category(char) in ("Cc", "Cf", "Cs") else char for char in raw_key
    )
    if protocol.has_empty_segment(name):
        return None
    if name in protocol.RESERVED_KEYS:
        name += RESERVED_SUFFIX
    if len(name) > protocol.MAX_KEY_LENGTH:
        name = name[: protocol.MAX_KEY_LENGTH - 1] + "\u2026"
    return name


def _skip_reason(raw_key: str) -> str:
    if not raw_key:
        return "is empty"
    return "has an empty segment (a leading, trailing or doubled '/')"


def _rename_reason(raw_key: str) -> str:
    if raw_key.strip() in protocol.RESERVED_KEYS:
        return "the read API reserves that name for its own column"
    if len(raw_key) > protocol.MAX_KEY_LENGTH:
        return f"names are at most {protocol.MAX_KEY_LENGTH} characters"
    return "control characters are replaced by U+FFFD"


@dataclass
class SourceRun:
    """One run read from the source files, ready to upload.

    ``key`` identifies the run across imports: the path of its directory or
    file relative to the parent of the imported path, in POSIX form. The run
    id, the session and so the batch numbers derive from it.
    ``exit_code`` None leaves the run running; 0 finishes it and anything
    else marks it failed.
    """

    format: str
    path: Path
    key: str
    label: tuple[str, ...]
    history: History
    name: str | None = None
    group: str | None = None
    notes: str | None = None
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    created_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = 0


def is_epoch_seconds(value: float) -> bool:
    """Tell whether ``value`` is a wall time in seconds since the epoch (2001 to 2286)."""
    return math.isfinite(value) and 1e9 <= value < 1e10
