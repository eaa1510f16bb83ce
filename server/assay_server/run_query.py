"""``POST /api/v1/projects/{project}/runs/query``: the filtered run list, filter in the body.

A filter in the URL of ``GET …/runs`` must fit in the request head, which the
HTTP server caps (uvicorn rejects a head of about 64 KiB or more before the
application sees it). The body has no such cap, so long filters come here and
get the same JSON errors as short ones.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from assay_server import access, runs
from assay_server.api import (
    MAX_INT,
    MAX_PAGE,
    check_shared_filter,
    context,
    narrow_runs,
    parse_run_filter,
    respond,
)
from assay_server.errors import BadRequest
from assay_server.request_body import read_json
from assay_server.runset_routes import body_limit

#: The fields a query body may contain.
QUERY_FIELDS = ("filter", "limit", "offset", "cursor")


async def query_runs(request: Request) -> Response:
    """Return ``{"runs": [...], "next": CURSOR}`` for a body ``{"filter": TEXT, "limit": N}``.

    The body may also hold ``offset``, and ``cursor``, the ``next`` of an earlier page.
    """
    granted = await access.project_access(request, allow_share=True)
    body = await read_json(request, body_limit(context(request).settings))
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise BadRequest(
            'the body must be a JSON object such as {"filter": "state = failed", '
            '"limit": 100, "cursor": null}'
        )
    unknown = sorted(set(body) - set(QUERY_FIELDS))
    if unknown:
        raise BadRequest(
            f"invalid body: unknown field {unknown[0]!r:.60}; the fields are "
            f"{', '.join(QUERY_FIELDS)}"
        )
    text = body.get("filter")
    if text is not None and not isinstance(text, str):
        raise BadRequest(f"'filter' must be a string or null, got {text!r:.60}")
    limit = _integer(body, "limit", 1000, 1, MAX_PAGE)
    offset = _integer(body, "offset", 0, 0, MAX_INT)
    cursor = body.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise BadRequest(
            f"'cursor' must be the 'next' string of an earlier page, or null; got {cursor!r:.60}",
            code="invalid_cursor",
        )
    check_shared_filter(granted, text)
    run_filter = parse_run_filter(request, text)
    async with context(request).db.reading() as db:
        found, following = await runs.list_runs_page(
            db, request.path_params["project"], limit, offset, run_filter, cursor
        )
    return respond(request, {"runs": narrow_runs(granted, found), "next": following})


def _integer(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if type(value) is not int or not low <= value <= high:
        raise BadRequest(f"{name!r} must be an integer from {low} to {high}, got {value!r:.40}")
    return value


routes = [Route("/api/v1/projects/{project}/runs/query", query_runs, methods=["POST"])]
