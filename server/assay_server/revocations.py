"""Close the sockets of a revoked share link on every instance.

Each instance keeps, per share-link id, a close callback for every socket
the link opened here (report sockets and live sockets). Revoking a link
closes its local sockets. With Redis configured, it also publishes the
link's id on ``{prefix}share-revoked``, and every instance closes its own
sockets of that link when the message arrives. Pub/sub drops messages while
a subscriber reconnects. A socket whose link is revoked then fails its next
check (a live socket's next subscribe, a report socket's check every few
seconds), and the token opens nothing new.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as redis

from assay_server.bus import redis_client

log = logging.getLogger(__name__)

CloseSocket = Callable[[], None]

#: The close reason of a socket whose share link was revoked or expired.
LINK_ENDED = "this share link was revoked or has expired"
#: Close code of a live or report socket whose credentials no longer open what
#: it watches: a member removed, a role lowered, a share link revoked or expired.
CLOSE_ACCESS_LOST = 4403
#: Seconds between attempts to read the revocation channel while Redis fails.
RETRY_SECONDS = 1.0


class Revocations:
    def __init__(self, redis_url: str | None, prefix: str) -> None:
        self.sockets: dict[str, set[CloseSocket]] = {}
        self.channel = f"{prefix}share-revoked"
        self.client: redis.Redis | None = None
        self.reader: asyncio.Task[None] | None = None
        if redis_url is not None:
            self.client = redis_client(redis_url)
            self.pubsub = self.client.pubsub()

    async def start(self) -> None:
        """Subscribe to the revocation channel, then read it in a task of its own."""
        if self.client is None:
            return
        subscribed = True
        try:
            await self.pubsub.subscribe(self.channel)
        except (redis.RedisError, OSError) as exc:
            log.warning(
                "subscribing to share-link revocations in Redis failed (%s); retrying every %g s",
                exc,
                RETRY_SECONDS,
            )
            subscribed = False
        self.reader = asyncio.create_task(self._read_forever(subscribed))

    def register(self, share_id: str, close: CloseSocket) -> CloseSocket:
        """Remember a socket of ``share_id``; return the function that removes it again."""
        closers = self.sockets.setdefault(share_id, set())
        closers.add(close)

        def forget() -> None:
            closers.discard(close)
            if not closers and self.sockets.get(share_id) is closers:
                del self.sockets[share_id]

        return forget

    async def revoke(self, share_id: str) -> None:
        """Close the link's sockets here, and ask every other instance to close theirs."""
        closed = self.close_local(share_id)
        log.info("share link %s revoked; %d sockets closed on this instance", share_id, closed)
        if self.client is None:
            return
        try:
            await self.client.publish(self.channel, share_id)
        except (redis.RedisError, OSError) as exc:
            # Other instances close the link's sockets at their next check instead:
            # live sockets at their next subscribe, report sockets within seconds.
            log.warning(
                "share link %s: publishing the revocation to Redis failed (%s); other "
                "instances close its sockets at their next check",
                share_id,
                exc,
            )

    def close_local(self, share_id: str) -> int:
        closers = self.sockets.pop(share_id, set())
        for close in list(closers):
            close()
        return len(closers)

    async def _read_forever(self, subscribed: bool) -> None:
        # An outage is logged once when it starts and once when it ends,
        # rather than on every retry.
        failing = not subscribed
        while True:
            try:
                if not subscribed:
                    await self.pubsub.subscribe(self.channel)
                    subscribed = True
                message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            except (redis.RedisError, OSError) as exc:
                if not failing:
                    log.warning(
                        "reading share-link revocations from Redis failed (%s); "
                        "retrying every %g s",
                        exc,
                        RETRY_SECONDS,
                    )
                    failing = True
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if failing:
                log.info("reading share-link revocations from Redis resumed")
                failing = False
            if message is not None:
                share_id = message["data"].decode(errors="replace")
                closed = self.close_local(share_id)
                log.info(
                    "share link %s revoked elsewhere; %d sockets closed on this instance",
                    share_id,
                    closed,
                )

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        if self.client is not None:
            await self.pubsub.aclose()
            await self.client.aclose()
