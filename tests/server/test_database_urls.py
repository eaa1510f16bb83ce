"""Database URLs written for SQLAlchemy's sync PostgreSQL drivers, used end to end.

The server connects through asyncpg whatever driver the URL names. These
tests start on an empty PostgreSQL database, so the migrations run through
the rewritten URL, and then store and read a user.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from assay._cli import main
from assay_server.database import head_revision
from assay_server.settings import Settings
from conftest import admin_execute, database_url


@pytest.fixture(autouse=True)
def root_logging() -> Iterator[None]:
    """Restore the root logger, on which ``main`` installs a handler."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


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
