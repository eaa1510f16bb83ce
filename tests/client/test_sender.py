"""The sender loop, driven step by step where thread timing would hide a race."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from assay import protocol
from assay._sender import Rows, Sender, SenderOptions
from assay._spool import Spool


def hello() -> dict[str, Any]:
    return {"type": "hello", "protocol": 1, "project": "p", "session": 1, "run": {"id": "r"}}


def test_row_logged_during_take_is_kept(tmp_path: Path) -> None:
    logged: Rows = [(0, 0.0, {"x": 0.0})]
    sender: Sender

    def take() -> tuple[Rows, dict[str, Any], dict[str, Any]]:
        taken = list(logged)
        logged.clear()
        if sender.finish_code is None and taken:
            # The training thread logs one more row and finishes while the
            # sender is between taking rows and looking at the finish request.
            logged.append((1, 0.0, {"x": 1.0}))
            sender.request_finish(0, timeout=10)
        return taken, {}, {}

    spool = Spool(tmp_path / "spool")
    sender = Sender(take, hello(), None, spool, SenderOptions(flush_interval=0.01))
    spool.write_meta(sender.hello)
    while not sender._step():
        pass
    frames = [protocol.unpack(path.read_bytes()) for path in spool.batch_files()]
    steps = [row[0] for frame in frames for row in protocol.decode_rows(frame)]

    assert steps == [0, 1]
    assert spool.read_finish() == 0
