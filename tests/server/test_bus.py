"""Committed batches and run events reach the Redis streams or the in-process bus."""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis
from prometheus_client import REGISTRY

import assay
from assay import protocol
from assay_server.bus import POOL_CONNECTIONS, Bus, LocalBus, RedisBus, entry_size
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


@pytest.fixture(params=["local", "redis"])
async def bus(request: pytest.FixtureRequest) -> Any:
    if request.param == "local":
        yield LocalBus("t:", 100, 100)
        return
    redis_url = request.getfixturevalue("redis_url")
    redis_bus = RedisBus(redis_url, request.getfixturevalue("redis_prefix"), 100, 100)
    yield redis_bus
    await redis_bus.close()


async def test_batch_published_once_per_seq(bus: Bus) -> None:
    stream = bus.live_stream(1, "r")

    def batch(session: int, seq: int) -> dict[str, Any]:
        return {"seq": seq, "session": session, "body": b"x"}

    first = [await bus.publish_batch(1, "r", batch(7, seq)) for seq in range(3)]
    resent = [await bus.publish_batch(1, "r", batch(7, seq)) for seq in (1, 2)]
    next_seq = await bus.publish_batch(1, "r", batch(7, 3))
    other_session = await bus.publish_batch(1, "r", batch(8, 0))
    found = await bus.read_many({stream: "0-0"}, 0)

    assert first == [True, True, True]
    assert resent == [False, False]
    assert next_seq is True
    assert other_session is True
    assert [(int(f["session"]), int(f["seq"])) for _, _, f in found] == [
        (7, 0),
        (7, 1),
        (7, 2),
        (7, 3),
        (8, 0),
    ]


async def test_idle_streams_expire(redis_url: str, redis_prefix: str) -> None:
    bus = RedisBus(redis_url, redis_prefix, 100, 100, idle_ttl=2)
    stream = bus.live_stream(1, "r")
    keys = [stream, stream + ":published", bus.event_stream(1)]
    await bus.publish_batch(1, "r", {"seq": 0, "session": 7, "body": b"x"})
    await bus.publish_event(1, {"type": "run.created", "run_id": "r", "data": b"", "time": 1})
    ttls = [await bus.client.ttl(key) for key in keys]
    await asyncio.sleep(1.2)
    # An entry appended later restarts the expiry of its stream only.
    await bus.publish_batch(1, "r", {"seq": 1, "session": 7, "body": b"x"})
    await asyncio.sleep(1.2)
    present = [await bus.client.exists(key) for key in keys]
    await asyncio.sleep(2.2)
    left = [await bus.client.exists(key) for key in keys]
    await bus.close()

    assert all(0 < ttl <= 2 for ttl in ttls), ttls
    assert present == [1, 1, 0]
    assert left == [0, 0, 0]


async def test_more_commands_than_pooled_connections_wait(
    redis_url: str, redis_prefix: str
) -> None:
    # 200 runs starting together publish more events at once than the pool
    # has connections; the commands past 100 wait for one instead of failing.
    bus = RedisBus(redis_url, redis_prefix, 1000, 1000)
    events = [
        {"type": "run.created", "run_id": str(index), "data": b"", "time": 1}
        for index in range(3 * POOL_CONNECTIONS)
    ]
    try:
        await asyncio.gather(*(bus.publish_event(1, event) for event in events))
        found = await bus.read_many({bus.event_stream(1): "0-0"}, 0)
    finally:
        await bus.close()

    assert sorted(int(_text(fields["run_id"])) for _, _, fields in found) == list(
        range(3 * POOL_CONNECTIONS)
    )


async def test_idle_local_streams_expire() -> None:
    bus = LocalBus("t:", 100, 100, idle_ttl=1)
    stream = bus.live_stream(1, "r")
    await bus.publish_batch(1, "r", {"seq": 0, "session": 7, "body": b"x"})
    await bus.publish_event(1, {"type": "run.created", "run_id": "r", "data": b"", "time": 1})
    cursor = (await bus.read_many({stream: "0-0"}, 0))[0][1]
    await asyncio.sleep(1.1)
    # Another run's batch is the next append, and it deletes the idle streams.
    await bus.publish_batch(1, "other", {"seq": 0, "session": 1, "body": b"x"})
    left = set(bus.streams)
    gap_reported = await bus.trimmed_after(stream, cursor)
    # The run's batch numbers were forgotten with its stream, as in Redis.
    appended_again = await bus.publish_batch(1, "r", {"seq": 0, "session": 7, "body": b"x"})

    assert left == {bus.live_stream(1, "other")}
    assert gap_reported is True
    assert appended_again is True
    assert list(bus.published) == [(bus.live_stream(1, "other"), 1), (stream, 7)]


async def test_local_bus_drops_oldest_entries_past_its_bytes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="assay_server.bus")
    dropped_before = dropped_entries()
    body = b"x" * 488  # with the entry's overhead, 1,000 bytes an entry
    bus = LocalBus("t:", 100, 100, max_bytes=4_500)
    first, second = bus.live_stream(1, "a"), bus.live_stream(1, "b")
    for seq in range(3):
        await bus.publish_batch(1, "a", {"seq": seq, "session": 1, "body": body})
    a_ids = [entry[1] for entry in await bus.read_many({first: "0-0"}, 0)]
    for seq in range(3):
        await bus.publish_batch(1, "b", {"seq": seq, "session": 1, "body": body})
    left = await bus.read_many({first: "0-0", second: "0-0"}, 0)

    assert entry_size({"seq": 0, "session": 1, "body": body}) == 1_000
    # Six entries of 1,000 bytes in 4,500: the two oldest, both of stream a, went.
    assert [(entry[0], entry[1]) for entry in left][:1] == [(first, a_ids[2])]
    assert [entry[0] for entry in left] == [first, second, second, second]
    assert bus.appended_bytes == 4_000
    assert await bus.trimmed_after(first, "0-0") is True
    assert await bus.trimmed_after(first, a_ids[0]) is True
    assert await bus.trimmed_after(first, a_ids[1]) is False
    assert await bus.trimmed_after(second, "0-0") is False
    # The drops are counted for /metrics, and the first one is logged once.
    assert dropped_entries() - dropped_before == 2
    assert REGISTRY.get_sample_value("assay_local_bus_bytes") == 4_000
    reached = [r.getMessage() for r in caplog.records if "reached" in r.getMessage()]
    assert reached == [
        "the in-process bus reached ASSAY_LOCAL_BUS_BYTES (4500 bytes); it now drops "
        "the oldest entries, and a live socket behind them resyncs"
    ]


def dropped_entries() -> float:
    return REGISTRY.get_sample_value("assay_local_bus_dropped_entries_total") or 0.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
