"""``assay import``: the command-line front of the importers."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from assay import _credentials
from assay.importers._discover import FORMATS, Source
from assay.importers._model import Problem, Report
from assay.importers._pipeline import ImportedRun, ImportSummary, import_paths

#: Skipped files listed per reason in the summary; the rest are counted.
EXAMPLES_PER_REASON = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", type=Path, nargs="+", metavar="PATH", help="a log directory or file to import"
    )
    parser.add_argument("--project", required=True, help="project to import the runs into")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="read only this format (default: detect the format of each directory)",
    )
    parser.add_argument(
        "--run-column",
        metavar="NAME",
        help="CSV column naming the run of each row (default: a column named "
        "run, run_id, run_name or trial_id, if any)",
    )
    parser.add_argument("--server", help="server URL (default: ASSAY_SERVER or assay login)")
    parser.add_argument("--api-key", help="API key (default: ASSAY_API_KEY or assay login)")


def run_command(args: argparse.Namespace) -> int:
    missing = [str(path) for path in args.paths if not path.exists()]
    if missing:
        print(f"assay: error: {', '.join(missing)} does not exist", file=sys.stderr)
        return 1
    credentials = _credentials.resolve(args.server, args.api_key, ("--server", "--api-key"))
    progress = _Progress()
    report = Report(on_warning=progress.warn)
    try:
        summary = import_paths(
            args.paths,
            args.project,
            credentials,
            format=args.format,
            run_column=args.run_column,
            report=report,
            on_source=progress.advance,
            on_sources_found=progress.start,
        )
    finally:
        progress.close()
    print_summary(summary, credentials.server)
    if summary.stopped is not None:
        print(
            f"assay: error: the import stopped at {summary.stopped}\n"
            "Run the same command again to finish it: batches stored already are "
            "acknowledged without being stored twice.",
            file=sys.stderr,
        )
        return 1
    if not summary.runs:
        print(
            f"assay: error: no runs found under {', '.join(map(str, args.paths))}", file=sys.stderr
        )
        return 1
    return 0


class _Progress:
    """A progress bar on stderr (when it is a terminal) and warnings printed beside it."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.points = 0

    def start(self, total: int) -> None:
        try:
            from tqdm import tqdm
        except ModuleNotFoundError:
            return
        # disable=None turns the bar off when stderr is not a terminal.
        self.bar = tqdm(total=total, unit="source", file=sys.stderr, disable=None, leave=False)

    def advance(self, source: Source, runs: list[ImportedRun]) -> None:
        self.points += sum(run.points for run in runs)
        if self.bar is not None:
            self.bar.set_postfix(points=f"{self.points:,}", refresh=False)
            self.bar.update(1)

    def warn(self, problem: Problem) -> None:
        line = f"warning: {_display(problem.path)}" + (
            f": {problem.where}" if problem.where else ""
        )
        line += f": {problem.message}"
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def print_summary(summary: ImportSummary, server: str) -> None:
    runs = summary.runs
    created = sum(1 for run in runs if run.created)
    rows = sum(run.rows for run in runs)
    print(
        f"Imported {len(runs)} runs into project {summary.project!r} on {server}: "
        f"{created} new, {len(runs) - created} updated; {rows:,} rows, "
        f"{summary.points:,} points."
    )
    if runs:
        print("States: " + _counts(Counter(run.state for run in runs)) + ".")
        print("Formats: " + _counts(Counter(run.format for run in runs)) + ".")
    renamed: Counter[tuple[str, str]] = Counter(
        item for run in runs for item in run.renamed.items()
    )
    for (old, new), count in sorted(renamed.items()):
        print(f"Renamed metric {old!r} to {new!r} in {count} runs.")
    skipped = summary.report.skipped
    if skipped:
        print(f"Skipped {len(skipped)} files or summaries:")
        reasons: dict[str, list[Path]] = {}
        for item in skipped:
            reasons.setdefault(item.reason, []).append(item.path)
        for reason, paths in reasons.items():
            examples = ", ".join(_display(path) for path in paths[:EXAMPLES_PER_REASON])
            more = len(paths) - EXAMPLES_PER_REASON
            print(
                f"  {reason}: {len(paths)} ({examples}"
                + (f" and {more} more" if more > 0 else "")
                + ")"
            )
    warnings = len(summary.report.warnings)
    if warnings:
        print(f"{warnings} warnings, printed above.")


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{count} {name}" for name, count in counter.most_common())


def _display(path: Path) -> str:
    """Return the path relative to the working directory when that is shorter."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return relative if len(relative) < len(str(path)) else str(path)
