"""Prometheus metrics at ``/metrics``: each one moves by the right amount.

Every test reads ``/metrics`` of a real server before and after doing one
thing. The registry belongs to the test process, which may have served other
tests before, so the tests compare differences, never absolute values.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pycrdt import Array, Map, Text
from reports.support import YClient, add_markdown, create_report, wait_for
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

import assay
from assay import protocol
from assay_server.settings import Settings
from conftest import ROOT, RunningServer, free_port

PROJECT = "reports"
TIMESTAMP = 1_700_000_000.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(server: RunningServer) -> Samples:
    text = httpx.get(server.url + "/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class MetricChange:
    """The ``/metrics`` samples of one server, read on creation and compared by ``grew``."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.before = samples(server)

    def grew(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return samples(self.server).get(key, 0.0) - self.before.get(key, 0.0)


def receive(connection: ClientConnection) -> dict[str, Any]:
    frame = connection.recv(timeout=10)
    assert isinstance(frame, bytes), f"the server sent a text frame: {frame!r}"
    return protocol.unpack(frame)


@contextmanager
def ingest(server: RunningServer, run_id: str) -> Iterator[ClientConnection]:
    """Yield a raw ingest websocket whose ``hello`` created ``run_id``."""
    url = "ws" + server.url.removeprefix("http") + protocol.INGEST_PATH
    headers = {"Authorization": f"Bearer {server.api_key}"}
    with connect(url, additional_headers=headers, legacy=True) as connection:
        hello = {
            "type": "hello",
            "protocol": protocol.PROTOCOL_VERSION,
            "project": PROJECT,
            "session": 1,
            "resume": "never",
            "run": {"id": run_id},
        }
        connection.send(protocol.pack(hello))
        welcome = receive(connection)
        assert welcome["type"] == "welcome", welcome
        yield connection


def batch(seq: Any, first_step: int, values: dict[str, float]) -> bytes:
    """Pack a batch of two rows, each containing every metric of ``values``."""
    rows = [(first_step + row, TIMESTAMP, dict(values)) for row in range(2)]
    return protocol.pack({"type": "batch", "seq": seq, **protocol.encode_rows(rows)})


def create_project(server: RunningServer) -> None:
    """Create ``PROJECT`` with one finished run, which sends no more run events.

    Returns once the server has closed the run's socket, so that a test's
    later reading of ``assay_open_sockets`` does not count it.
    """
    change = MetricChange(server)
    with ingest(server, "first") as connection:
        connection.send(protocol.pack({"type": "finish"}))
        assert receive(connection)["type"] == "finished"
    wait_for_gauge(change, "assay_open_sockets", 0, kind="ingest")


def live_socket(server: RunningServer, project: str = PROJECT) -> ClientConnection:
    url = server.url.replace("http://", "ws://") + f"/api/v1/projects/{project}/live"
    headers = {"Authorization": f"Bearer {server.api_key}"}
    return connect(url, additional_headers=headers, legacy=True)


def wait_for_gauge(change: MetricChange, name: str, expected: float, **labels: str) -> None:
    """Wait until a gauge is ``expected`` above its first reading, as sockets close later."""
    wait_for(
        lambda: change.grew(name, **labels) == expected,
        what=f"{name}{labels} to move by {expected}, not {change.grew(name, **labels)}",
    )


def test_metrics_count_ingested_points(server: RunningServer, tmp_path: Path) -> None:
    before = samples(server)
    run = assay.init("metrics", server=server.url, api_key=server.api_key, spool_dir=tmp_path)
    for step in range(10):
        run.log({"a": 1.0, "b": 2.0}, step=step)
    run.finish()
    after = samples(server)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("assay_ingested_points_total") == 20
    assert grew("assay_ingested_batches_total", outcome="stored") >= 1
    assert grew("assay_ack_seconds_count") >= 1
    assert after[("assay_open_sockets", (("kind", "ingest"),))] >= 0


def test_ingest_counts_points_batches_and_acks(server: RunningServer) -> None:
    change = MetricChange(server)
    with ingest(server, "counted") as connection:
        connection.send(batch(0, 0, {"loss": 0.5, "acc": 0.1}))
        first = receive(connection)
        connection.send(batch(0, 0, {"loss": 0.5, "acc": 0.1}))
        resent = receive(connection)
        connection.send(batch(1, 2, {"loss": math.nan}))
        second = receive(connection)
        connection.send(batch("one", 4, {"loss": 0.25}))
        rejected = receive(connection)

    assert first == {"type": "ack", "seq": 0}
    assert resent == {"type": "ack", "seq": 0}
    assert second == {"type": "ack", "seq": 1}
    assert rejected["code"] == "invalid_batch"
    # Two rows of two metrics, then two rows of one. The resent batch adds nothing.
    assert change.grew("assay_ingested_points_total") == 6
    assert change.grew("assay_ingested_batches_total", outcome="stored") == 2
    assert change.grew("assay_ingested_batches_total", outcome="duplicate") == 1
    assert change.grew("assay_ingested_batches_total", outcome="rejected") == 1
    # Every acknowledged batch is timed, the duplicate included.
    assert change.grew("assay_ack_seconds_count") == 3
    assert change.grew("assay_ack_seconds_sum") > 0
    assert change.grew("assay_errors_total", kind="invalid_batch") == 1


SOCKET_KINDS = ("ingest", "live", "report")


def test_open_sockets_counted_by_kind(sqlite_server: RunningServer) -> None:
    create_project(sqlite_server)
    report_id = create_report(sqlite_server)["id"]
    change = MetricChange(sqlite_server)

    with ingest(sqlite_server, "open"):
        live = live_socket(sqlite_server)
        report = YClient(sqlite_server, report_id)
        report.sync()
        wait_for_gauge(change, "assay_open_sockets", 1, kind="live")
        during = {kind: change.grew("assay_open_sockets", kind=kind) for kind in SOCKET_KINDS}
        live.close()
        report.close()
    for kind in SOCKET_KINDS:
        wait_for_gauge(change, "assay_open_sockets", 0, kind=kind)

    assert during == {"ingest": 1, "live": 1, "report": 1}


def test_report_socket_released_on_disconnect(sqlite_server: RunningServer) -> None:
    create_project(sqlite_server)
    report_id = create_report(sqlite_server)["id"]
    change = MetricChange(sqlite_server)
    client = YClient(sqlite_server, report_id)
    client.sync()
    during = change.grew("assay_open_sockets", kind="report")
    client.close()
    started = time.monotonic()
    wait_for_gauge(change, "assay_open_sockets", 0, kind="report")
    seconds = time.monotonic() - started

    assert during == 1
    # The server used to wait 5 s for frames to send to a client that had gone.
    assert seconds < 2.5


def test_open_reports_count_rooms(sqlite_settings: Settings, start_server: Any) -> None:
    server = start_server(dataclasses.replace(sqlite_settings, report_idle_timeout=0.2))
    create_project(server)
    first, second = create_report(server)["id"], create_report(server)["id"]
    change = MetricChange(server)

    clients = [YClient(server, first), YClient(server, first), YClient(server, second)]
    for client in clients:
        client.sync()
    during_rooms = change.grew("assay_open_reports")
    during_sockets = change.grew("assay_open_sockets", kind="report")
    for client in clients:
        client.close()
    wait_for_gauge(change, "assay_open_sockets", 0, kind="report")
    wait_for_gauge(change, "assay_open_reports", 0)

    # Two clients of one report share its room.
    assert during_rooms == 2
    assert during_sockets == 3


class Watch:
    """A live socket watching run sets of ``PROJECT``."""

    def __init__(self, server: RunningServer, runsets: dict[str, str]) -> None:
        self.socket = live_socket(server)
        self.socket.send(protocol.pack({"type": "watch", "runsets": runsets}))
        self.members = self.next("members")

    def next(self, kind: str) -> dict[str, Any]:
        while True:
            message = receive(self.socket)
            if message["type"] == kind:
                return message

    def wait_until_entered(self, runset_id: str, run_id: str) -> None:
        while True:
            changes = self.next("membership")["changes"]
            if run_id in changes.get(runset_id, {}).get("entered", []):
                return


def test_runset_evaluations_count_initial_and_incremental(
    sqlite_server: RunningServer,
) -> None:
    create_project(sqlite_server)
    change = MetricChange(sqlite_server)

    # Two distinct filters: "state=failed" is "state = failed" written differently.
    watch = Watch(
        sqlite_server,
        {"failed": "state = failed", "also": "state=failed", "nan": "summary.loss is nan"},
    )
    other = Watch(sqlite_server, {"diverged": "summary.loss  is  nan"})
    initial = change.grew("assay_runset_evaluations_total", mode="initial")
    # Three run events: run.created on hello, run.summary for the batch and
    # run.state for the finish.
    with ingest(sqlite_server, "moving") as connection:
        connection.send(batch(0, 0, {"loss": math.nan}))
        assert receive(connection) == {"type": "ack", "seq": 0}
        connection.send(protocol.pack({"type": "finish", "exit_code": 1}))
        assert receive(connection)["type"] == "finished"
    watch.wait_until_entered("failed", "moving")
    other.wait_until_entered("diverged", "moving")
    watch.socket.close()
    other.socket.close()

    assert watch.members["runsets"] == {"failed": [], "also": [], "nan": []}
    assert initial == 2
    assert change.grew("assay_runset_evaluations_total", mode="initial") == 2
    assert change.grew("assay_runset_evaluations_total", mode="incremental") == 3 * 2


def test_errors_counted_by_code(sqlite_server: RunningServer) -> None:
    create_project(sqlite_server)
    report_id = create_report(sqlite_server)["id"]
    change = MetricChange(sqlite_server)

    with sqlite_server.client() as http:
        missing = http.get("/api/v1/projects/no-such-project/runs")
        unknown_path = http.get("/api/v1/no-such-path")
    ingest_url = "ws" + sqlite_server.url.removeprefix("http") + protocol.INGEST_PATH
    with pytest.raises(InvalidStatus) as denied:
        connect(ingest_url, additional_headers={"Authorization": "Bearer not-a-key"})
    with ingest(sqlite_server, "talking") as connection:
        connection.send(protocol.pack({"type": "bogus"}))
        ingest_unknown_type = receive(connection)
    live = live_socket(sqlite_server)
    live.send(protocol.pack({"type": "unsubscribe"}))
    unknown_type = receive(live)
    live.send(protocol.pack({"type": "watch", "runsets": ["not", "a", "map"]}))
    invalid_watch = receive(live)
    live.close()
    report = YClient(sqlite_server, report_id)
    report.sync()
    report.edit(lambda doc: add_markdown(doc, "b1", "kept"))
    video = Map({"id": "b2", "type": "video", "text": Text("not a block type")})
    report.edit(lambda doc: doc.get("blocks", type=Array).append(video))
    denial = report.next_denial()
    report.socket.send("a text frame")
    with pytest.raises(ConnectionClosed) as closed:
        report.next_frame(lambda frame: False)

    assert missing.json()["error"]["code"] == "project_not_found"
    assert change.grew("assay_errors_total", kind="project_not_found") == 1
    assert unknown_path.json()["error"]["code"] == "not_found"
    assert change.grew("assay_errors_total", kind="not_found") == 1
    # The handshake is rejected with an HTTP response, not an accepted socket.
    assert denied.value.response.status_code == 401
    assert b'"code":"invalid_api_key"' in denied.value.response.body
    assert change.grew("assay_errors_total", kind="invalid_api_key") == 1
    assert ingest_unknown_type["code"] == "unknown_type"
    assert unknown_type["code"] == "unknown_type"
    assert change.grew("assay_errors_total", kind="unknown_type") == 2
    assert invalid_watch["code"] == "invalid_watch"
    assert change.grew("assay_errors_total", kind="invalid_watch") == 1
    assert "has unknown type 'video'" in denial
    assert change.grew("assay_errors_total", kind="rejected_update") == 1
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1003
    assert change.grew("assay_errors_total", kind="malformed") == 1


def test_every_metric_documented(sqlite_server: RunningServer) -> None:
    text = httpx.get(sqlite_server.url + "/metrics").text
    families = {
        family.name: family.type
        for family in text_string_to_metric_families(text)
        # prometheus-client exports the "_created" time of each counter and histogram
        # as a gauge family of its own.
        if family.name.startswith("assay_") and not family.name.endswith("_created")
    }
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    section = deploy.split("## Health and metrics", 1)[1].split("\n## ", 1)[0]
    # A table row starts with the metric's name as exported, before any labels.
    documented = dict(
        re.findall(r"^\| `(assay_[a-z_]+)(?:\{[a-z,]+\})?` \| ([a-z]+) \|", section, re.M)
    )
    exported = {
        name + "_total" if kind == "counter" else name: kind for name, kind in families.items()
    }

    assert documented == exported


def test_logged_warnings_counted_by_logger(
    postgres_settings: Settings, server_process: Any
) -> None:
    # Without Redis, publishing a run event fails, and the server logs a
    # warning and carries on.
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    settings = dataclasses.replace(postgres_settings, redis_url=unreachable)
    process = server_process(settings)
    process.start()
    server = RunningServer(process.url, str(settings.bootstrap_api_key), settings)
    change = MetricChange(server)
    with ingest(server, "unpublished"):
        pass
    log = process.log_path.read_text()

    assert "event run.created of run unpublished not published" in log
    logged = change.grew("assay_log_messages_total", level="WARNING", logger="assay_server.ingest")
    assert logged == 1
