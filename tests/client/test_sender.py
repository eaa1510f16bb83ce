"""The sender loop, driven step by step where thread timing would hide a race."""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.server import ServerConnection, serve

import assay
from assay import protocol
from assay._connection import IngestClient, TransientError
from assay._sender import MAX_IDLE_WAIT, Rows, Sender, SenderOptions
from assay._spool import Spool
from conftest import RunningServer


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


def test_unexpected_error_does_not_stop_sender(tmp_path: Path) -> None:
    calls = 0

    def take() -> tuple[Rows, dict[str, Any], dict[str, Any]]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a fault the sender did not foresee")
        return [(0, 0.0, {"x": 0.0})] if calls == 2 else [], {}, {}

    spool = Spool(tmp_path / "spool")
    options = SenderOptions(flush_interval=0.01, backoff_base=0.01, backoff_max=0.01)
    sender = Sender(take, hello(), None, spool, options)
    sender.start()
    deadline = time.monotonic() + 10
    while calls < 3:
        assert time.monotonic() < deadline, "the sender stopped after the error"
        time.sleep(0.01)
    sender.request_finish(0, timeout=10)
    sender.join(10)

    assert calls >= 3
    assert len(spool.batch_files()) == 1
    assert spool.read_finish() == 0


def test_wait_ends_when_cut_due(tmp_path: Path) -> None:
    options = SenderOptions(flush_interval=0.03)
    sender = Sender(lambda: ([], {}, {}), hello(), None, Spool(tmp_path / "spool"), options)
    sender.last_sent = time.monotonic()

    sender.last_cut = time.monotonic()
    just_cut = sender._until_cut()
    sender.last_cut = time.monotonic() - 0.02
    cut_soon = sender._until_cut()
    sender.last_cut = time.monotonic() - 1.0
    quiet = sender._until_cut()
    sender.last_sent = time.monotonic() - sender.heartbeat_interval + 0.1
    heartbeat_soon = sender._until_cut()

    assert 0.02 < just_cut <= 0.03
    assert 0.0 < cut_soon <= 0.01
    # No cut is due: the run wakes the sender, which still looks at the socket.
    assert quiet == MAX_IDLE_WAIT
    assert 0.0 < heartbeat_soon <= 0.1


def test_row_after_quiet_interval_wakes_sender(tmp_path: Path) -> None:
    queued: Rows = []

    def take() -> tuple[Rows, dict[str, Any], dict[str, Any]]:
        rows = list(queued)
        queued.clear()
        return rows, {}, {}

    options = SenderOptions(flush_interval=60.0)
    sender = Sender(take, hello(), None, Spool(tmp_path / "spool"), options)

    # A pass that takes nothing leaves the sender quiet, so a row wakes it.
    sender._cut_when_due(finishing=False)
    queued.append((0, 0.0, {"x": 0.0}))
    sender.queued()
    woken_when_quiet = sender.wake.is_set()
    sender._cut_when_due(finishing=False)
    # Within the interval after a cut that took a row, rows wait for the next cut.
    queued.append((1, 0.0, {"x": 1.0}))
    sender.queued()

    assert woken_when_quiet
    assert sender.next_seq == 1
    assert not sender.wake.is_set()


def test_connection_dropped_in_handshake_is_transient() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def drop_first_connection() -> None:
        connection, _ = listener.accept()
        # Linger 0 makes close() reset the connection, as a cut network does.
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()

    thread = threading.Thread(target=drop_first_connection)
    thread.start()
    client = IngestClient(f"http://127.0.0.1:{port}", "key", open_timeout=5)

    with pytest.raises(TransientError):
        client.open(hello())
    thread.join(5)
    listener.close()


def start_run(server: RunningServer, tmp_path: Path, options: SenderOptions) -> assay.Run:
    return assay.init(
        "flush", server=server.url, api_key=server.api_key, spool_dir=tmp_path, settings=options
    )


def history_length(server: RunningServer, run_id: str) -> int:
    with assay.Api(server=server.url, api_key=server.api_key) as client:
        return len(client.run("flush", run_id).history())


@pytest.mark.parametrize(
    ("flush_interval", "most_batches"),
    [(0.4, 5), (3600.0, 2)],
)
def test_batches_follow_flush_interval(
    sqlite_server: RunningServer, tmp_path: Path, flush_interval: float, most_batches: int
) -> None:
    # About 100 rows over one second: a batch per loop pass would make 20 or more.
    options = SenderOptions(flush_interval=flush_interval)
    run = start_run(sqlite_server, tmp_path, options)
    for step in range(100):
        run.log({"loss": float(step)})
        time.sleep(0.01)
    run.finish()

    assert run._sender.next_seq <= most_batches
    assert history_length(sqlite_server, run.id) == 100


def test_full_buffer_is_cut_before_interval(sqlite_server: RunningServer, tmp_path: Path) -> None:
    options = SenderOptions(flush_interval=3600.0, batch_rows=10)
    run = start_run(sqlite_server, tmp_path, options)
    for step in range(50):
        run.log({"loss": float(step)})
    deadline = time.monotonic() + 10
    while run._sender.next_seq < 5:
        assert time.monotonic() < deadline, "full buffers waited for the flush interval"
        time.sleep(0.01)
    run.finish()

    assert history_length(sqlite_server, run.id) == 50


def test_first_row_sent_at_once_then_interval_holds(
    sqlite_server: RunningServer, tmp_path: Path
) -> None:
    run = start_run(sqlite_server, tmp_path, SenderOptions(flush_interval=3600.0))
    run.log({"loss": 0.0})
    deadline = time.monotonic() + 30
    while history_length(sqlite_server, run.id) < 1:
        assert time.monotonic() < deadline, "a row after a quiet start waited for the interval"
        time.sleep(0.05)
    for step in range(1, 6):
        run.log({"loss": float(step)})
    batches_before_finish = run._sender.next_seq
    run.finish()

    assert batches_before_finish == 1
    assert history_length(sqlite_server, run.id) == 6
    assert run._sender.next_seq == 2


class FatalAfterWelcomeServer:
    """An ingest peer that welcomes the run, acks batch 0, then ends with a fatal error.

    It acts as a proxy or another server that sends a fatal ``error`` after the
    hello, which the assay server never does.
    """

    error = {
        "type": "error",
        "code": "forbidden",
        "message": "the proxy closed the run's connection",
        "fatal": True,
    }

    def __init__(self) -> None:
        self.server = serve(self._handle, "127.0.0.1", 0, compression=None)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.received: list[int] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.socket.getsockname()[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(10)

    def _handle(self, connection: ServerConnection) -> None:
        hello = protocol.unpack(connection.recv(timeout=10))  # type: ignore[arg-type]
        welcome = {
            "type": "welcome",
            "protocol": protocol.PROTOCOL_VERSION,
            "run_id": hello["run"]["id"],
            "created": True,
            "next_step": 0,
            "heartbeat_interval": 5.0,
            "max_message_bytes": protocol.MAX_MESSAGE_BYTES,
        }
        connection.send(protocol.pack(welcome))
        for frame in connection:
            message = protocol.unpack(frame)  # type: ignore[arg-type]
            if message["type"] != "batch":
                continue
            self.received.append(message["seq"])
            if message["seq"] == 0:
                connection.send(protocol.pack({"type": "ack", "seq": 0}))
                continue
            connection.send(protocol.pack(self.error))
            connection.close(1008, "forbidden")
            return


def spooled_steps(spool: Spool) -> list[int]:
    frames = [protocol.unpack(path.read_bytes()) for path in spool.batch_files()]
    return [row[0] for frame in frames for row in protocol.decode_rows(frame)]


def test_fatal_error_after_welcome_stops_sender(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    peer = FatalAfterWelcomeServer()
    try:
        run = assay.init("fatal", server=peer.url, api_key="key", spool_dir=tmp_path)
        run.log({"loss": 0.0})
        deadline = time.monotonic() + 10
        while run._sender.next_seq == 0 or run._sender.unacked:
            assert time.monotonic() < deadline, "batch 0 was not acknowledged"
            time.sleep(0.02)
        run.log({"loss": 1.0})
        while run._sender.fatal is None:
            assert time.monotonic() < deadline, "the sender did not record the fatal error"
            time.sleep(0.02)
        run.log({"loss": 2.0})
        run.finish(timeout=5)
    finally:
        peer.close()
    records = [record for record in caplog.records if record.name.split(".")[0] == "assay"]
    errors = [record for record in records if record.levelno >= logging.ERROR]

    assert peer.received == [0, 1]
    assert isinstance(run._sender.fatal, assay.ServerError)
    assert run._sender.fatal.code == "forbidden"
    assert not run._sender.is_alive()
    assert run.state is None
    assert [record for record in records if record.exc_info] == []
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert f"assay server rejected run {run.id}: the proxy closed" in message
    assert f"The 1 batches that the server has not stored are saved in {run.spool.directory}" in (
        message
    )
    assert spooled_steps(run.spool) == [1, 2]
    assert run.spool.read_finish() == 0
