"""Stop a private PostgreSQL for 10 s while eight SDK runs log: nothing lost or repeated."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from deploy.conftest import PrivatePostgres
from deploy.deploy_support import wait_until

from assay_server.settings import Settings
from faults.fleet import METRIC, Fleet, print_outcome, stored_mismatches
from faults.live_watcher import LiveWatcher, live_gaps

STEPS = 3000
OUTAGE_SECONDS = 10


def test_postgres_outage_mid_stream(
    private_postgres: PrivatePostgres,
    private_postgres_settings: Settings,
    start_server: Any,
    tmp_path: Path,
) -> None:
    server = start_server(private_postgres_settings)
    fleet = Fleet(server.url, server.api_key, tmp_path)
    run_ids = [run.id for run in fleet.runs]
    watcher = LiveWatcher(server.url, fleet.project, server.api_key, METRIC)
    assert watcher.subscribed.wait(15)

    fleet.log_until(STEPS // 3)
    wait_until(lambda: fleet.in_flight() > 0, timeout=30)
    private_postgres.stop()
    stopped = time.monotonic()
    fleet.log_until(2 * STEPS // 3, seconds=OUTAGE_SECONDS)
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
    private_postgres.start()
    outage = time.monotonic() - stopped
    fleet.log_until(STEPS)
    fleet.finish()
    problems = stored_mismatches(server.url, server.api_key, fleet)
    print_outcome(f"PostgreSQL down {outage:.1f} s", server.url, server.api_key, fleet, problems)
    wait_until(lambda: watcher.has_all(run_ids, STEPS), 30, watcher.describe)
    watcher.close()

    assert outage >= OUTAGE_SECONDS
    assert problems == []
    # Nothing is published before it is committed, and Redis stayed up, so
    # the open live socket sees every point once, with no resync.
    assert watcher.resyncs == []
    assert live_gaps(watcher, run_ids, STEPS) == []
