"""Restart a private Redis while eight SDK runs log: nothing lost, live views resync."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from deploy.conftest import PrivateRedis

from assay_server.settings import Settings
from faults.fleet import METRIC, Fleet, stored_mismatches, wait_until
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
    private_redis.start()
    fleet.log_until(STEPS)
    fleet.finish()
    problems = stored_mismatches(server.url, server.api_key, fleet)
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
    # the streams; the reconnecting one from cursors that the new streams lack.
    assert steady.resyncs[0] == "the live streams were unreachable, so entries may be missing"
    assert "no longer contains" in dropped.resyncs[0]
    for watcher in (steady, dropped):
        for run_id in run_ids:
            steps = watcher.seen(run_id)
            assert len(steps) == len(set(steps)), f"{run_id} has duplicate steps"
