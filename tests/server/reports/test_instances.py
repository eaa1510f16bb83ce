"""Two server instances sharing PostgreSQL and Redis converge on a report."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Array
from websockets.exceptions import ConnectionClosed

import assay
from assay_server.settings import Settings
from conftest import RunningServer, ThreadServer
from reports.support import PROJECT, YClient, add_markdown, create_report, wait_for, yjs_url


def block_texts(client: YClient) -> list[str]:
    return [block["text"] for block in client.doc.get("blocks", type=Array).to_py() or []]


def test_clients_on_two_instances_converge(
    postgres_settings: Settings, start_server: Any, node_clients: Any, tmp_path: Path
) -> None:
    first = start_server(postgres_settings)
    second = start_server(postgres_settings)
    assay.init(PROJECT, server=first.url, api_key=first.api_key, spool_dir=tmp_path).finish()
    report_id = create_report(first)["id"]
    alice = YClient(first, report_id)
    bob = YClient(second, report_id)
    alice.sync()
    bob.sync()

    alice.edit(lambda doc: add_markdown(doc, "a", "from the first instance"))
    bob.edit(lambda doc: add_markdown(doc, "b", "from the second instance"))

    def converged() -> bool:
        alice.pump()
        bob.pump()
        return len(block_texts(alice)) == 2 and block_texts(alice) == block_texts(bob)

    wait_for(converged, what="both clients to hold both blocks")
    assert sorted(block_texts(alice)) == ["from the first instance", "from the second instance"]

    reader = node_clients(
        "read", yjs_url(second), report_id, second.api_key, "from the first instance", "5000"
    )
    assert reader.next_event()["event"] == "seen"
    alice.close()
    bob.close()


def test_room_opened_later_catches_up(
    postgres_settings: Settings, start_server: Any, tmp_path: Path
) -> None:
    # With no write during the test, the second instance can only learn of
    # the edit from the first one, through the state-vector exchange.
    unwritten = dataclasses.replace(postgres_settings, report_flush_interval=3600)
    first = start_server(unwritten)
    assay.init(PROJECT, server=first.url, api_key=first.api_key, spool_dir=tmp_path).finish()
    report_id = create_report(first)["id"]
    alice = YClient(first, report_id)
    alice.sync()
    alice.edit(lambda doc: add_markdown(doc, "a", "written before the second opened"))
    alice.pump()

    second = start_server(unwritten)
    bob = YClient(second, report_id)
    bob.sync()

    def caught_up() -> bool:
        bob.pump()
        return block_texts(bob) == ["written before the second opened"]

    wait_for(caught_up, what="the second instance to catch up")
    alice.close()
    bob.close()


def test_delete_closes_sockets_on_other_instance(
    postgres_settings: Settings, start_server: Any, tmp_path: Path
) -> None:
    first = start_server(postgres_settings)
    second = start_server(postgres_settings)
    assay.init(PROJECT, server=first.url, api_key=first.api_key, spool_dir=tmp_path).finish()
    report_id = create_report(first)["id"]
    bob = YClient(second, report_id)
    bob.sync()

    with first.client() as http:
        deleted = http.delete(f"/api/v1/projects/{PROJECT}/reports/{report_id}")
    with pytest.raises(ConnectionClosed) as closed:
        bob.next_frame(lambda frame: False)

    assert deleted.status_code == 204
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4404


def test_relayed_edit_survives_sigkill_of_origin(
    postgres_settings: Settings,
    start_server: Any,
    server_process: Any,
    tmp_path: Path,
) -> None:
    # The origin never flushes on its own, so only the other instance can store the edit.
    origin = server_process(dataclasses.replace(postgres_settings, report_flush_interval=3600.0))
    origin.start()
    other = ThreadServer(postgres_settings)
    second = other.start()
    assay.init(PROJECT, server=second.url, api_key=second.api_key, spool_dir=tmp_path).finish()
    report_id = create_report(second)["id"]
    origin_view = RunningServer(origin.url, second.api_key, postgres_settings)
    writer = YClient(origin_view, report_id)
    watcher = YClient(second, report_id)
    writer.sync()
    watcher.sync()

    writer.edit(lambda doc: add_markdown(doc, "a", "accepted by the origin"))

    def relayed() -> bool:
        watcher.pump()
        return block_texts(watcher) == ["accepted by the origin"]

    wait_for(relayed, what="the edit to reach the other instance")
    origin.kill()
    watcher.close()
    other.stop()
    restarted = start_server(postgres_settings)
    reader = YClient(restarted, report_id)
    reader.sync()
    assert block_texts(reader) == ["accepted by the origin"]
    reader.close()
