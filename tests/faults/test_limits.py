"""Limits from docs/limits.md that no other test reaches."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from deploy.deploy_support import wait_until
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

import assay
from assay import protocol
from assay_server import filters, ingest
from assay_server.bus import LocalBus
from assay_server.live import FELL_BEHIND, QUEUE_LIMIT, LiveHub, ResyncNeeded, Subscriber
from assay_server.settings import Settings
from conftest import RunningServer, live_messages
from faults.live_watcher import LiveWatcher, live_gaps
from proxy import CuttingProxy

STALLED_STEPS = 2000
STALLED_METRICS = 100
WINDOW = 4


def test_batch_over_row_limit_rejected(sqlite_server: RunningServer) -> None:
    rows = protocol.MAX_ROWS_PER_BATCH + 1
    batch = {
        "type": "batch",
        "seq": 0,
        "steps": np.arange(rows, dtype="<i8").tobytes(),
        "times": np.full(rows, 1.0, dtype="<f8").tobytes(),
        "metrics": {"x": {"rows": None, "values": np.zeros(rows, "<f8").tobytes()}},
    }
    hello = {
        "type": "hello",
        "protocol": protocol.PROTOCOL_VERSION,
        "project": "limits",
        "session": 1,
        "run": {"id": "wide"},
    }
    url = sqlite_server.url.replace("http://", "ws://") + protocol.INGEST_PATH
    headers = {"Authorization": f"Bearer {sqlite_server.api_key}"}
    with connect(url, additional_headers=headers, max_size=None) as connection:
        connection.send(protocol.pack(hello))
        connection.recv(timeout=10)
        connection.send(protocol.pack(batch))
        error = protocol.unpack(connection.recv(timeout=30))  # type: ignore[arg-type]
    with assay.Api(server=sqlite_server.url, api_key=sqlite_server.api_key) as api:
        stored = api.run("limits", "wide").metrics()

    assert error["code"] == "too_large"
    assert f"{rows} rows" in error["message"]
    assert error["fatal"] is False
    assert error["seq"] == 0
    assert stored == {}


async def test_catch_up_over_queue_limit_raises_resync() -> None:
    bus = LocalBus("t:", 100_000, 100_000)
    body = protocol.pack(protocol.encode_rows([(0, 1.0, {"x": 1.0})]))
    for index in range(QUEUE_LIMIT + 1):
        await bus.publish_batch(1, "r", {"seq": index, "session": 1, "body": body})
    hub = LiveHub(bus)

    with pytest.raises(ResyncNeeded, match="too many entries to catch up"):
        await hub.add(Subscriber(), bus.live_stream(1, "r"), "0-0")


def limits_project(server: RunningServer, tmp_path: Path) -> None:
    """Create the project ``limits``, since the chart routes check access to it first."""
    assay.init("limits", server=server.url, api_key=server.api_key, spool_dir=tmp_path).finish()


def test_series_over_run_limit_rejected(sqlite_server: RunningServer, tmp_path: Path) -> None:
    limits_project(sqlite_server, tmp_path)
    runs = [("runs", f"r{index}") for index in range(101)]
    with sqlite_server.client() as client:
        response = client.get("/api/v1/projects/limits/series", params=[("keys", "x"), *runs])

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "at most 100 runs per request, got 101"


def test_series_over_key_limit_rejected(sqlite_server: RunningServer, tmp_path: Path) -> None:
    limits_project(sqlite_server, tmp_path)
    keys = [("keys", f"k{index}") for index in range(21)]
    with sqlite_server.client() as client:
        response = client.get("/api/v1/projects/limits/series", params=keys)

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "at most 20 keys per request, got 21"


def test_layout_over_size_limit_rejected(sqlite_server: RunningServer) -> None:
    assay.init("limits", server=sqlite_server.url, api_key=sqlite_server.api_key).finish()
    body = b'{"panels": [], "padding": "' + b"x" * (256 * 1024) + b'"}'
    with sqlite_server.client() as client:
        response = client.put("/api/v1/projects/limits/layout", content=body)
        stored = client.get("/api/v1/projects/limits/layout")

    assert response.status_code == 400
    assert f"layout is {len(body)} bytes" in response.json()["error"]["message"]
    assert "at most 262144" in response.json()["error"]["message"]
    assert stored.status_code == 200
    assert "padding" not in stored.text


def nested_config(depth: int) -> dict[str, object]:
    config: dict[str, object] = {}
    inner = config
    for _ in range(depth):
        inner["a"] = {}
        inner = inner["a"]  # type: ignore[assignment]
    return config


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        pytest.param(
            nested_config(protocol.MAX_DOCUMENT_DEPTH + 1), "nested deeper than 32", id="depth"
        ),
        pytest.param({"big": 2**63}, f"integer {2**63} exceeds 64 bits", id="int-64"),
    ],
)
def test_config_over_limit_rejected(
    sqlite_server: RunningServer, config: dict[str, object], expected: str
) -> None:
    batch = {"type": "batch", "seq": 3, **protocol.encode_rows([]), "config": config}
    hello = {
        "type": "hello",
        "protocol": protocol.PROTOCOL_VERSION,
        "project": "limits",
        "session": 1,
        "run": {"id": "deep"},
    }
    url = sqlite_server.url.replace("http://", "ws://") + protocol.INGEST_PATH
    headers = {"Authorization": f"Bearer {sqlite_server.api_key}"}
    with connect(url, additional_headers=headers) as connection:
        connection.send(protocol.pack(hello))
        connection.recv(timeout=10)
        connection.send(protocol.pack(batch))
        error = protocol.unpack(connection.recv(timeout=10))  # type: ignore[arg-type]
    with assay.Api(server=sqlite_server.url, api_key=sqlite_server.api_key) as api:
        stored = api.run("limits", "deep").config

    assert error["code"] == "invalid_value"
    assert expected in error["message"]
    assert error["seq"] == 3
    assert stored == {}


def open_stalled_socket(server: RunningServer, project: str) -> ClientConnection:
    """Subscribe a live socket that then stops reading, as a frozen browser tab does.

    Its small receive buffer and a client queue of one message make the
    server's sends block soon, instead of after megabytes of kernel buffers.
    """
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", server.port))
    url = server.url.replace("http://", "ws://") + f"/api/v1/projects/{project}/live"
    stalled = connect(
        url,
        sock=raw,
        additional_headers={"Authorization": f"Bearer {server.api_key}"},
        compression=None,
        max_queue=1,
        max_size=None,
        legacy=True,
    )
    stalled.send(protocol.pack({"type": "subscribe", "cursors": {}}))
    while not any(m["type"] == "subscribed" for m in live_messages(stalled.recv(timeout=10))):
        pass
    return stalled


def read_until_resync(stalled: ClientConnection) -> list[dict[str, Any]]:
    """Read the stalled socket's backlog up to its first ``resync``."""
    while True:
        for message in live_messages(stalled.recv(timeout=30)):
            if message["type"] == "resync":
                return [message]


def test_stalled_live_socket_gets_resync(
    sqlite_settings: Settings, start_server: Any, tmp_path: Path
) -> None:
    settings = dataclasses.replace(sqlite_settings, live_queue_bytes=256 * 1024)
    server: RunningServer = start_server(settings)
    assay.init("limits", server=server.url, api_key=server.api_key, spool_dir=tmp_path).finish()
    stalled = open_stalled_socket(server, "limits")
    steady = LiveWatcher(server.url, "limits", server.api_key, "m0")
    assert steady.subscribed.wait(15)
    options = assay.SenderOptions(batch_rows=20, flush_interval=0.05)
    run = assay.init(
        "limits", server=server.url, api_key=server.api_key, spool_dir=tmp_path, settings=options
    )
    for step in range(STALLED_STEPS):
        run.log({f"m{index}": step + index / 1000 for index in range(STALLED_METRICS)}, step=step)
    run.finish(timeout=120)
    wait_until(lambda: steady.has_all([run.id], STALLED_STEPS), 60, steady.describe)
    steady.close()
    resync = read_until_resync(stalled)
    stalled.close()

    # The stalled socket held up neither ingest nor the steady socket.
    assert run.state == "finished"
    assert live_gaps(steady, [run.id], STALLED_STEPS) == []
    assert steady.resyncs == []
    assert resync[0]["reason"] == FELL_BEHIND


def stored_steps(server: RunningServer, run_id: str) -> int:
    with assay.Api(server=server.url, api_key=server.api_key) as api:
        return len(api.run("limits", run_id).history(keys=["x"]))


def test_sdk_window_bounds_unacknowledged_batches(
    sqlite_server: RunningServer, tmp_path: Path
) -> None:
    proxy = CuttingProxy(sqlite_server.port)
    options = assay.SenderOptions(window=WINDOW, batch_rows=1, flush_interval=0.01)
    run = assay.init(
        "limits",
        server=proxy.url,
        api_key=sqlite_server.api_key,
        spool_dir=tmp_path,
        settings=options,
    )
    run.log({"x": 0.0}, step=0)
    wait_until(lambda: stored_steps(sqlite_server, run.id) == 1, 15)
    proxy.hold_replies()
    for step in range(1, 101):
        run.log({"x": float(step)}, step=step)
    wait_until(lambda: stored_steps(sqlite_server, run.id) >= 1 + WINDOW, 15)
    # Time for a sender that ignored its window to send more batches.
    time.sleep(1)
    stored_while_held = stored_steps(sqlite_server, run.id)
    proxy.release_replies()
    run.finish(timeout=30)
    proxy.close()

    assert stored_while_held == 1 + WINDOW
    assert run.state == "finished"
    assert stored_steps(sqlite_server, run.id) == 101


def ingest_socket(server: RunningServer) -> ClientConnection:
    url = server.url.replace("http://", "ws://") + protocol.INGEST_PATH
    headers = {"Authorization": f"Bearer {server.api_key}"}
    return connect(url, additional_headers=headers, legacy=True)


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        pytest.param({"name": "n" * 257}, "run name must be a string of at most 256", id="name"),
        pytest.param(
            {"group": "g" * 257}, "run group must be a string of at most 256", id="group"
        ),
        pytest.param(
            {"notes": "x" * 65_537}, "run notes must be a string of at most 65536", id="notes"
        ),
        pytest.param(
            {"tags": [f"t{i}" for i in range(101)]},
            "run tags must be a list of at most 100 strings, got 101 tags",
            id="tag-count",
        ),
        pytest.param(
            {"tags": ["t" * 129]}, "tags are strings of 1 to 128 characters", id="tag-length"
        ),
    ],
)
def test_hello_over_text_limit_is_fatal(
    sqlite_server: RunningServer, run: dict[str, Any], expected: str
) -> None:
    hello = {
        "type": "hello",
        "protocol": protocol.PROTOCOL_VERSION,
        "project": "limits",
        "session": 1,
        "run": {"id": "long", **run},
    }
    connection = ingest_socket(sqlite_server)
    connection.send(protocol.pack(hello))
    error = protocol.unpack(connection.recv(timeout=10))  # type: ignore[arg-type]
    with pytest.raises(ConnectionClosed) as closed:
        connection.recv(timeout=10)
    with sqlite_server.client() as client:
        projects = client.get("/api/v1/projects").json()["projects"]

    assert error["code"] == "invalid_hello"
    assert expected in error["message"]
    assert error["fatal"] is True
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert projects == []


def test_missing_hello_times_out(
    sqlite_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "HELLO_TIMEOUT", 1.0)
    connection = ingest_socket(sqlite_server)
    error = protocol.unpack(connection.recv(timeout=10))  # type: ignore[arg-type]
    with pytest.raises(ConnectionClosed) as closed:
        connection.recv(timeout=10)

    assert error["code"] == "timeout"
    assert error["message"] == "no hello within 1 seconds of connecting"
    assert error["fatal"] is True
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sdk_memory_limit_moves_batches_to_spool(
    sqlite_settings: Settings, start_server: Any, tmp_path: Path
) -> None:
    port = closed_port()
    # The spool_after delay is far away, so only the memory limit can spool.
    options = assay.SenderOptions(
        batch_rows=10, flush_interval=0.01, max_memory_bytes=4096, spool_after=3600
    )
    run = assay.init(
        "limits",
        server=f"http://127.0.0.1:{port}",
        api_key=sqlite_settings.bootstrap_api_key,
        spool_dir=tmp_path,
        init_timeout=0.5,
        settings=options,
    )
    for step in range(500):
        run.log({"x": float(step)}, step=step)
    wait_until(lambda: len(run.spool.batch_files()) >= 10, 15)
    server: RunningServer = start_server(sqlite_settings, port)
    run.finish(timeout=30)

    assert run.state == "finished"
    assert stored_steps(server, run.id) == 500
    assert run.spool.batch_files() == []


def test_series_over_sample_limit_rejected(sqlite_server: RunningServer, tmp_path: Path) -> None:
    limits_project(sqlite_server, tmp_path)
    with sqlite_server.client() as client:
        response = client.get(
            "/api/v1/projects/limits/series", params={"keys": "x", "samples": 100_001}
        )

    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "query parameter 'samples' must be an integer between 8 and 100000, got 100001"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "config.lr in (" + ", ".join(str(i) for i in range(101)) + ")",
            "1 to 100 values",
            id="in-list",
        ),
        pytest.param("config." + ".".join(["k"] * 33) + " = 1", "1 to 32 keys", id="path"),
        pytest.param(
            "config." + ".".join(f'"k{i}\\""' for i in range(3)) + " = 1",
            "keys with characters outside printable ASCII",
            id="escaped-keys",
        ),
    ],
)
def test_filter_over_limit_rejected(text: str, expected: str) -> None:
    with pytest.raises(filters.FilterError) as caught:
        filters.parse_filter(text)

    assert expected in str(caught.value)


def test_unconfirmed_finish_is_spooled(
    sqlite_server: RunningServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = CuttingProxy(sqlite_server.port)
    run = assay.init("limits", server=proxy.url, api_key=sqlite_server.api_key, spool_dir=tmp_path)
    run.log({"x": 1.0}, step=0)
    wait_until(lambda: not run._sender.unacked and stored_steps(sqlite_server, run.id) == 1, 15)
    proxy.hold_replies()
    # The SDK's websocket close waits for a close frame that the proxy holds back.
    cutter = threading.Timer(2, proxy.cut)
    cutter.start()
    run.finish(timeout=0.5)
    cutter.join()
    proxy.close()

    assert "did not confirm the finish" in caplog.text
    assert "0 batches" not in caplog.text
    assert run.spool.batch_files() == []
    assert (run.spool.directory / "finish.msgpack").exists()
