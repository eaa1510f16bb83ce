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
from assay.protocol import ProtocolError

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
    try:
        hello = _read_hello(spool)
    except protocol.ProtocolError as exc:
        return SyncResult(spool.directory, spool.directory.name, 0, False, exc.message)
    label = f"{hello['project']}/{hello['run']['id']}"
    problems = {path: _batch_problem(path) for path in spool.batch_files()}
    unreadable = {path: problem for path, problem in problems.items() if problem is not None}
    # The batches keep their session and numbers, so batches that reached the
    # server before are skipped there, and the run is created if it never did.
    hello["resume"] = "allow"
    client = IngestClient(credentials.server, credentials.api_key)
    try:
        client.open(hello)
        sent = _upload_batches(client, spool, timeout, skip=set(unreadable))
        # A finish after an unreadable batch would mark a run finished that lacks it.
        finish = None if unreadable else spool.read_finish_message()
        if finish is not None:
            client.send(protocol.pack(finish))
            _wait_for(client, "finished", timeout)
            spool.remove_finish()
    except (TransientError, OSError) as exc:
        return SyncResult(spool.directory, label, 0, False, str(exc))
    finally:
        client.close()
    if unreadable:
        named = "; ".join(
            f"{path.name}: {problem}" for path, problem in list(unreadable.items())[:3]
        )
        error = (
            f"uploaded {sent} batches, but {len(unreadable)} batch files are unreadable and "
            f"were kept, with the finish ({named})"
        )
        return SyncResult(spool.directory, label, sent, False, error)
    spool.remove_if_done()
    return SyncResult(spool.directory, label, sent, finish is not None)


def _read_hello(spool: Spool) -> dict[str, Any]:
    """Return the spool's hello, or raise ProtocolError naming the file and the problem."""
    path = spool.directory / "run.msgpack"
    try:
        hello = protocol.unpack(path.read_bytes())
        run = hello.get("run")
        if hello["type"] != "hello" or not isinstance(hello.get("project"), str):
            raise ProtocolError("malformed", "invalid hello: not the hello of a run")
        if not isinstance(run, dict) or not isinstance(run.get("id"), str):
            raise ProtocolError("malformed", "invalid hello: missing run id")
    except (OSError, ProtocolError) as exc:
        reason = exc.message if isinstance(exc, ProtocolError) else str(exc)
        raise ProtocolError(
            "malformed",
            f"cannot read {path}: {reason}; the spool cannot be uploaded without it",
        ) from None
    return hello


def _batch_problem(path: Path) -> str | None:
    """Return what makes a spooled batch file unusable, or None when it is a batch frame."""
    if not path.stem.isdigit():
        return "the name is not a batch number"
    try:
        message = protocol.unpack(path.read_bytes())
    except OSError as exc:
        return str(exc)
    except ProtocolError as exc:
        return exc.message
    if message["type"] != "batch" or message.get("seq") != int(path.stem):
        return f"it is not the frame of batch {int(path.stem)}"
    return None


def _upload_batches(client: IngestClient, spool: Spool, timeout: float, skip: set[Path]) -> int:
    files = {int(path.stem): path for path in spool.batch_files() if path not in skip}
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
