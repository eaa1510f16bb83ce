"""Uploading runs over the ingest protocol so that importing twice stores everything once.

Each source run gets a run id derived from the project and its key, a
session derived from the run id, and batches numbered from their position
and their content. Sending the same data again therefore repeats the same
``(run, session, seq)`` triples, which the server acknowledges without
storing them a second time.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from assay import protocol
from assay._connection import IngestClient, TransientError, fatal_or_transient
from assay._credentials import Credentials
from assay.importers._model import Report, Row, SourceRun

log = logging.getLogger("assay.importers")

RUN_ID_PREFIX = "import-"
#: Rows per batch, well under the protocol's 100,000.
MAX_ROWS = 10_000
#: Points per batch: at 13 bytes a point (value, row position, kind) about
#: 2.6 MB, which keeps a frame far below the 16 MiB limit even with
#: 10,000 names of 256 characters.
MAX_POINTS = 200_000
#: Batches sent before waiting for their acknowledgements.
WINDOW = 16
#: Bits of the batch number taken by the content digest; the position takes the rest.
DIGEST_BITS = 31

MAX_NAME_LENGTH = 256
MAX_TAG_LENGTH = 128
MAX_TAGS = 100
MAX_NOTES_LENGTH = 65_536
#: How far ahead of now the server accepts a start or end time, in seconds.
FUTURE_TOLERANCE = 86_400


def run_id_for(project: str, key: str) -> str:
    """Derive the run id of the source run ``key``: 47 characters from a SHA-256 digest."""
    digest = hashlib.sha256(f"{project}\n{key}".encode("utf-8", "surrogateescape")).hexdigest()
    return RUN_ID_PREFIX + digest[:40]


def session_for(run_id: str) -> int:
    """Derive the session of every upload of ``run_id``, in ``[0, 2**63)``."""
    digest = hashlib.sha256(f"assay import session\n{run_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def batch_seq(position: int, body: dict[str, Any]) -> int:
    """Number a batch by its position and a digest of its steps and values.

    The same rows always get the same number. A batch whose rows changed
    since the last import, such as the last batch of a log that has grown,
    gets a new number and is stored. Its rows that were stored before are
    stored again, and the value sent last wins at each step. Wall times are
    left out of the digest, so that formats whose times come from file
    modification times do not send everything again after a copy.
    """
    content = protocol.pack({"steps": body["steps"], "metrics": body["metrics"]})
    digest = int.from_bytes(hashlib.sha256(content).digest()[:4], "big") >> (32 - DIGEST_BITS)
    return (position << DIGEST_BITS) | digest


def split_rows(rows: list[Row]) -> Iterator[list[Row]]:
    """Cut ``rows`` into batches within the row, point and name limits, in a fixed way."""
    batch: list[Row] = []
    points = 0
    names: set[str] = set()
    for step, wall_time, values in rows:
        for piece in _pieces(values):
            added = [name for name in piece if name not in names]
            if batch and (
                len(batch) >= MAX_ROWS
                or points + len(piece) > MAX_POINTS
                or len(names) + len(added) > protocol.MAX_KEYS_PER_BATCH
            ):
                yield batch
                batch, points, names = [], 0, set()
                added = list(piece)
            batch.append((step, wall_time, piece))
            points += len(piece)
            names.update(added)
    if batch:
        yield batch


def _pieces(values: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Split a row wider than a batch's name limit into rows of the same step and time."""
    if len(values) <= protocol.MAX_KEYS_PER_BATCH:
        yield values
        return
    items = list(values.items())
    for start in range(0, len(items), protocol.MAX_KEYS_PER_BATCH):
        yield dict(items[start : start + protocol.MAX_KEYS_PER_BATCH])


@dataclass
class UploadResult:
    created: bool
    batches: int
    rejected: int
    state: str


class Uploader:
    """Sends runs to one project, retrying a run whose connection fails."""

    def __init__(
        self,
        credentials: Credentials,
        project: str,
        report: Report,
        timeout: float = 60.0,
        attempts: int = 3,
    ) -> None:
        self.credentials = credentials
        self.project = project
        self.report = report
        self.timeout = timeout
        self.attempts = attempts

    def upload(self, run: SourceRun) -> UploadResult:
        """Create or update the run; raise ``TransientError`` after the last failed attempt."""
        hello = self.hello(run)
        for attempt in range(1, self.attempts + 1):
            try:
                return self._upload_once(hello, run)
            except TransientError as exc:
                if attempt == self.attempts:
                    raise
                delay = 0.5 * 2**attempt
                log.warning(
                    "upload of run %s failed (%s); retrying in %.0f s", run.key, exc, delay
                )
                time.sleep(delay)
        raise AssertionError("unreachable")

    def hello(self, run: SourceRun) -> dict[str, Any]:
        run_id = run_id_for(self.project, run.key)
        return {
            "type": "hello",
            "protocol": protocol.PROTOCOL_VERSION,
            "project": self.project,
            "session": session_for(run_id),
            "resume": "allow",
            "run": {
                "id": run_id,
                "name": _clip(run.name, MAX_NAME_LENGTH),
                "group": _clip(run.group, MAX_NAME_LENGTH),
                "notes": _clip(run.notes, MAX_NOTES_LENGTH),
                "tags": [tag for tag in run.tags if 0 < len(tag) <= MAX_TAG_LENGTH][:MAX_TAGS],
                "config": run.config,
                "created_at": self._valid_time(run, run.created_at, "start"),
            },
        }

    def _upload_once(self, hello: dict[str, Any], run: SourceRun) -> UploadResult:
        client = IngestClient(self.credentials.server, self.credentials.api_key)
        try:
            welcome = client.open(hello)
            batches, rejected = self._send_batches(client, run)
            state = "running"
            if run.exit_code is not None:
                finish: dict[str, Any] = {"type": "finish", "exit_code": run.exit_code}
                finished_at = self._valid_time(run, run.finished_at, "end")
                if finished_at is not None:
                    finish["finished_at"] = finished_at
                client.send(protocol.pack(finish))
                state = str(self._wait_for_finished(client)["state"])
        finally:
            client.close()
        return UploadResult(bool(welcome.get("created")), batches, rejected, state)

    def _send_batches(self, client: IngestClient, run: SourceRun) -> tuple[int, int]:
        pending: set[int] = set()
        sent = rejected = 0
        for seq, frame in _frames(run.history.rows()):
            client.send(frame)
            pending.add(seq)
            sent += 1
            while len(pending) >= WINDOW:
                rejected += self._receive_ack(client, run, pending)
        while pending:
            rejected += self._receive_ack(client, run, pending)
        return sent, rejected

    def _receive_ack(self, client: IngestClient, run: SourceRun, pending: set[int]) -> int:
        """Wait for one acknowledgement; return 1 if the batch was rejected instead."""
        deadline = time.monotonic() + self.timeout
        while True:
            message = client.receive(max(0.0, deadline - time.monotonic()))
            if message is None:
                raise TransientError(
                    f"{len(pending)} batches were not acknowledged within {self.timeout} s"
                )
            seq = message.get("seq")
            if message["type"] == "ack" and seq in pending:
                pending.discard(seq)
                return 0
            if message["type"] == "error":
                if message.get("fatal"):
                    raise fatal_or_transient(message)
                if seq in pending:
                    pending.discard(seq)
                    self.report.warn(
                        run.path, f"the server rejected a batch: {message.get('message')}"
                    )
                    return 1

    def _wait_for_finished(self, client: IngestClient) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            message = client.receive(max(0.0, deadline - time.monotonic()))
            if message is None:
                raise TransientError(f"no 'finished' from the server within {self.timeout} s")
            if message["type"] == "finished":
                return message
            if message["type"] == "error":
                raise fatal_or_transient(message)

    def _valid_time(self, run: SourceRun, value: float | None, what: str) -> float | None:
        if value is None:
            return None
        if 0 <= value <= time.time() + FUTURE_TOLERANCE:
            return value
        self.report.warn(
            run.path, f"the run's {what} time {value!r} is not a valid past time; not sent"
        )
        return None


def _frames(rows: list[Row]) -> Iterator[tuple[int, bytes]]:
    """Encode each batch as a ``batch`` frame, halving any that exceeds the frame limit."""
    position = 0
    queue = list(split_rows(rows))
    while queue:
        batch = queue.pop(0)
        body = protocol.encode_rows(batch)
        seq = batch_seq(position, body)
        frame = protocol.pack({"type": "batch", "seq": seq, **body})
        if len(frame) > protocol.MAX_MESSAGE_BYTES and len(batch) > 1:
            middle = len(batch) // 2
            queue[:0] = [batch[:middle], batch[middle:]]
            continue
        position += 1
        yield seq, frame


def _clip(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
