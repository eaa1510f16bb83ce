"""Server logs: JSON lines with the ids in context, and no secret in any format."""

from __future__ import annotations

import contextvars
import dataclasses
import io
import logging
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from websockets.sync.client import connect

import assay
from assay import protocol
from assay_server import logs
from assay_server.auth import hash_key
from assay_server.settings import Settings, SettingsError
from conftest import sign_in_with_key
from deploy.deploy_support import json_log


def test_json_lines_carry_ingest_ids(
    postgres_settings: Settings, server_process: Any, tmp_path: Path
) -> None:
    process = server_process(dataclasses.replace(postgres_settings, log_format="json"))
    process.start()
    run = assay.init(
        "logged",
        server=process.url,
        api_key=process.settings.bootstrap_api_key,
        spool_dir=tmp_path,
    )
    for step in range(50):
        run.log({"loss": step / 50})
    run.finish()
    process.stop()

    entries, bad = json_log(process.log_path)
    attached = [e for e in entries if "attached run" in e["message"]]
    finished = [e for e in entries if e["message"].startswith(f"run {run.id} finished")]

    assert bad == []
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    assert len(attached) == 1
    assert attached[0]["logger"] == "assay_server.ingest"
    assert attached[0]["run"] == f"logged/{run.id}"
    assert len(attached[0]["connection"]) == 8
    # The message names the connection by the same id as the bound field.
    assert f"ingest connection {attached[0]['connection']} attached" in attached[0]["message"]
    assert len(attached[0]["request"]) == 16
    assert len(finished) == 1
    assert finished[0]["connection"] == attached[0]["connection"]
    assert finished[0]["run"] == f"logged/{run.id}"


def add_api_key(database_url: str) -> str:
    """Create a second API key for the admin, one that the server's settings never name."""
    key = "plain-" + secrets.token_hex(20)
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO api_keys (user_id, name, key_hash, prefix, created_at) "
            "SELECT id, 'second', %s, %s, %s FROM users WHERE name = 'admin'",
            (hash_key(key), key[:10], time.time()),
        )
    return key


def test_key_never_appears_in_log(
    postgres_settings: Settings, server_process: Any, tmp_path: Path
) -> None:
    # Debug level: the websockets library then logs every handshake header.
    settings = dataclasses.replace(postgres_settings, log_format="json", log_level="debug")
    process = server_process(settings)
    process.start()
    assert settings.database_url is not None
    key = add_api_key(settings.database_url)

    run = assay.init("secret", server=process.url, api_key=key, spool_dir=tmp_path)
    run.log({"loss": 1.0})
    run.finish()
    with httpx.Client(base_url=process.url) as browser:
        login = sign_in_with_key(browser, key)
        cookie = browser.cookies["assay_session"]
        whoami = browser.get("/api/v1/whoami")
    live_url = (
        process.url.replace("http://", "ws://") + f"/api/v1/projects/secret/live?token={key}"
    )
    with connect(live_url) as live:
        live.send(protocol.pack({"type": "subscribe", "cursors": {}}))
        subscribed = protocol.unpack(live.recv(timeout=10))  # type: ignore[arg-type]
    process.stop()
    text = process.log_path.read_text()

    assert run.state == "finished"
    assert login.status_code == 303
    assert whoami.status_code == 200
    assert subscribed["type"] == "subscribed"
    assert key not in text
    assert cookie not in text
    assert "/login?token=***" in text
    assert "authorization: ***" in text.lower()


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ('"GET /login?token=k3y-abcdef&next=/ HTTP/1.1" 303', "k3y-abcdef"),
        ('"WebSocket /api/v1/ingest?token=k3y-abcdef" [accepted]', "k3y-abcdef"),
        ("< Authorization: Bearer k3y-abcdef", "k3y-abcdef"),
        ("< cookie: assay_session=s3ssion-value; other=1", "s3ssion-value"),
        ("> set-cookie: assay_session=s3ssion-value; HttpOnly", "s3ssion-value"),
        ("request failed: {'authorization': 'Bearer k3y-abcdefghijklmnop'}", "k3y-abcdefghijk"),
        ("key assay_Zt4hP0qLxYvW8mNcR2dK6sFjB1gH9aQe3uIoT7yE5rU", "Zt4hP0qLxYvW8mNcR2dK"),
        ("cannot connect to postgresql://assay:pa55word@db/assay", "pa55word"),
        ("the bootstrap key is literally-known-value", "literally-known-value"),
        ('"GET /projects/p/reports/r?share=Sh4reT0ken-xyz HTTP/1.1" 200', "Sh4reT0ken-xyz"),
        ('"WebSocket /yjs/reports/r?share=Sh4reT0ken-xyz" [accepted]', "Sh4reT0ken-xyz"),
        ('body {"name": "alice", "password": "hunter2 \\" more"}', "hunter2"),
        ("{'current': 'old secret', 'new': 'new secret'}", "secret"),
        ("GET /share/AbCdEfGhIjKlMnOpQrSt123 HTTP/1.1", "AbCdEfGhIjKlMnOp"),
        ("GET /reports/r1?share=sh4re-t0ken HTTP/1.1", "sh4re-t0ken"),
        ("POST /x?password=pa55word&y=1", "pa55word"),
    ],
)
def test_redactor_masks_secret(line: str, secret: str) -> None:
    redact = logs.Redactor(["literally-known-value"])

    assert secret not in redact(line)


def test_redactor_keeps_ordinary_text() -> None:
    redact = logs.Redactor()
    line = "ingest connection 1a2b3c4d attached run mnist/abc (created) http://127.0.0.1:8080/x"

    assert redact(line) == line


def test_text_format_appends_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.TextFormatter(logs.Redactor()))
    logger = logging.getLogger("assay_server.test_text_format")
    logger.addHandler(handler)
    logger.propagate = False

    def log_with_ids() -> None:
        logs.bind(request="r1", run="mnist/abc")
        logger.warning("stored batch %s", 3)

    # A context of its own, so that the ids bound here stay out of later tests.
    contextvars.copy_context().run(log_with_ids)
    logger.removeHandler(handler)
    line = stream.getvalue().strip()

    assert line.endswith(
        "assay_server.test_text_format: stored batch 3 [request=r1 run=mnist/abc]"
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ASSAY_LOG_FORMAT": "xml"}, "ASSAY_LOG_FORMAT must be one of text, json, got 'xml'"),
        ({"ASSAY_LOG_LEVEL": "loud"}, "ASSAY_LOG_LEVEL must be one of debug, info"),
        ({"ASSAY_SHUTDOWN_TIMEOUT": "0"}, "ASSAY_SHUTDOWN_TIMEOUT must be a positive number"),
    ],
)
def test_bad_logging_settings_rejected(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)


def test_account_secrets_never_appear_in_log(
    sqlite_settings: Settings, server_process: Any, tmp_path: Path
) -> None:
    settings = dataclasses.replace(sqlite_settings, log_format="json", log_level="debug")
    process = server_process(settings)
    process.start()
    password, new_password = "first secret password", "second secret password"
    admin = {"Authorization": f"Bearer {settings.bootstrap_api_key}"}
    with httpx.Client(base_url=process.url, headers={"Origin": process.url}) as browser:
        created = browser.post(
            "/api/v1/users", json={"name": "alice", "password": password}, headers=admin
        )
        failed = browser.post("/api/v1/session", json={"name": "alice", "password": "guess-123"})
        signed_in = browser.post("/api/v1/session", json={"name": "alice", "password": password})
        cookie = browser.cookies["assay_session"]
        key = browser.post("/api/v1/me/keys", json={"name": "job"}).json()["key"]
        changed = browser.post(
            "/api/v1/me/password", json={"current": password, "new": new_password}
        )
    process.stop()
    text = process.log_path.read_text()

    assert created.status_code == 201
    assert failed.status_code == 401
    assert signed_in.status_code == 200
    assert changed.status_code == 200
    for secret in (password, new_password, "guess-123", cookie, key):
        assert secret not in text
    assert "sign-in failed from 127.0.0.1" in text
    assert "user alice signed in" in text


def test_json_lines_carry_report_id(
    postgres_settings: Settings, server_process: Any, tmp_path: Path
) -> None:
    process = server_process(dataclasses.replace(postgres_settings, log_format="json"))
    process.start()
    key = process.settings.bootstrap_api_key
    assay.init("logged", server=process.url, api_key=key, spool_dir=tmp_path).finish()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=process.url, headers=headers) as http:
        report_id = http.post("/api/v1/projects/logged/reports", json={}).json()["id"]
    socket_url = process.url.replace("http://", "ws://") + f"/yjs/reports/{report_id}"
    with connect(socket_url, additional_headers=headers):
        pass
    process.stop()

    entries, bad = json_log(process.log_path)
    opened = [e for e in entries if f"report {report_id} connection" in e["message"]]

    assert bad == []
    assert opened
    assert {entry.get("report") for entry in opened} == {report_id}
    assert all(len(entry["connection"]) == 8 for entry in opened)
    assert all(f"connection {entry['connection']} " in entry["message"] for entry in opened)


def test_share_token_never_appears_in_log(
    sqlite_settings: Settings, server_process: Any, tmp_path: Path
) -> None:
    """A share token used on a page, the API and both sockets stays out of a debug log."""
    settings = dataclasses.replace(sqlite_settings, log_format="json", log_level="debug")
    process = server_process(settings)
    process.start()
    key = settings.bootstrap_api_key
    assert key is not None
    assay.init("shared", server=process.url, api_key=key, spool_dir=tmp_path).finish()
    admin = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=process.url, headers=admin) as client:
        report_id = client.post("/api/v1/projects/shared/reports", json={}).json()["id"]
        share = client.post(f"/api/v1/reports/{report_id}/shares", json={"role": "view"}).json()
    token = share["token"]
    with httpx.Client(base_url=process.url, params={"share": token}) as holder:
        page = holder.get(f"/projects/shared/reports/{report_id}")
        report = holder.get(f"/api/v1/projects/shared/reports/{report_id}")
    sockets = process.url.replace("http://", "ws://")
    with connect(f"{sockets}/yjs/reports/{report_id}?share={token}") as report_socket:
        first_frame = report_socket.recv(timeout=10)
    with connect(f"{sockets}/api/v1/projects/shared/live?share={token}") as live:
        live.send(protocol.pack({"type": "subscribe", "cursors": {}}))
        subscribed = protocol.unpack(live.recv(timeout=10))  # type: ignore[arg-type]
    with httpx.Client(base_url=process.url, headers=admin) as client:
        revoked = client.delete(f"/api/v1/reports/{report_id}/shares/{share['id']}")
    with httpx.Client(base_url=process.url, params={"share": token}) as holder:
        refused = holder.get(f"/api/v1/projects/shared/reports/{report_id}")
    process.stop()
    text = process.log_path.read_text()

    assert page.status_code == 200
    assert report.status_code == 200
    assert isinstance(first_frame, bytes)
    assert subscribed["type"] == "subscribed"
    assert revoked.status_code == 204
    assert refused.status_code == 401
    assert token not in text
    assert token[:16] not in text
    assert "share=***" in text
