"""Importing training logs written by other tools: ``assay import``.

Formats: TensorBoard event files, MLflow ``mlruns`` trees, PyTorch Lightning
``CSVLogger`` directories, JSONL histories, Keras ``history.json`` and CSV
exports. ``docs/import.md`` describes how each maps to runs, config and
states, and why importing twice stores nothing twice.

Example:
    >>> from assay.importers import import_paths
    >>> summary = import_paths([Path("lightning_logs")], "sweep", credentials)
"""

from assay.importers._discover import FORMATS, Source, discover
from assay.importers._model import Problem, Report, Skipped, SourceRun
from assay.importers._pipeline import ImportedRun, ImportSummary, import_paths
from assay.importers._upload import run_id_for

__all__ = [
    "FORMATS",
    "ImportSummary",
    "ImportedRun",
    "Problem",
    "Report",
    "Skipped",
    "Source",
    "SourceRun",
    "discover",
    "import_paths",
    "run_id_for",
]
