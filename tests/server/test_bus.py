"""Committed batches and run events reach the Redis streams or the in-process bus."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import msgpack
import redis

import assay
from assay import protocol
from conftest import RunningServer


def entries(server: RunningServer, stream: str) -> list[dict[str, Any]]:
    if server.settings.redis_url is None:
        bus = server.app.state.context.bus
        return [fields for _, _, fields in bus.streams.get(stream, [])]
    client = redis.Redis.from_url(server.settings.redis_url)
    try:
        found = client.xrange(stream)
    finally:
        client.close()
    return [{key.decode(): value for key, value in fields.items()} for _, fields in found]


def project_id(server: RunningServer) -> int:
    with server.client() as client:
        assert client.get("/api/v1/projects").json()["projects"][0]["name"] == "bus"
    return 1


def test_batches_reach_live_stream(server: RunningServer, tmp_path: Path) -> None:
    run = assay.init("bus", server=server.url, api_key=server.api_key, spool_dir=tmp_path)
    for step, value in enumerate([math.nan, None, math.inf, -math.inf]):
        run.log({"loss": value}, step=step)
    run.finish()
    bus = server.app.state.context.bus

    live = entries(server, bus.live_stream(project_id(server), run.id))
    rows = [row for entry in live for row in protocol.decode_rows(msgpack.unpackb(entry["body"]))]

    assert [int(entry["seq"]) for entry in live] == list(range(len(live)))
    assert [row[0] for row in rows] == [0, 1, 2, 3]
    assert math.isnan(rows[0][2]["loss"])
    assert rows[1][2] == {"loss": None}
    assert rows[2][2] == {"loss": math.inf}
    assert rows[3][2] == {"loss": -math.inf}


def test_run_events_reach_project_stream(server: RunningServer, tmp_path: Path) -> None:
    run = assay.init(
        "bus", server=server.url, api_key=server.api_key, spool_dir=tmp_path, config={"lr": 1}
    )
    run.log({"loss": math.inf})
    run.config["batch_size"] = 8
    run.log({"loss": 0.5})
    run.finish()
    bus = server.app.state.context.bus

    events = entries(server, bus.event_stream(project_id(server)))
    kinds = [_text(event["type"]) for event in events]
    data = [msgpack.unpackb(event["data"]) for event in events]

    assert kinds[0] == "run.created"
    assert data[0]["config"] == {"lr": 1}
    assert "run.summary" in kinds
    assert {"config": {"batch_size": 8}} in data
    assert data[-1] == {"state": "finished", "previous": "running"}
    assert all(_text(event["run_id"]) == run.id for event in events)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
