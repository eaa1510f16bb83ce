"""One import: find the sources, read each into runs, upload them, summarize."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from assay._connection import TransientError
from assay._credentials import Credentials
from assay._errors import ConfigurationError, ServerError
from assay.importers._discover import Source, discover, run_names
from assay.importers._model import Report, SourceRun
from assay.importers._upload import Uploader, run_id_for

log = logging.getLogger("assay.importers")

#: Hello errors that concern one run only. Any other error stops the import,
#: because it would recur for every run (a wrong key or project name, for example).
RUN_ERRORS = frozenset({"invalid_hello", "invalid_run_id", "run_exists"})


@dataclass
class ImportedRun:
    """A run as it was uploaded."""

    run_id: str
    name: str
    format: str
    path: Path
    created: bool
    rows: int
    points: int
    batches: int
    state: str
    renamed: dict[str, str]


@dataclass
class ImportSummary:
    """The result of an import: runs, warnings, skipped files and why it stopped early."""

    project: str
    sources: int = 0
    runs: list[ImportedRun] = field(default_factory=list)
    report: Report = field(default_factory=Report)
    stopped: str | None = None

    @property
    def points(self) -> int:
        return sum(run.points for run in self.runs)


def import_paths(
    paths: Sequence[Path],
    project: str,
    credentials: Credentials,
    format: str | None = None,
    run_column: str | None = None,
    report: Report | None = None,
    on_source: Callable[[Source, list[ImportedRun]], None] | None = None,
    on_sources_found: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import every run found below ``paths`` into ``project``.

    ``format`` forces one format instead of detecting it per directory.
    ``on_sources_found`` receives the number of sources before reading
    starts, and ``on_source`` each source with its uploaded runs, for a
    progress display. A lost connection that persists after retries, or a
    server that rejects a run, stops the import. The summary then records why
    in ``stopped``, and running the same import again completes it.
    """
    summary = ImportSummary(project, report=report or Report())
    sources = [source for path in paths for source in discover(path, format, summary.report)]
    summary.sources = len(sources)
    if on_sources_found is not None:
        on_sources_found(len(sources))
    names = run_names([source.label for source in sources])
    uploader = Uploader(credentials, project, summary.report)
    for source, name in zip(sources, names, strict=True):
        runs = _read(source, summary.report, run_column)
        uploaded: list[ImportedRun] = []
        for run in runs:
            if run.name is None:
                extra = run.label[len(source.label) :]
                run.name = "/".join((name, *extra))
            try:
                result = uploader.upload(run)
            except ServerError as exc:
                if exc.code not in RUN_ERRORS:
                    summary.stopped = f"run {run.name!r} from {run.path}: {exc}"
                    return summary
                summary.report.warn(run.path, f"the server rejected the run: {exc}; skipped")
                continue
            except TransientError as exc:
                summary.stopped = f"run {run.name!r} from {run.path}: {exc}"
                return summary
            uploaded.append(
                ImportedRun(
                    run_id=run_id_for(project, run.key),
                    name=run.name,
                    format=run.format,
                    path=run.path,
                    created=result.created,
                    rows=run.history.row_count,
                    points=run.history.point_count,
                    batches=result.batches,
                    state=result.state,
                    renamed=dict(run.history.renamed),
                )
            )
        summary.runs.extend(uploaded)
        if on_source is not None:
            on_source(source, uploaded)
    return summary


def _read(source: Source, report: Report, run_column: str | None) -> list[SourceRun]:
    """Read one source with its format's reader; a source that fails is warned about."""
    try:
        if source.format == "tensorboard":
            from assay.importers.tensorboard import read_tensorboard

            return read_tensorboard(source.path, source.key, source.label, report)
        if source.format == "mlflow":
            from assay.importers.mlflow import read_mlflow

            return read_mlflow(source.path, source.key, source.label, report)
        if source.format == "lightning":
            from assay.importers.tables import read_lightning

            return read_lightning(source.path, source.key, source.label, report)
        if source.format == "csv":
            from assay.importers.tables import read_csv_export

            return read_csv_export(source.path, source.key, source.label, report, run_column)
        if source.format == "jsonl":
            from assay.importers.histories import read_jsonl

            return read_jsonl(source.path, source.key, source.label, report)
        from assay.importers.histories import read_keras

        return read_keras(source.path, source.key, source.label, report)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"reading {source.format} logs needs the {exc.name} package; "
            "install it with: pip install 'assay[import]'"
        ) from None
    except (OSError, ValueError, RecursionError) as exc:
        log.debug("reading %s failed", source.path, exc_info=True)
        report.warn(source.path, f"cannot be read ({type(exc).__name__}: {exc}); skipped")
        return []
