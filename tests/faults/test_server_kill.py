"""SIGKILL of the server while eight SDK runs log: nothing lost, live views resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deploy.deploy_support import wait_until

from assay_server.settings import Settings
from faults.fleet import METRIC, Fleet, print_outcome, stored_mismatches
from faults.live_watcher import LiveWatcher, live_gaps

STEPS = 3000


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_server_sigkill_mid_stream(
    backend: str, request: pytest.FixtureRequest, server_process: Any, tmp_path: Path
) -> None:
    settings: Settings = request.getfixturevalue(f"{backend}_settings")
    process = server_process(settings)
    process.start()
    api_key = str(settings.bootstrap_api_key)
    fleet = Fleet(process.url, api_key, tmp_path)
    run_ids = [run.id for run in fleet.runs]
    watcher = LiveWatcher(process.url, fleet.project, api_key, METRIC)
    assert watcher.subscribed.wait(15)

    fleet.log_until(STEPS // 2)
    wait_until(lambda: fleet.in_flight() > 0, timeout=30)
    process.kill()
    in_flight_at_kill = fleet.in_flight()
    process.start()
    fleet.log_until(STEPS)
    fleet.finish()
    problems = stored_mismatches(process.url, api_key, fleet)
    print_outcome(f"server SIGKILL [{backend}]", process.url, api_key, fleet, problems)
    if backend == "postgres":
        wait_until(lambda: watcher.has_all(run_ids, STEPS), timeout=30)
    else:
        wait_until(lambda: bool(watcher.resyncs), timeout=30)
    watcher.close()

    assert in_flight_at_kill > 0
    assert problems == []
    assert watcher.connections >= 2
    if backend == "postgres":
        # The streams live in Redis, so the reconnected socket catches up from its cursors.
        assert watcher.resyncs == []
        assert live_gaps(watcher, run_ids, STEPS) == []
    else:
        # The in-process bus died with the server, so the socket must reload.
        assert "no longer contains" in watcher.resyncs[0]
