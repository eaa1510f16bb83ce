"""Open websockets per owner on this instance, so one client cannot hold them all.

The owner of a socket is the signed-in user, the share link that opened it,
or for anonymous visitors of public projects the client address. Ingest,
live and report sockets count together. The limit applies per instance: a
load balancer that spreads one user over several instances multiplies it.
"""

from __future__ import annotations

import logging
from collections import Counter

from starlette.requests import HTTPConnection

from assay_server.auth import User
from assay_server.errors import TooManyRequests

log = logging.getLogger(__name__)


def socket_owner(
    connection: HTTPConnection, user: User | None, share_id: str | None = None
) -> str:
    """Return the key a socket counts under: its user, its share link, or its address."""
    if user is not None:
        return f"user {user.id}"
    if share_id is not None:
        return f"share link {share_id}"
    address = connection.client.host if connection.client else "unknown"
    return f"address {address}"


class SocketLimits:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: Counter[str] = Counter()

    def acquire(self, owner: str) -> None:
        """Count one more open socket of ``owner``; call ``release`` when it closes.

        Raises ``TooManyRequests`` when the owner already has ``limit`` open.
        """
        if self.open[owner] >= self.limit:
            log.warning("%s reached %d open sockets; rejecting another", owner, self.limit)
            raise TooManyRequests(
                f"{self.limit} websockets are already open for this account on this "
                "server (ASSAY_MAX_SOCKETS_PER_USER); close some before opening more",
                retry_after=5,
            )
        self.open[owner] += 1

    def release(self, owner: str) -> None:
        self.open[owner] -= 1
        if self.open[owner] <= 0:
            del self.open[owner]
