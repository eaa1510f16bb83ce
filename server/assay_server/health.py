"""``/readyz``: whether this instance can reach its database and bus."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from assay_server.context import ServerContext

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.0


async def database_ready(context: ServerContext) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT), context.db.reading() as connection:
            await connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError):
        log.warning("readiness check: database unreachable", exc_info=True)
        return False
    return True


async def bus_ready(context: ServerContext) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return await context.bus.ping()
    except TimeoutError:
        log.warning("readiness check: bus did not respond within %s s", CHECK_TIMEOUT)
        return False


async def readyz(request: Request) -> Response:
    context: ServerContext = request.app.state.context
    database, bus = await asyncio.gather(database_ready(context), bus_ready(context))
    body = {
        "status": "ready" if database and bus else "unready",
        "database": "ok" if database else "unreachable",
        "bus": "ok" if bus else "unreachable",
    }
    return JSONResponse(body, status_code=200 if database and bus else 503)


routes = [Route("/readyz", readyz)]
