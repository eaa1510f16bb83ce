"""Fuzz the ingest socket, the filter parser and the live socket with Hypothesis.

Each target checks that the server rejects bad input with an error message (never a
crash, a 500 or a close code 1011) and that a well-behaved client still works
afterwards. ``ASSAY_FUZZ_EXAMPLES`` sets the inputs per target (default 200);
run with ``-s`` to see how many each target tried.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

import assay
from assay import protocol
from assay_server import filters
from conftest import RunningServer
from conftest import live_messages as unpack_live
from faults.fleet import METRIC, expected_value, same_value

EXAMPLES = int(os.environ.get("ASSAY_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# msgpack values of every type, nested, including sizes beyond what the server accepts.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=300),
    st.binary(max_size=300),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
huge = st.one_of(
    st.just("x" * 100_000),
    st.just(b"\x00" * 1_000_000),
    st.just(list(range(50_000))),
    st.just({f"k{i}": i for i in range(20_000)}),
    st.just(2**64 - 1),
    st.just(-(2**63)),
    st.just(1e308),
)
batch_fields = ("seq", "steps", "times", "metrics", "config", "summary")


def valid_batch(seq: int) -> bytes:
    rows = [(step, 1.0 + step, {METRIC: expected_value(0, step)}) for step in range(20)]
    return protocol.pack({"type": "batch", "seq": seq, **protocol.encode_rows(rows)})


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    frame = bytearray(valid_batch(draw(st.integers(0, 10))))
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(frame) - 1))
        action = draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip":
            frame[position] ^= draw(st.integers(1, 255))
        elif action == "insert":
            frame[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif len(frame) > 1:
            del frame[position]
    return bytes(frame)


@st.composite
def wrong_messages(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["batch", "heartbeat", "finish", "hello", "x", ""]))
    message: dict[str, Any] = {"type": kind}
    if kind == "batch":
        base = msgpack.unpackb(valid_batch(0), raw=False)
        for field in draw(st.lists(st.sampled_from(batch_fields), max_size=4)):
            base[field] = draw(st.one_of(values, huge))
        message = base
    elif kind == "finish":
        message["exit_code"] = draw(st.one_of(values, huge))
        message["finished_at"] = draw(values)
    else:
        message.update(draw(st.dictionaries(st.text(max_size=10), values, max_size=4)))
    return protocol.pack(message)


ingest_frames = st.one_of(
    st.binary(max_size=2000),
    mutated_frames(),
    wrong_messages(),
    st.builds(protocol.pack, st.dictionaries(st.text(max_size=8), values, max_size=6)),
)

PROBE = protocol.pack({"type": "probe"})


class IngestSocket:
    """An ingest connection that reopens after a fatal error."""

    def __init__(self, server: RunningServer, run_id: str) -> None:
        self.url = server.url.replace("http://", "ws://") + protocol.INGEST_PATH
        self.api_key = server.api_key
        self.run_id = run_id
        self.reopened = 0
        self.socket = self._open()

    def _open(self) -> ClientConnection:
        socket = connect(
            self.url,
            additional_headers={"Authorization": f"Bearer {self.api_key}"},
            max_size=None,
            legacy=True,
        )
        hello = {
            "type": "hello",
            "protocol": protocol.PROTOCOL_VERSION,
            "project": "fuzz",
            "session": 7,
            "resume": "allow",
            "run": {"id": self.run_id},
        }
        socket.send(protocol.pack(hello))
        welcome = protocol.unpack(socket.recv(timeout=10))  # type: ignore[arg-type]
        assert welcome["type"] == "welcome", welcome
        return socket

    def exchange(self, frame: bytes, text: bool) -> list[dict[str, Any]]:
        """Send ``frame``, then a probe; return the messages received before the probe's error."""
        answers: list[dict[str, Any]] = []
        try:
            self.socket.send(frame.decode("latin-1") if text else frame)
            self.socket.send(PROBE)
            while True:
                answer = protocol.unpack(self.socket.recv(timeout=20))  # type: ignore[arg-type]
                if answer.get("code") == "unknown_type" and "'probe'" in answer["message"]:
                    return answers
                answers.append(answer)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, f"closed without a close frame after {answers}"
            assert closed.rcvd.code == 1008, f"close code {closed.rcvd.code} after {answers}"
            assert answers and answers[-1]["fatal"] is True
            self.socket = self._open()
            self.reopened += 1
            return answers

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def ingest(sqlite_server: RunningServer) -> Iterator[IngestSocket]:
    socket = IngestSocket(sqlite_server, "fuzzed")
    yield socket
    socket.close()


def check_well_behaved_client(server: RunningServer, tmp_path: Path) -> None:
    """A normal SDK run and a live socket work after the fuzzing."""
    run = assay.init("fuzz", server=server.url, api_key=server.api_key, spool_dir=tmp_path)
    for step in range(50):
        run.log({METRIC: expected_value(0, step)}, step=step)
    run.finish(timeout=30)
    with assay.Api(server=server.url, api_key=server.api_key) as api:
        rows = api.run("fuzz", run.id).history(keys=[METRIC])
    url = server.url.replace("http://", "ws://") + "/api/v1/projects/fuzz/live"
    with connect(url, additional_headers={"Authorization": f"Bearer {server.api_key}"}) as live:
        live.send(protocol.pack({"type": "subscribe", "cursors": {}}))
        subscribed = protocol.unpack(live.recv(timeout=10))  # type: ignore[arg-type]

    assert run.state == "finished"
    assert [row["step"] for row in rows] == list(range(50))
    assert all(same_value(row[METRIC], expected_value(0, row["step"])) for row in rows)
    assert subscribed["type"] == "subscribed"


def test_fuzz_ingest_frames(
    sqlite_server: RunningServer, ingest: IngestSocket, tmp_path: Path
) -> None:
    tried = {"frames": 0}

    @FUZZ
    @given(frame=ingest_frames, text=st.booleans())
    def exchange(frame: bytes, text: bool) -> None:
        tried["frames"] += 1
        for answer in ingest.exchange(frame, text):
            assert answer["type"] in ("ack", "error", "finished"), answer
            if answer["type"] == "error":
                assert answer["code"] != "unavailable", answer
                assert answer["message"], answer

    exchange()
    print(f"\nfuzz ingest: {tried['frames']} frames, {ingest.reopened} fatal errors")
    check_well_behaved_client(sqlite_server, tmp_path)

    assert tried["frames"] >= min(EXAMPLES, 100)


filter_words = st.sampled_from(
    [
        "config.lr",
        "summary.loss",
        "summary.loss.max",
        "name",
        "state",
        "tags",
        "created",
        "and",
        "or",
        "not",
        "in",
        "is",
        "nan",
        "null",
        "finite",
        "contains",
        "matches",
        "(",
        ")",
        "[",
        "]",
        ",",
        "=",
        "!=",
        "<",
        ">=",
        "'x'",
        '"y"',
        "1e308",
        "-inf",
        "2026-12-04",
        "/a+/",
        "\\",
        "'",
        "\x00",
        "é",
        'config."a.b"',
        "9" * 400,
    ]
)
filter_texts = st.one_of(
    st.text(max_size=200),
    st.lists(filter_words, max_size=30).map(" ".join),
    st.just("(" * 5000 + "name = 'a'" + ")" * 5000),
    st.just(" or ".join(["name = 'a'"] * 200)),
)


def test_fuzz_filter_parser_and_http(sqlite_server: RunningServer, tmp_path: Path) -> None:
    tried = {"texts": 0}
    statuses: dict[int, int] = {}
    client = sqlite_server.client()
    assay.init("fuzz", server=sqlite_server.url, api_key=sqlite_server.api_key).finish()

    @FUZZ
    @given(text=filter_texts)
    def query(text: str) -> None:
        tried["texts"] += 1
        try:
            filters.parse_filter(text)
        except filters.FilterError as exc:
            assert str(exc)
        response = client.get("/api/v1/projects/fuzz/runs", params={"filter": text})
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code in (200, 400), (text, response.text)
        if response.status_code == 400:
            assert response.json()["error"]["message"]

    query()
    client.close()
    print(f"\nfuzz filters: {tried['texts']} texts, statuses {statuses}")
    check_well_behaved_client(sqlite_server, tmp_path)

    assert tried["texts"] >= min(EXAMPLES, 100)


live_messages = st.one_of(
    st.binary(max_size=500),
    st.builds(protocol.pack, st.dictionaries(st.text(max_size=8), values, max_size=4)),
    st.builds(
        lambda cursors: protocol.pack({"type": "subscribe", "cursors": cursors}),
        st.one_of(
            values,
            st.dictionaries(
                st.one_of(st.text(max_size=40), st.just("assay:events:1")),
                st.one_of(
                    st.text(max_size=30),
                    st.just("0-0"),
                    st.just("99999999999999999999-1"),
                    st.just("-1--1"),
                    st.just("1-x"),
                ),
                max_size=4,
            ),
        ),
    ),
)


def test_fuzz_live_socket_messages(sqlite_server: RunningServer, tmp_path: Path) -> None:
    tried = {"messages": 0}
    assay.init("fuzz", server=sqlite_server.url, api_key=sqlite_server.api_key).finish()
    url = sqlite_server.url.replace("http://", "ws://") + "/api/v1/projects/fuzz/live"
    headers = {"Authorization": f"Bearer {sqlite_server.api_key}"}
    holder = {"socket": connect(url, additional_headers=headers, legacy=True)}
    closed_codes: list[int] = []

    @FUZZ
    @given(frame=live_messages, text=st.booleans())
    def exchange(frame: bytes, text: bool) -> None:
        tried["messages"] += 1
        socket = holder["socket"]
        try:
            socket.send(frame.decode("latin-1") if text else frame)
            socket.send(protocol.pack({"type": "subscribe", "cursors": {}}))
            while True:
                for answer in unpack_live(socket.recv(timeout=20)):
                    # Run events of the project are normal traffic on this socket.
                    expected = ("error", "subscribed", "resync", "watch", "event")
                    assert answer["type"] in expected, answer
                    if answer["type"] == "subscribed":
                        return
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else -1
            closed_codes.append(code)
            holder["socket"] = connect(url, additional_headers=headers, legacy=True)
            raise AssertionError(f"live socket closed with code {code}") from None

    exchange()
    holder["socket"].close()
    print(f"\nfuzz live: {tried['messages']} messages, closes {closed_codes}")
    check_well_behaved_client(sqlite_server, tmp_path)

    assert tried["messages"] >= min(EXAMPLES, 100)
