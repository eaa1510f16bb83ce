"""Response headers that limit what a page can load and where it can be embedded.

Every response gets ``X-Content-Type-Options: nosniff`` and
``Referrer-Policy: no-referrer``, unless it sets that header itself, because
share tokens travel in URLs and no other site should see them in a
``Referer``. Only the ``/login?token=`` confirmation page sets its own
(``same-origin``), so that its form's POST carries this server's Origin. HTML responses also get a
``Content-Security-Policy`` that allows scripts only from this server (the
bundle in ``/static``, never inline) and forbids framing.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

# style-src needs 'unsafe-inline' because plotly.js writes its styles into
# <style> elements at run time; Chromium blocks them otherwise. img-src allows
# data: URLs for the empty favicon and blob: URLs for images made in the page.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

EVERY_RESPONSE = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
HTML_RESPONSE = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeadersMiddleware:
    """ASGI middleware that adds the headers above to every HTTP response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                # A response that sets one of these headers itself keeps its own value.
                present = {key.lower() for key, _ in headers}
                headers.extend(header for header in EVERY_RESPONSE if header[0] not in present)
                content_type = next(
                    (value for key, value in headers if key.lower() == b"content-type"), b""
                )
                if content_type.startswith(b"text/html"):
                    headers.extend(HTML_RESPONSE)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
