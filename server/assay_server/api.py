"""The HTTP read API under ``/api/v1`` and the ingest websocket route.

Responses are JSON, where NaN and infinities are written as
``{"$float": "NaN"}``, ``{"$float": "Infinity"}`` and ``{"$float": "-Infinity"}``,
or msgpack (exact floats) when the request sends ``Accept: application/msgpack``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import msgpack
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from assay.protocol import MAX_STEP, tag_floats
from assay_server import access, filters, history, metrics, runs
from assay_server.auth import User
from assay_server.context import ServerContext
from assay_server.downsample import MIN_SAMPLES
from assay_server.errors import AssayError, BadRequest, Forbidden, TooManyRequests, Unauthorized
from assay_server.ingest import IngestConnection
from assay_server.runset_shape import FilterRejected
from assay_server.socket_limits import socket_owner

log = logging.getLogger(__name__)

MSGPACK = "application/msgpack"
MAX_SAMPLES = 1_000_000
MAX_PAGE = 10_000
MAX_INT = 2**63 - 1
INTEGER = re.compile(r"-?[0-9]{1,20}")


def respond(request: HTTPConnection, data: Any, status: int = 200) -> Response:
    if MSGPACK in request.headers.get("accept", ""):
        return Response(
            msgpack.packb(data, use_bin_type=True), status_code=status, media_type=MSGPACK
        )
    return JSONResponse(tag_floats(data), status_code=status)


def error_response(request: HTTPConnection, exc: Exception) -> Response:
    assert isinstance(exc, AssayError)
    metrics.ERRORS.labels(exc.code).inc()
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    column = getattr(exc, "column", None)
    if column is not None:
        # A rejected filter names the 1-based column, so editors can point at it.
        error["column"] = column
    response = respond(request, {"error": error}, exc.status)
    if isinstance(exc, TooManyRequests):
        response.headers["Retry-After"] = str(exc.retry_after)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="assay"'
    return response


def http_error(request: HTTPConnection, exc: Exception) -> Response:
    """Give Starlette's own 404 and 405 responses the API's JSON error shape."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    metrics.ERRORS.labels(code).inc()
    response = respond(request, {"error": {"code": code, "message": exc.detail}}, exc.status_code)
    response.headers.update(exc.headers or {})
    return response


def internal_error(request: HTTPConnection, exc: Exception) -> Response:
    # Starlette re-raises the exception after this handler, so the server logs it.
    metrics.ERRORS.labels("internal").inc()
    return respond(
        request,
        {"error": {"code": "internal", "message": "internal server error; see the server log"}},
        500,
    )


def context(connection: HTTPConnection) -> ServerContext:
    return connection.app.state.context  # type: ignore[no-any-return]


async def authenticated(connection: HTTPConnection) -> User:
    """The user whose credentials the request carries; raise ``Unauthorized`` otherwise.

    See ``access.optional_user`` for the credentials accepted.
    """
    user = await access.optional_user(connection)
    if user is None:
        raise Unauthorized("missing API key; send it as 'Authorization: Bearer KEY'")
    return user


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def whoami(request: Request) -> Response:
    user = await authenticated(request)
    return respond(request, {"name": user.name, "is_admin": user.is_admin})


async def list_projects(request: Request) -> Response:
    """List the projects the caller may view: owned, joined as a member, or public."""
    user = await access.optional_user(request)
    async with context(request).db.reading() as db:
        return respond(request, {"projects": await runs.list_projects(db, user)})


async def list_runs(request: Request) -> Response:
    granted = await access.project_access(request, allow_share=True)
    limit = int_param(request, "limit", 1000, 1, MAX_PAGE)
    offset = int_param(request, "offset", 0, 0, MAX_INT)
    cursor = request.query_params.get("cursor")
    text = request.query_params.get("filter")
    check_shared_filter(granted, text)
    run_filter = parse_run_filter(request, text)
    async with context(request).db.reading() as db:
        found, following = await runs.list_runs_page(
            db, request.path_params["project"], limit, offset, run_filter, cursor
        )
    return respond(request, {"runs": narrow_runs(granted, found), "next": following})


def check_shared_filter(granted: access.ProjectAccess, text: str | None) -> None:
    """Raise ``Forbidden`` unless a share link's report has a run set with filter ``text``."""
    if granted.scope is not None and not granted.scope.allows_filter(text):
        raise Forbidden(
            "this share link lists only the runs of its report's run sets; "
            f"no run set of the report has the filter {text or '(none)'!r:.200}",
            code="outside_report",
        )


def narrow_runs(
    granted: access.ProjectAccess, found: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Remove the run fields a share link's report does not draw."""
    if granted.scope is None:
        return found
    return [granted.scope.narrow_run(run) for run in found]


def filter_param(request: Request) -> filters.Node | None:
    """Parse the ``filter`` query parameter; a missing or blank one selects every run."""
    return parse_run_filter(request, request.query_params.get("filter"))


def parse_run_filter(connection: HTTPConnection, text: str | None) -> filters.Node | None:
    """Parse ``text`` within the server's ``ASSAY_MAX_FILTER_LENGTH``; None selects every run."""
    if text is None or not text.strip():
        return None
    try:
        return filters.parse_filter(text, context(connection).settings.max_filter_length)
    except filters.FilterError as exc:
        raise FilterRejected(exc) from None


async def get_run(request: Request) -> Response:
    await access.project_access(request)
    async with context(request).db.reading() as db:
        run = await runs.get_run(db, request.path_params["project"], request.path_params["run_id"])
    return respond(request, run)


async def run_metrics(request: Request) -> Response:
    await access.project_access(request)
    async with context(request).db.reading() as db:
        row = await runs.run_row(db, request.path_params["project"], request.path_params["run_id"])
        return respond(request, {"metrics": await runs.metric_stats(db, row.pk)})


async def run_history(request: Request) -> Response:
    await access.project_access(request)
    keys = request.query_params.getlist("keys") or None
    samples = int_param(request, "samples", None, MIN_SAMPLES, MAX_SAMPLES)
    min_step = int_param(request, "min_step", None, 0, MAX_STEP)
    max_step = int_param(request, "max_step", None, 0, MAX_STEP)
    async with context(request).db.reading() as db:
        row = await runs.run_row(db, request.path_params["project"], request.path_params["run_id"])
        series = await history.read_series(db, row.pk, keys, min_step, max_step)
    return respond(request, {"history": history.history_rows(series, samples)})


def int_param(request: Request, name: str, default: int | None, low: int, high: int) -> Any:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    bounds = f"an integer between {low} and {high}"
    if not INTEGER.fullmatch(raw):
        raise BadRequest(f"query parameter {name!r} must be {bounds}, got {raw!r}")
    value = int(raw)
    if not low <= value <= high:
        raise BadRequest(f"query parameter {name!r} must be {bounds}, got {value}")
    return value


async def ingest(websocket: WebSocket) -> None:
    limits = websocket.app.state.sockets
    try:
        user = await authenticated(websocket)
        owner = socket_owner(websocket, user)
        limits.acquire(owner)
    except AssayError as exc:
        # Rejecting the handshake, rather than accepting and closing, keeps
        # clients from reconnecting at once in a loop.
        await websocket.send_denial_response(error_response(websocket, exc))
        return
    try:
        await IngestConnection(websocket, context(websocket), user).serve()
    finally:
        limits.release(owner)


routes = [
    Route("/healthz", healthz),
    Route("/api/v1/whoami", whoami),
    Route("/api/v1/projects", list_projects),
    Route("/api/v1/projects/{project}/runs", list_runs),
    Route("/api/v1/projects/{project}/runs/{run_id}", get_run),
    Route("/api/v1/projects/{project}/runs/{run_id}/metrics", run_metrics),
    Route("/api/v1/projects/{project}/runs/{run_id}/history", run_history),
    WebSocketRoute("/api/v1/ingest", ingest),
]
