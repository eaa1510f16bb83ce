"""Cut SDK and live sockets again and again: nothing lost, live views resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from deploy.deploy_support import wait_until

from assay_server.settings import Settings
from faults.fleet import METRIC, Fleet, KilledSdk, print_outcome, stored_mismatches
from faults.live_watcher import LiveWatcher, live_gaps
from proxy import CuttingProxy

STEPS = 3000
CUTS = 6


def test_socket_cuts_mid_stream(settings: Settings, start_server: Any, tmp_path: Path) -> None:
    fast_crash = dataclasses.replace(settings, heartbeat_interval=0.5, crash_timeout=3)
    server = start_server(fast_crash)
    killed = KilledSdk(server.url, server.api_key, tmp_path / "killed")
    killed.kill_after_points()
    proxy = CuttingProxy(server.port)
    fleet = Fleet(proxy.url, server.api_key, tmp_path)
    run_ids = [run.id for run in fleet.runs]
    watcher = LiveWatcher(proxy.url, fleet.project, server.api_key, METRIC)
    assert watcher.subscribed.wait(15)

    cut = 0
    for part in range(1, CUTS + 1):
        fleet.log_until(part * STEPS // CUTS)
        wait_until(lambda: len(proxy.open) >= 2 * (len(run_ids) + 1), timeout=30)
        cut += proxy.cut()
    fleet.finish()
    problems = stored_mismatches(server.url, server.api_key, fleet)
    print_outcome(f"{cut} socket cuts", server.url, server.api_key, fleet, problems)
    wait_until(lambda: watcher.has_all(run_ids, STEPS), 30, watcher.describe)
    watcher.close()
    proxy.close()
    wait_until(lambda: killed.state() == "crashed", timeout=15, describe=killed.state)
    killed.close()

    assert cut >= CUTS * (len(run_ids) + 1)
    assert problems == []
    assert watcher.connections >= CUTS
    assert watcher.resyncs == []
    assert live_gaps(watcher, run_ids, STEPS) == []
