"""CSV histories: PyTorch Lightning's ``CSVLogger`` and generic CSV exports.

Both have a header row and a column per metric. Lightning writes
``metrics.csv`` in a ``version_N`` directory with ``hparams.yaml`` beside it.
Its rows are sparse, and one step can span several rows (train, validation
and epoch-end rows), which are merged per step. A generic export has a row per
step and may have a run column that splits it into several runs.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from assay.importers._documents import load_config, modified_time, read_text
from assay.importers._model import History, Report, SourceRun
from assay.importers._records import Record, add_records, parse_cell

LIGHTNING_METRICS = "metrics.csv"
LIGHTNING_HPARAMS = "hparams.yaml"
#: Column names recognized as the run column when ``--run-column`` is not given.
RUN_COLUMNS = ("run", "run_id", "run_name", "trial_id")


def read_lightning(
    directory: Path, key: str, label: tuple[str, ...], report: Report
) -> list[SourceRun]:
    """Read ``metrics.csv`` and ``hparams.yaml`` of one Lightning version directory."""
    metrics = directory / LIGHTNING_METRICS
    run = SourceRun("lightning", directory, key, label, History(report, directory))
    hparams = directory / LIGHTNING_HPARAMS
    if hparams.is_file():
        run.config = load_config(hparams, report)
    end = modified_time(metrics)
    start = modified_time(hparams) if hparams.is_file() else end
    # Lightning writes hparams.yaml when training starts and metrics.csv until it ends.
    run.created_at = min(start, end)
    run.finished_at = end
    table = _read_csv(metrics, report, run_column=None)
    if table is not None:
        add_records(run, table[1], metrics, end)
    return [run]


def read_csv_export(
    path: Path,
    key: str,
    label: tuple[str, ...],
    report: Report,
    run_column: str | None = None,
) -> list[SourceRun]:
    """Read a CSV (or ``.tsv``) export: one run, or one per value of the run column."""
    table = _read_csv(path, report, run_column=run_column or "")
    if table is None:
        return []
    column, records = table
    if not records:
        report.warn(path, "has a header but no rows; nothing to import")
        return []
    time = modified_time(path)
    groups: dict[str, list[Record]] = {}
    for line, record in records:
        value = str(record.pop(column, "")) if column else ""
        groups.setdefault(value, []).append((line, record))
    runs = []
    for value, group in groups.items():
        run_key = key if column is None else f"{key}#{value}"
        run_label = label if column is None else (*label, value or "(no run)")
        run = SourceRun("csv", path, run_key, run_label, History(report, path))
        if column is not None:
            run.group = "/".join(label)
            run.config[column] = value
        run.created_at = run.finished_at = time
        add_records(run, group, path, time)
        runs.append(run)
    return runs


def _read_csv(
    path: Path, report: Report, run_column: str | None
) -> tuple[str | None, list[Record]] | None:
    """Parse a CSV file into typed records; None if it is empty or unreadable.

    ``run_column`` is None when the format has no run column, "" to look for
    one of ``RUN_COLUMNS``, or the name given on the command line. The run
    column's cells stay text. Returns the run column found, and the records.
    """
    text = read_text(path, report)
    if text is None:
        return None
    if not text.strip():
        report.warn(path, "is empty; it holds no rows")
        return None
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = _header(next(reader), path, report)
    except csv.Error as exc:
        report.warn(path, f"the header is not valid CSV ({exc}); file skipped", "line 1")
        return None
    column = _run_column(header, path, report, run_column)
    records: list[Record] = []
    try:
        for row in reader:
            record = _record(row, header, column, path, reader.line_num, report)
            if record is not None:
                records.append((reader.line_num, record))
    except csv.Error as exc:
        report.warn(
            path,
            f"is not valid CSV ({exc}); the rest of the file is skipped",
            f"line {reader.line_num}",
        )
    return column, records


def _header(cells: Sequence[str], path: Path, report: Report) -> list[str]:
    names: list[str] = []
    for position, cell in enumerate(cells, start=1):
        name = cell.strip() or f"column {position}"
        if name in names:
            renamed = f"{name} ({names.count(name) + 1})"
            report.warn(path, f"the column {name!r} appears twice; the second is {renamed!r}")
            name = renamed
        names.append(name)
    return names


def _run_column(
    header: list[str], path: Path, report: Report, requested: str | None
) -> str | None:
    if requested is None:
        return None
    if requested:
        if requested in header:
            return requested
        report.warn(path, f"has no column {requested!r}; the file is imported as one run")
        return None
    return next((name for name in RUN_COLUMNS if name in header), None)


def _record(
    row: Sequence[str],
    header: list[str],
    run_column: str | None,
    path: Path,
    line: int,
    report: Report,
) -> dict[str, object] | None:
    if not any(cell.strip() for cell in row):
        return None
    where = f"line {line}"
    if len(row) > len(header):
        report.warn(
            path,
            f"the row has {len(row)} cells but the header has {len(header)}; row skipped",
            where,
        )
        return None
    if len(row) < len(header):
        report.warn(
            path,
            f"the row has {len(row)} cells but the header has {len(header)}; "
            "the missing cells are taken as empty",
            where,
        )
    return {
        name: cell if name == run_column else parse_cell(cell)
        for name, cell in zip(header, row, strict=False)
        if cell.strip()
    }
