"""Fixtures: real Redis and PostgreSQL, fresh databases, and running servers.

Redis and PostgreSQL are used where they answer on their standard loopback
ports (or at ``ASSAY_TEST_REDIS_URL`` / ``ASSAY_TEST_POSTGRES_URL``); otherwise
pytest-redis and pytest-postgresql start private ones from the installed
binaries. Each test gets its own PostgreSQL database, cloned from a migrated
template, and its own Redis key prefix.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import glob
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
import redis
import uvicorn
from pytest_postgresql import factories as postgresql_factories

from assay import protocol
from assay_server.app import create_app
from assay_server.cli import HTTP_OPTIONS
from assay_server.database import Database
from assay_server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _pg_ctl() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return found[-1] if found else shutil.which("pg_ctl")


postgresql_fallback = postgresql_factories.postgresql_proc(executable=_pg_ctl(), port=None)


T = TypeVar("T")


def run_in_thread(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on an event loop of its own in another thread and return its result.

    Sync tests and helpers use this in place of ``asyncio.run``, which raises
    when an event loop is already running in the calling thread. That is the
    case in every test after the first browser test, because Playwright's
    sync API keeps its loop running in the main thread.
    """
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def live_messages(frame: bytes | str) -> list[dict[str, Any]]:
    """Return the live-socket messages in one websocket message, unpacking a ``batch``."""
    message = protocol.unpack(frame)  # type: ignore[arg-type]
    if message["type"] == "batch":
        return list(message["messages"])
    return [message]


def sign_in_with_key(
    browser: httpx.Client, key: str, next_path: str | None = None
) -> httpx.Response:
    """Open ``/login?token=KEY`` and submit its confirmation form, as a browser does.

    ``browser`` needs a ``base_url``. Return the response to the form's POST.
    """
    params = {"token": key} if next_path is None else {"token": key, "next": next_path}
    confirm = browser.get("/login", params=params)
    assert confirm.status_code == 200, confirm.text
    assert "assay_session" not in confirm.headers.get("set-cookie", "")
    form = {"token": key} if next_path is None else {"token": key, "next": next_path}
    return browser.post(
        "/login", data=form, headers={"Sec-Fetch-Site": "same-origin"}, follow_redirects=False
    )


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    explicit = os.environ.get("ASSAY_TEST_REDIS_URL")
    if explicit:
        return explicit
    if answers("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/0"
    process = request.getfixturevalue("redis_proc")
    return f"redis://{process.host}:{process.port}/0"


@pytest.fixture(scope="session")
def postgres_admin_url(request: pytest.FixtureRequest) -> str:
    explicit = os.environ.get("ASSAY_TEST_POSTGRES_URL")
    if explicit:
        return explicit
    if answers("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    process = request.getfixturevalue("postgresql_fallback")
    return f"postgresql://{process.user}@{process.host}:{process.port}/postgres"


def database_url(admin_url: str, name: str) -> str:
    parts = urlsplit(admin_url)
    return parts._replace(path=f"/{name}").geturl()


def admin_execute(admin_url: str, statement: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(statement)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def postgres_template(postgres_admin_url: str) -> Iterator[str]:
    """A migrated database that every test's database is cloned from."""
    name = f"assay_template_{secrets.token_hex(4)}"
    admin_execute(postgres_admin_url, f"CREATE DATABASE {name}")
    database = Database(
        Settings(database_url=database_url(postgres_admin_url, name)).resolved_database_url
    )

    async def migrate() -> None:
        await database.upgrade()
        await database.close()

    # A thread of its own, since an async test may be the first to need this.
    run_in_thread(migrate())
    yield name
    admin_execute(postgres_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def postgres_url(postgres_admin_url: str, postgres_template: str) -> Iterator[str]:
    name = f"assay_test_{secrets.token_hex(6)}"
    admin_execute(postgres_admin_url, f"CREATE DATABASE {name} TEMPLATE {postgres_template}")
    yield database_url(postgres_admin_url, name)
    admin_execute(postgres_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"assay-test:{secrets.token_hex(6)}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


ADMIN_KEY_PREFIX = "test-admin-key-"


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        bootstrap_api_key=ADMIN_KEY_PREFIX + secrets.token_hex(8),
    )


@pytest.fixture
def postgres_settings(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=postgres_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        bootstrap_api_key=ADMIN_KEY_PREFIX + secrets.token_hex(8),
    )


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest) -> Settings:
    """Settings for the embedded default, then for PostgreSQL with Redis."""
    return request.getfixturevalue(f"{request.param}_settings")  # type: ignore[no-any-return]


@dataclass
class RunningServer:
    url: str
    api_key: str
    settings: Settings
    app: Any = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def client(self, api_key: str | None = None) -> httpx.Client:
        key = self.api_key if api_key is None else api_key
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )


class ThreadServer:
    """uvicorn serving the app in a thread of the test process."""

    def __init__(self, settings: Settings, port: int = 0) -> None:
        self.sock = socket.create_server(("127.0.0.1", port))
        port = self.sock.getsockname()[1]
        self.settings = dataclasses.replace(settings, port=port)
        self.app = create_app(self.settings, on_admin_key=lambda key: None)
        config = uvicorn.Config(
            self.app,
            ws="websockets-sansio",
            ws_max_size=16 * 1024 * 1024,
            **HTTP_OPTIONS,
            log_config=None,
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def start(self) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        assert self.settings.bootstrap_api_key is not None
        return RunningServer(
            f"http://127.0.0.1:{self.settings.port}",
            self.settings.bootstrap_api_key,
            self.settings,
            self.app,
        )

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


@pytest.fixture
def start_server() -> Iterator[Any]:
    """Start servers for ``Settings`` (on ``port``, default any free one).

    All of them are stopped when the test ends.
    """
    started: list[ThreadServer] = []

    def start(settings: Settings, port: int = 0) -> RunningServer:
        server = ThreadServer(settings, port)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(settings: Settings, start_server: Any) -> RunningServer:
    """A server on the embedded default, then on PostgreSQL with Redis."""
    return start_server(settings)  # type: ignore[no-any-return]


@pytest.fixture
def sqlite_server(sqlite_settings: Settings, start_server: Any) -> RunningServer:
    return start_server(sqlite_settings)  # type: ignore[no-any-return]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``assay serve`` in a child process, for tests that kill it."""

    def __init__(self, settings: Settings, port: int, log_path: Path) -> None:
        self.settings = settings
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, **settings_env(self.settings), "ASSAY_PORT": str(self.port)}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "assay", "serve"], env=env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"assay serve did not start; see {self.log_path}")
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def settings_env(settings: Settings) -> dict[str, str]:
    env = {}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if value is not None:
            env[field.metadata["env"]] = str(value)
    return env


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[Any]:
    """Build ``ServerProcess`` objects that are stopped when the test ends."""
    made: list[ServerProcess] = []

    def make(settings: Settings) -> ServerProcess:
        process = ServerProcess(settings, free_port(), tmp_path / f"server-{len(made)}.log")
        made.append(process)
        return process

    yield make
    for process in made:
        process.stop()


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = Settings(data_dir=tmp_path).resolved_database_url
    else:
        url = Settings(database_url=request.getfixturevalue("postgres_url")).resolved_database_url
    db = Database(url)
    await db.upgrade()
    yield db
    await db.close()


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    """Restore the root logger's handlers and level after the test.

    The CLI's ``main`` installs a handler on the stream pytest captures,
    which pytest closes when the test ends, so later log records would fail
    to write.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
