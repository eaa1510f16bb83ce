"""Bad input on the ingest websocket and in ``Run.log``.

Every rejection is checked three ways: the error names the offending value and
what is allowed, no part of the rejected input is stored (read back through
``assay.Api``), and the server carries on. A second websocket, attached before
the bad input, must still get its batch acknowledged, and a new connection
must work. Raw frames come from ``assay.protocol``, so the server's checks run
without the SDK's checks in front of them.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

import assay
from assay import protocol
from assay._cli import main as assay_cli
from conftest import RunningServer

PROJECT = "errors"
BYSTANDER = "bystander"
REJECTED = "rejected"
#: Seconds to wait for any one message from the server.
TIMEOUT = 10.0
CLOSE_PROTOCOL_ERROR = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
TIMESTAMP = 1_700_000_000.0
#: A masked, empty client frame of opcode 3, which the websocket protocol reserves.
RESERVED_OPCODE_FRAME = bytes([0x83, 0x80, 0, 0, 0, 0])


def ingest_url(server: RunningServer) -> str:
    return "ws" + server.url.removeprefix("http") + protocol.INGEST_PATH


def connect_raw(server: RunningServer, headers: dict[str, str] | None = None) -> ClientConnection:
    """Open an ingest websocket that sends the admin key unless ``headers`` is given."""
    if headers is None:
        headers = {"Authorization": f"Bearer {server.api_key}"}
    # Like the SDK, send frames uncompressed, so a frame's size on the wire is its size.
    return connect(ingest_url(server), additional_headers=headers, compression=None, legacy=True)


def build_hello(run_id: str, session: int = 1, **changes: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "hello",
        "protocol": protocol.PROTOCOL_VERSION,
        "project": PROJECT,
        "session": session,
        "resume": "never",
        "run": {"id": run_id},
    }
    message.update(changes)
    return message


def receive(connection: ClientConnection) -> dict[str, Any]:
    frame = connection.recv(timeout=TIMEOUT)
    assert isinstance(frame, bytes), f"the server sent a text frame: {frame!r}"
    return protocol.unpack(frame)


def wait_for_close(connection: ClientConnection) -> int | None:
    """Wait until the server closes ``connection`` and return the close code it sent."""
    with pytest.raises(ConnectionClosed):
        message = receive(connection)
        pytest.fail(f"expected the server to close the connection, got {message}")
    return connection.close_code


def receive_fatal_error(connection: ClientConnection) -> tuple[dict[str, Any], int | None]:
    """Receive the error that ends ``connection``, wait for the close, and return both."""
    error = receive(connection)
    # Checked first, so that an unexpected welcome fails at once instead of after a timeout.
    assert error["type"] == "error", error
    return error, wait_for_close(connection)


@contextmanager
def attached(server: RunningServer, run_id: str, **changes: Any) -> Iterator[ClientConnection]:
    """Yield a websocket whose hello for ``run_id`` was welcomed."""
    with connect_raw(server) as connection:
        connection.send(protocol.pack(build_hello(run_id, **changes)))
        welcome = receive(connection)
        assert welcome["type"] == "welcome", welcome
        yield connection


def pack_column(
    values: list[float], kinds: list[int] | None = None, rows: list[int] | None = None
) -> dict[str, bytes | None]:
    """Build one metric of a batch body by hand, so that a test can make it malformed."""
    return {
        "values": struct.pack(f"<{len(values)}d", *values),
        "kinds": None if kinds is None else bytes(kinds),
        "rows": None if rows is None else struct.pack(f"<{len(rows)}I", *rows),
    }


def build_batch(seq: object, rows: list[tuple[int, float, dict[str, object]]]) -> dict[str, Any]:
    return {"type": "batch", "seq": seq, **protocol.encode_rows(rows)}


def pack_good_batch(seq: int = 0, step: int = 5, value: float = 2.0) -> bytes:
    return protocol.pack(build_batch(seq, [(step, TIMESTAMP, {"ok": value})]))


def build_rejectable_batch() -> dict[str, Any]:
    """Build a valid batch with a metric, a config and a summary, for a test to break."""
    return {
        **build_batch(0, [(0, TIMESTAMP, {"ok": 1.0})]),
        "config": {"lr": 0.5},
        "summary": {"best": 1.0},
    }


def assert_batch_acknowledged(connection: ClientConnection, seq: int = 0) -> None:
    connection.send(pack_good_batch(seq))
    assert receive(connection) == {"type": "ack", "seq": seq}


def assert_server_carries_on(server: RunningServer, bystander: ClientConnection) -> None:
    """Check that the connection opened before the bad input, and a new one, still work."""
    assert_batch_acknowledged(bystander)
    with attached(server, "fresh") as fresh:
        assert_batch_acknowledged(fresh)


def assert_nothing_stored(reader: assay.Api, run_id: str) -> None:
    run = reader.run(PROJECT, run_id)
    assert run.history() == []
    assert run.metrics() == {}
    assert run.config == {}
    assert run.summary == {}
    assert run.data["next_step"] == 0


def assert_no_run_created(reader: assay.Api) -> None:
    """Check that only the bystander's project and run exist."""
    assert [project["name"] for project in reader.projects()] == [PROJECT]
    assert [run.id for run in reader.runs(PROJECT)] == [BYSTANDER]


def backend(server: RunningServer) -> str:
    return "sqlite" if server.settings.database_url is None else "postgres"


@pytest.fixture
def reader(server: RunningServer) -> Iterator[assay.Api]:
    with assay.Api(server=server.url, api_key=server.api_key) as client:
        yield client


@pytest.fixture
def sqlite_reader(sqlite_server: RunningServer) -> Iterator[assay.Api]:
    with assay.Api(server=sqlite_server.url, api_key=sqlite_server.api_key) as client:
        yield client


@pytest.fixture
def bystander(server: RunningServer) -> Iterator[ClientConnection]:
    """A run attached before the bad input arrives."""
    with attached(server, BYSTANDER) as connection:
        yield connection


def start_run(server: RunningServer, tmp_path: Path, **kwargs: Any) -> assay.Run:
    return assay.init(
        PROJECT, server=server.url, api_key=server.api_key, spool_dir=tmp_path / "spool", **kwargs
    )


# Malformed frames after the hello get a non-fatal error.


@pytest.mark.parametrize(
    ("frame", "code", "fragment"),
    [
        pytest.param(b"\xc1", "malformed", "not valid msgpack", id="not-msgpack"),
        pytest.param(b"", "malformed", "not valid msgpack", id="empty"),
        pytest.param('{"type": "batch"}', "malformed", "binary msgpack, not text", id="text"),
        pytest.param(
            msgpack.packb([1, 2]), "malformed", "must be a msgpack map, got list", id="list"
        ),
        pytest.param(msgpack.packb({"seq": 0}), "malformed", "'type', got None", id="no-type"),
        pytest.param(
            msgpack.packb({"type": 5}), "malformed", "'type', got 5", id="type-not-string"
        ),
        pytest.param(msgpack.packb({1: "batch"}), "malformed", "map key", id="int-map-key"),
        pytest.param(
            protocol.pack({"type": "bogus"}),
            "unknown_type",
            "'bogus'; expected batch, heartbeat or finish",
            id="unknown-type",
        ),
    ],
)
def test_malformed_frame_gets_nonfatal_error(
    server: RunningServer,
    reader: assay.Api,
    bystander: ClientConnection,
    frame: bytes | str,
    code: str,
    fragment: str,
) -> None:
    with attached(server, REJECTED) as connection:
        connection.send(frame)
        error = receive(connection)

        assert error["type"] == "error"
        assert error["code"] == code
        assert fragment in error["message"]
        assert error["fatal"] is False
        assert_batch_acknowledged(connection)

    assert reader.run(PROJECT, REJECTED).history() == [
        {"step": 5, "_timestamp": TIMESTAMP, "ok": 2.0}
    ]
    assert_server_carries_on(server, bystander)


# Message size.


def pack_padded_batch(size: int) -> bytes:
    """Build a valid batch frame of exactly ``size`` bytes. The server ignores the padding."""
    message = {**build_batch(0, [(0, TIMESTAMP, {"ok": 1.0})]), "padding": b""}
    # A bin 32 header takes 5 bytes where the empty bin 8 took 2.
    padding = size - len(protocol.pack(message)) - 3
    frame = protocol.pack({**message, "padding": bytes(padding)})
    assert len(frame) == size
    return frame


def test_oversized_frame_closes_with_1009(
    server: RunningServer, reader: assay.Api, bystander: ClientConnection
) -> None:
    # Only the header of a masked binary frame goes out, because the server rejects the
    # frame from its length field. A client still writing the payload can see 1006
    # instead, because uvicorn 0.55 closes the socket without reading the rest.
    header = struct.pack("!BBQ", 0x82, 0x80 | 127, protocol.MAX_MESSAGE_BYTES + 1)
    mask = bytes(4)

    with attached(server, REJECTED) as connection:
        connection.socket.sendall(header + mask)
        close_code = wait_for_close(connection)

    assert close_code == CLOSE_MESSAGE_TOO_BIG
    assert_nothing_stored(reader, REJECTED)
    assert_server_carries_on(server, bystander)


def test_oversized_message_stores_nothing(
    server: RunningServer, reader: assay.Api, bystander: ClientConnection
) -> None:
    with attached(server, REJECTED) as connection:
        try:
            connection.send(pack_padded_batch(protocol.MAX_MESSAGE_BYTES + 1))
        except ConnectionClosed:
            pass  # The server may close before the client has written the whole frame.
        # NOTE: the close code is 1009, or 1006 when the client was still writing.
        close_code = wait_for_close(connection)

    assert close_code in (1006, CLOSE_MESSAGE_TOO_BIG)
    assert_nothing_stored(reader, REJECTED)
    assert_server_carries_on(server, bystander)


def test_ack_to_server_closed_socket(
    sqlite_server: RunningServer, sqlite_reader: assay.Api, caplog: pytest.LogCaptureFixture
) -> None:
    # The server closes a socket whose keepalive ping timed out, or whose
    # frames break the websocket protocol, even while it writes a batch read
    # before. That batch's ack then meets a closed socket. Here the write
    # waits for a lock that the test holds until the close went out.
    caplog.set_level(logging.INFO)
    database = sqlite3.connect(sqlite_server.settings.data_dir / "assay.db", isolation_level=None)
    with attached(sqlite_server, "leaver") as connection:
        database.execute("BEGIN EXCLUSIVE")
        try:
            connection.send(pack_good_batch(0, step=3, value=1.5))
            time.sleep(0.3)
            connection.socket.sendall(RESERVED_OPCODE_FRAME)
            wait_for_close(connection)
        finally:
            database.execute("COMMIT")
            database.close()

    deadline = time.monotonic() + TIMEOUT
    while not any("errors/leaver closed" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the connection's handler never ended"
        time.sleep(0.01)
    # The batch was stored, and the handler ended without an error.
    history = sqlite_reader.run(PROJECT, "leaver").history()
    assert history == [{"step": 3, "_timestamp": TIMESTAMP, "ok": 1.5}]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    with attached(sqlite_server, "fresh") as fresh:
        assert_batch_acknowledged(fresh)


def test_message_at_size_limit_is_stored(server: RunningServer, reader: assay.Api) -> None:
    with attached(server, "largest") as connection:
        connection.send(pack_padded_batch(protocol.MAX_MESSAGE_BYTES))

        assert receive(connection) == {"type": "ack", "seq": 0}

    assert reader.run(PROJECT, "largest").history() == [
        {"step": 0, "_timestamp": TIMESTAMP, "ok": 1.0}
    ]


# The hello.


@pytest.mark.parametrize(
    ("frame", "code", "fragment"),
    [
        pytest.param(
            pack_good_batch(), "expected_hello", "must be 'hello', got 'batch'", id="batch"
        ),
        pytest.param(
            protocol.pack({"type": "heartbeat"}),
            "expected_hello",
            "must be 'hello', got 'heartbeat'",
            id="heartbeat",
        ),
        pytest.param("hello", "malformed", "binary msgpack, not text", id="text"),
        pytest.param(b"\xc1", "malformed", "not valid msgpack", id="not-msgpack"),
        pytest.param(msgpack.packb(["hello"]), "malformed", "msgpack map, got list", id="list"),
    ],
)
def test_first_message_not_hello_is_fatal(
    server: RunningServer,
    reader: assay.Api,
    bystander: ClientConnection,
    frame: bytes | str,
    code: str,
    fragment: str,
) -> None:
    with connect_raw(server) as connection:
        connection.send(frame)
        error, close_code = receive_fatal_error(connection)

    assert error["code"] == code
    assert fragment in error["message"]
    assert error["fatal"] is True
    assert close_code == CLOSE_PROTOCOL_ERROR
    assert_no_run_created(reader)
    assert_server_carries_on(server, bystander)


LONG_NAME = "a" * 200


@pytest.mark.parametrize(
    ("changes", "run_changes", "code", "fragments"),
    [
        pytest.param(
            {"protocol": 2}, {}, "unsupported_protocol", ["speaks protocol 1", "sent 2"], id="v2"
        ),
        pytest.param(
            {"protocol": None}, {}, "unsupported_protocol", ["sent None"], id="no-version"
        ),
        pytest.param(
            {"project": ""},
            {},
            "invalid_project",
            ["project name ''", "1 to 128"],
            id="empty-project",
        ),
        pytest.param(
            {"project": LONG_NAME},
            {},
            "invalid_project",
            [repr(LONG_NAME), "1 to 128"],
            id="long-project",
        ),
        pytest.param(
            {"project": "a/b"}, {}, "invalid_project", ["'a/b'", "1 to 128"], id="slash-project"
        ),
        pytest.param(
            {"project": 7}, {}, "invalid_project", ["project name 7", "letters"], id="int-project"
        ),
        pytest.param({}, {"id": ""}, "invalid_run_id", ["run id ''", "1 to 64"], id="empty-id"),
        pytest.param(
            {}, {"id": "r" * 65}, "invalid_run_id", [repr("r" * 65), "1 to 64"], id="long-id"
        ),
        pytest.param({}, {"id": "a/b"}, "invalid_run_id", ["'a/b'", "1 to 64"], id="slash-id"),
        pytest.param({}, {"id": 7}, "invalid_run_id", ["run id 7", "1 to 64"], id="int-id"),
        pytest.param(
            {"resume": "maybe"},
            {},
            "invalid_hello",
            ["'resume'", "never, allow, must", "'maybe'"],
            id="resume-maybe",
        ),
        pytest.param(
            {"resume": True}, {}, "invalid_hello", ["'resume'", "got True"], id="resume-bool"
        ),
        pytest.param(
            {"session": -1},
            {},
            "invalid_hello",
            ["'session'", "[0, 2**63)", "-1"],
            id="session-neg",
        ),
        pytest.param(
            {"session": 2**63},
            {},
            "invalid_hello",
            ["'session'", "[0, 2**63)", str(2**63)],
            id="session-2**63",
        ),
        pytest.param(
            {"session": "1"}, {}, "invalid_hello", ["'session'", "got '1'"], id="session-str"
        ),
        pytest.param(
            {"session": True}, {}, "invalid_hello", ["'session'", "got True"], id="session-bool"
        ),
        pytest.param(
            {"session": None}, {}, "invalid_hello", ["'session'", "got None"], id="no-session"
        ),
        pytest.param(
            {}, {"config": [1]}, "invalid_hello", ["config", "map", "[1]"], id="config-list"
        ),
        pytest.param(
            {},
            {"created_at": -1e18},
            "invalid_hello",
            ["created_at", "from 0 to a day ahead of now", "-1e+18"],
            id="created-at-negative",
        ),
        pytest.param(
            {},
            {"config": "lr=0.1"},
            "invalid_hello",
            ["config", "map", "'lr=0.1'"],
            id="config-str",
        ),
        pytest.param(
            {},
            {"config": []},
            "invalid_hello",
            ["config", "map", "[]"],
            id="config-empty-list",
        ),
        pytest.param(
            {},
            {"config": {"$float": "NaN"}},
            "invalid_value",
            ["config", "'$float'"],
            id="config-float-tag",
        ),
        pytest.param(
            {}, {"tags": [1]}, "invalid_hello", ["tag 1", "strings of 1 to 128"], id="int-tag"
        ),
        pytest.param(
            {}, {"tags": [""]}, "invalid_hello", ["tag ''", "strings of 1 to 128"], id="empty-tag"
        ),
        pytest.param(
            {},
            {"tags": "abc"},
            "invalid_hello",
            ["tags", "list", "'abc'"],
            id="tags-str",
        ),
        pytest.param(
            {"run": "abc"},
            {},
            "invalid_hello",
            ["'run'", "map", "'abc'"],
            id="run-str",
        ),
    ],
)
def test_invalid_hello_is_fatal(
    server: RunningServer,
    reader: assay.Api,
    bystander: ClientConnection,
    changes: dict[str, Any],
    run_changes: dict[str, Any],
    code: str,
    fragments: list[str],
) -> None:
    hello = build_hello(REJECTED, **changes)
    if run_changes:
        hello["run"] = {**hello["run"], **run_changes}

    with connect_raw(server) as connection:
        connection.send(protocol.pack(hello))
        error, close_code = receive_fatal_error(connection)

    assert error["code"] == code
    for fragment in fragments:
        assert fragment in error["message"]
    assert error["fatal"] is True
    assert close_code == CLOSE_PROTOCOL_ERROR
    assert_no_run_created(reader)
    assert_server_carries_on(server, bystander)


# Unknown and existing runs.


def test_resume_must_of_unknown_run_is_fatal(
    server: RunningServer, reader: assay.Api, bystander: ClientConnection
) -> None:
    hello = build_hello("ghost", resume="must", project="ghost-project")

    with connect_raw(server) as connection:
        connection.send(protocol.pack(hello))
        error, close_code = receive_fatal_error(connection)

    assert error["code"] == "run_not_found"
    assert "'ghost'" in error["message"]
    assert "'ghost-project'" in error["message"]
    assert "resume='allow'" in error["message"]
    assert error["fatal"] is True
    assert close_code == CLOSE_PROTOCOL_ERROR
    # The project is created in the same transaction as the run, so it is rolled back too.
    assert_no_run_created(reader)
    assert_server_carries_on(server, bystander)


def test_existing_run_without_resume_is_fatal(
    server: RunningServer, reader: assay.Api, bystander: ClientConnection
) -> None:
    with attached(server, "taken", session=1, run={"id": "taken", "config": {"lr": 0.1}}):
        pass
    hello = build_hello("taken", session=2, run={"id": "taken", "name": "other"})

    with connect_raw(server) as connection:
        connection.send(protocol.pack(hello))
        error, close_code = receive_fatal_error(connection)

    assert error["code"] == "run_exists"
    assert "'taken'" in error["message"]
    assert "resume='allow'" in error["message"]
    assert error["fatal"] is True
    assert close_code == CLOSE_PROTOCOL_ERROR
    existing = reader.run(PROJECT, "taken")
    assert existing.name == "taken"
    assert existing.config == {"lr": 0.1}
    assert existing.state == "running"
    assert_server_carries_on(server, bystander)


# API keys.


def test_revoked_key_rejected_at_handshake(
    server: RunningServer, bystander: ClientConnection
) -> None:
    with server.client() as http:
        created = http.post("/api/v1/me/keys", json={"name": "ci job"}).json()
        with connect_raw(server, {"Authorization": f"Bearer {created['key']}"}) as before:
            before.send(protocol.pack(build_hello("before-revoke")))
            welcome = receive(before)
        revoked = http.delete(f"/api/v1/me/keys/{created['id']}")

    with pytest.raises(InvalidStatus) as rejected:
        connect_raw(server, {"Authorization": f"Bearer {created['key']}"})
    body = json.loads(rejected.value.response.body)

    assert welcome["type"] == "welcome"
    assert revoked.status_code == 200
    assert rejected.value.response.status_code == 401
    assert body["error"]["code"] == "invalid_api_key"
    assert "revoked" in body["error"]["message"]
    assert_server_carries_on(server, bystander)


@pytest.mark.parametrize(
    ("headers", "path", "code", "fragment"),
    [
        pytest.param({}, "", "unauthorized", "Authorization: Bearer KEY", id="no-key"),
        pytest.param(
            {"Authorization": "Bearer wrong"}, "", "invalid_api_key", "invalid", id="wrong-key"
        ),
        pytest.param(
            {"Authorization": "Basic d3Jvbmc6"},
            "",
            "unauthorized",
            "Authorization: Bearer KEY",
            id="basic-scheme",
        ),
        pytest.param(
            {"Authorization": "Bearer "}, "", "unauthorized", "missing API key", id="empty-bearer"
        ),
        pytest.param({}, "?token=wrong", "invalid_api_key", "invalid", id="wrong-token-param"),
    ],
)
def test_handshake_without_valid_key_gets_401(
    server: RunningServer,
    bystander: ClientConnection,
    headers: dict[str, str],
    path: str,
    code: str,
    fragment: str,
) -> None:
    with pytest.raises(InvalidStatus) as rejected:
        connect(ingest_url(server) + path, additional_headers=headers, legacy=True)
    response = rejected.value.response

    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="assay"'
    body = json.loads(response.body)
    assert body["error"]["code"] == code
    assert fragment in body["error"]["message"]
    assert_server_carries_on(server, bystander)


# Metric names.

LONG_KEY = "k" * 257
INVALID_KEYS = [
    pytest.param("", ["must not be empty"], id="empty"),
    pytest.param(
        LONG_KEY, [repr(LONG_KEY[:40]), "257 characters", "maximum is 256"], id="257-chars"
    ),
    pytest.param("a\x00b", [repr("a\x00b"), "control character '\\x00'"], id="nul"),
    pytest.param("a\nb", [repr("a\nb"), "control character '\\n'"], id="newline"),
    pytest.param("a\x1b[31m", [repr("a\x1b[31m"), "control character '\\x1b'"], id="escape"),
    pytest.param("step", ["'step' is reserved", "step=N"], id="step"),
    pytest.param("_timestamp", ["'_timestamp' is reserved"], id="_timestamp"),
    pytest.param("x/", ["'x/'", "has an empty segment"], id="trailing-slash"),
    pytest.param("/x", ["'/x'", "has an empty segment"], id="leading-slash"),
    pytest.param("a//b", ["'a//b'", "has an empty segment"], id="doubled-slash"),
    pytest.param("/", ["'/'", "has an empty segment"], id="only-slash"),
]


@pytest.mark.parametrize(("key", "fragments"), INVALID_KEYS)
def test_sdk_rejects_invalid_metric_name(
    sqlite_server: RunningServer,
    sqlite_reader: assay.Api,
    tmp_path: Path,
    key: str,
    fragments: list[str],
) -> None:
    run = start_run(sqlite_server, tmp_path)

    with pytest.raises(assay.InvalidValueError) as rejected:
        run.log({"ok": 1.0, key: 1.0})
    run.log({"ok": 2.0})
    run.finish()

    for fragment in fragments:
        assert fragment in str(rejected.value)
    rows = sqlite_reader.run(PROJECT, run.id).history()
    assert rows == [{"step": 0, "_timestamp": rows[0]["_timestamp"], "ok": 2.0}]


def test_sdk_names_full_nested_metric_name(sqlite_server: RunningServer, tmp_path: Path) -> None:
    run = start_run(sqlite_server, tmp_path)

    with pytest.raises(assay.InvalidValueError, match=r"'train/a\\nb'"):
        run.log({"train": {"a\nb": 1.0}})
    run.finish()


@pytest.mark.parametrize(
    ("metrics", "path", "name"),
    [
        pytest.param({"a": {"": 1.0}}, "['a']['']", "a/", id="empty-nested-key"),
        pytest.param({"": {"b": 1.0}}, "['']['b']", "/b", id="empty-outer-key"),
        pytest.param({"a/": {"b": 1.0}}, "['a/']['b']", "a//b", id="outer-trailing-slash"),
        pytest.param({"a": {"/b": 1.0}}, "['a']['/b']", "a//b", id="inner-leading-slash"),
        pytest.param({"a": {"b/": None}}, "['a']['b/']", "a/b/", id="inner-trailing-slash"),
        pytest.param({"x": 1.0, "x/": 2.0}, "['x/']", "x/", id="slash-beside-name"),
        pytest.param({"a": {"": {}}}, "['a']['']", "a/", id="empty-key-of-empty-dict"),
        pytest.param({"a": {"b": {"": math.nan}}}, "['a']['b']['']", "a/b/", id="deep"),
    ],
)
def test_sdk_rejects_empty_key_segment(
    sqlite_server: RunningServer,
    sqlite_reader: assay.Api,
    tmp_path: Path,
    metrics: dict[str, Any],
    path: str,
    name: str,
) -> None:
    run = start_run(sqlite_server, tmp_path)

    with pytest.raises(assay.InvalidValueError) as rejected:
        run.log({"ok": 1.0, **metrics})
    run.log({"ok": 2.0})
    run.finish()

    message = str(rejected.value)
    assert f"the key {path}, whose metric name {name!r} has an empty segment" in message
    assert "Nothing from this call was logged" in message
    rows = sqlite_reader.run(PROJECT, run.id).history()
    assert rows == [{"step": 0, "_timestamp": rows[0]["_timestamp"], "ok": 2.0}]
    assert list(sqlite_reader.run(PROJECT, run.id).metrics()) == ["ok"]


@pytest.mark.parametrize(
    ("metrics", "fragments"),
    [
        pytest.param(
            {"a/b": 1.0, "a": {"b": 2.0}},
            ["2 keys", "metric name 'a/b'", "['a/b'] and ['a']['b']"],
            id="slash-key-first",
        ),
        pytest.param(
            {"a": {"b": 2.0}, "a/b": 1.0},
            ["2 keys", "metric name 'a/b'", "['a']['b'] and ['a/b']"],
            id="nested-key-first",
        ),
        pytest.param(
            {"a/b": None, "a": {"b": math.nan}},
            ["2 keys", "metric name 'a/b'", "['a/b'] and ['a']['b']"],
            id="null-and-nan",
        ),
        pytest.param(
            {"a": {"b/c": 1.0}, "a/b": {"c": 2.0}, "a/b/c": 3.0},
            ["3 keys", "metric name 'a/b/c'", "['a']['b/c'], ['a/b']['c'] and ['a/b/c']"],
            id="three-keys",
        ),
    ],
)
def test_sdk_rejects_clashing_flattened_names(
    sqlite_server: RunningServer,
    sqlite_reader: assay.Api,
    tmp_path: Path,
    metrics: dict[str, Any],
    fragments: list[str],
) -> None:
    run = start_run(sqlite_server, tmp_path)

    with pytest.raises(assay.InvalidValueError) as rejected:
        run.log({"ok": 1.0, **metrics})
    run.log({"ok": 2.0})
    run.finish()

    for fragment in fragments:
        assert fragment in str(rejected.value)
    assert "nested keys are joined with '/'" in str(rejected.value)
    assert "rename keys so that each metric name occurs once" in str(rejected.value)
    rows = sqlite_reader.run(PROJECT, run.id).history()
    assert rows == [{"step": 0, "_timestamp": rows[0]["_timestamp"], "ok": 2.0}]


@pytest.mark.parametrize(("key", "fragments"), INVALID_KEYS)
def test_raw_batch_with_invalid_metric_name_rejected(
    server: RunningServer,
    reader: assay.Api,
    bystander: ClientConnection,
    key: str,
    fragments: list[str],
) -> None:
    batch = {
        **build_rejectable_batch(),
        "metrics": {"ok": pack_column([1.0]), key: pack_column([1.0])},
    }

    with attached(server, REJECTED) as connection:
        connection.send(protocol.pack(batch))
        error = receive(connection)

        assert error["type"] == "error"
        assert error["code"] == "invalid_key"
        for fragment in fragments:
            assert fragment in error["message"]
        assert error["fatal"] is False
        assert error["seq"] == 0
        assert_nothing_stored(reader, REJECTED)
        assert_batch_acknowledged(connection)

    assert_server_carries_on(server, bystander)


# Metric names per row and per batch.


@pytest.mark.parametrize("count", [10_001, 100_000])
def test_sdk_rejects_row_over_key_limit(
    sqlite_server: RunningServer, sqlite_reader: assay.Api, tmp_path: Path, count: int
) -> None:
    run = start_run(sqlite_server, tmp_path)

    with pytest.raises(assay.InvalidValueError) as rejected:
        run.log({f"m{index}": 1.0 for index in range(count)})
    run.log({"ok": 2.0})
    run.finish()

    assert f"{count} metric names" in str(rejected.value)
    assert "maximum is 10000" in str(rejected.value)
    assert list(sqlite_reader.run(PROJECT, run.id).metrics()) == ["ok"]


@pytest.mark.parametrize("count", [10_001, 100_000])
def test_raw_batch_over_key_limit_rejected(
    server: RunningServer, reader: assay.Api, bystander: ClientConnection, count: int
) -> None:
    metrics = {f"m{index}": pack_column([1.0]) for index in range(count - 1)}
    batch = {**build_rejectable_batch(), "metrics": {"ok": pack_column([1.0]), **metrics}}

    with attached(server, REJECTED) as connection:
        connection.send(protocol.pack(batch))
        error = receive(connection)

        assert error["type"] == "error"
        assert error["code"] == "too_many_keys"
        assert f"{count} metric names" in error["message"]
        assert "maximum is 10000" in error["message"]
        assert error["fatal"] is False
        assert_nothing_stored(reader, REJECTED)
        assert_batch_acknowledged(connection)

    assert_server_carries_on(server, bystander)


def sync(server: RunningServer, tmp_path: Path) -> int:
    return assay_cli(
        ["sync", str(tmp_path / "spool"), "--server", server.url, "--api-key", server.api_key]
    )


def test_sdk_splits_batch_over_key_limit(
    sqlite_server: RunningServer, sqlite_reader: assay.Api, tmp_path: Path
) -> None:
    # Offline and with no flush timer, the sender takes the rows logged so far once as it
    # starts, then the rest at finish. Wherever that first cut falls, two of the three
    # rows share a batch, which then has 12,000 or more metric names.
    options = assay.SenderOptions(flush_interval=3600.0)
    run = assay.init(PROJECT, mode="offline", spool_dir=tmp_path / "spool", settings=options)
    for prefix in ("a", "b", "c"):
        run.log({f"{prefix}{index}": 1.0 for index in range(6_000)})
    run.finish()

    assert sync(sqlite_server, tmp_path) == 0
    assert len(sqlite_reader.run(PROJECT, run.id).metrics()) == 18_000


# Metric values.


class Opaque:
    """An object of no metric type, with a fixed repr for the message to show."""

    def __repr__(self) -> str:
        return "<Opaque>"


@pytest.mark.parametrize(
    ("value", "fragments"),
    [
        pytest.param("abc", ["got str 'abc'"], id="str"),
        pytest.param([1.0, 2.0], ["got list [1.0, 2.0]"], id="list"),
        pytest.param([{"a": 1.0}], ["got list [{'a': 1.0}]"], id="dict-in-list"),
        pytest.param(Opaque(), ["got Opaque <Opaque>"], id="object"),
        pytest.param(2**53 + 1, ["integer 9007199254740993", "2**53"], id="int-over-2**53"),
        pytest.param(-(2**53) - 1, ["integer -9007199254740993", "2**53"], id="int-under-2**53"),
    ],
)
def test_sdk_rejects_invalid_value(
    sqlite_server: RunningServer,
    sqlite_reader: assay.Api,
    tmp_path: Path,
    value: object,
    fragments: list[str],
) -> None:
    run = start_run(sqlite_server, tmp_path)

    with pytest.raises(assay.InvalidValueError) as rejected:
        run.log({"ok": 1.0, "bad": value})
    run.log({"ok": 2.0})
    run.finish()

    assert "metric 'bad'" in str(rejected.value)
    for fragment in fragments:
        assert fragment in str(rejected.value)
    rows = sqlite_reader.run(PROJECT, run.id).history()
    assert rows == [{"step": 0, "_timestamp": rows[0]["_timestamp"], "ok": 2.0}]


def with_bad_metric(bad: dict[str, bytes | None]) -> dict[str, Any]:
    return {"metrics": {"ok": pack_column([1.0]), "bad": bad}}


BATCH_FAULTS = [
    pytest.param(
        with_bad_metric(pack_column([1.0], kinds=[9])),
        "invalid_value",
        ["metric 'bad'", "kind 9", "0 (float), 1 (null), 2 (int) and 3 (bool)"],
        id="kind-9",
    ),
    pytest.param(
        with_bad_metric(pack_column([1.5], kinds=[protocol.KIND_INT])),
        "invalid_value",
        ["metric 'bad'", "int value 1.5", "integers within 2**53"],
        id="int-1.5",
    ),
    pytest.param(
        with_bad_metric(pack_column([2.0], kinds=[protocol.KIND_BOOL])),
        "invalid_value",
        ["metric 'bad'", "bool value", "0 or 1"],
        id="bool-2",
    ),
    pytest.param(
        with_bad_metric(pack_column([1.0, 2.0])),
        "invalid_batch",
        ["metric 'bad'", "2 values for 1 rows"],
        id="more-values-than-rows",
    ),
    pytest.param(
        with_bad_metric(pack_column([1.0], kinds=[0, 0])),
        "invalid_batch",
        ["metric 'bad'", "2 kinds for 1 values"],
        id="more-kinds-than-values",
    ),
    pytest.param(
        with_bad_metric(pack_column([1.0], rows=[1])),
        "invalid_batch",
        ["metric 'bad'", "row positions", "row count 1"],
        id="row-position-out-of-range",
    ),
    pytest.param(
        with_bad_metric(pack_column([])),
        "invalid_batch",
        ["metric 'bad'", "0 values for 1 rows"],
        id="no-values",
    ),
    pytest.param(
        {"metrics": {"ok": pack_column([1.0]), "bad": [1.0]}},
        "invalid_batch",
        ["metric 'bad'", "map of arrays"],
        id="metric-not-map",
    ),
    pytest.param(
        {"times": struct.pack("<2d", TIMESTAMP, TIMESTAMP)},
        "invalid_batch",
        ["1 steps but 2 timestamps", "same length"],
        id="more-times-than-steps",
    ),
    pytest.param(
        {"steps": struct.pack("<q", -1)},
        "invalid_step",
        ["step -1", f"between 0 and {protocol.MAX_STEP}"],
        id="negative-step",
    ),
    pytest.param(
        {"steps": struct.pack("<q", protocol.MAX_STEP + 1)},
        "invalid_step",
        [f"step {protocol.MAX_STEP + 1}", f"between 0 and {protocol.MAX_STEP}"],
        id="step-over-max",
    ),
    pytest.param(
        {"steps": [0]},
        "invalid_batch",
        ["field 'steps'", "binary data, got list"],
        id="steps-not-binary",
    ),
    pytest.param(
        {"steps": bytes(7)},
        "invalid_batch",
        ["field 'steps'", "7 bytes", "multiple of 8"],
        id="steps-7-bytes",
    ),
    pytest.param(
        {"times": struct.pack("<d", math.nan)},
        "invalid_batch",
        ["timestamp", "must be finite"],
        id="nan-timestamp",
    ),
    pytest.param(
        {"times": struct.pack("<d", math.inf)},
        "invalid_batch",
        ["timestamp", "must be finite"],
        id="inf-timestamp",
    ),
    pytest.param(
        {"times": struct.pack("<d", -math.inf)},
        "invalid_batch",
        ["timestamp", "must be finite"],
        id="minus-inf-timestamp",
    ),
    pytest.param(
        {"seq": -1}, "invalid_batch", ["'seq'", "integer >= 0", "got -1"], id="negative-seq"
    ),
    pytest.param(
        {"seq": "0"}, "invalid_batch", ["'seq'", "integer >= 0", "got '0'"], id="string-seq"
    ),
    pytest.param(
        {"seq": 0.0}, "invalid_batch", ["'seq'", "integer >= 0", "got 0.0"], id="float-seq"
    ),
    pytest.param(
        {"metrics": [1]}, "invalid_batch", ["'metrics'", "map, got list"], id="metrics-list"
    ),
    pytest.param(
        {"config": [1]}, "invalid_batch", ["'config'", "map, got list"], id="config-list"
    ),
    pytest.param(
        {"summary": {"best": {"$float": "x"}}},
        "invalid_value",
        ["summary[best]", "'$float'"],
        id="summary-float-tag",
    ),
]


@pytest.mark.parametrize(("changes", "code", "fragments"), BATCH_FAULTS)
def test_raw_batch_with_invalid_field_rejected(
    server: RunningServer,
    reader: assay.Api,
    bystander: ClientConnection,
    changes: dict[str, Any],
    code: str,
    fragments: list[str],
) -> None:
    batch = {**build_rejectable_batch(), **changes}

    with attached(server, REJECTED) as connection:
        connection.send(protocol.pack(batch))
        error = receive(connection)

        assert error["type"] == "error"
        assert error["code"] == code
        for fragment in fragments:
            assert fragment in error["message"]
        assert error["fatal"] is False
        # The error carries the batch number only when the number is an integer.
        assert error.get("seq") == (batch["seq"] if type(batch["seq"]) is int else None)
        assert_nothing_stored(reader, REJECTED)
        # Reusing the number shows that the rejected batch did not claim it.
        assert_batch_acknowledged(connection, seq=0)

    assert reader.run(PROJECT, REJECTED).history() == [
        {"step": 5, "_timestamp": TIMESTAMP, "ok": 2.0}
    ]
    assert_server_carries_on(server, bystander)


@pytest.mark.parametrize(
    ("changes", "shown"),
    [
        pytest.param(
            with_bad_metric(pack_column([1.5], kinds=[protocol.KIND_INT])), "1.5", id="int-1.5"
        ),
        pytest.param(
            with_bad_metric(pack_column([2.0], kinds=[protocol.KIND_BOOL])), "2", id="bool-2"
        ),
        pytest.param({"times": struct.pack("<d", math.nan)}, "nan", id="nan-timestamp"),
        pytest.param({"times": struct.pack("<d", math.inf)}, "inf", id="inf-timestamp"),
    ],
)
def test_raw_batch_error_shows_value(
    sqlite_server: RunningServer, changes: dict[str, Any], shown: str
) -> None:
    with attached(sqlite_server, REJECTED) as connection:
        connection.send(protocol.pack({**build_rejectable_batch(), **changes}))
        error = receive(connection)

    assert error["type"] == "error"
    assert shown in error["message"]


# The finish message.


@pytest.mark.parametrize(
    "exit_code",
    [
        pytest.param("0", id="str"),
        pytest.param(1.5, id="float"),
        pytest.param(None, id="none"),
        pytest.param(True, id="bool"),
        pytest.param([0], id="list"),
    ],
)
def test_finish_with_non_integer_exit_code_rejected(
    server: RunningServer, reader: assay.Api, bystander: ClientConnection, exit_code: object
) -> None:
    with attached(server, REJECTED) as connection:
        connection.send(protocol.pack({"type": "finish", "exit_code": exit_code}))
        error = receive(connection)

        assert error["type"] == "error"
        assert error["code"] == "invalid_finish"
        assert "'exit_code' must be an integer" in error["message"]
        assert f"got {exit_code!r}" in error["message"]
        assert error["fatal"] is False
        still_running = reader.run(PROJECT, REJECTED)
        assert still_running.state == "running"
        assert still_running.exit_code is None
        assert still_running.finished_at is None
        assert_batch_acknowledged(connection)
        connection.send(protocol.pack({"type": "finish", "exit_code": 0}))
        assert receive(connection) == {"type": "finished", "state": "finished"}

    assert_server_carries_on(server, bystander)


@pytest.mark.parametrize("finished_at", [-1.0, "yesterday", 4e10])
def test_finish_with_bad_end_time_rejected(
    server: RunningServer, reader: assay.Api, finished_at: Any
) -> None:
    with attached(server, REJECTED) as connection:
        connection.send(
            protocol.pack({"type": "finish", "exit_code": 0, "finished_at": finished_at})
        )
        error = receive(connection)

        assert error["code"] == "invalid_finish"
        assert "from 0 to a day ahead of now" in error["message"]
        assert repr(finished_at) in error["message"]

    assert reader.run(PROJECT, REJECTED).state == "running"


def test_finish_with_exit_code_beyond_int64_rejected(
    server: RunningServer, reader: assay.Api, bystander: ClientConnection
) -> None:
    with attached(server, REJECTED) as connection:
        connection.send(protocol.pack({"type": "finish", "exit_code": 2**63}))
        error = receive(connection)

        assert error["type"] == "error"
        assert error["code"] == "invalid_finish"
        assert str(2**63) in error["message"]
        assert error["fatal"] is False

    assert reader.run(PROJECT, REJECTED).state == "running"
    assert_server_carries_on(server, bystander)


def test_windows_exit_code_is_stored(server: RunningServer, reader: assay.Api) -> None:
    access_violation = 0xC0000005

    with attached(server, "windows") as connection:
        connection.send(protocol.pack({"type": "finish", "exit_code": access_violation}))
        finished = receive(connection)

    assert finished == {"type": "finished", "state": "failed"}
    assert reader.run(PROJECT, "windows").exit_code == access_violation


# Text that PostgreSQL cannot store.


@pytest.mark.parametrize(
    ("run_changes", "field"),
    [
        pytest.param({"name": "a\x00b"}, "name", id="name"),
        pytest.param({"group": "a\x00b"}, "group", id="group"),
        pytest.param({"notes": "a\x00b"}, "notes", id="notes"),
        pytest.param({"tags": ["a\x00b"]}, "tag", id="tag"),
        pytest.param({"config": {"note": "a\x00b"}}, "config", id="config-value"),
        pytest.param({"config": {"a\x00b": 1}}, "config", id="config-key"),
    ],
)
def test_nul_character_in_hello_rejected(
    server: RunningServer,
    reader: assay.Api,
    bystander: ClientConnection,
    run_changes: dict[str, Any],
    field: str,
) -> None:
    hello = build_hello(REJECTED, run={"id": REJECTED, **run_changes})

    with connect_raw(server) as connection:
        connection.send(protocol.pack(hello))
        error, close_code = receive_fatal_error(connection)

    assert error["code"] in ("invalid_hello", "invalid_value")
    assert field in error["message"]
    assert close_code == CLOSE_PROTOCOL_ERROR
    assert_no_run_created(reader)
    assert_server_carries_on(server, bystander)


def test_nul_character_in_summary_rejected(
    server: RunningServer, reader: assay.Api, bystander: ClientConnection
) -> None:
    batch = {**build_rejectable_batch(), "summary": {"note": "a\x00b"}}

    with attached(server, REJECTED) as connection:
        connection.send(protocol.pack(batch))
        error = receive(connection)

        assert error["type"] == "error"
        assert error["code"] == "invalid_value"
        assert "summary" in error["message"]
        assert error["fatal"] is False
        assert_nothing_stored(reader, REJECTED)

    assert_server_carries_on(server, bystander)
