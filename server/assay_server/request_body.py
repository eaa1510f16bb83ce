"""Reading a JSON request body with a size limit, for endpoints that take a JSON object."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from assay_server.errors import BadRequest, PayloadTooLarge


async def read_json(request: Request, max_bytes: int) -> Any:
    """Return the decoded body, or raise ``PayloadTooLarge`` past ``max_bytes`` bytes.

    The body is read in chunks, so a client cannot make the server hold more
    than ``max_bytes`` of it in memory.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(int(declared), max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise _too_large(len(body), max_bytes)
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body must be valid JSON", code="invalid_json") from None


def _too_large(size: int, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"request body of {size:,} bytes or more is too large; at most {max_bytes:,} bytes "
        "are accepted"
    )
