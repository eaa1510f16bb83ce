"""The local spool: batches kept on disk until a server acknowledges them.

One directory per run session, ``ROOT/PROJECT/RUN_ID-SESSION``, holding
``run.msgpack`` (the hello that opens the run on a server), one
``SEQ.batch`` file per batch frame, and ``finish.msgpack`` with the exit code
and end time once the run has ended. ``assay sync`` uploads such directories and deletes
each file once the server has acknowledged it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgpack

META = "run.msgpack"
FINISH = "finish.msgpack"
SUFFIX = ".batch"


def default_root() -> Path:
    return Path(os.environ.get("ASSAY_SPOOL_DIR") or Path(".assay") / "spool")


class Spool:
    """The spool directory of one run session."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def for_run(cls, root: Path, project: str, run_id: str, session: int) -> Spool:
        return cls(root / project / f"{run_id}-{session:016x}")

    def write_meta(self, hello: dict[str, Any]) -> None:
        self._write(self.directory / META, msgpack.packb(hello, use_bin_type=True))

    def read_meta(self) -> dict[str, Any]:
        data: dict[str, Any] = msgpack.unpackb((self.directory / META).read_bytes(), raw=False)
        return data

    def write_batch(self, seq: int, frame: bytes) -> Path:
        path = self.directory / f"{seq:012d}{SUFFIX}"
        if not (self.directory / META).exists():
            raise FileNotFoundError(f"spool {self.directory} has no {META}")
        self._write(path, frame)
        return path

    def batch_files(self) -> list[Path]:
        return sorted(self.directory.glob(f"*{SUFFIX}"))

    def write_finish(self, exit_code: int, finished_at: float | None = None) -> None:
        record: dict[str, Any] = {"exit_code": exit_code}
        if finished_at is not None:
            record["finished_at"] = finished_at
        self._write(self.directory / FINISH, msgpack.packb(record))

    def read_finish(self) -> int | None:
        record = self.read_finish_message()
        return None if record is None else int(record["exit_code"])

    def read_finish_message(self) -> dict[str, Any] | None:
        """Return the saved finish frame: ``exit_code``, and ``finished_at`` when it was saved."""
        try:
            data = msgpack.unpackb((self.directory / FINISH).read_bytes(), raw=False)
        except FileNotFoundError:
            return None
        record = {"type": "finish", "exit_code": int(data["exit_code"])}
        if isinstance(data.get("finished_at"), float):
            record["finished_at"] = data["finished_at"]
        return record

    def remove_finish(self) -> None:
        (self.directory / FINISH).unlink(missing_ok=True)

    def is_empty(self) -> bool:
        return not self.batch_files() and not (self.directory / FINISH).exists()

    def remove_if_done(self) -> bool:
        """Delete the directory when nothing in it awaits upload."""
        if not self.is_empty():
            return False
        (self.directory / META).unlink(missing_ok=True)
        try:
            self.directory.rmdir()
        except OSError:
            return False
        return True

    def _write(self, path: Path, data: bytes) -> None:
        # Write then rename, so a crash never leaves a half-written file behind.
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)


def find_spools(path: Path) -> list[Spool]:
    """Every run session spooled at or below ``path``."""
    if (path / META).exists():
        return [Spool(path)]
    return [Spool(meta.parent) for meta in sorted(path.rglob(META))]
