"""The ``assay`` command: serve, db upgrade, login and sync."""

from __future__ import annotations

import io
import json
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

import assay
from assay._cli import main
from assay_server.database import head_revision
from assay_server.ratelimit import LOGIN_FAILURES
from assay_server.settings import Settings, table
from conftest import RunningServer, ServerProcess, free_port
from userkeys import PASSWORD, record_prompts

pytestmark = pytest.mark.usefixtures("restore_root_logging")


def test_serve_reads_settings_from_environment(
    sqlite_settings: Settings, server_process: Any, tmp_path: Path
) -> None:
    process: ServerProcess = server_process(sqlite_settings)
    process.start()

    with httpx.Client(base_url=process.url) as client:
        health = client.get("/healthz")
        projects = client.get(
            "/api/v1/projects",
            headers={"Authorization": f"Bearer {sqlite_settings.bootstrap_api_key}"},
        )

    assert health.json() == {"status": "ok"}
    assert projects.status_code == 200
    assert (sqlite_settings.data_dir / "assay.db").exists()


def test_serve_declines_websocket_compression(
    sqlite_settings: Settings, server_process: Any
) -> None:
    process: ServerProcess = server_process(sqlite_settings)
    process.start()
    url = process.url.replace("http://", "ws://") + "/api/v1/ingest"
    headers = {"Authorization": f"Bearer {sqlite_settings.bootstrap_api_key}"}

    # The client offers permessage-deflate, as browsers and Node clients do.
    with connect(url, additional_headers=headers, compression="deflate") as socket:
        extensions = socket.response.headers.get("Sec-WebSocket-Extensions")

    assert extensions is None


def test_first_start_prints_generated_admin_key(tmp_path: Path) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("ASSAY_")}
    command = [sys.executable, "-m", "assay", "serve", "--port", str(port)]
    with subprocess.Popen(
        [*command, "--data-dir", str(tmp_path)], env=env, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stderr is not None
            lines = []
            for line in process.stderr:
                lines.append(line)
                if line.strip().startswith("assay_"):
                    break
            wait_for_health(port)
            with assay.Api(server=f"http://127.0.0.1:{port}", api_key=lines[-1].strip()) as api:
                user = api.whoami()
        finally:
            process.terminate()
            process.wait(15)

    assert any("shown only this once" in line for line in lines)
    assert user == {"name": "admin", "is_admin": True}


def wait_for_health(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise TimeoutError("server did not answer /healthz")


def test_serve_rejects_bad_setting(capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(["serve", "--port", "0"])

    assert exit_code == 2
    assert "--port must be an integer from 1 to 65535, got 0" in capsys.readouterr().err


def test_db_upgrade_reports_revision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(["db", "upgrade", "--data-dir", str(tmp_path)])

    assert exit_code == 0
    assert f"database is at revision {head_revision()}" in capsys.readouterr().out
    assert (tmp_path / "assay.db").exists()


def test_db_upgrade_on_postgres(postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(["db", "upgrade", "--database-url", postgres_url])

    assert exit_code == 0
    assert f"revision {head_revision()}" in capsys.readouterr().out


def test_login_stores_private_credentials(
    sqlite_server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSAY_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("ASSAY_SERVER", raising=False)
    monkeypatch.delenv("ASSAY_API_KEY", raising=False)

    exit_code = main(["login", "--server", sqlite_server.url, "--api-key", sqlite_server.api_key])
    path = tmp_path / "credentials.json"
    with assay.Api() as api:
        user = api.whoami()

    assert exit_code == 0
    assert json.loads(path.read_text())["server"] == sqlite_server.url
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert user["name"] == "admin"


def test_login_with_wrong_key_stores_nothing(
    sqlite_server: RunningServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ASSAY_CONFIG_DIR", str(tmp_path))

    exit_code = main(["login", "--server", sqlite_server.url, "--api-key", "nope"])

    assert exit_code == 1
    assert "invalid or revoked API key" in capsys.readouterr().err
    assert not (tmp_path / "credentials.json").exists()


def test_missing_server_names_the_fixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSAY_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("ASSAY_SERVER", raising=False)

    with pytest.raises(assay.ConfigurationError, match="ASSAY_SERVER"):
        assay.init("p", api_key="k")


@pytest.mark.parametrize(
    ("options", "missing"),
    [
        ([], "no assay server configured; pass --server,"),
        (["--server", "http://127.0.0.1:9"], "no API key configured; pass --api-key,"),
    ],
)
def test_sync_without_credentials_names_options(
    options: list[str],
    missing: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ASSAY_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("ASSAY_SERVER", raising=False)
    monkeypatch.delenv("ASSAY_API_KEY", raising=False)
    run = assay.init("p", mode="offline", spool_dir=tmp_path / "spool")
    run.finish()

    exit_code = main(["sync", str(tmp_path / "spool"), *options])

    assert exit_code != 0
    assert missing in capsys.readouterr().err


def test_sync_of_missing_path_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(["sync", str(tmp_path / "nowhere"), "--server", "http://x", "--api-key", "k"])

    assert exit_code == 1
    assert "does not exist" in capsys.readouterr().err


def test_sync_with_server_down_keeps_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = assay.init("p", mode="offline", spool_dir=tmp_path)
    run.log({"loss": 1.0})
    run.finish()

    exit_code = main(
        ["sync", str(tmp_path), "--server", f"http://127.0.0.1:{free_port()}", "--api-key", "k"]
    )

    assert exit_code == 1
    assert "failed" in capsys.readouterr().out
    assert len(run.spool.batch_files()) == 1


def add_user(server: RunningServer, name: str) -> None:
    with server.client() as admin:
        response = admin.post("/api/v1/users", json={"name": name, "password": PASSWORD})
    assert response.status_code == 201, response.text


def session_count(settings: Settings) -> int:
    with sqlite3.connect(settings.data_dir / "assay.db") as connection:
        return int(connection.execute("SELECT count(*) FROM sessions").fetchone()[0])


def test_login_with_password_stores_key(
    sqlite_server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_user(sqlite_server, "alice")
    monkeypatch.setenv("ASSAY_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("ASSAY_SERVER", raising=False)
    monkeypatch.delenv("ASSAY_API_KEY", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))

    exit_code = main(
        ["login", "--server", sqlite_server.url, "--name", "alice", "--password-stdin"]
    )
    path = tmp_path / "credentials.json"
    with assay.Api() as api:
        user = api.whoami()
    stored = json.loads(path.read_text())
    with sqlite_server.client(stored["api_key"]) as client:
        keys = client.get("/api/v1/me/keys").json()["keys"]

    assert exit_code == 0
    assert user["name"] == "alice"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stored["api_key"].startswith("assay_")
    assert PASSWORD not in path.read_text()
    assert [key["name"] for key in keys] == [f"assay login on {socket.gethostname()}"]
    assert session_count(sqlite_server.settings) == 0


def login_as(server: RunningServer, name: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    return main(["login", "--server", server.url, "--name", name, "--password-stdin"])


def live_keys(server: RunningServer, key: str) -> list[str]:
    """Return the prefixes of the live API keys of ``key``'s user."""
    with server.client(key) as client:
        keys = client.get("/api/v1/me/keys").json()["keys"]
    return [record["prefix"] for record in keys if record["revoked_at"] is None]


def test_login_again_revokes_replaced_key(
    sqlite_server: RunningServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    add_user(sqlite_server, "alice")
    monkeypatch.setenv("ASSAY_CONFIG_DIR", str(tmp_path))
    path = tmp_path / "credentials.json"
    login_as(sqlite_server, "alice", monkeypatch)
    first = json.loads(path.read_text())["api_key"]
    capsys.readouterr()

    exit_code = login_as(sqlite_server, "alice", monkeypatch)
    second = json.loads(path.read_text())["api_key"]
    output = capsys.readouterr().out

    assert exit_code == 0
    assert second != first
    assert live_keys(sqlite_server, second) == [second[:10]]
    assert f"Revoked the API key {first[:10]}" in output
    with assay.Api(server=sqlite_server.url, api_key=first) as replaced:
        with pytest.raises(assay.AuthenticationError):
            replaced.whoami()


def test_login_keeps_other_users_key(
    sqlite_server: RunningServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    add_user(sqlite_server, "alice")
    add_user(sqlite_server, "bob")
    monkeypatch.setenv("ASSAY_CONFIG_DIR", str(tmp_path))
    login_as(sqlite_server, "alice", monkeypatch)
    alice_key = json.loads((tmp_path / "credentials.json").read_text())["api_key"]
    capsys.readouterr()

    exit_code = login_as(sqlite_server, "bob", monkeypatch)

    assert exit_code == 0
    assert live_keys(sqlite_server, alice_key) == [alice_key[:10]]
    assert "Revoked" not in capsys.readouterr().out


def test_login_keeps_environment_key(
    sqlite_server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_user(sqlite_server, "alice")
    monkeypatch.setenv("ASSAY_CONFIG_DIR", str(tmp_path / "first"))
    login_as(sqlite_server, "alice", monkeypatch)
    ci_key = json.loads((tmp_path / "first" / "credentials.json").read_text())["api_key"]
    monkeypatch.setenv("ASSAY_CONFIG_DIR", str(tmp_path / "second"))
    monkeypatch.setenv("ASSAY_API_KEY", ci_key)

    exit_code = login_as(sqlite_server, "alice", monkeypatch)

    assert exit_code == 0
    assert ci_key[:10] in live_keys(sqlite_server, ci_key)


def test_login_with_wrong_password_stores_nothing(
    sqlite_server: RunningServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    add_user(sqlite_server, "alice")
    monkeypatch.setenv("ASSAY_CONFIG_DIR", str(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO("not the password\n"))

    exit_code = main(
        ["login", "--server", sqlite_server.url, "--name", "alice", "--password-stdin"]
    )

    assert exit_code == 1
    assert "invalid user name or password" in capsys.readouterr().err
    assert not (tmp_path / "credentials.json").exists()


def test_login_reports_rate_limit(
    sqlite_server: RunningServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ASSAY_CONFIG_DIR", str(tmp_path))
    arguments = ["login", "--server", sqlite_server.url, "--name", "alice", "--password-stdin"]
    for _ in range(LOGIN_FAILURES):
        monkeypatch.setattr("sys.stdin", io.StringIO("wrong password\n"))
        main(arguments)
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO("wrong password\n"))

    exit_code = main(arguments)

    assert exit_code == 1
    assert "too many failed sign-ins" in capsys.readouterr().err


def test_login_with_server_down_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ASSAY_CONFIG_DIR", str(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    server = f"http://127.0.0.1:{free_port()}"

    exit_code = main(["login", "--server", server, "--name", "alice", "--password-stdin"])

    assert exit_code == 1
    assert f"cannot reach {server}" in capsys.readouterr().err
    assert not (tmp_path / "credentials.json").exists()


def set_password(settings: Settings, *arguments: str, password: str = PASSWORD) -> int:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdin", io.StringIO(password + "\n"))
        return main(["admin", "set-password", *arguments, "--data-dir", str(settings.data_dir)])


def sign_in_status(server: RunningServer, name: str, password: str = PASSWORD) -> int:
    response = httpx.post(
        server.url + "/api/v1/session", json={"name": name, "password": password}
    )
    return response.status_code


def test_set_password_lets_admin_sign_in(sqlite_server: RunningServer) -> None:
    before = sign_in_status(sqlite_server, "admin")

    exit_code = set_password(sqlite_server.settings, "admin", "--password-stdin")

    assert before == 401
    assert exit_code == 0
    assert sign_in_status(sqlite_server, "admin") == 200


def test_set_password_ends_sessions(sqlite_server: RunningServer) -> None:
    set_password(sqlite_server.settings, "admin")
    with httpx.Client(base_url=sqlite_server.url) as browser:
        browser.post("/api/v1/session", json={"name": "admin", "password": PASSWORD})
        before = browser.get("/api/v1/whoami").status_code
        set_password(sqlite_server.settings, "admin", password="another long password")
        after = browser.get("/api/v1/whoami").status_code

    assert before == 200
    assert after == 401


def test_set_password_creates_user(sqlite_server: RunningServer) -> None:
    exit_code = set_password(sqlite_server.settings, "carol", "--create", "--admin")
    with sqlite_server.client() as admin:
        users = {user["name"]: user for user in admin.get("/api/v1/users").json()["users"]}

    assert exit_code == 0
    assert users["carol"]["is_admin"] is True
    assert sign_in_status(sqlite_server, "carol") == 200


def test_set_password_of_unknown_user_fails(
    sqlite_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = set_password(sqlite_server.settings, "nobody")

    assert exit_code == 1
    assert "no user named 'nobody'; add --create" in capsys.readouterr().err


def test_set_password_checks_rules(
    sqlite_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = set_password(sqlite_server.settings, "admin", password="short")

    assert exit_code == 2
    assert "at least 10 characters" in capsys.readouterr().err
    assert sign_in_status(sqlite_server, "admin", "short") == 401


def test_set_password_prompts_twice(
    sqlite_server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    answers = iter([PASSWORD, "a different password"])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))

    exit_code = main(
        ["admin", "set-password", "admin", "--data-dir", str(sqlite_server.settings.data_dir)]
    )

    assert exit_code == 1
    assert "the two passwords differ" in capsys.readouterr().err
    assert sign_in_status(sqlite_server, "admin") == 401


def test_admin_flag_needs_create(
    sqlite_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = set_password(sqlite_server.settings, "admin", "--admin")

    assert exit_code == 2
    assert "--admin only applies together with --create" in capsys.readouterr().err


def admin_set_password(*arguments: str, password: str = PASSWORD) -> int:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdin", io.StringIO(password + "\n"))
        return main(["admin", "set-password", *arguments, "--password-stdin"])


@pytest.fixture
def database_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset the database settings so that only the command line chooses the database."""
    monkeypatch.delenv("ASSAY_DATA_DIR", raising=False)
    monkeypatch.delenv("ASSAY_DATABASE_URL", raising=False)


@pytest.mark.usefixtures("database_unset")
def test_set_password_without_database_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)

    exit_code = admin_set_password("admin")

    error = capsys.readouterr().err
    assert exit_code == 2
    assert f"SQLite database {tmp_path / '.assay' / 'assay.db'} not found" in error
    assert "--data-dir" in error
    assert "ASSAY_DATA_DIR" in error
    assert "ASSAY_DATABASE_URL" in error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("database_unset")
def test_set_password_missing_database_skips_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = record_prompts(monkeypatch)

    exit_code = main(["admin", "set-password", "admin", "--data-dir", str(tmp_path)])

    assert exit_code == 2
    assert f"SQLite database {tmp_path / 'assay.db'} not found" in capsys.readouterr().err
    assert prompts == []
    assert list(tmp_path.iterdir()) == []


def test_set_password_bad_name_skips_prompt(
    sqlite_server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prompts = record_prompts(monkeypatch)
    data_dir = str(sqlite_server.settings.data_dir)

    exit_code = main(["admin", "set-password", "bad name", "--data-dir", data_dir])

    assert exit_code == 2
    assert "user name must be 1 to 128 characters" in capsys.readouterr().err
    assert prompts == []


def test_set_password_prompts_after_checks(
    sqlite_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = record_prompts(monkeypatch)
    data_dir = str(sqlite_server.settings.data_dir)

    exit_code = main(["admin", "set-password", "admin", "--data-dir", data_dir])

    assert exit_code == 0
    assert prompts == ["Password: ", "Password again: "]
    assert sign_in_status(sqlite_server, "admin") == 200


@pytest.mark.usefixtures("database_unset")
def test_set_password_in_empty_data_dir_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = admin_set_password("admin", "--create", "--data-dir", str(tmp_path))

    assert exit_code == 2
    assert f"SQLite database {tmp_path / 'assay.db'} not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_set_password_data_dir_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ASSAY_DATABASE_URL", raising=False)
    monkeypatch.setenv("ASSAY_DATA_DIR", str(tmp_path / "data"))

    exit_code = admin_set_password("admin")

    assert exit_code == 2
    assert f"SQLite database {tmp_path / 'data' / 'assay.db'} not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url_form", ["sqlite:///{path}", "sqlite:///file:{path}?uri=true"])
@pytest.mark.usefixtures("database_unset")
def test_set_password_missing_sqlite_url_fails(
    url_form: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "server" / "assay.db"

    exit_code = admin_set_password("admin", "--database-url", url_form.format(path=path))

    error = capsys.readouterr().err
    assert exit_code == 2
    assert f"SQLite database {path} not found" in error
    assert "--database-url" in error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///file::memory:?uri=true",
        "sqlite:///file:accounts?mode=memory&uri=true",
    ],
)
@pytest.mark.usefixtures("database_unset")
def test_set_password_in_memory_fails(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)

    exit_code = admin_set_password("admin", "--create", "--database-url", url)

    error = capsys.readouterr().err
    assert exit_code == 2
    assert "in-memory SQLite database" in error
    assert "--database-url" in error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("database_unset")
def test_set_password_after_db_upgrade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    upgraded = main(["db", "upgrade", "--data-dir", str(data_dir)])

    created = admin_set_password("carol", "--create", "--data-dir", str(data_dir))
    changed = admin_set_password("carol", "--data-dir", str(data_dir))

    assert upgraded == 0
    assert created == 0
    assert changed == 0
    assert "password of carol set" in capsys.readouterr().out


@pytest.mark.usefixtures("database_unset")
def test_set_password_sqlite_uri_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    upgraded = main(["db", "upgrade", "--data-dir", str(tmp_path)])
    url = f"sqlite:///file:{tmp_path / 'assay.db'}?uri=true"

    created = admin_set_password("carol", "--create", "--database-url", url)
    changed = admin_set_password("carol", "--database-url", url)

    assert upgraded == 0
    assert created == 0
    assert changed == 0
    assert "password of carol set" in capsys.readouterr().out


@pytest.mark.usefixtures("database_unset")
def test_set_password_on_postgres(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    created = admin_set_password("carol", "--create", "--database-url", postgres_url)
    changed = admin_set_password("carol", "--database-url", postgres_url)

    assert created == 0
    assert changed == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("database_unset")
def test_db_upgrade_creates_missing_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "new" / "data"

    exit_code = main(["db", "upgrade", "--data-dir", str(data_dir)])

    assert exit_code == 0
    assert f"database is at revision {head_revision()}" in capsys.readouterr().out
    assert (data_dir / "assay.db").is_file()


SQLITE_URL_FORMS = ["sqlite:///{path}", "sqlite:///file:{path}?uri=true"]
SERVER_COMMANDS = [["db", "upgrade"], ["serve", "--port", str(free_port())]]


@pytest.mark.parametrize("command", SERVER_COMMANDS, ids=["db upgrade", "serve"])
@pytest.mark.parametrize("url_form", SQLITE_URL_FORMS)
@pytest.mark.usefixtures("database_unset")
def test_missing_sqlite_directory_fails(
    command: list[str],
    url_form: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "missing" / "assay.db"

    exit_code = main([*command, "--database-url", url_form.format(path=path)])

    error = capsys.readouterr().err
    assert exit_code == 2
    assert f"directory {path.parent} of SQLite database {path} not found" in error
    assert f"Create {path.parent} first" in error
    assert "--data-dir" in error
    assert "Traceback" not in error
    assert len(error.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", SERVER_COMMANDS, ids=["db upgrade", "serve"])
@pytest.mark.usefixtures("database_unset")
def test_data_dir_under_file_fails(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    data_dir = tmp_path / "file" / "data"

    exit_code = main([*command, "--data-dir", str(data_dir)])

    error = capsys.readouterr().err
    assert exit_code == 2
    assert f"cannot create the data directory {data_dir}: Not a directory" in error
    assert "ASSAY_DATA_DIR" in error
    assert (tmp_path / "file").read_text() == ""


@pytest.mark.usefixtures("database_unset")
def test_db_upgrade_on_postgres_skips_data_dir(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    exit_code = main(["db", "upgrade", "--database-url", postgres_url])

    assert exit_code == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url_form", SQLITE_URL_FORMS)
@pytest.mark.usefixtures("database_unset")
def test_db_upgrade_sqlite_url_skips_data_dir(
    url_form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "database").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    path = tmp_path / "database" / "assay.db"

    exit_code = main(["db", "upgrade", "--database-url", url_form.format(path=path)])

    assert exit_code == 0
    assert path.is_file()
    assert list((tmp_path / "work").iterdir()) == []


def test_serve_on_postgres_skips_data_dir(
    postgres_settings: Settings, server_process: Any
) -> None:
    process: ServerProcess = server_process(postgres_settings)
    process.start()

    health = httpx.get(process.url + "/healthz")

    assert health.json() == {"status": "ok"}
    assert not postgres_settings.data_dir.exists()


def test_serve_help_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--help"])
    # Help text is wrapped, so line breaks and runs of spaces are compared as one space.
    help_text = " ".join(capsys.readouterr().out.split())

    assert exited.value.code == 0
    for setting in table():
        meaning = " ".join(setting.help.split())
        assert setting.env in help_text, f"{setting.env} is missing"
        assert meaning in help_text, f"meaning of {setting.env} is missing"
        if setting.allowed is not None:
            meaning = f"{meaning} Must be {setting.allowed}."
            assert meaning in help_text, f"range of {setting.env} is missing"
        if setting.default is not None:
            default = f"{meaning} (default: {setting.default})"
            assert default in help_text, f"default of {setting.env} is missing"


@pytest.mark.parametrize("command", [["serve"], ["db", "upgrade"], ["admin", "set-password"]])
def test_database_options_name_defaults(
    command: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Wide enough that argparse does not break "--data-dir" at its hyphen.
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())

    assert "default .assay)" in help_text
    assert "default: assay.db in --data-dir)" in help_text


@pytest.mark.usefixtures("database_unset")
def test_db_upgrade_missing_postgres_database_named(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = postgres_url.rsplit("/", 1)[0].replace("postgres@", "postgres:secretpw@", 1)
    url = f"{base}/assay_missing_{os.getpid()}"

    exit_code = main(["db", "upgrade", "--database-url", url])

    error = capsys.readouterr().err.strip()
    assert exit_code == 1
    assert error.startswith("assay: error: cannot open the database postgresql://postgres:***@")
    assert f'database "assay_missing_{os.getpid()}" does not exist' in error
    assert "secretpw" not in error
    assert "Traceback" not in error
    assert len(error.splitlines()) == 1


@pytest.mark.usefixtures("database_unset")
def test_set_password_unreachable_postgres_named(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens on it
    url = f"postgresql://postgres@127.0.0.1:{port}/assay"

    exit_code = admin_set_password("carol", "--create", "--database-url", url)

    error = capsys.readouterr().err.strip()
    assert exit_code == 1
    assert error.startswith(f"assay: error: cannot open the database {url}: ")
    assert "Check that the server is running" in error
    assert len(error.splitlines()) == 1
