"""The server process that ``assay serve`` runs, started in a thread of the test process."""

from __future__ import annotations

import gc
import socket
import threading
import time

import uvicorn

from assay_server.app import create_app
from assay_server.cli import GC_THRESHOLDS, DrainingServer, WebsocketDrain
from assay_server.settings import Settings


def test_start_freezes_startup_objects_and_spaces_collections(
    sqlite_settings: Settings,
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    drain = WebsocketDrain(create_app(sqlite_settings, on_admin_key=lambda key: None))
    config = uvicorn.Config(drain, lifespan="on", log_config=None)
    server = DrainingServer(config, drain, timeout=5.0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
    gc.unfreeze()
    frozen_before = gc.get_freeze_count()
    thresholds_before = gc.get_threshold()
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server stopped during start-up"
        assert time.monotonic() < deadline, "the server did not start within 30 s"
        time.sleep(0.01)
    server.should_exit = True
    thread.join(30)
    listener.close()
    frozen_after = gc.get_freeze_count()
    thresholds_after = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(*thresholds_before)

    assert frozen_before == 0
    assert frozen_after > 10_000
    assert thresholds_before != GC_THRESHOLDS
    assert thresholds_after == GC_THRESHOLDS
