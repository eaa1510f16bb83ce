"""Restart a private Redis while eight SDK runs log: nothing lost, live views resync."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

from deploy.conftest import PrivateRedis
from deploy.deploy_support import wait_until

from assay import protocol
from assay._connection import IngestClient
from assay_server.settings import Settings
from faults.fleet import METRIC, Fleet, print_outcome, stored_mismatches
from faults.live_watcher import LiveWatcher

STEPS = 3000


def test_redis_restart_mid_stream(
    postgres_settings: Settings, private_redis: PrivateRedis, start_server: Any, tmp_path: Path
) -> None:
    server = start_server(dataclasses.replace(postgres_settings, redis_url=private_redis.url))
    fleet = Fleet(server.url, server.api_key, tmp_path)
    run_ids = [run.id for run in fleet.runs]
    steady = LiveWatcher(server.url, fleet.project, server.api_key, METRIC)
    dropped = LiveWatcher(server.url, fleet.project, server.api_key, METRIC)
    assert steady.subscribed.wait(15)
    assert dropped.subscribed.wait(15)

    fleet.log_until(STEPS // 3)
    wait_until(lambda: fleet.in_flight() > 0, timeout=30)
    private_redis.stop()
    dropped.drop()
    fleet.log_until(2 * STEPS // 3, seconds=2)
    before = [watcher.subscriptions for watcher in (steady, dropped)]
    private_redis.start()
    # A watcher that subscribes again after the restart starts from the streams'
    # ends, so the rest is logged once both are back, as a browser would reload.
    wait_until(
        lambda: steady.subscriptions > before[0] and dropped.subscriptions > before[1],
        timeout=30,
    )
    fleet.log_until(STEPS)
    fleet.finish()
    problems = stored_mismatches(server.url, server.api_key, fleet)
    print_outcome("Redis restart", server.url, server.api_key, fleet, problems)
    last_step = [STEPS - 1]
    for watcher in (steady, dropped):
        wait_until(
            lambda w=watcher: all(last_step[0] in w.seen(run) for run in run_ids),  # type: ignore[misc]
            timeout=30,
            describe=watcher.describe,
        )
        watcher.close()

    assert problems == []
    # The open socket learns of the outage when its instance fails to read
    # the streams. The dropped one learns of it the same way, or from its
    # cursors, which the new streams lack, when it reconnects first.
    assert steady.resyncs[0] == "the live streams were unreachable, so entries may be missing"
    assert any("unreachable" in r or "no longer contains" in r for r in dropped.resyncs)
    for watcher in (steady, dropped):
        for run_id in run_ids:
            steps = watcher.seen(run_id)
            assert len(steps) == len(set(steps)), f"{run_id} has duplicate steps"


def test_resent_unpublished_batch_is_published(
    postgres_settings: Settings, private_redis: PrivateRedis, start_server: Any
) -> None:
    server = start_server(dataclasses.replace(postgres_settings, redis_url=private_redis.url))
    hello = {
        "type": "hello",
        "protocol": protocol.PROTOCOL_VERSION,
        "project": "faults",
        "session": 42,
        "resume": "allow",
        "run": {"id": "resent"},
    }
    body = protocol.encode_rows([(0, 1.0, {METRIC: math.nan}), (1, 2.0, {METRIC: None})])
    frame = protocol.pack({"type": "batch", "seq": 0, **body})
    first = IngestClient(server.url, server.api_key)
    first.open(hello)
    private_redis.stop()
    first.send(frame)
    first_ack = first.receive(10)
    first.close()
    private_redis.start()
    watcher = LiveWatcher(server.url, "faults", server.api_key, METRIC)
    assert watcher.subscribed.wait(15)

    second = IngestClient(server.url, server.api_key)
    second.open(hello)
    second.send(frame)
    second_ack = second.receive(10)
    second.send(frame)
    third_ack = second.receive(10)
    second.close()
    wait_until(lambda: len(watcher.seen("resent")) >= 2, 15, watcher.describe)
    time.sleep(0.5)  # a second publish of the same batch would arrive by now
    watcher.close()

    # Stored while Redis was down, so only the resend reaches live views, once.
    assert first_ack == {"type": "ack", "seq": 0}
    assert second_ack == {"type": "ack", "seq": 0}
    assert third_ack == {"type": "ack", "seq": 0}
    assert watcher.seen("resent") == [0, 1]
    assert math.isnan(watcher.values["resent"][0])
    assert watcher.values["resent"][1] is None
