"""The ASGI application and its start-up and shut-down."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection
from starlette.responses import Response

from assay_server import (
    account_routes,
    api,
    charts,
    figures,
    health,
    layouts,
    live_socket,
    members,
    metrics,
    pages,
    run_query,
    runs,
    runset_routes,
    sessions,
)
from assay_server.auth import bootstrap_admin
from assay_server.bus import Bus, LocalBus, RedisBus, event_fields
from assay_server.context import ServerContext
from assay_server.csrf import CsrfMiddleware
from assay_server.database import Database
from assay_server.errors import AssayError, TooManyRequests
from assay_server.live import LiveHub
from assay_server.membership import MembershipEngine
from assay_server.ratelimit import Limits
from assay_server.rechecks import SharedChecks
from assay_server.reports import routes as report_routes
from assay_server.reports import shares as report_shares
from assay_server.reports import socket as report_socket
from assay_server.reports.relay import Relay
from assay_server.reports.rooms import ReportRooms, RoomSettings
from assay_server.revocations import Revocations
from assay_server.security_headers import SecurityHeadersMiddleware
from assay_server.settings import Settings
from assay_server.socket_limits import SocketLimits

log = logging.getLogger(__name__)


def print_admin_key(settings: Settings, key: str) -> None:
    # Printed, never logged: log lines end up in aggregators, and this is a secret.
    print(
        f"Created the admin account. Its API key, shown only this once:\n\n    {key}\n\n"
        f"Sign in from a browser with:\n\n"
        f"    http://{settings.host}:{settings.port}/login?token={key}\n\n"
        f"or give the admin a password with `assay admin set-password admin` and sign in "
        f"at http://{settings.host}:{settings.port}/signin\n",
        file=sys.stderr,
        flush=True,
    )


def create_bus(settings: Settings) -> Bus:
    if settings.redis_url is None:
        return LocalBus(
            settings.redis_prefix,
            settings.live_stream_length,
            settings.event_stream_length,
            settings.stream_idle_ttl,
            settings.local_bus_bytes,
        )
    return RedisBus(
        settings.redis_url,
        settings.redis_prefix,
        settings.live_stream_length,
        settings.event_stream_length,
        settings.stream_idle_ttl,
    )


async def start(settings: Settings, on_admin_key: Callable[[str], None]) -> ServerContext:
    """Migrate the database, create the admin on first start and open the bus."""
    if settings.database_url is None:
        # The data directory contains only the default SQLite database.
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url, settings.db_pool_size)
    try:
        await db.upgrade()
        async with db.exclusive() as connection:
            key = await bootstrap_admin(connection, settings.bootstrap_api_key)
    except BaseException:
        await db.close()
        raise
    if key is not None:
        on_admin_key(key)
    return ServerContext(settings=settings, db=db, bus=create_bus(settings))


async def reap_crashed_runs(context: ServerContext) -> None:
    """Mark runs crashed when their heartbeats stop, for as long as the server runs."""
    interval = min(5.0, context.settings.crash_timeout / 4)
    while True:
        await asyncio.sleep(interval)
        try:
            async with context.db.transaction() as connection:
                crashed = await runs.mark_crashed(connection, context.settings.crash_timeout)
            for row in crashed:
                log.info("run %s marked crashed: no heartbeat", row.run_id)
                metrics.CRASHED_RUNS.inc()
                await context.bus.publish_event(
                    row.project_id,
                    event_fields(
                        "run.state", row.run_id, {"state": runs.CRASHED, "previous": runs.RUNNING}
                    ),
                )
        except Exception:
            log.exception("crash detection failed; retrying in %.0f s", interval)


def create_report_rooms(context: ServerContext) -> ReportRooms:
    settings = context.settings
    relay = None
    if settings.redis_url is not None:
        relay = Relay(settings.redis_url, settings.redis_prefix)
    room_settings = RoomSettings(
        idle_timeout=settings.report_idle_timeout,
        flush_interval=settings.report_flush_interval,
        max_document_bytes=settings.report_max_bytes,
    )
    return ReportRooms(context.db, room_settings, relay)


def too_many_requests(request: HTTPConnection, exc: Exception) -> Response:
    assert isinstance(exc, TooManyRequests)
    response = api.error_response(request, exc)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def create_app(settings: Settings, on_admin_key: Callable[[str], None] | None = None) -> Starlette:
    if on_admin_key is None:
        on_admin_key = functools.partial(print_admin_key, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        assert on_admin_key is not None
        context = await start(settings, on_admin_key)
        app.state.context = context
        app.state.hub = LiveHub(context.bus, queue_bytes=settings.live_queue_bytes)
        # plotly imports its figure classes lazily: load them now rather than
        # in the first chart request.
        figures.default_template()
        app.state.membership = MembershipEngine(context.bus, context.db)
        app.state.reports = create_report_rooms(context)
        app.state.revocations = Revocations(settings.redis_url, settings.redis_prefix)
        await app.state.revocations.start()
        app.state.limits = Limits.create(settings)
        app.state.sockets = SocketLimits(settings.max_sockets_per_user)
        app.state.rechecks = SharedChecks()
        reaper = asyncio.create_task(reap_crashed_runs(context))
        log.info("assay server ready on %s:%s", settings.host, settings.port)
        try:
            yield
        finally:
            await app.state.hub.close()
            await app.state.membership.close()
            await app.state.reports.close()
            await app.state.revocations.close()
            await app.state.limits.close()
            await context.writer.close()
            await context.compactor.close()
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            await context.bus.close()
            await context.db.close()

    return Starlette(
        routes=[
            *run_query.routes,
            *api.routes,
            *runset_routes.routes,
            *health.routes,
            *metrics.routes,
            *sessions.routes,
            *account_routes.routes,
            *live_socket.routes,
            *charts.routes,
            *layouts.routes,
            *report_routes.routes,
            *report_shares.routes,
            *members.routes,
            *report_socket.routes,
            *pages.routes,
        ],
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeadersMiddleware), Middleware(CsrfMiddleware)],
        exception_handlers={
            TooManyRequests: too_many_requests,
            AssayError: api.error_response,
            HTTPException: api.http_error,
            Exception: api.internal_error,
        },
    )
