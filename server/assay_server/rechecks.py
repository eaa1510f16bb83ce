"""Access rechecks of open sockets, shared between the sockets of one credential.

Every open socket checks its credentials again every few seconds. A browser
with many tabs, or a thousand sockets opened with one API key, would each
take a database connection for the same result, and at a thousand sockets
the connection pool ran dry. ``SharedChecks`` runs one check per credential
and target at a time, and every socket that requests the same check within
``ttl`` seconds gets its outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from starlette.requests import HTTPConnection

from assay_server import sessions
from assay_server.access import SHARE_PARAM

T = TypeVar("T")

#: Seconds an outcome is shared. A credential that loses its access is
#: noticed this much later than the recheck interval alone would allow.
SHARE_SECONDS = 1.0


def recheck_pauses(interval: float, rng: random.Random | None = None) -> Iterator[float]:
    """Yield the pauses before a socket's rechecks: part of ``interval`` at random, then all.

    Sockets opened in the same second would otherwise recheck in the same
    second, every ``interval``, and delay the event loop's other work. The
    random first pause spreads them over the whole interval.
    """
    yield (rng or random).uniform(0, interval)
    while True:
        yield interval


def credential_key(connection: HTTPConnection, target: str) -> bytes:
    """Return a digest of the connection's credentials and ``target``.

    The table of shared checks is keyed by the digest, so it keeps no API
    key, session or share token in memory.
    """
    parts = (
        target,
        connection.headers.get("authorization", ""),
        connection.query_params.get("token", ""),
        connection.cookies.get(sessions.COOKIE, ""),
        connection.query_params.get(SHARE_PARAM, ""),
    )
    return hashlib.sha256("\0".join(parts).encode()).digest()


class SharedChecks:
    """One running check per key, its outcome shared for ``ttl`` seconds."""

    def __init__(self, ttl: float = SHARE_SECONDS) -> None:
        self.ttl = ttl
        self.checks: dict[bytes, tuple[float, asyncio.Future[Any]]] = {}
        self.pruned_at = time.monotonic()

    async def run(self, key: bytes, check: Callable[[], Awaitable[T]]) -> T:
        """Return the outcome of ``check()``, or of the same key's check started lately.

        An exception is shared like a result, and the next call runs the check
        again. Cancelling one caller leaves the check running for the others.
        """
        now = time.monotonic()
        entry = self.checks.get(key)
        if entry is None or entry[0] <= now:
            self._forget_expired(now)
            started = asyncio.ensure_future(check())
            # Read the outcome even when every caller was cancelled meanwhile,
            # so asyncio does not log an exception as never retrieved.
            started.add_done_callback(_retrieve)
            entry = (now + self.ttl, started)
            self.checks[key] = entry
        try:
            result: T = await asyncio.shield(entry[1])
        except asyncio.CancelledError:
            raise
        except Exception:
            if self.checks.get(key) is entry:
                del self.checks[key]
            raise
        return result

    def _forget_expired(self, now: float) -> None:
        # The table is scanned at most once per ``ttl``, so misses stay cheap.
        if now - self.pruned_at < self.ttl:
            return
        self.pruned_at = now
        expired = [key for key, (until, _) in self.checks.items() if until <= now]
        for key in expired:
            del self.checks[key]


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
