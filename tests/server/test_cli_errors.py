"""Errors of ``assay serve``, ``assay db upgrade`` and ``assay admin set-password``.

Each bad input must end in one line on stderr that names the value, never in
a traceback, and must leave the files it names as they were.
"""

from __future__ import annotations

import io
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from assay._cli import main
from assay_server.settings import Settings, table
from conftest import RunningServer, admin_execute, database_url, free_port
from userkeys import PASSWORD, record_prompts

NOT_SQLITE = "name,value\nlr,0.01\n"
ACCEPTED_SCHEMES = (
    "postgresql://, postgres://, postgresql+asyncpg://, postgresql+psycopg://, "
    "postgresql+psycopg2://, sqlite:// or sqlite+aiosqlite://"
)
#: A SQLite header followed by bytes that are no valid page.
CORRUPT_SQLITE = b"SQLite format 3\x00" + b"\x07" * 200

COMMANDS = {
    "db upgrade": ["db", "upgrade"],
    "serve": ["serve", "--port", str(free_port())],
    "set-password": ["admin", "set-password", "admin", "--password-stdin"],
}


pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.fixture(autouse=True)
def settings_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset the server's environment variables so that only each test sets them."""
    for setting in table():
        monkeypatch.delenv(setting.env, raising=False)


def run_main(arguments: list[str]) -> int:
    """Run ``assay`` in this process with PASSWORD on stdin for ``--password-stdin``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        return main(arguments)


def run_assay(
    *arguments: str, cwd: Path, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run ``assay`` in a child process with no ASSAY_ variables but ``env``."""
    child_env = {
        name: value for name, value in os.environ.items() if not name.startswith("ASSAY_")
    }
    child_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "assay", *arguments],
        cwd=cwd,
        env=child_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line(error: str) -> None:
    assert error.startswith("assay: error: ")
    assert "Traceback" not in error
    assert len(error.strip().splitlines()) == 1


def test_serve_unreachable_postgres_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens on it
    url = f"postgresql://postgres:secretpw@127.0.0.1:{port}/assay"

    result = run_assay("serve", "--port", str(free_port()), "--database-url", url, cwd=tmp_path)

    assert result.returncode == 1
    assert_one_line(result.stderr)
    shown_url = f"postgresql://postgres:***@127.0.0.1:{port}/assay"
    assert result.stderr.startswith(f"assay: error: cannot open the database {shown_url}: ")
    assert "Check that the server is running" in result.stderr
    assert "secretpw" not in result.stderr
    assert "assay serving on" not in result.stderr


def test_serve_missing_postgres_database_one_line(postgres_admin_url: str, tmp_path: Path) -> None:
    name = f"assay_missing_{os.getpid()}"
    url = database_url(postgres_admin_url, name)

    result = run_assay("serve", "--port", str(free_port()), "--database-url", url, cwd=tmp_path)

    assert result.returncode == 1
    assert_one_line(result.stderr)
    assert f'database "{name}" does not exist' in result.stderr
    assert "assay serving on" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def read_only_postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """The URL of an empty database for a role that may connect but not create tables.

    ``assay serve``'s connection check passes on it, and the migrations at
    start-up fail. The URL carries the password ``secretpw``, which no output
    may show.
    """
    suffix = secrets.token_hex(4)
    role, name = f"assay_no_ddl_{suffix}", f"assay_no_ddl_{suffix}"
    admin_execute(postgres_admin_url, f"CREATE ROLE {role} LOGIN PASSWORD 'secretpw'")
    admin_execute(postgres_admin_url, f"CREATE DATABASE {name}")
    database_admin_url = database_url(postgres_admin_url, name)
    # PostgreSQL 15 and later revoke this by default, but older versions grant it.
    admin_execute(database_admin_url, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    parts = urlsplit(postgres_admin_url)
    yield f"postgresql://{role}:secretpw@{parts.hostname}:{parts.port or 5432}/{name}"
    admin_execute(postgres_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin_execute(postgres_admin_url, f"DROP ROLE IF EXISTS {role}")


def test_serve_failed_migration_one_line(read_only_postgres_url: str, tmp_path: Path) -> None:
    result = run_assay(
        "serve", "--port", str(free_port()), "--database-url", read_only_postgres_url, cwd=tmp_path
    )

    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("assay: error: ")]
    shown_url = read_only_postgres_url.replace(":secretpw@", ":***@")
    assert result.returncode == 1, result.stderr
    assert "assay serving on" in result.stderr, "the connection check failed, not start-up"
    assert "Traceback" not in result.stderr
    assert "secretpw" not in result.stderr
    assert errors == [lines[-1]]
    assert lines[-1].startswith(
        f"assay: error: cannot start on the database {shown_url}: "
        "permission denied for schema public. "
    )
    assert "the database user may create tables" in lines[-1]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_data_dir_file_rejected(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    data_dir.write_text("not a directory")

    exit_code = run_main([*command, "--data-dir", str(data_dir)])

    error = capsys.readouterr().err
    assert exit_code == 2
    assert_one_line(error)
    assert f"the data directory {data_dir} is not a directory, and it must be one" in error
    assert "--data-dir or ASSAY_DATA_DIR" in error
    assert data_dir.read_text() == "not a directory"


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_non_sqlite_file_rejected(
    command: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / ".assay" / "assay.db"
    path.parent.mkdir()
    path.write_text(NOT_SQLITE)

    exit_code = run_main(command)

    error = capsys.readouterr().err
    assert exit_code == 2
    assert_one_line(error)
    assert f"{path} is not a SQLite database" in error
    assert "--data-dir or ASSAY_DATA_DIR" in error
    assert path.read_text() == NOT_SQLITE
    assert sorted(path.parent.iterdir()) == [path]


def test_non_sqlite_url_names_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text(NOT_SQLITE)

    exit_code = run_main(["db", "upgrade", "--database-url", f"sqlite:///{path}"])

    error = capsys.readouterr().err
    assert exit_code == 2
    assert_one_line(error)
    assert f"{path} is not a SQLite database" in error
    assert "--database-url or ASSAY_DATABASE_URL" in error
    assert path.read_text() == NOT_SQLITE


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_sqlite_path_directory_rejected(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "assay.db"
    path.mkdir()

    exit_code = run_main([*command, "--data-dir", str(tmp_path)])

    error = capsys.readouterr().err
    assert exit_code == 2
    assert_one_line(error)
    assert f"cannot read the SQLite database {path}: Is a directory" in error
    assert list(path.iterdir()) == []


def test_empty_sqlite_file_upgraded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # SQLite treats an empty file as a new database, so the header check lets it pass.
    (tmp_path / "assay.db").write_bytes(b"")

    exit_code = run_main(["db", "upgrade", "--data-dir", str(tmp_path)])

    assert exit_code == 0
    assert "database is at revision" in capsys.readouterr().out
    assert (tmp_path / "assay.db").read_bytes().startswith(b"SQLite format 3\x00")


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_corrupt_sqlite_file_one_line(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "assay.db"
    path.write_bytes(CORRUPT_SQLITE)

    exit_code = run_main([*command, "--data-dir", str(tmp_path)])

    error = capsys.readouterr().err
    assert exit_code == 1
    assert_one_line(error)
    assert f"cannot open the SQLite database {path}: file is not a database" in error
    assert path.read_bytes() == CORRUPT_SQLITE


@pytest.mark.parametrize(
    ("arguments", "environ", "expected"),
    [
        (
            ["db", "upgrade", "--database-url", "mysql://u:pw@db/x"],
            {},
            f"--database-url must be a PostgreSQL or SQLite URL starting with {ACCEPTED_SCHEMES}, "
            "got 'mysql://u:***@db/x'",
        ),
        (
            ["db", "upgrade"],
            {"ASSAY_DATABASE_URL": "mysql://u:pw@db/x"},
            "ASSAY_DATABASE_URL must be a PostgreSQL or SQLite URL starting with "
            f"{ACCEPTED_SCHEMES}, got 'mysql://u:***@db/x'",
        ),
        (
            ["serve", "--redis-url", "localhost:6379"],
            {},
            "--redis-url must start with redis://, rediss:// or unix://, got 'localhost:6379'",
        ),
        (["serve", "--port", "70000"], {}, "--port must be an integer from 1 to 65535, got 70000"),
        (
            ["serve"],
            {"ASSAY_PORT": "70000"},
            "ASSAY_PORT must be an integer from 1 to 65535, got 70000",
        ),
        (
            ["serve", "--port", "8080"],
            {"ASSAY_HEARTBEAT_INTERVAL": "nan"},
            "ASSAY_HEARTBEAT_INTERVAL must be a positive number of seconds, got nan",
        ),
        (
            ["serve"],
            {"ASSAY_LIVE_STREAM_LENGTH": "0"},
            "ASSAY_LIVE_STREAM_LENGTH must be a positive number of batches, got 0",
        ),
    ],
    ids=[
        "database url option",
        "database url variable",
        "redis url option",
        "port option",
        "port variable",
        "heartbeat nan",
        "live stream length 0",
    ],
)
def test_error_names_source_of_value(
    arguments: list[str],
    environ: dict[str, str],
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)

    exit_code = run_main(arguments)

    error = capsys.readouterr().err
    assert exit_code == 2
    assert_one_line(error)
    assert error.strip() == f"assay: error: {expected}"


def test_set_password_unknown_user_skips_prompt(
    sqlite_server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prompts = record_prompts(monkeypatch)
    data_dir = str(sqlite_server.settings.data_dir)

    exit_code = main(["admin", "set-password", "nobody", "--data-dir", data_dir])

    error = capsys.readouterr().err
    assert exit_code == 1
    assert error.strip() == "assay: error: no user named 'nobody'; add --create to create it"
    assert prompts == []


def test_set_password_create_prompts(
    sqlite_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = record_prompts(monkeypatch)
    data_dir = str(sqlite_server.settings.data_dir)

    exit_code = main(["admin", "set-password", "nobody", "--create", "--data-dir", data_dir])

    assert exit_code == 0
    assert prompts == ["Password: ", "Password again: "]


def test_set_password_unreachable_skips_prompt(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = record_prompts(monkeypatch)
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/assay"

    exit_code = main(["admin", "set-password", "admin", "--database-url", url])

    error = capsys.readouterr().err
    assert exit_code == 1
    assert_one_line(error)
    assert f"cannot open the database {url}: " in error
    assert prompts == []


def test_set_password_before_first_serve(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    start_server: Any,
) -> None:
    prompts = record_prompts(monkeypatch)
    data_dir = tmp_path / "data"
    upgraded = main(["db", "upgrade", "--data-dir", str(data_dir)])
    capsys.readouterr()

    before_serve = main(["admin", "set-password", "admin", "--data-dir", str(data_dir)])
    error = capsys.readouterr().err
    server = start_server(Settings(data_dir=data_dir, bootstrap_api_key="k" * 32))
    after_serve = main(["admin", "set-password", "admin", "--data-dir", str(data_dir)])
    signed_in = httpx.post(
        server.url + "/api/v1/session", json={"name": "admin", "password": PASSWORD}
    )

    assert upgraded == 0
    assert before_serve == 1
    assert_one_line(error)
    assert "no user named 'admin', because the database has no users yet" in error
    assert "Add --create" in error
    assert "start `assay serve` once, which creates the admin account 'admin'" in error
    assert after_serve == 0
    assert prompts == ["Password: ", "Password again: "]
    assert signed_in.status_code == 200


@pytest.mark.parametrize(
    "command",
    [["db", "upgrade"], ["admin", "set-password", "carol", "--create", "--password-stdin"]],
    ids=["db upgrade", "set-password"],
)
def test_migration_info_hidden(command: list[str], tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "assay.db").write_bytes(b"")

    result = run_assay(
        *command, "--data-dir", str(tmp_path / "data"), cwd=tmp_path, stdin=PASSWORD + "\n"
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_migration_info_shown_at_debug(tmp_path: Path) -> None:
    result = run_assay(
        "db",
        "upgrade",
        "--data-dir",
        str(tmp_path / "data"),
        cwd=tmp_path,
        env={"ASSAY_LOG_LEVEL": "debug"},
    )

    assert result.returncode == 0, result.stderr
    assert "INFO alembic.runtime.migration: Running upgrade  -> 0001" in result.stderr


def test_serve_on_port_in_use_one_line(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_assay("serve", "--port", str(port), cwd=tmp_path)

    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert lines[-1].startswith(f"assay: error: cannot listen on 127.0.0.1:{port}: ")
    assert "pass another with --port or ASSAY_PORT" in lines[-1]
    assert "Traceback" not in result.stderr
    # The database was not touched, so no admin key was made and shown.
    assert "only this once" not in result.stderr + result.stdout
    assert not (tmp_path / ".assay").exists()


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite:///:memory:"])
@pytest.mark.parametrize("command", [["serve"], ["db", "upgrade"]])
def test_in_memory_database_url_one_line(url: str, command: list[str], tmp_path: Path) -> None:
    port = ["--port", str(free_port())] if command == ["serve"] else []
    result = run_assay(*command, *port, "--database-url", url, cwd=tmp_path)

    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert lines == [
        f"assay: error: the database URL {url!r} names an in-memory SQLite database, which "
        f"starts empty and is gone when assay {' '.join(command)} exits. Set --database-url "
        "or ASSAY_DATABASE_URL to the URL of the server's database, such as "
        "sqlite:///PATH/TO/assay.db."
    ]
