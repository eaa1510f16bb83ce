"""Finding the runs below a path and the format of each.

Every directory is looked at on its own, so one tree may mix formats (an
``mlruns`` store beside ``lightning_logs``, for example). An MLflow run
directory claims its whole subtree. Elsewhere, TensorBoard event files,
Lightning's ``metrics.csv``, JSONL files, ``history.json`` and the remaining
CSV files each make runs, read together with the config files beside them.
Files that no format claims are reported as skipped.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from assay.importers import mlflow
from assay.importers._model import Report

FORMATS = ("tensorboard", "mlflow", "lightning", "jsonl", "keras", "csv")

EVENT_FILE_PREFIX = "events.out.tfevents."
LIGHTNING_METRICS = "metrics.csv"
KERAS_FILE = "history.json"
JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv", ".tsv")
#: Config files that formats read beside their metrics.
CONFIG_FILES = ("hparams.yaml", "config.json", "params.json")
#: A Ray Tune trial directory contains these beside its event files: copies of
#: the same results (``progress.csv``, ``result.json``), the trial's config and,
#: for a failed trial, its traceback.
RAY_COPIES = ("progress.csv", "result.json")
RAY_SIDECARS = ("params.json", "error.txt")


@dataclass(frozen=True)
class Source:
    """A file or directory holding one or more runs in one format.

    ``key`` is the path relative to the parent of the imported path (for an
    imported file, relative to the directory above its own), so that the run
    ids stay the same when the same path is imported again. ``label`` is the
    path as parts, from which run names are made.
    """

    format: str
    path: Path
    key: str
    label: tuple[str, ...]


def discover(root: Path, forced: str | None, report: Report) -> list[Source]:
    """List the sources below ``root`` in a stable order; report files that are skipped."""
    root = Path(os.path.abspath(root))
    finder = _Finder(forced, report)
    if root.is_dir():
        finder.base = root.parent
        finder.walk(root)
    elif root.is_file():
        finder.base = root.parent.parent
        finder.file(root)
    return finder.sources


def run_names(labels: list[tuple[str, ...]]) -> list[str]:
    """Name each run by the fewest trailing parts of its label that no other label shares."""
    names = []
    for label in labels:
        for length in range(1, len(label) + 1):
            suffix = label[-length:]
            if sum(1 for other in labels if other[-length:] == suffix) == 1:
                names.append("/".join(suffix))
                break
        else:
            names.append("/".join(label))
    return names


def _printable(part: str) -> str:
    """Replace bytes of a file name that are not UTF-8, which names cannot carry."""
    return part.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class _Finder:
    def __init__(self, forced: str | None, report: Report) -> None:
        self.forced = forced
        self.report = report
        self.base = Path("/")
        self.sources: list[Source] = []
        self.keys: Counter[str] = Counter()

    def allowed(self, name: str) -> bool:
        return self.forced is None or self.forced == name

    def add(self, format: str, path: Path, label_path: Path, stem: str | None = None) -> None:
        key = path.relative_to(self.base).as_posix()
        self.keys[key] += 1
        if self.keys[key] > 1:
            # Two formats in one directory (TensorBoard and CSV logs side by side).
            key = f"{key}#{format}"
        parts = tuple(_printable(part) for part in label_path.relative_to(self.base).parts)
        label = (*parts, _printable(stem)) if stem else parts
        self.sources.append(Source(format, path, key, label))

    def file(self, path: Path) -> None:
        """Handle a file given as the imported path."""
        name = path.name
        if self.allowed("tensorboard") and name.startswith(EVENT_FILE_PREFIX):
            self.add("tensorboard", path, path.parent)
        elif self.allowed("lightning") and name == LIGHTNING_METRICS:
            self.add("lightning", path.parent, path.parent)
        elif self.allowed("jsonl") and path.suffix.lower() in JSONL_SUFFIXES:
            self.add("jsonl", path, path.parent, None if name == "metrics.jsonl" else path.stem)
        elif self.allowed("keras") and (name == KERAS_FILE or self.forced == "keras"):
            self.add("keras", path, path.parent, None if name == KERAS_FILE else path.stem)
        elif self.allowed("csv") and path.suffix.lower() in CSV_SUFFIXES:
            self.add("csv", path, path.parent, path.stem)
        else:
            self.report.skip(path, self._unclaimed_reason(path))

    def walk(self, directory: Path) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as exc:
            self.report.warn(directory, f"cannot be listed: {exc.strerror or exc}")
            return
        visible = [entry for entry in entries if not entry.name.startswith(".")]
        files = [Path(entry.path) for entry in visible if entry.is_file()]
        # Symbolic links to directories are not followed, so a link loop cannot recur.
        directories = [
            Path(entry.path) for entry in visible if entry.is_dir(follow_symlinks=False)
        ]
        if self.allowed("mlflow") and mlflow.is_mlflow_run(directory):
            self.add("mlflow", directory, directory)
            return
        claimed = self.claim_files(directory, files, directories)
        for path in files:
            if path not in claimed:
                self.report.skip(path, self._unclaimed_reason(path))
        for child in directories:
            self.walk(child)

    def claim_files(
        self, directory: Path, files: list[Path], directories: list[Path]
    ) -> set[Path]:
        """Add the sources in ``directory``'s own files; return the files they read."""
        names = {path.name: path for path in files}
        claimed: set[Path] = set()
        if self.allowed("mlflow") and any(mlflow.is_mlflow_run(child) for child in directories):
            claimed.update(path for path in files if path.name == mlflow.META_FILE)
        if self.allowed("tensorboard"):
            claimed |= self._claim_tensorboard(directory, files, names)
        if self.allowed("lightning") and LIGHTNING_METRICS in names:
            self.add("lightning", directory, directory)
            claimed.update(
                names[name] for name in (LIGHTNING_METRICS, "hparams.yaml") if name in names
            )

        histories = self._claim_histories(directory, [p for p in files if p not in claimed])
        claimed |= histories
        if histories and "config.json" in names:
            claimed.add(names["config.json"])

        if self.allowed("csv"):
            for path in files:
                if path.suffix.lower() in CSV_SUFFIXES and path not in claimed:
                    self.add("csv", path, directory, path.stem)
                    claimed.add(path)
        return claimed

    def _claim_tensorboard(
        self, directory: Path, files: list[Path], names: dict[str, Path]
    ) -> set[Path]:
        events = {path for path in files if path.name.startswith(EVENT_FILE_PREFIX)}
        if not events:
            return events
        self.add("tensorboard", directory, directory)
        claimed = events | {
            names[name] for name in ("hparams.yaml", "params.json") if name in names
        }
        if "params.json" in names or "result.json" in names:
            claimed.update(names[name] for name in RAY_SIDECARS if name in names)
            for name in RAY_COPIES:
                if name in names:
                    claimed.add(names[name])
                    self.report.skip(
                        names[name], "Ray Tune's copy of the results in the event files beside it"
                    )
        return claimed

    def _claim_histories(self, directory: Path, files: list[Path]) -> set[Path]:
        """Add the JSONL and Keras histories among ``files``, which read ``config.json``."""
        claimed: set[Path] = set()
        if self.allowed("jsonl"):
            jsonl = [path for path in files if path.suffix.lower() in JSONL_SUFFIXES]
            for path in jsonl:
                self.add("jsonl", path, directory, None if len(jsonl) == 1 else path.stem)
                claimed.add(path)
        if self.allowed("keras"):
            for path in files:
                if self._is_keras_history(path) and path not in claimed:
                    stem = None if path.name == KERAS_FILE else path.stem
                    self.add("keras", path, directory, stem)
                    claimed.add(path)
        return claimed

    def _is_keras_history(self, path: Path) -> bool:
        if path.name == KERAS_FILE:
            return True
        forced_json = self.forced == "keras" and path.suffix.lower() == ".json"
        return forced_json and path.name not in CONFIG_FILES

    def _unclaimed_reason(self, path: Path) -> str:
        if path.name in CONFIG_FILES:
            return "a config file with no metrics beside it"
        if self.forced is not None:
            return f"not part of the {self.forced} format (--format {self.forced})"
        return "not a recognized training log format"
