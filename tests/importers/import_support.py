"""Helpers for the importer tests: the real data set, a server per module, running imports.

The real training logs live outside the repository, since four of their
seven sources state no licence: tests read them where they are and never
copy them into the repository.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2  # type: ignore[import-untyped]
from tensorboard.summary.writer.event_file_writer import (  # type: ignore[import-untyped]
    EventFileWriter,
)

import assay
from assay._cli import main as assay_cli
from assay_server.settings import Settings
from conftest import ADMIN_KEY_PREFIX, ROOT, RunningServer, ThreadServer

REAL_DATA_ENV = "ASSAY_REAL_DATA"


def real_data_candidates() -> list[Path]:
    """Where the real data set is looked for, in order."""
    candidates = []
    explicit = os.environ.get(REAL_DATA_ENV)
    if explicit:
        candidates.append(Path(explicit))
    candidates.append(ROOT.parent / "shared" / "data" / "real")
    candidates.append(Path("/work/shared/data/real"))
    return candidates


def find_real_data() -> Path:
    """The real data directory; skip the test without it, or fail under CI."""
    candidates = real_data_candidates()
    for candidate in candidates:
        if (candidate / "SOURCES.md").is_file():
            return candidate
    places = ", ".join(str(candidate) for candidate in candidates)
    message = f"the real training logs were not found; looked in {places} (set {REAL_DATA_ENV})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A SQLite server shared by the tests of one module."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("server") / "data",
        bootstrap_api_key=ADMIN_KEY_PREFIX + secrets.token_hex(8),
    )
    server = ThreadServer(settings)
    try:
        yield server.start()
    finally:
        server.stop()


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def import_cli(server: RunningServer, *arguments: str | Path) -> CliResult:
    """Run ``assay import`` in this process and capture what it prints."""
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = ["import", *map(str, arguments), "--server", server.url, "--api-key", server.api_key]
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        exit_code = assay_cli(argv)
    return CliResult(exit_code, stdout.getvalue(), stderr.getvalue())


@contextlib.contextmanager
def open_api(server: RunningServer) -> Iterator[assay.Api]:
    with assay.Api(server=server.url, api_key=server.api_key) as api:
        yield api


def runs_by_name(api: assay.Api, project: str) -> dict[str, assay.ApiRun]:
    return {run.name: run for run in api.runs(project)}


def series(rows: Sequence[dict[str, Any]], metric: str) -> list[tuple[int, Any]]:
    """The ``(step, value)`` points of one metric."""
    return [(row["step"], row[metric]) for row in rows if metric in row]


def write_events(
    directory: Path, points: Sequence[tuple[int, float, str, float]], hparams: Any = None
) -> Path:
    """Write a TensorBoard event file of ``(step, wall_time, tag, value)`` scalars.

    Uses the ``tensorboard`` package's own writer, so the file is framed as
    TensorBoard writes it. ``hparams`` is an optional HParams summary to add.
    """
    directory.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(directory))
    for step, wall_time, tag, value in points:
        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)]
        )
        writer.add_event(event_pb2.Event(step=step, wall_time=wall_time, summary=summary))
    if hparams is not None:
        writer.add_event(event_pb2.Event(step=0, wall_time=1.7e9, summary=hparams))
    writer.close()
    (path,) = directory.glob("events.out.tfevents.*")
    return Path(path)


def record_offsets(path: Path) -> list[int]:
    """Byte offsets of each TFRecord in an event file (length, CRC, payload, CRC)."""
    data = path.read_bytes()
    offsets = []
    offset = 0
    while offset < len(data):
        offsets.append(offset)
        (length,) = struct.unpack_from("<Q", data, offset)
        offset += 8 + 4 + length + 4
    return offsets


def hparams_summary(hparams: dict[str, Any], status: int | None = None) -> Any:
    """An HParams plugin summary: the session start info, and the end info with ``status``.

    ``status`` is the HParams ``Status`` number: 1 success, 2 failure, 3 running.
    """
    from google.protobuf import struct_pb2  # type: ignore[import-untyped]
    from tensorboard.plugins.hparams import (  # type: ignore[import-untyped]
        metadata,
        plugin_data_pb2,
    )

    start = plugin_data_pb2.SessionStartInfo()
    for name, value in hparams.items():
        if isinstance(value, str):
            start.hparams[name].CopyFrom(struct_pb2.Value(string_value=value))
        elif isinstance(value, bool):
            start.hparams[name].CopyFrom(struct_pb2.Value(bool_value=value))
        else:
            start.hparams[name].CopyFrom(struct_pb2.Value(number_value=value))
    values = [
        summary_pb2.Summary.Value(
            tag=metadata.SESSION_START_INFO_TAG,
            metadata=metadata.create_summary_metadata(
                plugin_data_pb2.HParamsPluginData(session_start_info=start)
            ),
        )
    ]
    if status is not None:
        values.append(
            summary_pb2.Summary.Value(
                tag=metadata.SESSION_END_INFO_TAG,
                metadata=metadata.create_summary_metadata(
                    plugin_data_pb2.HParamsPluginData(
                        session_end_info=plugin_data_pb2.SessionEndInfo(status=status)
                    )
                ),
            )
        )
    return summary_pb2.Summary(value=values)
