"""Share-link revocations across instances, and how an outage of Redis is logged."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from assay_server.revocations import Revocations
from conftest import free_port
from proxy import CuttingProxy

LOGGER = "assay_server.revocations"


async def wait_for(condition: Callable[[], bool], timeout: float, event: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{event} did not happen within {timeout} s")
        await asyncio.sleep(0.02)


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


async def test_unreachable_redis_warns_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    revocations = Revocations(f"redis://127.0.0.1:{free_port()}/0", "assay-test:")
    closed: list[str] = []
    revocations.register("share-a", lambda: closed.append("share-a"))

    await revocations.start()
    # The reader retries every second; three retries must not log three times.
    await asyncio.sleep(3.2)
    await revocations.revoke("share-a")
    await revocations.close()
    warnings = records(caplog, logging.WARNING)

    assert closed == ["share-a"]
    assert len(warnings) == 2
    assert warnings[0].getMessage().startswith("subscribing to share-link revocations")
    assert "retrying every 1 s" in warnings[0].getMessage()
    assert warnings[1].getMessage().startswith("share link share-a: publishing the revocation")
    assert all(record.exc_info is None for record in caplog.records)


async def test_reader_resubscribes_after_outage(
    redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    redis_port = urlsplit(redis_url).port or 6379
    proxy = CuttingProxy(redis_port)
    database = urlsplit(redis_url).path or "/0"
    publisher = Revocations(redis_url, redis_prefix)
    reader = Revocations(f"redis://127.0.0.1:{proxy.port}{database}", redis_prefix)
    closed: list[str] = []
    reader.register("share-b", lambda: closed.append("share-b"))
    await publisher.start()
    await reader.start()
    try:
        # New connections through the proxy now fail, so the reader cannot reconnect.
        proxy.target_port = free_port()
        proxy.cut()
        await wait_for(lambda: bool(records(caplog, logging.WARNING)), 10, "a warning")
        await asyncio.sleep(2.2)
        proxy.target_port = redis_port
        resumed = "reading share-link revocations from Redis resumed"
        await wait_for(
            lambda: any(r.getMessage() == resumed for r in records(caplog, logging.INFO)),
            10,
            "the reader's recovery",
        )
        await publisher.revoke("share-b")
        await wait_for(lambda: bool(closed), 5, "the revocation's arrival")
    finally:
        await reader.close()
        await publisher.close()
        proxy.close()
    warnings = records(caplog, logging.WARNING)

    assert closed == ["share-b"]
    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith("reading share-link revocations from Redis failed")
    assert all(record.exc_info is None for record in caplog.records)
