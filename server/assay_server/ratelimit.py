"""Rate limits: a counter per key over a fixed window, in Redis or in this process.

With Redis configured, every instance counts in the same Redis keys, so a
client that spreads its attempts over several instances meets one limit.
Without Redis, each process counts on its own. A window starts at the first
counted attempt for a key and lasts ``window`` seconds; the key's count is
then forgotten.

``Limits`` contains the server's limiters, as ``request.app.state.limits``:

- ``login_name`` and ``login_address``: failed sign-ins per user name and per
  client address (``LOGIN_FAILURES`` per ``LOGIN_WINDOW`` seconds);
- ``share``: failed share-link look-ups per client address (``SHARE_LOOKUPS``
  per ``SHARE_WINDOW`` seconds), counted by ``access.share_grant``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as redis

from assay_server.bus import redis_client
from assay_server.errors import TooManyRequests
from assay_server.settings import Settings

log = logging.getLogger(__name__)

LOGIN_FAILURES = 10
LOGIN_WINDOW = 60.0
SHARE_LOOKUPS = 60
SHARE_WINDOW = 60.0
#: Number of keys in the in-process store at which it drops the expired ones.
LOCAL_PRUNE_SIZE = 10_000

# INCR, and start the window on the first hit; returns the count and the
# milliseconds left in the window.
INCREMENT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {count, left}
"""


class CounterStore(Protocol):
    async def increment(self, key: str, window: float) -> tuple[int, float]:
        """Count one hit on ``key``; return the count and the seconds left in its window."""
        ...

    async def peek(self, key: str) -> tuple[int, float]:
        """Return ``key``'s count and the seconds left in its window, without counting."""
        ...

    async def reset(self, key: str) -> None: ...

    async def close(self) -> None: ...


class LocalCounters:
    """Counters in this process's memory."""

    def __init__(self) -> None:
        self.counters: dict[str, tuple[int, float]] = {}

    async def increment(self, key: str, window: float) -> tuple[int, float]:
        now = time.monotonic()
        if len(self.counters) >= LOCAL_PRUNE_SIZE:
            self.counters = {k: v for k, v in self.counters.items() if v[1] > now}
        count, ends = self.counters.get(key, (0, 0.0))
        if ends <= now:
            count, ends = 0, now + window
        self.counters[key] = (count + 1, ends)
        return count + 1, ends - now

    async def peek(self, key: str) -> tuple[int, float]:
        now = time.monotonic()
        count, ends = self.counters.get(key, (0, 0.0))
        if ends <= now:
            return 0, 0.0
        return count, ends - now

    async def reset(self, key: str) -> None:
        self.counters.pop(key, None)

    async def close(self) -> None:
        self.counters.clear()


class RedisCounters:
    """Counters in Redis, shared by every instance that uses the same Redis and prefix."""

    def __init__(self, url: str, prefix: str) -> None:
        self.client = redis_client(url)
        self.prefix = prefix + "ratelimit:"
        self._increment = self.client.register_script(INCREMENT)

    async def increment(self, key: str, window: float) -> tuple[int, float]:
        reply: Any = await self._increment(
            keys=[self.prefix + key], args=[max(1, int(window * 1000))]
        )
        return int(reply[0]), int(reply[1]) / 1000

    async def peek(self, key: str) -> tuple[int, float]:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(self.prefix + key)
            pipe.pttl(self.prefix + key)
            raw, left = await pipe.execute()
        if raw is None or left < 0:
            return 0, 0.0
        return int(raw), left / 1000

    async def reset(self, key: str) -> None:
        await self.client.delete(self.prefix + key)

    async def close(self) -> None:
        await self.client.aclose()


class RateLimiter:
    """At most ``limit`` counted attempts per key in ``window`` seconds.

    Keys are hashed before they are stored, so a share token or a user name
    used as a key never sits in Redis in clear. When Redis fails, the
    limiter logs the error and lets the request through rather than locking
    every user out.
    """

    def __init__(
        self, name: str, limit: int, window: float, store: CounterStore, counted: str
    ) -> None:
        self.name = name
        self.counted = counted
        self.limit = limit
        self.window = window
        self.store = store

    def _key(self, key: str) -> str:
        return f"{self.name}:" + hashlib.sha256(key.encode()).hexdigest()

    async def ensure_allowed(self, key: str) -> None:
        """Raise ``TooManyRequests`` when ``key`` reached the limit, without counting."""
        try:
            count, left = await self.store.peek(self._key(key))
        except (redis.RedisError, OSError):
            log.exception("rate limit %s: reading failed; letting the request through", self.name)
            return
        if count >= self.limit:
            raise self._error(left)

    async def fail(self, key: str) -> TooManyRequests | None:
        """Count one failed attempt for ``key``; past the limit, return the error to raise.

        Counting and deciding are one step, so failures that arrive together
        cannot all pass. The first ``limit`` of a window get None, and the
        caller raises its own error, a 401. The others get the 429 to raise.
        """
        try:
            count, left = await self.store.increment(self._key(key), self.window)
        except (redis.RedisError, OSError):
            log.exception("rate limit %s: counting failed", self.name)
            return None
        return self._error(left) if count > self.limit else None

    def _error(self, left: float) -> TooManyRequests:
        retry_after = max(1, math.ceil(left))
        return TooManyRequests(
            f"too many {self.counted}: at most {self.limit} in {self.window:g} seconds; "
            f"retry in {retry_after} seconds",
            retry_after,
        )


@dataclass
class Limits:
    """The server's rate limiters, sharing one counter store."""

    store: CounterStore
    login_name: RateLimiter
    login_address: RateLimiter
    share: RateLimiter

    @classmethod
    def create(cls, settings: Settings) -> Limits:
        store: CounterStore
        if settings.redis_url is None:
            store = LocalCounters()
        else:
            store = RedisCounters(settings.redis_url, settings.redis_prefix)
        return cls(
            store=store,
            login_name=RateLimiter(
                "sign_in_name",
                LOGIN_FAILURES,
                LOGIN_WINDOW,
                store,
                "failed sign-ins for this name",
            ),
            login_address=RateLimiter(
                "sign_in_address",
                LOGIN_FAILURES,
                LOGIN_WINDOW,
                store,
                "failed sign-ins from this address",
            ),
            share=RateLimiter(
                "share_link", SHARE_LOOKUPS, SHARE_WINDOW, store, "share-link look-ups"
            ),
        )

    async def close(self) -> None:
        await self.store.close()
