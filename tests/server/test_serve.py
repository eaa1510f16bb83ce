"""The server process that ``assay serve`` runs, started in a thread of the test process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette

from assay_server.app import create_app
from assay_server.cli import (
    GC_THRESHOLDS,
    DrainingServer,
    StartupErrors,
    WebsocketDrain,
    failed_start,
)
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


async def start_lifespan(app: Any, sent: list[dict[str, Any]]) -> None:
    """Start ``app``'s lifespan as uvicorn does and append its messages to ``sent``."""
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await received.put({"type": "lifespan.startup"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    await app(scope, received.get, send)


async def test_startup_database_error_kept_without_traceback(tmp_path: Path) -> None:
    # SQLite creates a missing file but not its directory, so opening the file fails.
    path = tmp_path / "missing" / "assay.db"
    settings = Settings(database_url=f"sqlite:///{path}")
    startup = StartupErrors(create_app(settings, on_admin_key=lambda key: None))
    sent: list[dict[str, Any]] = []

    await start_lifespan(startup, sent)

    assert sent == [{"type": "lifespan.startup.failed", "message": ""}]
    assert isinstance(startup.database_error, OperationalError)
    assert failed_start(settings, startup.database_error) == (
        f"cannot start on the SQLite database {path}: unable to open database file. Check "
        "that the file is an intact SQLite database and that this user can read and write "
        "it and its directory."
    )
    assert not path.parent.exists()


async def test_startup_other_error_keeps_traceback() -> None:
    @contextlib.asynccontextmanager
    async def failing_lifespan(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("not a database error")
        yield

    startup = StartupErrors(Starlette(lifespan=failing_lifespan))
    sent: list[dict[str, Any]] = []

    with pytest.raises(RuntimeError, match="not a database error"):
        await start_lifespan(startup, sent)

    assert startup.database_error is None
    assert [message["type"] for message in sent] == ["lifespan.startup.failed"]
    assert "Traceback" in sent[0]["message"]
    assert "RuntimeError: not a database error" in sent[0]["message"]
