"""Database URLs written for SQLAlchemy's sync PostgreSQL drivers, used end to end.

The server connects through asyncpg whatever driver the URL names. These
tests start on an empty PostgreSQL database, so the migrations run through
the rewritten URL, and then store and read a user.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from assay._cli import main
from assay_server.database import head_revision
from assay_server.settings import DATABASE_SCHEMES, Settings
from conftest import admin_execute, database_url, free_port

pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.fixture
def empty_postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A PostgreSQL database without tables, dropped when the test ends."""
    name = f"assay_empty_{secrets.token_hex(6)}"
    admin_execute(postgres_admin_url, f"CREATE DATABASE {name}")
    yield database_url(postgres_admin_url, name)
    admin_execute(postgres_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def with_driver(url: str, driver: str) -> str:
    """Return ``url`` with the scheme ``postgresql+DRIVER``."""
    return f"postgresql+{driver}://{url.partition('://')[2]}"


def test_serve_psycopg_url_stores_users(
    empty_postgres_url: str, tmp_path: Path, server_process: Any
) -> None:
    key = "test-admin-key-" + secrets.token_hex(8)
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=with_driver(empty_postgres_url, "psycopg"),
        bootstrap_api_key=key,
    )
    server = server_process(settings)
    server.start()
    headers = {"Authorization": f"Bearer {key}"}

    created = httpx.post(
        server.url + "/api/v1/users",
        json={"name": "carol", "password": "a long passphrase", "is_admin": False},
        headers=headers,
    )
    listed = httpx.get(server.url + "/api/v1/users", headers=headers)
    with psycopg.connect(empty_postgres_url) as connection:
        revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        stored = connection.execute("SELECT name FROM users ORDER BY name").fetchall()

    assert created.status_code == 201, created.text
    assert listed.status_code == 200, listed.text
    assert [user["name"] for user in listed.json()["users"]] == ["admin", "carol"]
    assert revision == (head_revision(),)
    assert stored == [("admin",), ("carol",)]
    assert not (tmp_path / "data").exists(), "the server made a SQLite database instead"


@pytest.mark.parametrize(
    ("database", "bus", "described"),
    [
        (None, None, "(embedded SQLite, in-process bus)"),
        ("sqlite", None, "(SQLite, in-process bus)"),
        ("postgresql+psycopg", "redis", "(PostgreSQL, Redis)"),
    ],
)
def test_serve_names_database_and_bus(
    database: str | None,
    bus: str | None,
    described: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    server_process: Any,
) -> None:
    url = None
    if database == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'elsewhere.db'}"
    elif database is not None:
        url = with_driver(request.getfixturevalue("empty_postgres_url"), "psycopg")
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=url,
        redis_url=request.getfixturevalue("redis_url") if bus else None,
        redis_prefix=request.getfixturevalue("redis_prefix") if bus else "assay:",
        bootstrap_api_key="test-admin-key-" + secrets.token_hex(8),
    )
    server = server_process(settings)
    server.start()
    server.stop()
    lines = server.log_path.read_text().splitlines()
    started = [line for line in lines if "assay serving on" in line]

    assert len(started) == 1
    assert started[0].endswith(f"assay serving on http://127.0.0.1:{server.port} {described}")


@pytest.mark.parametrize("command", [["serve"], ["db", "upgrade"], ["admin", "set-password"]])
def test_database_url_help_lists_schemes(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    text = " ".join(capsys.readouterr().out.split())

    assert exited.value.code == 0
    for scheme in DATABASE_SCHEMES:
        assert f" {scheme}" in text or f"({scheme}" in text, scheme


def test_db_upgrade_psycopg2_url(
    empty_postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ASSAY_DATABASE_URL", raising=False)

    exit_code = main(
        ["db", "upgrade", "--database-url", with_driver(empty_postgres_url, "psycopg2")]
    )

    assert exit_code == 0, capsys.readouterr().err
    assert capsys.readouterr().out == f"database is at revision {head_revision()}\n"
    with psycopg.connect(empty_postgres_url) as connection:
        revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision == (head_revision(),)


def test_db_upgrade_libpq_sslmode(
    empty_postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ASSAY_DATABASE_URL", raising=False)

    # The local server has no TLS: with sslmode passed through as ssl, asyncpg
    # connects in plain text, and with sslmode=require it would fail.
    exit_code = main(["db", "upgrade", "--database-url", empty_postgres_url + "?sslmode=disable"])

    assert exit_code == 0, capsys.readouterr().err
    assert capsys.readouterr().out == f"database is at revision {head_revision()}\n"


def test_sslmode_require_reaches_asyncpg(
    empty_postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ASSAY_DATABASE_URL", raising=False)
    with psycopg.connect(empty_postgres_url) as connection:
        server_ssl = connection.execute("SHOW ssl").fetchone() == ("on",)

    exit_code = main(["db", "upgrade", "--database-url", empty_postgres_url + "?sslmode=require"])

    err = capsys.readouterr().err
    if server_ssl:
        assert exit_code == 0, err
    else:
        # asyncpg got ssl=require and asked for TLS, which this server does not offer.
        assert exit_code == 1
        assert "cannot open the database" in err
        assert "SSL" in err
        assert "Traceback" not in err


@pytest.mark.parametrize("command", [["db", "upgrade"], ["serve"]])
def test_unknown_query_parameter_one_line(
    command: list[str], empty_postgres_url: str, tmp_path: Path
) -> None:
    url = make_url(empty_postgres_url).set(password="s3cret").render_as_string(False)
    port = ["--port", str(free_port())] if command == ["serve"] else []
    bogus = ["--database-url", url + "?bogus_option=1"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("ASSAY_")}

    # A server that started anyway would never exit: the timeout ends the test.
    result = subprocess.run(
        [sys.executable, "-m", "assay", *command, *port, *bogus],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "unexpected keyword argument 'bogus_option'" in line
    assert "must be arguments of asyncpg.connect(), such as ssl=require" in line
    assert "s3cret" not in line
