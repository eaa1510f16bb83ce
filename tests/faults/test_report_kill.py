"""SIGKILL of the server while three Node Yjs clients edit one report.

docs/reports.md promises that a crash loses at most the updates accepted in
the last ``ASSAY_REPORT_FLUSH_INTERVAL`` seconds, plus the time of the write
itself. An edit counts as acknowledged here when the database held it at the
kill, or when another client received it (so the server had accepted it) at
least ``flush interval + WRITE_ALLOWANCE`` before the kill. Every acknowledged
edit must be in the document the restarted server loads.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from deploy.deploy_support import wait_until
from reports.support import PROJECT, YClient, add_markdown, create_report, report_content, yjs_url

import assay
from assay_server.settings import Settings
from conftest import RunningServer
from faults.report_editors import Edit, Editor, stored_content, tokens_in

NAMES = ("a", "b", "c")
#: Milliseconds between two edits of one client: three clients make about 60 edits a second.
EDIT_INTERVAL_MS = 50
EDIT_SECONDS = 4.0
DOWN_SECONDS = 1.5
AFTER_RESTART_SECONDS = 1.0
#: Time allowed for the write of a batch of updates, on top of the flush interval.
#: NOTE: docs/reports.md gives no bound for the write, so 2 s is an estimate for a loaded
#: 2-core machine.
WRITE_ALLOWANCE = 2.0


def seen_by_others(states: list[dict[str, Any]]) -> dict[str, int]:
    """Return, per token, the earliest time (ms) a client other than its author received it."""
    first: dict[str, int] = {}
    for state in states:
        for token, seen_ms in state["seen"].items():
            first[token] = min(seen_ms, first.get(token, seen_ms))
    return first


def converged(server: RunningServer, report_id: str, editors: list[Editor]) -> bool:
    states = [editor.state() for editor in editors]
    if not all(state["connected"] and state["synced"] for state in states):
        return False
    content = report_content(server, report_id)
    return all(state["content"] == content for state in states)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_report_sigkill_mid_editing(
    backend: str, request: pytest.FixtureRequest, server_process: Any, tmp_path: Path
) -> None:
    settings: Settings = request.getfixturevalue(f"{backend}_settings")
    process = server_process(settings)
    process.start()
    api_key = str(settings.bootstrap_api_key)
    server = RunningServer(process.url, api_key, settings)
    assay.init(PROJECT, server=server.url, api_key=api_key, spool_dir=tmp_path).finish()
    report_id = create_report(server)["id"]
    seeder = YClient(server, report_id)
    seeder.sync()
    seeder.edit(lambda doc: add_markdown(doc, "shared", ""))
    seeder.close()
    editors = [Editor(yjs_url(server), report_id, api_key, name) for name in NAMES]
    try:
        wait_until(
            lambda: all(len(e.state()["content"]["blocks"]) == 1 for e in editors), timeout=30
        )
        for editor in editors:
            editor.command(f"start {EDIT_INTERVAL_MS}", "started")
        time.sleep(EDIT_SECONDS)

        kill_ms = time.time() * 1000
        process.kill()
        at_kill = Counter(tokens_in(stored_content(settings, report_id)))
        time.sleep(DOWN_SECONDS)
        process.start()
        restart_ms = time.time() * 1000
        time.sleep(AFTER_RESTART_SECONDS)
        for editor in editors:
            editor.command("stop", "stopped")
        wait_until(lambda: converged(server, report_id, editors), timeout=60)
        final = report_content(server, report_id)
        wait_until(lambda: stored_content(settings, report_id) == final, timeout=15)
        states = [editor.state() for editor in editors]
        connects = [editor.statuses.count("connected") for editor in editors]
    finally:
        for editor in editors:
            editor.stop()

    edits = [Edit(*made) for state in states for made in state["made"]]
    made_tokens = Counter(edit.token for edit in edits)
    seen = seen_by_others(states)
    window_ms = (settings.report_flush_interval + WRITE_ALLOWANCE) * 1000
    old_enough = {token for token, seen_ms in seen.items() if kill_ms - seen_ms >= window_ms}
    acknowledged = old_enough | set(at_kill)
    lost = sorted(acknowledged - set(at_kill))
    while_down = [e.token for e in edits if kill_ms < e.made_ms < restart_ms]
    offline = [e.token for e in edits if not e.online]
    final_tokens = Counter(tokens_in(final))
    print(
        f"\nfault report SIGKILL [{backend}]: {len(NAMES)} clients, {len(edits)} edits made, "
        f"{len(while_down)} while the server was down, {len(at_kill)} stored at the kill, "
        f"{len(acknowledged)} acknowledged, "
        f"{len(lost)} acknowledged lost, {len(set(made_tokens) - set(final_tokens))} missing "
        "after convergence"
    )

    assert len(made_tokens) == len(edits), "a token was made twice"
    assert all(count == 1 for count in at_kill.values())
    assert len(old_enough) > 0
    assert lost == []
    assert while_down
    assert offline
    assert all(count >= 2 for count in connects), "a client did not reconnect"
    assert final_tokens == made_tokens
    assert all(state["content"] == final for state in states)
