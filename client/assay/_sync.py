"""``assay sync``: upload spooled and offline runs."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assay import protocol
from assay._connection import IngestClient, TransientError
from assay._credentials import Credentials
from assay._spool import Spool, find_spools

log = logging.getLogger("assay")


@dataclass
class SyncResult:
    directory: Path
    run: str
    batches: int
    finished: bool
    error: str | None = None


def sync(path: Path, credentials: Credentials, timeout: float = 60.0) -> list[SyncResult]:
    """Upload every spooled run session below ``path``; return one result each."""
    spools = find_spools(path)
    return [_sync_one(spool, credentials, timeout) for spool in spools]


def _sync_one(spool: Spool, credentials: Credentials, timeout: float) -> SyncResult:
    hello: dict[str, Any] = dict(spool.read_meta())
    label = f"{hello['project']}/{hello['run']['id']}"
    # The batches keep their session and numbers, so batches that reached the
    # server before are skipped there, and the run is created if it never did.
    hello["resume"] = "allow"
    client = IngestClient(credentials.server, credentials.api_key)
    try:
        client.open(hello)
        sent = _upload_batches(client, spool, timeout)
        finish = spool.read_finish_message()
        if finish is not None:
            client.send(protocol.pack(finish))
            _wait_for(client, "finished", timeout)
            spool.remove_finish()
    except (TransientError, OSError) as exc:
        return SyncResult(spool.directory, label, 0, False, str(exc))
    finally:
        client.close()
    spool.remove_if_done()
    return SyncResult(spool.directory, label, sent, finish is not None)


def _upload_batches(client: IngestClient, spool: Spool, timeout: float) -> int:
    files = {int(path.stem): path for path in spool.batch_files()}
    for path in files.values():
        client.send(path.read_bytes())
    deadline = time.monotonic() + timeout
    remaining = set(files)
    while remaining:
        message = client.receive(max(0.0, deadline - time.monotonic()))
        if message is None:
            raise TransientError(f"{len(remaining)} batches were not acknowledged in time")
        seq = message.get("seq")
        if message["type"] in ("ack", "error") and seq in remaining:
            if message["type"] == "error":
                log.error(
                    "batch %s in %s was rejected: %s", seq, spool.directory, message.get("message")
                )
            remaining.discard(seq)
            files[seq].unlink(missing_ok=True)
        elif message["type"] == "error" and message.get("fatal"):
            raise TransientError(str(message.get("message")))
    return len(files)


def _wait_for(client: IngestClient, kind: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = client.receive(max(0.0, deadline - time.monotonic()))
        if message is None:
            raise TransientError(f"no {kind!r} from the server within {timeout} s")
        if message["type"] == kind:
            return message
