"""The browser's live socket: sign-in, fan-out, catch-up and resync."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

import assay
from assay import protocol
from assay_server.bus import LocalBus, id_key
from assay_server.live import (
    TAIL_LENGTH,
    Chunk,
    LiveHub,
    ResyncNeeded,
    Subscriber,
    batch_frame,
    chunk_messages,
)
from assay_server.live_socket import LiveConnection
from assay_server.settings import Settings
from conftest import RunningServer, live_messages, sign_in_with_key


class LiveClient:
    def __init__(self, server: RunningServer, project: str, **headers: str) -> None:
        url = server.url.replace("http://", "ws://") + f"/api/v1/projects/{project}/live"
        extra = headers or {"Authorization": f"Bearer {server.api_key}"}
        self.socket: ClientConnection = connect(url, additional_headers=extra, legacy=True)
        self.cursors: dict[str, str] = {}
        self.pending: list[dict[str, Any]] = []

    def subscribe(self, cursors: dict[str, str] | None = None) -> dict[str, Any]:
        self.socket.send(protocol.pack({"type": "subscribe", "cursors": cursors or {}}))
        return self.next(lambda m: m["type"] in ("subscribed", "resync"))

    def next(self, wanted: Any, timeout: float = 15) -> dict[str, Any]:
        """The first message ``wanted`` accepts; others are kept for later calls."""
        for index, message in enumerate(self.pending):
            if wanted(message):
                return self.pending.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            frame = self.socket.recv(timeout=max(0.01, deadline - time.monotonic()))
            for message in live_messages(frame):
                if "stream" in message:
                    self.cursors[message["stream"]] = message["id"]
                self.pending.append(message)
            for index, message in enumerate(self.pending):
                if wanted(message):
                    return self.pending.pop(index)

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def project(server: RunningServer, tmp_path: Path) -> str:
    assay.init("live", server=server.url, api_key=server.api_key, spool_dir=tmp_path).finish()
    return "live"


@pytest.fixture
def client(server: RunningServer, project: str) -> Iterator[LiveClient]:
    live = LiveClient(server, project)
    yield live
    live.close()


def start_run(server: RunningServer, tmp_path: Path, **kwargs: Any) -> assay.Run:
    options = assay.SenderOptions(flush_interval=0.01)
    return assay.init(
        "live",
        server=server.url,
        api_key=server.api_key,
        spool_dir=tmp_path,
        settings=options,
        **kwargs,
    )


def is_points(message: dict[str, Any]) -> bool:
    return bool(message["type"] == "points")


def test_points_arrive_with_exact_values(
    server: RunningServer, client: LiveClient, tmp_path: Path
) -> None:
    client.subscribe()
    run = start_run(server, tmp_path)
    for step, value in enumerate([1.0, math.nan, math.inf, -math.inf, None]):
        run.log({"loss": value}, step=step)
    run.finish()

    values: list[Any] = []
    while len(values) < 5:
        values += client.next(is_points)["metrics"]["loss"]["values"]

    assert values[0] == 1.0
    assert math.isnan(values[1])
    assert values[2] == math.inf
    assert values[3] == -math.inf
    assert values[4] is None


def test_new_run_is_announced_and_followed(
    server: RunningServer, client: LiveClient, tmp_path: Path
) -> None:
    client.subscribe()
    run = start_run(server, tmp_path, name="fresh")
    run.log({"acc": 0.5})
    run.finish()

    created = client.next(lambda m: m.get("event") == "run.created")
    batch = client.next(is_points)

    assert created["run_id"] == run.id
    assert created["data"]["name"] == "fresh"
    assert batch["run_id"] == run.id
    assert batch["metrics"]["acc"]["steps"] == [0]


def is_summary(message: dict[str, Any]) -> bool:
    return message["type"] == "event" and message["event"] == "run.summary"


def is_finished(message: dict[str, Any]) -> bool:
    return (
        message["type"] == "event"
        and message["event"] == "run.state"
        and message["data"]["state"] == "finished"
    )


def test_summary_events_merge_quick_batches(
    server: RunningServer, client: LiveClient, tmp_path: Path
) -> None:
    client.subscribe()
    run = start_run(server, tmp_path)
    logged = [1.0, 0.5, math.nan, math.inf, None, 0.25] * 5 + [-math.inf]
    for step, value in enumerate(logged):
        run.log({"loss": value, f"only_at_{step}": float(step)}, step=step)
        time.sleep(0.01)  # about one batch per step: the SDK flushes every 0.01 s
    run.finish()

    summaries: list[dict[str, Any]] = []
    while True:
        message = client.next(lambda m: is_summary(m) or is_finished(m))
        if is_finished(message):
            break
        summaries.append(message["data"]["summary"])

    # About 31 batches in about 0.35 s make two or three events, and fewer
    # than ten even when the server is slow and their storing spreads out.
    assert 1 <= len(summaries) < 10
    merged: dict[str, Any] = {}
    for summary in summaries:
        merged.update(summary)
    # Every key logged arrives, and each with its last value: -inf, not NaN or null.
    assert set(merged) == {"loss", *(f"only_at_{step}" for step in range(len(logged)))}
    assert merged["loss"] == -math.inf


def test_resumed_run_announces_its_stored_summary(
    server: RunningServer, client: LiveClient, tmp_path: Path
) -> None:
    first = start_run(server, tmp_path, id="resumed")
    first.log({"loss": math.nan, "acc": None, "lr": math.inf, "gap": -math.inf}, step=0)
    first.finish()
    client.subscribe()
    # A server killed before a merged summary went out never sends it; the
    # stored summary goes out when the SDK reconnects and resumes the run.
    again = start_run(server, tmp_path, id="resumed", resume="must")
    summary = client.next(lambda m: is_summary(m) and m["run_id"] == "resumed")
    again.finish()

    values = summary["data"]["summary"]
    assert set(values) == {"loss", "acc", "lr", "gap"}
    assert math.isnan(values["loss"])
    assert values["acc"] is None
    assert values["lr"] == math.inf
    assert values["gap"] == -math.inf


def test_reconnect_with_cursors_misses_nothing(
    server: RunningServer, project: str, tmp_path: Path
) -> None:
    first = LiveClient(server, project)
    first.subscribe()
    run = start_run(server, tmp_path, id="steady")
    run.log({"x": 0.0}, step=0)
    first.next(is_points)
    cursors = dict(first.cursors)
    first.close()
    for step in range(1, 4):
        run.log({"x": float(step)}, step=step)
    run.finish()
    second = LiveClient(server, project)

    second.subscribe(cursors)
    steps: list[int] = []
    while len(steps) < 3:
        steps += second.next(is_points)["metrics"]["x"]["steps"]
    second.close()

    assert steps == [1, 2, 3]


def test_trimmed_cursor_asks_for_resync(
    settings: Settings, start_server: Any, tmp_path: Path
) -> None:
    server = start_server(dataclasses.replace(settings, live_stream_length=2))
    one_row_batches = assay.SenderOptions(batch_rows=1, flush_interval=0.01)
    run = assay.init(
        "live",
        server=server.url,
        api_key=server.api_key,
        spool_dir=tmp_path,
        id="long",
        settings=one_row_batches,
    )
    # Redis trims whole nodes of about 100 entries, so write well past one.
    for step in range(300):
        run.log({"x": float(step)})
    run.finish()
    live = LiveClient(server, "live")
    stream = live.subscribe()["events"].replace("events:", "live:") + ":long"
    old_cursor = "1-0"

    answer = live.subscribe({stream: old_cursor})
    live.close()

    assert answer["type"] == "resync"
    assert "no longer contains" in answer["reason"]


def closed_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Wait up to 10 s for the live sockets' close logs and return them."""
    deadline = time.monotonic() + 10
    while True:
        found = [
            record.getMessage()
            for record in caplog.records
            if record.name == "assay_server.live_socket" and " closed" in record.getMessage()
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_close_code_is_logged(
    server: RunningServer, project: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="assay_server.live_socket")
    live = LiveClient(server, project)
    live.subscribe()
    live.socket.close(code=4000, reason="page hidden")

    [message] = closed_logs(caplog)

    assert message.startswith("live connection ")
    assert message.endswith(" closed with code 4000")


def test_dropped_connection_is_logged(
    server: RunningServer, project: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="assay_server.live_socket")
    live = LiveClient(server, project)
    live.subscribe()
    # The TCP connection ends with no close frame, as when a laptop sleeps.
    live.socket.socket.shutdown(socket.SHUT_RDWR)
    live.socket.socket.close()

    [message] = closed_logs(caplog)

    assert message.endswith(
        " closed with no close code (1005): the connection dropped, the client sent none, "
        "or it missed the keepalive ping"
    )


def test_missing_credentials_are_rejected(server: RunningServer, project: str) -> None:
    with pytest.raises(InvalidStatus) as raised:
        LiveClient(server, project, Cookie="assay_session=forged")

    assert raised.value.response.status_code == 401


def test_unknown_project_is_rejected(server: RunningServer) -> None:
    with pytest.raises(InvalidStatus) as raised:
        LiveClient(server, "nowhere")

    assert raised.value.response.status_code == 404


def test_login_link_sets_session_cookie(server: RunningServer, project: str) -> None:
    with httpx.Client(base_url=server.url) as browser:
        response = sign_in_with_key(browser, server.api_key, "/projects/live")
        cookie = browser.cookies.get("assay_session")
        projects = browser.get("/api/v1/projects")
    live = LiveClient(server, project, Cookie=f"assay_session={cookie}")
    subscribed = live.subscribe()
    live.close()

    assert response.status_code == 303
    assert response.headers["location"] == "/projects/live"
    assert "httponly" in response.headers["set-cookie"].lower()
    assert "samesite=lax" in response.headers["set-cookie"].lower()
    assert projects.status_code == 200
    assert subscribed["type"] == "subscribed"


@pytest.mark.parametrize("target", ["https://elsewhere.example/", "//elsewhere.example/x"])
def test_login_never_redirects_away(server: RunningServer, target: str) -> None:
    with httpx.Client(base_url=server.url) as browser:
        response = sign_in_with_key(browser, server.api_key, target)

    assert response.headers["location"] == "/"


def test_login_with_wrong_token_fails(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url) as browser:
        response = browser.get("/login", params={"token": "wrong"})

    assert response.status_code == 401
    assert "assay_session" not in response.headers.get("set-cookie", "")


def test_logout_ends_session(server: RunningServer) -> None:
    # A browser sends its page's Origin with every POST.
    with httpx.Client(base_url=server.url, headers={"Origin": server.url}) as browser:
        sign_in_with_key(browser, server.api_key)
        browser.post("/logout")
        after = browser.get("/api/v1/whoami")

    assert after.status_code == 401


def test_cross_site_logout_rejected(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url) as browser:
        sign_in_with_key(browser, server.api_key)
        logout = browser.post("/logout", headers={"Origin": "http://evil.example"})
        after = browser.get("/api/v1/projects")

    assert logout.status_code == 403
    assert after.status_code == 200


async def frames_of(subscriber: Subscriber, count: int) -> list[bytes]:
    """Wait for ``count`` frames of ``subscriber``, each as its own encoded message."""
    frames: list[bytes] = []
    while len(frames) < count:
        chunks = await asyncio.wait_for(subscriber.next_chunks(), 5)
        assert chunks is not None
        frames += [protocol.pack(m) for c in chunks for m in chunk_messages(c)]
    return frames


def one_point_body() -> bytes:
    """A batch body of one point, as ingest publishes it."""
    rows = protocol.encode_rows([(0, 1.0, {"loss": 0.5})])
    return protocol.pack({key: rows[key] for key in ("steps", "times", "metrics")})


def state_event(index: int) -> dict[str, Any]:
    return {"type": "run.state", "run_id": str(index), "data": b"\x80", "time": 0.0}


async def test_full_queue_drops_slow_subscriber() -> None:
    bus = LocalBus("t:", 100, 100)
    hub = LiveHub(bus)
    stream = bus.event_stream(1)
    slow = Subscriber(3)
    fast = Subscriber(100)
    await hub.add(slow, stream, None)
    await hub.add(fast, stream, None)

    # Two reads at least: one read goes whole to a subscriber with nothing queued.
    for index in range(5):
        await bus.publish_event(1, state_event(index))
    first = await frames_of(fast, 5)
    for index in range(5, 10):
        await bus.publish_event(1, state_event(index))
    second = await frames_of(fast, 5)
    slow_chunks = await slow.next_chunks()
    await hub.close()

    assert [protocol.unpack(f)["run_id"] for f in first + second] == [str(i) for i in range(10)]
    assert slow_chunks is None  # the socket sends a resync instead
    assert slow.overflowed
    assert all(slow not in watchers for watchers in hub.topics.values())


async def test_queue_over_byte_limit_overflows() -> None:
    subscriber = Subscriber(100, max_bytes=1000)
    big = b"\x80" * 1500
    small = b"\x80" * 400

    big_accepted = subscriber.offer("s", "1-0", big)
    taken = await subscriber.next_chunks()
    smalls_accepted = [subscriber.offer("s", f"2-{i}", small) for i in range(2)]
    third_accepted = subscriber.offer("s", "2-2", small)
    after_overflow = await subscriber.next_chunks()

    # A frame larger than the limit still goes to a socket with nothing queued.
    assert big_accepted is True
    assert taken == [Chunk(1, big)]
    assert smalls_accepted == [True, True]
    assert third_accepted is False
    assert subscriber.overflowed
    assert subscriber.resync_reason == "the connection fell behind the live streams"
    assert after_overflow is None


async def test_queue_over_frame_limit_overflows() -> None:
    subscriber = Subscriber(3)
    frame = b"\x80"

    whole = subscriber.put(Chunk(5, frame * 5))
    delivered = await subscriber.next_chunks()
    first = subscriber.put(Chunk(2, frame * 2))
    second = subscriber.put(Chunk(2, frame * 2))

    # A chunk over the limit goes whole to a subscriber with nothing queued.
    assert whole is True
    assert delivered == [Chunk(5, frame * 5)]
    assert first is True
    assert second is False
    assert subscriber.overflowed
    assert await subscriber.next_chunks() is None


async def test_subscribers_of_one_read_share_its_bytes() -> None:
    bus = LocalBus("t:", 100, 100)
    hub = LiveHub(bus)
    events = bus.event_stream(1)
    run = bus.live_stream(1, "r")
    both = [Subscriber(), Subscriber()]
    only_events = Subscriber()
    for subscriber in both:
        await hub.add(subscriber, events, "0-0")
        await hub.add(subscriber, run, "0-0")
    await hub.add(only_events, events, "0-0")

    async with hub.lock:  # the reader waits, so that one read returns all three
        await bus.publish_event(1, state_event(0))
        await bus.publish_event(1, state_event(1))
        await bus.publish_batch(1, "r", {"seq": 0, "session": 1, "body": one_point_body()})
    chunks = [await asyncio.wait_for(s.next_chunks(), 5) for s in [*both, only_events]]
    await hub.close()

    first, second, third = chunks
    assert None not in chunks
    assert first[0].frame_count == 3
    assert first[0] is second[0]
    assert [m["stream"] for m in chunk_messages(first[0])] == [events, events, run]
    # The shared chunk's batch message is built once and sent to both as it is.
    assert batch_frame(first) is first[0].message
    assert batch_frame(first) == batch_frame([first[0]._replace(message=None)])
    assert protocol.unpack(batch_frame(first))["messages"] == chunk_messages(first[0])
    assert first[0].creates_runs is False
    assert third[0].frame_count == 2
    assert [m["run_id"] for m in chunk_messages(third[0])] == ["0", "1"]


async def test_shared_chunk_of_a_new_run_is_marked() -> None:
    bus = LocalBus("t:", 100, 100)
    hub = LiveHub(bus)
    subscriber = Subscriber()
    await hub.add(subscriber, bus.event_stream(1), "0-0")

    await bus.publish_event(1, {**state_event(0), "type": "run.created"})
    chunks = await asyncio.wait_for(subscriber.next_chunks(), 5)
    await hub.close()

    assert chunks is not None
    assert chunks[0].creates_runs is True
    assert [m["event"] for m in chunk_messages(chunks[0])] == ["run.created"]


async def test_cancelled_wait_leaves_the_queue_working() -> None:
    subscriber = Subscriber()
    waiting = asyncio.create_task(subscriber.next_chunks())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    subscriber.put(Chunk(1, b"\x80"))
    chunks = await asyncio.wait_for(subscriber.next_chunks(), 5)

    assert subscriber.waiter is None
    assert chunks == [Chunk(1, b"\x80")]
    assert subscriber.queued_frames == 0


async def test_reads_are_spaced_by_the_subscribers_reached() -> None:
    bus = LocalBus("t:", 100, 100)
    # One subscriber: the reads start 0.3 s apart, the most allowed.
    hub = LiveHub(bus, read_spacing=0.5, read_spacing_max=0.3)
    stream = bus.event_stream(1)
    subscriber = Subscriber()
    await hub.add(subscriber, stream, None)
    await bus.publish_event(1, state_event(0))
    first = await asyncio.wait_for(subscriber.next_chunks(), 5)
    first_at = time.monotonic()
    await bus.publish_event(1, state_event(1))
    await asyncio.sleep(0.05)
    await bus.publish_event(1, state_event(2))
    await asyncio.sleep(0.05)
    second = await asyncio.wait_for(subscriber.next_chunks(), 5)
    second_at = time.monotonic()
    await hub.close()

    assert first is not None and second is not None
    assert [chunk.frame_count for chunk in first] == [1]
    # Published during the pause after the first read, both come in the next read.
    assert [chunk.frame_count for chunk in second] == [2]
    assert 0.2 < second_at - first_at < 0.45


async def watched_events(
    count: int, dispatch_slice: int
) -> tuple[LocalBus, LiveHub, list[Subscriber]]:
    """Return a bus and a hub whose ``count`` subscribers all watch project 1's events."""
    bus = LocalBus("t:", 100, 100)
    hub = LiveHub(bus, dispatch_slice=dispatch_slice)
    subscribers = [Subscriber() for _ in range(count)]
    for subscriber in subscribers:
        await hub.add(subscriber, bus.event_stream(1), None)
    return bus, hub, subscribers


async def test_dispatch_yields_between_slices() -> None:
    bus, hub, subscribers = await watched_events(6, dispatch_slice=2)
    # The number of subscribers with a queued chunk, each time the loop runs the probe.
    seen: list[int] = []

    async def probe() -> None:
        while not seen or seen[-1] < len(subscribers):
            seen.append(sum(1 for s in subscribers if s.queued_frames))
            await asyncio.sleep(0)

    watcher = asyncio.create_task(probe())
    await bus.publish_event(1, state_event(0))
    await asyncio.wait_for(watcher, 5)
    await hub.close()

    # Other tasks ran while the read was queued, one slice at a time.
    assert seen[-1] == 6
    assert {1, 3, 5} <= set(seen)


async def test_subscriber_leaving_during_dispatch_gets_nothing() -> None:
    bus, hub, subscribers = await watched_events(4, dispatch_slice=1)
    left: list[Subscriber] = []

    async def leave_after_first_chunk() -> None:
        while not any(s.queued_frames for s in subscribers):
            await asyncio.sleep(0)
        # The others leave the hub as the subscriber of a closed socket does.
        for subscriber in subscribers:
            if not subscriber.queued_frames:
                hub.remove(subscriber)
                left.append(subscriber)

    leaver = asyncio.create_task(leave_after_first_chunk())
    await bus.publish_event(1, state_event(0))
    await asyncio.wait_for(leaver, 5)
    await asyncio.sleep(0.1)
    await hub.close()

    assert len(left) == 3
    assert [len(s.queue) for s in left] == [0, 0, 0]
    assert [len(s.queue) for s in subscribers if s not in left] == [1]


async def test_subscriber_gets_only_entries_after_its_cursor() -> None:
    bus = LocalBus("t:", 100, 100)
    hub = LiveHub(bus)
    stream = bus.event_stream(1)
    early = Subscriber()
    await hub.add(early, stream, None)
    for index in range(4):
        await bus.publish_event(1, state_event(index))
    # Added before the reader read the entries, with a cursor in their middle:
    # its backlog is the two newer ones.
    late = Subscriber()
    ids = [entry[1] for entry in await bus.read_many({stream: "0-0"}, 0)]
    await hub.add(late, stream, ids[1])
    ahead = dict(late.ahead)
    early_frames = await frames_of(early, 4)
    late_frames = await frames_of(late, 2)
    await asyncio.sleep(0.3)
    await hub.close()

    assert [protocol.unpack(f)["run_id"] for f in early_frames] == ["0", "1", "2", "3"]
    assert [protocol.unpack(f)["run_id"] for f in late_frames] == ["2", "3"]
    assert ahead == {stream: id_key(ids[3])}
    assert not late.queue
    assert late.ahead == {}


class CountingBus(LocalBus):
    """The in-process bus, counting the backlog reads that subscribers make."""

    def __init__(self) -> None:
        super().__init__("t:", 1000, 1000)
        self.backlog_reads = 0

    async def read_many(self, cursors: dict[str, str], block_ms: int) -> list[Any]:
        if block_ms == 0:
            self.backlog_reads += 1
        return await super().read_many(cursors, block_ms)


async def hub_after_events(count: int) -> tuple[CountingBus, LiveHub, str, Subscriber]:
    """Start a hub whose subscriber received ``count`` events of project 1's stream."""
    bus = CountingBus()
    hub = LiveHub(bus)
    stream = bus.event_stream(1)
    first = Subscriber()
    await hub.add(first, stream, "0-0")
    for index in range(count):
        await bus.publish_event(1, state_event(index))
    await frames_of(first, count)
    return bus, hub, stream, first


async def test_followers_of_a_read_stream_start_from_memory() -> None:
    bus, hub, stream, first = await hub_after_events(3)
    ids = [entry[1] for entry in await bus.read_many({stream: "0-0"}, 0)]
    reads_before = bus.backlog_reads

    # From the start, from the middle, and from now: all from the hub's tail.
    whole, middle, now = Subscriber(), Subscriber(), Subscriber()
    starts = [
        await hub.add(whole, stream, "0-0"),
        await hub.add(middle, stream, ids[0]),
        await hub.add(now, stream, None),
    ]
    reads_after = bus.backlog_reads
    caught_up = [await frames_of(s, n) for s, n in ((whole, 3), (middle, 2))]
    await bus.publish_event(1, state_event(3))
    latest = [await frames_of(s, 1) for s in (first, whole, middle, now)]
    await asyncio.sleep(0.3)
    await hub.close()

    assert reads_after == reads_before
    assert starts == ["0-0", ids[0], ids[2]]
    assert [[protocol.unpack(f)["run_id"] for f in frames] for frames in caught_up] == [
        ["0", "1", "2"],
        ["1", "2"],
    ]
    assert [protocol.unpack(frames[0])["run_id"] for frames in latest] == ["3"] * 4
    assert all(not s.queue for s in (first, whole, middle, now))


async def test_new_runs_followed_together() -> None:
    bus = CountingBus()
    hub = LiveHub(bus)
    runs = [bus.live_stream(1, name) for name in ("a", "b")]
    for name in ("a", "b"):
        await bus.publish_batch(1, name, {"seq": 0, "session": 1, "body": one_point_body()})
    first, second = Subscriber(), Subscriber()

    await hub.add_many(first, runs, "0-0", announce=True)
    reads_for_first = bus.backlog_reads
    await hub.add_many(second, runs, "0-0", announce=True)
    messages = [
        [m for c in await asyncio.wait_for(s.next_chunks(), 5) or [] for m in chunk_messages(c)]
        for s in (first, second)
    ]
    await hub.close()

    # The second follower started from the hub's tails, without reading the bus.
    assert reads_for_first == 2
    assert bus.backlog_reads == 2
    for received in messages:
        assert [(m["type"], m["stream"]) for m in received] == [
            ("watch", runs[0]),
            ("points", runs[0]),
            ("watch", runs[1]),
            ("points", runs[1]),
        ]


async def test_cursor_before_the_tail_reads_the_bus() -> None:
    total = TAIL_LENGTH + 5
    bus, hub, stream, _ = await hub_after_events(total)
    reads_before = bus.backlog_reads

    late = Subscriber(limit=10 * total)
    await hub.add(late, stream, "0-0")
    frames = await frames_of(late, total)
    await hub.close()

    # The tail kept only the newest entries, so the start came from the bus.
    assert bus.backlog_reads == reads_before + 1
    assert [protocol.unpack(f)["run_id"] for f in frames] == [str(i) for i in range(total)]


class LeftWebSocket:
    """A Starlette websocket whose client has left: every send raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def send_bytes(self, data: bytes) -> None:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(WebSocketDisconnect(1006), id="disconnect"),
        pytest.param(RuntimeError("Unexpected ASGI message 'websocket.send'"), id="closed"),
    ],
)
async def test_sender_ends_quietly_when_client_left(error: Exception) -> None:
    hub = LiveHub(LocalBus("t:", 100, 100))
    connection = LiveConnection(LeftWebSocket(error), hub, 1)  # type: ignore[arg-type]
    connection.subscriber.offer("s", "1-0", protocol.pack({"type": "event"}))

    # It returns instead of raising, so serve() awaiting it cannot fail.
    await asyncio.wait_for(connection._send_forever(), 5)


async def test_queued_frames_leave_in_batches() -> None:
    subscriber = Subscriber(100)
    frames = [protocol.pack({"type": "event", "stream": "s", "id": f"1-{i}"}) for i in range(6)]
    for index, frame in enumerate(frames):
        subscriber.offer("s", f"1-{index}", frame)

    first = await subscriber.next_chunks(max_bytes=len(frames[0]) * 4)
    rest = await subscriber.next_chunks()

    assert first == [Chunk(1, f) for f in frames[:4]]
    assert rest == [Chunk(1, f) for f in frames[4:]]
    joined = batch_frame([Chunk(2, frames[0] + frames[1]), Chunk(4, b"".join(frames[2:]))])
    assert live_messages(joined) == [protocol.unpack(f) for f in frames]
    assert batch_frame([Chunk(1, frames[0])]) == frames[0]


async def test_trimmed_stream_raises_resync() -> None:
    bus = LocalBus("t:", 2, 2)
    for index in range(5):
        await bus.publish_event(1, {"type": "x", "run_id": "r", "data": b"\x80", "time": index})
    hub = LiveHub(bus)

    with pytest.raises(ResyncNeeded):
        await hub.add(Subscriber(), bus.event_stream(1), "0-0")


def test_reconnect_resumes_stream_without_entries(
    server: RunningServer, project: str, tmp_path: Path
) -> None:
    quiet = start_run(server, tmp_path / "quiet", id="quiet")
    first = LiveClient(server, project)
    subscribed = first.subscribe()
    late = start_run(server, tmp_path / "late", id="late")
    announced = first.next(lambda m: m["type"] == "watch")
    cursors = {**subscribed["cursors"], **first.cursors}
    first.close()
    for run in (quiet, late):
        run.log({"x": 1.0}, step=0)
        run.finish()
    second = LiveClient(server, project)

    second.subscribe(cursors)
    batches = [second.next(is_points) for _ in range(2)]
    second.close()

    assert announced["stream"].endswith(":late")
    assert announced["id"] == "0-0"
    assert sorted(batch["run_id"] for batch in batches) == ["late", "quiet"]
    assert all(batch["metrics"]["x"]["steps"] == [0] for batch in batches)


async def test_cursor_from_lost_stream_raises_resync() -> None:
    bus = LocalBus("t:", 100, 100)
    await bus.publish_event(1, {"type": "x", "run_id": "r", "data": b"\x80", "time": 0.0})
    hub = LiveHub(bus)

    with pytest.raises(ResyncNeeded):
        await hub.add(Subscriber(), bus.live_stream(1, "gone"), "1-0")
    with pytest.raises(ResyncNeeded):
        await hub.add(Subscriber(), bus.event_stream(1), "1-0")


def test_text_frame_gets_error(client: LiveClient) -> None:
    client.socket.send("subscribe")
    error = client.next(lambda m: m["type"] == "error")
    subscribed = client.subscribe()

    assert error["code"] == "malformed"
    assert "binary msgpack" in error["message"]
    assert subscribed["type"] == "subscribed"


@pytest.mark.parametrize("cursor", ["x", "1-x", "99999999999999999999-0", "-1-1"])
def test_invalid_cursor_gets_error(client: LiveClient, cursor: str) -> None:
    message = {"type": "subscribe", "cursors": {"assay:events:1": cursor}}
    client.socket.send(protocol.pack(message))
    error = client.next(lambda m: m["type"] == "error")
    subscribed = client.subscribe()

    assert error["code"] == "invalid_subscribe"
    assert repr(cursor) in error["message"]
    assert subscribed["type"] == "subscribed"
