"""Share links of a report, under ``/api/v1/reports/{report_id}/shares``.

A link's token carries 256 random bits and is returned once, when the link is
created; the database keeps only its SHA-256. Revoking a link closes the
sockets it opened on every instance (see ``revocations``).
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import select, update
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from assay_server import access, schema
from assay_server.api import context, respond
from assay_server.auth import hash_key
from assay_server.errors import BadRequest, NotFound
from assay_server.reports.routes import json_body, require_member
from assay_server.reports.tables import report_shares, reports

log = logging.getLogger(__name__)

ROLES = ("view", "edit")
#: The latest expiry accepted: about ten years ahead.
MAX_LIFETIME = 10 * 366 * 24 * 3600.0
#: Share links a report may have that are neither revoked nor expired.
MAX_SHARES = 100


def share_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "report_id": row.report_id,
        "role": row.role,
        "created_at": row.created_at,
        "created_by": row.created_by_name,
        "expires_at": row.expires_at,
        "revoked_at": row.revoked_at,
    }


def parse_role(body: dict[str, Any]) -> str:
    role = body.get("role")
    if role not in ROLES:
        raise BadRequest(
            f'share \'role\' must be "view" or "edit", got {role!r:.40}', code="invalid_share"
        )
    return str(role)


def parse_expiry(body: dict[str, Any], now: float) -> float | None:
    """Read ``expires_at``: null, Unix seconds, or an ISO 8601 time with a time zone."""
    raw = body.get("expires_at")
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise BadRequest(
                f"'expires_at' {raw!r:.60} is not an ISO 8601 time with a time zone; "
                'send for example "2027-01-31T12:00:00Z" or Unix seconds',
                code="invalid_share",
            )
        value = moment.timestamp()
    elif isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
        value = float(raw)
    else:
        raise BadRequest(
            f"'expires_at' must be null, Unix seconds or an ISO 8601 time, got {raw!r:.60}",
            code="invalid_share",
        )
    if value <= now:
        raise BadRequest(
            f"'expires_at' {raw!r:.60} is in the past; send a later time or null for no expiry",
            code="invalid_share",
        )
    if value > now + MAX_LIFETIME:
        raise BadRequest(
            f"'expires_at' {raw!r:.60} is more than ten years ahead; send an earlier time "
            "or null for no expiry",
            code="invalid_share",
        )
    return value


def _shares_query() -> Any:
    return select(
        report_shares.c.id,
        report_shares.c.report_id,
        report_shares.c.role,
        report_shares.c.created_at,
        report_shares.c.expires_at,
        report_shares.c.revoked_at,
        schema.users.c.name.label("created_by_name"),
    ).join(schema.users, schema.users.c.id == report_shares.c.created_by)


async def manager(request: Request) -> access.ReportAccess:
    """Check that the caller may manage the path report's links: an editor of its project."""
    report_id = request.path_params["report_id"]
    granted = await access.report_access(request, report_id)
    require_member(granted, access.Role.EDITOR, "managing share links")
    return granted


async def shares_endpoint(request: Request) -> Response:
    """List the report's share links on ``GET``; create one on ``POST``."""
    granted = await manager(request)
    database = context(request).db
    if request.method == "GET":
        async with database.reading() as connection:
            rows = await connection.execute(
                _shares_query()
                .where(report_shares.c.report_id == granted.report_id)
                .order_by(report_shares.c.created_at.desc())
            )
            return respond(request, {"shares": [share_json(row) for row in rows]})
    body = await json_body(request)
    unknown = sorted(set(body) - {"role", "expires_at"})
    if unknown:
        raise BadRequest(
            f"unknown share fields {unknown}; send 'role' and optionally 'expires_at'",
            code="invalid_share",
        )
    now = time.time()
    role = parse_role(body)
    expires_at = parse_expiry(body, now)
    token = secrets.token_urlsafe(32)
    share_id = secrets.token_hex(8)
    assert granted.user is not None
    async with database.transaction() as connection:
        live = await connection.scalar(
            select(report_shares.c.id)
            .where(
                report_shares.c.report_id == granted.report_id,
                report_shares.c.revoked_at.is_(None),
            )
            .limit(1)
            .offset(MAX_SHARES - 1)
        )
        if live is not None:
            raise BadRequest(
                f"report {granted.report_id!r} already has {MAX_SHARES} share links; "
                "revoke some before creating more",
                code="too_many_shares",
            )
        await connection.execute(
            report_shares.insert().values(
                id=share_id,
                report_id=granted.report_id,
                role=role,
                token_hash=hash_key(token),
                created_by=granted.user.id,
                created_at=now,
                expires_at=expires_at,
            )
        )
        row = (
            await connection.execute(_shares_query().where(report_shares.c.id == share_id))
        ).one()
        project = await connection.scalar(
            select(schema.projects.c.name)
            .join(reports, reports.c.project_id == schema.projects.c.id)
            .where(reports.c.id == granted.report_id)
        )
    log.info(
        "user %s created %s link %s for report %s",
        granted.user.id,
        role,
        share_id,
        granted.report_id,
    )
    data = share_json(row)
    base = str(request.base_url).rstrip("/")
    data["url"] = (
        f"{base}/projects/{quote(str(project), safe='')}/reports/{granted.report_id}"
        f"?{access.SHARE_PARAM}={token}"
    )
    data["token"] = token
    return respond(request, data, 201)


async def share_endpoint(request: Request) -> Response:
    """Revoke a share link (``DELETE``): its token stops working and its sockets close."""
    granted = await manager(request)
    share_id = request.path_params["share_id"]
    async with context(request).db.transaction() as connection:
        result = await connection.execute(
            update(report_shares)
            .where(
                report_shares.c.id == share_id,
                report_shares.c.report_id == granted.report_id,
            )
            .values(revoked_at=time.time())
        )
    if result.rowcount == 0:
        raise NotFound(
            f"report {granted.report_id!r} has no share link {share_id!r}",
            code="share_not_found",
        )
    await request.app.state.revocations.revoke(share_id)
    return Response(status_code=204)


PREFIX = "/api/v1/reports/{report_id}/shares"
routes = [
    Route(PREFIX, shares_endpoint, methods=["GET", "POST"]),
    Route(PREFIX + "/{share_id}", share_endpoint, methods=["DELETE"]),
]
