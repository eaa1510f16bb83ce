"""Server commands behind ``assay serve``, ``assay db upgrade`` and ``assay admin``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import socket
import sys
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import uvicorn
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util import asbool

from assay import protocol
from assay_server import accounts, logs, metrics, schema
from assay_server.app import create_app
from assay_server.database import Database
from assay_server.errors import AssayError, NotFound
from assay_server.settings import Settings, SettingsError

log = logging.getLogger(__name__)

# 1012 (service restart, RFC 6455 registry): the client should reconnect,
# which through a load balancer reaches another instance.
CLOSE_SERVICE_RESTART = 1012
# Seconds of the shutdown budget kept back for uvicorn's connection shutdown
# and for the lifespan shutdown (closing the bus and the database pool).
UVICORN_RESERVE = 2.0
#: Largest request head (request line and headers) accepted. uvicorn's
#: httptools parser rejects a head of about 64 KiB with a plain-text 400
#: before the application sees it, so the server uses h11, whose limit is
#: set here, and a long filter in a URL gets the API's JSON error instead.
MAX_REQUEST_HEAD_BYTES = 1024 * 1024
#: The garbage collector's thresholds once started. With Python's default of a
#: young collection every 700 allocations, bench/load.py (1,000 live sockets,
#: 200 runs) spent 8% of the event loop's time in 1,450 collections a minute.
#: A full one every 6 s stopped the loop for 150 ms on average, 260 ms at
#: most. With these, a 5-minute run made 25 young collections of 83 ms at
#: most, one of the middle generation of 200 ms, and no full one.
GC_THRESHOLDS = (20_000, 20, 100)
#: The HTTP parser options of every uvicorn that serves the app.
HTTP_OPTIONS: dict[str, Any] = {
    "http": "h11",
    "h11_max_incomplete_event_size": MAX_REQUEST_HEAD_BYTES,
}
LIFESPAN_RESERVE = 1.0
#: The first 16 bytes of every SQLite 3 database file.
SQLITE_HEADER = b"SQLite format 3\x00"


#: The settings that ``assay serve`` also takes as command-line options.
OPTION_SETTINGS = ("host", "port", "data_dir", "database_url", "redis_url")


def load_settings(args: argparse.Namespace) -> Settings | None:
    """Read the settings, with ``args``' options over the environment, or print why not.

    Returns None after an error. The error names the option when the value
    came from one, and otherwise the environment variable.
    """
    options = {name: getattr(args, name, None) for name in OPTION_SETTINGS}
    try:
        return Settings.from_env(**options)
    except SettingsError as exc:
        if options.get(exc.setting) is not None:
            message = exc.naming("--" + exc.setting.replace("_", "-"))
        else:
            message = str(exc)
        print(f"assay: error: {message}", file=sys.stderr)
        return None


def configure_logging(settings: Settings) -> None:
    handler = logs.configure(
        settings.log_format,
        settings.log_level,
        secret_values=[
            settings.bootstrap_api_key,
            logs.url_password(settings.database_url),
            logs.url_password(settings.redis_url),
        ],
    )
    handler.addFilter(metrics.LogCounter())


def quiet_migrations(settings: Settings) -> None:
    """Hide Alembic's INFO lines in one-shot commands, unless ASSAY_LOG_LEVEL is debug."""
    debug = settings.log_level.lower() == "debug"
    logging.getLogger("alembic").setLevel(logging.NOTSET if debug else logging.WARNING)


def fail(message: str, exit_code: int) -> int:
    """Print ``message`` as the command's error and return ``exit_code``."""
    print(f"assay: error: {message}", file=sys.stderr)
    return exit_code


def serve(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    if settings is None:
        return 2
    configure_logging(settings)
    # The port is bound before the database is opened, so that a port in use
    # fails before migrations run or a first admin key is printed.
    listener = open_listener(settings.host, settings.port)
    if isinstance(listener, str):
        return fail(listener, 1)
    with listener:
        return serve_on(settings, listener)


def serve_on(settings: Settings, listener: socket.socket) -> int:
    """Check the database, then serve the app on ``listener`` until stopped."""
    problem = prepare_database_directory(settings, "assay serve") or not_sqlite_database(settings)
    if problem is not None:
        return fail(problem, 2)
    problem = check_connection(settings)
    if problem is not None:
        return fail(problem, 1)
    if make_url(settings.resolved_database_url).get_backend_name() == "postgresql":
        mode = "PostgreSQL"
    else:
        mode = "SQLite" if settings.database_url else "embedded SQLite"
    bus = "Redis" if settings.redis_url else "in-process bus"
    log.info("assay serving on http://%s:%s (%s, %s)", settings.host, settings.port, mode, bus)
    startup = StartupErrors(create_app(settings))
    drain = WebsocketDrain(startup)
    config = uvicorn.Config(
        logs.LogContextMiddleware(drain),
        host=settings.host,
        port=settings.port,
        ws="websockets-sansio",
        ws_max_size=protocol.MAX_MESSAGE_BYTES,
        # Compressing each small frame cost the server and every client CPU: at
        # 50 report editors it raised the median fan-out latency tenfold.
        ws_per_message_deflate=False,
        **HTTP_OPTIONS,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        log_config=None,
        # DrainingServer lowers this to what is left of the shutdown budget.
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
    )
    try:
        DrainingServer(config, drain, settings.shutdown_timeout).run(sockets=[listener])
    except SystemExit:
        # uvicorn exits with status 3 when the app's start-up fails.
        if startup.database_error is None:
            raise
        return fail(failed_start(settings, startup.database_error), 1)
    return 0


def open_listener(host: str, port: int) -> socket.socket | str:
    """Bind a TCP socket to ``host`` and ``port``, or return the error message when that fails."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        reason = exc.strerror or str(exc)
        return (
            f"cannot listen on {host}:{port}: {reason}. Stop the program that uses the "
            "port or pass another with --port or ASSAY_PORT, and check --host or ASSAY_HOST"
        )
    return listener


def check_connection(settings: Settings) -> str | None:
    """Connect to the database once and return an error message when that fails.

    The app connects again as it starts, and ``StartupErrors`` turns a failure
    there into a one-line error too. This check fails before uvicorn logs its
    start-up lines, with the same message as ``assay db upgrade``.
    """

    async def connect() -> None:
        db = Database(settings.resolved_database_url, pool_size=1)
        try:
            async with db.reading() as connection:
                await connection.execute(text("SELECT 1"))
        finally:
            await db.close()

    try:
        asyncio.run(connect())
    except (SQLAlchemyError, OSError) as exc:
        return unreachable_database(settings, exc)
    except TypeError as exc:
        return unknown_connect_argument(settings, exc)
    return None


class StartupErrors:
    """ASGI middleware that keeps a database error of the app's start-up out of uvicorn's log.

    Starlette reports a failed lifespan start-up to uvicorn with the whole
    traceback, which uvicorn 0.55 logs before it exits with status 3. For a
    SQLAlchemyError or OSError, this middleware reports the failure without
    the traceback and keeps the exception in ``database_error``, so that
    ``serve`` can print a one-line error instead. Other exceptions reach
    uvicorn unchanged.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.database_error: SQLAlchemyError | OSError | None = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        failure_messages: list[MutableMapping[str, Any]] = []

        async def hold_startup_failure(message: MutableMapping[str, Any]) -> None:
            # Starlette sends this message and then raises the exception.
            if message["type"] == "lifespan.startup.failed":
                failure_messages.append(message)
                return
            await send(message)

        try:
            await self.app(scope, receive, hold_startup_failure)
        except (SQLAlchemyError, OSError) as exc:
            if not failure_messages:
                raise
            self.database_error = exc
            await send({"type": "lifespan.startup.failed", "message": ""})
        except BaseException:
            if failure_messages:
                await send(failure_messages[0])
            raise


class WebsocketDrain:
    """ASGI middleware that closes websockets between messages when the server stops.

    uvicorn 0.55 (websockets-sansio) closes every open websocket with code
    1012 as soon as its shutdown starts, also while a handler is committing a
    batch, so the client never receives that batch's ack. After ``drain``
    starts, this middleware instead lets each handler finish the message in
    hand. The next time the handler waits for a message it gets a disconnect,
    and the client gets a close frame with code 1012.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.draining = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.active = 0
        self.sockets: set[_DrainableSocket] = set()

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        connection = _DrainableSocket(receive, send, self.draining)
        self.active += 1
        self.idle.clear()
        self.sockets.add(connection)
        try:
            await self.app(scope, connection.receive, connection.send)
        finally:
            self.sockets.discard(connection)
            self.active -= 1
            if self.active == 0:
                self.idle.set()

    async def drain(self, timeout: float) -> int:
        """Close every websocket after its message in hand; return how many are still open."""
        self.draining.set()
        for connection in self.sockets:
            connection.interrupt()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.idle.wait()
        return self.active


class _DrainableSocket:
    """The ``receive`` and ``send`` of one websocket, closed with 1012 once draining starts."""

    def __init__(self, receive: Any, send: Any, draining: asyncio.Event) -> None:
        self._receive = receive
        self._send = send
        self.draining = draining
        self.accepted = False
        self.closed = False
        self.interrupted = False
        #: The handler's task while it waits for a frame, which the drain cancels.
        self.waiting: asyncio.Task[Any] | None = None

    async def receive(self) -> MutableMapping[str, Any]:
        if not self.accepted or self.closed:
            return self._track(await self._receive())
        if not self.draining.is_set():
            message = await self._receive_unless_draining()
            if message is not None:
                return self._track(message)
        await self._close()
        return {"type": "websocket.disconnect", "code": CLOSE_SERVICE_RESTART, "reason": ""}

    async def _receive_unless_draining(self) -> MutableMapping[str, Any] | None:
        # The drain cancels the wait instead of every receive racing it against
        # the drain event, because two futures per frame cost the ingest path.
        # A frame already queued is returned without waiting, so it is handled.
        task = asyncio.current_task()
        self.waiting = task
        try:
            return await self._receive()  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            # Any other cancellation, alone or together with the drain's, is raised again.
            if not self.interrupted or task is None or task.uncancel() > 0:
                raise
            return None
        finally:
            self.waiting = None

    def interrupt(self) -> None:
        """Cancel the handler's wait for a frame, if it is waiting, as the drain starts."""
        self.interrupted = True
        if self.waiting is not None:
            self.waiting.cancel()

    def _track(self, message: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if message["type"] == "websocket.disconnect":
            self.closed = True
        return message

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if self.closed and message["type"] in ("websocket.send", "websocket.close"):
            # Closed by the drain: a frame sent now could not reach the client.
            return
        if message["type"] == "websocket.accept":
            self.accepted = True
        elif message["type"] == "websocket.close":
            self.closed = True
        await self._send(message)

    async def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(RuntimeError, OSError):
            # uvicorn raises ClientDisconnected (an OSError) when the client left first.
            await self._send(
                {
                    "type": "websocket.close",
                    "code": CLOSE_SERVICE_RESTART,
                    "reason": "server restarting",
                }
            )


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a websocket drain before its own shutdown.

    On SIGTERM or SIGINT it stops accepting connections, closes websockets as
    ``WebsocketDrain`` does, then runs uvicorn's shutdown (open HTTP requests,
    then the app's lifespan shutdown) with what is left of ``timeout`` seconds.
    """

    def __init__(self, config: uvicorn.Config, drain: WebsocketDrain, timeout: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.timeout = timeout

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # The objects made during start-up (modules, classes, the app) live as
        # long as the process, so they are frozen and left out of the garbage
        # collector's full passes. Under bench/live.py those passes stopped the
        # event loop for 60 to 110 ms before the freeze and 10 to 17 ms after.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        started = time.monotonic()
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        log.info(
            "stopping: no new connections; closing %d websockets after their messages in hand",
            self.drain.active,
        )
        still_open = await self.drain.drain(max(0.0, self.timeout - UVICORN_RESERVE))
        if still_open:
            log.warning(
                "%d websockets still busy after %.1f s; closing them now",
                still_open,
                time.monotonic() - started,
            )
        left = self.timeout - (time.monotonic() - started)
        self.config.timeout_graceful_shutdown = max(0.5, left - LIFESPAN_RESERVE)  # type: ignore[assignment]
        try:
            async with asyncio.timeout(max(0.5, left)):
                await super().shutdown(sockets)
        except TimeoutError:
            log.error(
                "shutdown took longer than ASSAY_SHUTDOWN_TIMEOUT (%.1f s); exiting anyway",
                self.timeout,
            )
        log.info("stopped in %.2f s", time.monotonic() - started)


def db_upgrade(args: argparse.Namespace) -> int:
    """Create the database if needed, apply pending migrations and print the revision.

    Unlike ``assay admin``, this creates a new SQLite database (and the data
    directory when the database is the default file in it), because a first
    deployment runs it on an empty database.
    """
    settings = load_settings(args)
    if settings is None:
        return 2
    configure_logging(settings)
    quiet_migrations(settings)
    problem = prepare_database_directory(settings, "assay db upgrade") or not_sqlite_database(
        settings
    )
    if problem is not None:
        return fail(problem, 2)

    async def upgrade() -> str | None:
        db = Database(settings.resolved_database_url)
        try:
            await db.upgrade()
            return await db.revision()
        finally:
            await db.close()

    try:
        revision = asyncio.run(upgrade())
    except (SQLAlchemyError, OSError) as exc:
        return fail(unreachable_database(settings, exc), 1)
    except TypeError as exc:
        return fail(unknown_connect_argument(settings, exc), 1)
    print(f"database is at revision {revision}")
    return 0


def set_password(args: argparse.Namespace, read_password: Callable[[], str]) -> int:
    """Set (or with ``--create``, create) user ``args.name``'s password; end their sessions.

    ``read_password`` is called only after the settings, the user name, the
    database and, without ``--create``, the user's existence pass their
    checks, so that no one types a password in vain.
    """
    settings = load_settings(args)
    if settings is None:
        return 2
    configure_logging(settings)
    quiet_migrations(settings)
    try:
        accounts.check_user_name(args.name)
    except AssayError as exc:
        return fail(exc.message, 2)
    problem = missing_database(settings, "assay admin set-password") or not_sqlite_database(
        settings
    )
    if problem is not None:
        return fail(problem, 2)
    try:
        problem = asyncio.run(find_user(settings, args.name, args.create))
    except (SQLAlchemyError, OSError) as exc:
        problem = unreachable_database(settings, exc)
    if problem is not None:
        return fail(problem, 1)
    password = read_password()
    try:
        accounts.check_password(password)
    except AssayError as exc:
        return fail(exc.message, 2)
    try:
        problem = asyncio.run(
            store_password(settings, args.name, password, args.create, args.admin)
        )
    except (SQLAlchemyError, OSError) as exc:
        problem = unreachable_database(settings, exc)
    if problem is not None:
        return fail(problem, 1)
    print(f"password of {args.name} set")
    return 0


async def find_user(settings: Settings, name: str, create: bool) -> str | None:
    """Migrate the database and, unless ``create``, check that user ``name`` exists.

    Returns an error message when the user is missing.
    """
    db = Database(settings.resolved_database_url)
    try:
        await db.upgrade()
        if create:
            return None
        async with db.reading() as connection:
            try:
                await accounts.password_hash_of(connection, name)
            except NotFound:
                return await missing_user(connection, name)
        return None
    finally:
        await db.close()


async def store_password(
    settings: Settings, name: str, password: str, create: bool, admin: bool
) -> str | None:
    """Set user ``name``'s password and end their sessions, or create the user when ``create``.

    Returns an error message when the user is missing, which happens here only
    if someone deleted the user after ``find_user`` checked.
    """
    db = Database(settings.resolved_database_url)
    try:
        password_hash = await accounts.hash_password(password)
        async with db.transaction() as connection:
            try:
                user, _ = await accounts.password_hash_of(connection, name)
            except NotFound:
                if not create:
                    return await missing_user(connection, name)
                await accounts.create_user(connection, name, password_hash, admin)
                return None
            await accounts.set_password_hash(connection, user.id, password_hash)
            await accounts.end_sessions(connection, user.id)
        return None
    finally:
        await db.close()


async def missing_user(connection: AsyncConnection, name: str) -> str:
    """Describe user ``name`` as missing, and how to create it."""
    if await connection.scalar(select(func.count()).select_from(schema.users)):
        return f"no user named {name!r}; add --create to create it"
    # ``assay serve`` creates this account (see auth.bootstrap_admin) in a database without users.
    return (
        f"no user named {name!r}, because the database has no users yet. Add --create "
        "(and --admin for an admin) to create it, or start `assay serve` once, which "
        "creates the admin account 'admin' in a database without users."
    )


def unreachable_database(settings: Settings, exc: SQLAlchemyError | OSError) -> str:
    """Describe a database that could not be opened, with its URL's password hidden."""
    reason = failure_reason(exc)
    path = configured_sqlite_file(settings)
    if path is not None:
        return (
            f"cannot open the SQLite database {path}: {reason}. Check that the file is "
            "an intact SQLite database and that this user can read and write it and "
            "its directory."
        )
    return (
        f"cannot open the database {hidden_database_url(settings)}: {reason}. Check that "
        "the server is running and that --database-url or ASSAY_DATABASE_URL names an "
        "existing database."
    )


def unknown_connect_argument(settings: Settings, exc: TypeError) -> str:
    """Describe a query parameter of the database URL that the driver does not take.

    SQLAlchemy passes the URL's query parameters to the driver's connect
    function as keyword arguments, and an unknown one raises TypeError there.
    """
    return (
        f"cannot open the database {hidden_database_url(settings)}: {exc}. The server "
        "connects to PostgreSQL through asyncpg, so the URL's query parameters must be "
        "arguments of asyncpg.connect(), such as ssl=require; remove the others."
    )


def failed_start(settings: Settings, exc: SQLAlchemyError | OSError) -> str:
    """Describe a database error of the app's start-up, with the URL's password hidden.

    At start-up the app opens the database, applies pending migrations and,
    in a database without users, creates the admin account, so the error may
    come from any of these steps.
    """
    reason = failure_reason(exc)
    path = configured_sqlite_file(settings)
    if path is not None:
        return (
            f"cannot start on the SQLite database {path}: {reason}. Check that the file "
            "is an intact SQLite database and that this user can read and write it and "
            "its directory."
        )
    return (
        f"cannot start on the database {hidden_database_url(settings)}: {reason}. Check "
        "that the database server is running and that the database user may create tables, "
        "because start-up applies pending migrations."
    )


def failure_reason(exc: SQLAlchemyError | OSError) -> str:
    """Return the first line of the driver's error message, or the exception's type name."""
    cause: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        cause = exc.orig
    detail = str(cause).strip()
    # The driver's first line names the cause; the rest is SQL and context.
    return detail.splitlines()[0] if detail else type(cause).__name__


def configured_sqlite_file(settings: Settings) -> Path | None:
    """Return the file of the configured SQLite database, or None for PostgreSQL or memory."""
    url = settings.resolved_database_url
    return sqlite_file(url) if make_url(url).get_backend_name() == "sqlite" else None


def hidden_database_url(settings: Settings) -> str:
    """Return the database URL as the user gave it, with the password replaced by ***."""
    url = settings.database_url or settings.resolved_database_url
    return make_url(url).render_as_string(hide_password=True)


def prepare_database_directory(settings: Settings, command: str) -> str | None:
    """Create or check the SQLite database's directory and return an error message on failure.

    The data directory contains only the default SQLite database, so it is
    created only when no database URL is set. SQLite creates a missing database
    file but not its directory, so for a SQLite URL the directory is checked.
    """
    if settings.database_url is None:
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            return not_a_directory(settings.data_dir, command)
        except OSError as exc:
            return (
                f"cannot create the data directory {settings.data_dir}: {exc.strerror}. "
                "Set --data-dir or ASSAY_DATA_DIR to a directory that can be created."
            )
        return None
    url = settings.resolved_database_url
    if make_url(url).get_backend_name() != "sqlite":
        return None
    path = sqlite_file(url)
    if path is None:
        return in_memory_database(settings, command)
    if path.parent.is_dir():
        return None
    return (
        f"directory {path.parent} of SQLite database {path} not found. The database URL "
        f"{settings.database_url!r} names it, and SQLite creates the file but not its "
        f"directory. Create {path.parent} first, or unset the database URL and set "
        f"--data-dir or ASSAY_DATA_DIR to a directory that {command} creates."
    )


def not_a_directory(data_dir: Path, command: str) -> str:
    return (
        f"the data directory {data_dir} is not a directory, and it must be one. Set "
        f"--data-dir or ASSAY_DATA_DIR to a directory, or to a new path that {command} creates."
    )


def not_sqlite_database(settings: Settings) -> str | None:
    """Return an error message when the SQLite database's path exists but is no SQLite database.

    SQLite opens any file and fails only at the first statement, with "file is
    not a database", so the file's 16-byte header is checked first. An empty
    file is a new database to SQLite, so it passes.
    """
    url = settings.resolved_database_url
    if make_url(url).get_backend_name() != "sqlite":
        return None
    path = sqlite_file(url)
    if path is None:
        return None
    if settings.database_url is None:
        fix = "set --data-dir or ASSAY_DATA_DIR to the server's data directory"
    else:
        fix = "set --database-url or ASSAY_DATABASE_URL to the URL of the server's database"
    try:
        with path.open("rb") as file:
            header = file.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot read the SQLite database {path}: {exc.strerror}. Move it away, or {fix}."
    if header in (b"", SQLITE_HEADER):
        return None
    return (
        f"{path} is not a SQLite database: it does not start with the SQLite file header. "
        f"Move it away or restore it from a backup, or {fix}."
    )


def in_memory_database(settings: Settings, command: str) -> str:
    return (
        f"the database URL {settings.database_url!r} names an in-memory SQLite "
        f"database, which starts empty and is gone when {command} exits. Set "
        "--database-url or ASSAY_DATABASE_URL to the URL of the server's database, "
        "such as sqlite:///PATH/TO/assay.db."
    )


def missing_database(settings: Settings, command: str) -> str | None:
    """Check for the configured SQLite database file and return an error message if it is missing.

    Opening a SQLite file that does not exist creates an empty one, so the
    commands that change an existing database check for the file first.
    Otherwise one run in the wrong directory creates ``./.assay/assay.db`` and
    then finds no users in it. PostgreSQL is not checked, because connecting
    to a database that does not exist fails without creating one.
    """
    url = settings.resolved_database_url
    if make_url(url).get_backend_name() != "sqlite":
        return None
    path = sqlite_file(url)
    if path is None:
        return in_memory_database(settings, command)
    if path.exists():
        return None
    if settings.database_url is not None:
        return (
            f"SQLite database {path} not found; the database URL {settings.database_url!r} "
            f"names it. {command} changes an existing database only, so nothing was "
            "created. Set --database-url or ASSAY_DATABASE_URL to the URL of the "
            "server's database."
        )
    if settings.data_dir.exists() and not settings.data_dir.is_dir():
        return (
            f"the data directory {settings.data_dir} is not a directory, and it must be "
            "one. Set --data-dir or ASSAY_DATA_DIR to the server's data directory."
        )
    return (
        f"SQLite database {path} not found. {command} changes an existing database "
        "only, so nothing was created. Run it in the directory where `assay serve` "
        "runs, or set --data-dir or ASSAY_DATA_DIR to the server's data directory, "
        "or --database-url or ASSAY_DATABASE_URL to the URL of its database."
    )


def sqlite_file(url: str) -> Path | None:
    """Return the absolute path of the file of SQLite URL ``url``, or None when it is in memory.

    Handles the URL forms of SQLAlchemy 2.1's pysqlite dialect: ``sqlite://`` and ``sqlite:///:memory:``
    in memory, ``sqlite:///PATH`` relative to the working directory, and with
    ``uri=true`` a SQLite URI filename (``file:PATH``, in memory with ``mode=memory``
    or ``file::memory:``).
    """
    parsed = make_url(url)
    database = parsed.database or ""
    if asbool(parsed.query.get("uri", False)) and database.startswith("file:"):
        if parsed.query.get("mode") == "memory":
            return None
        database = unquote(urlsplit(database).path)
    if database in ("", ":memory:"):
        return None
    return Path(database).resolve()
