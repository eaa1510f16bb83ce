"""Domain errors, and the one table that maps them to HTTP statuses."""

from __future__ import annotations


class AssayError(Exception):
    """Base of the errors the server reports to clients; ``code`` names the case."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(AssayError):
    status = 400
    code = "bad_request"


class Unauthorized(AssayError):
    status = 401
    code = "unauthorized"


class Forbidden(AssayError):
    status = 403
    code = "forbidden"


class NotFound(AssayError):
    status = 404
    code = "not_found"


class Conflict(AssayError):
    status = 409
    code = "conflict"


class PayloadTooLarge(AssayError):
    status = 413
    code = "request_too_large"


class TooManyRequests(AssayError):
    """A rate limit was reached; ``retry_after`` is the whole seconds until it resets."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code)
        self.retry_after = max(1, retry_after)
