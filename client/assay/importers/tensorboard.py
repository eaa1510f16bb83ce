"""TensorBoard event files: a run per directory holding ``events.out.tfevents.*``.

Records are framed as TFRecords: a little-endian uint64 length, the masked
CRC-32C of the length, the payload, and the masked CRC-32C of the payload.
The ``tensorboard`` package's ``EventFileLoader`` stops at the first bad
record and logs that only at debug level. This module therefore reads the
framing itself: it names each bad record in a warning, and it continues after
a record whose payload checksum fails while its length is intact. Everything else
uses the ``tensorboard`` package: its CRC-32C, the ``Event`` protobuf, the
same migrations to the current summary format that ``EventFileLoader``
applies, the tensor decoder and the HParams plugin's parser.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tensorboard import data_compat, dataclass_compat  # type: ignore[import-untyped]
from tensorboard.compat.proto import event_pb2, summary_pb2  # type: ignore[import-untyped]
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import (  # type: ignore[import-untyped]
    masked_crc32c,
)
from tensorboard.plugins.hparams import (  # type: ignore[import-untyped]
    metadata as hparams_metadata,
)
from tensorboard.util import tensor_util  # type: ignore[import-untyped]

from assay import protocol
from assay.importers._documents import load_config, to_config
from assay.importers._model import History, Report, SourceRun

EVENT_FILE_PREFIX = "events.out.tfevents."
#: Files beside the event files that give the run's config when the event
#: files hold no HParams: PyTorch Lightning's ``hparams.yaml``, Ray Tune's ``params.json``.
CONFIG_FILES = ("hparams.yaml", "params.json")
#: Ray Tune writes the traceback of a failed trial here.
ERROR_FILE = "error.txt"

_HEADER = struct.Struct("<QI")
_CRC = struct.Struct("<I")


def event_files(directory: Path) -> list[Path]:
    return sorted(
        path
        for path in directory.iterdir()
        if path.name.startswith(EVENT_FILE_PREFIX) and path.is_file()
    )


def read_tensorboard(
    path: Path, key: str, label: tuple[str, ...], report: Report
) -> list[SourceRun]:
    """Read every event file in the directory ``path`` (or the one event file) into one run."""
    directory = path if path.is_dir() else path.parent
    run = SourceRun("tensorboard", directory, key, label, History(report, directory))
    reader = _RunReader(run, report)
    for events in event_files(directory) if path.is_dir() else [path]:
        reader.read_file(events)
    reader.finish()
    return [run]


class _RunReader:
    def __init__(self, run: SourceRun, report: Report) -> None:
        self.run = run
        self.report = report
        # Per tag, the summary metadata of its first value, as TensorBoard keeps it.
        self.initial_metadata: dict[str, Any] = {}
        self.data_classes: dict[str, int] = {}
        self.other_tags: set[str] = set()
        self.hparams: dict[str, Any] | None = None
        self.status: int | None = None
        self.end_time: float | None = None
        self.times: list[float] = []

    def read_file(self, path: Path) -> None:
        try:
            size = path.stat().st_size
            fallback_time = path.stat().st_mtime
        except OSError as exc:
            self.report.warn(path, f"cannot be read: {exc.strerror or exc}")
            return
        if size == 0:
            self.report.warn(path, "is empty (0 bytes); it holds no events")
            return
        for where, payload in _records(path, size, self.report):
            try:
                event = event_pb2.Event.FromString(payload)
            except Exception as exc:  # protobuf raises its own DecodeError
                self.report.warn(path, f"is not a valid Event ({exc}); skipped", where)
                continue
            self._event(path, where, event, fallback_time)

    def _event(self, path: Path, where: str, event: Any, fallback_time: float) -> None:
        wall_time = float(event.wall_time)
        if not math.isfinite(wall_time) or wall_time <= 0:
            self.report.warn_once(
                path,
                "wall-time",
                f"has an event with the wall time {wall_time!r}; "
                "such events get the file's modification time",
                where,
            )
            wall_time = fallback_time
        self.times.append(wall_time)
        event = data_compat.migrate_event(event)
        for migrated in dataclass_compat.migrate_event(event, self.initial_metadata):
            if migrated.WhichOneof("what") != "summary":
                continue
            for value in migrated.summary.value:
                self._value(path, where, int(migrated.step), wall_time, value)

    def _value(self, path: Path, where: str, step: int, wall_time: float, value: Any) -> None:
        if value.metadata.plugin_data.plugin_name == hparams_metadata.PLUGIN_NAME:
            self._hparams(path, where, value)
            return
        tag = str(value.tag)
        if tag not in self.data_classes:
            self.data_classes[tag] = int(value.metadata.data_class)
        if self.data_classes[tag] != summary_pb2.DATA_CLASS_SCALAR:
            self.other_tags.add(tag)
            return
        if not 0 <= step <= protocol.MAX_STEP:
            self.report.warn(
                path,
                f"scalar {tag!r} has step {step}, outside 0 to {protocol.MAX_STEP}; skipped",
                where,
            )
            return
        try:
            array = tensor_util.make_ndarray(value.tensor)
            number = float(array.reshape(()))
        except (ValueError, TypeError) as exc:
            self.report.warn(path, f"scalar {tag!r} cannot be decoded ({exc}); skipped", where)
            return
        self.run.history.add(step, wall_time, tag, number, path)

    def _hparams(self, path: Path, where: str, value: Any) -> None:
        content = value.metadata.plugin_data.content
        try:
            if value.tag == hparams_metadata.SESSION_START_INFO_TAG:
                start = hparams_metadata.parse_session_start_info_plugin_data(content)
                self.hparams = {name: _struct_value(v) for name, v in start.hparams.items()}
            elif value.tag == hparams_metadata.SESSION_END_INFO_TAG:
                end = hparams_metadata.parse_session_end_info_plugin_data(content)
                self.status = int(end.status)
                if end.end_time_secs > 0:
                    self.end_time = float(end.end_time_secs)
        except Exception as exc:  # HParamsError or a protobuf DecodeError
            self.report.warn(path, f"HParams data cannot be decoded ({exc}); skipped", where)

    def finish(self) -> None:
        run = self.run
        directory = run.path
        if self.hparams is not None:
            run.config = to_config(self.hparams, self.report, directory)
        else:
            for name in CONFIG_FILES:
                if (directory / name).is_file():
                    run.config = load_config(directory / name, self.report)
                    break
        if self.other_tags:
            names = ", ".join(sorted(self.other_tags)[:5])
            more = len(self.other_tags) - 5
            self.report.skip(
                directory,
                "TensorBoard summaries that are not scalars (histograms, images, text and "
                f"others) are not imported: {names}" + (f" and {more} more" if more > 0 else ""),
            )
        if self.times:
            run.created_at = min(self.times)
            run.finished_at = max(self.times)
        if self.end_time is not None:
            run.finished_at = self.end_time
        # HParams status: 0 unknown, 1 success, 2 failure, 3 running.
        run.exit_code = {2: 1, 3: None}.get(self.status or 0, 0)
        error_file = directory / ERROR_FILE
        ray_trial = (directory / "params.json").is_file() or (directory / "result.json").is_file()
        if ray_trial and error_file.is_file():
            run.exit_code = 1
            run.notes = error_file.read_text(encoding="utf-8", errors="replace")[:65_536]


def _struct_value(value: Any) -> Any:
    """Convert a ``google.protobuf.Value`` (``json_format`` rejects NaN, so not with it)."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return float(value.number_value)
    if kind == "string_value":
        return str(value.string_value)
    if kind == "bool_value":
        return bool(value.bool_value)
    if kind == "struct_value":
        return {name: _struct_value(item) for name, item in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_struct_value(item) for item in value.list_value.values]
    return None


def _records(path: Path, size: int, report: Report) -> Iterator[tuple[str, bytes]]:
    """Yield ``(where, payload)`` per record whose checksums match; warn about the others."""
    with path.open("rb") as handle:
        index = 0
        while True:
            offset = handle.tell()
            header = handle.read(_HEADER.size)
            if not header:
                return
            index += 1
            where = f"record {index} at byte {offset}"
            if len(header) < _HEADER.size:
                report.warn(path, "the file ends inside a record header (truncated)", where)
                return
            length, length_crc = _HEADER.unpack(header)
            if masked_crc32c(header[:8]) != length_crc:
                report.warn(
                    path,
                    "the length checksum does not match; the rest of the file is skipped",
                    where,
                )
                return
            if length > size - offset - _HEADER.size:
                report.warn(path, "the file ends inside the record (truncated)", where)
                return
            payload = handle.read(length)
            checksum = handle.read(_CRC.size)
            if len(checksum) < _CRC.size:
                report.warn(path, "the file ends inside the record (truncated)", where)
                return
            if masked_crc32c(payload) != _CRC.unpack(checksum)[0]:
                report.warn(path, "the data checksum does not match; record skipped", where)
                continue
            yield where, payload
