"""The rate limiter that sign-in and share links use, in Redis and in process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from assay_server.errors import TooManyRequests
from assay_server.ratelimit import CounterStore, LocalCounters, RateLimiter, RedisCounters


@pytest.fixture(params=["local", "redis"])
async def store(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[CounterStore]:
    counters: CounterStore
    if request.param == "local":
        counters = LocalCounters()
    else:
        counters = RedisCounters(redis_url, redis_prefix)
    yield counters
    await counters.close()


async def test_failures_past_limit_get_an_error(store: CounterStore) -> None:
    limiter = RateLimiter("share_link", 3, 60.0, store, "share-link look-ups")
    within = [await limiter.fail("address-a") for _ in range(3)]
    past = await limiter.fail("address-a")

    assert within == [None, None, None]
    assert past is not None
    assert past.status == 429
    assert 59 <= past.retry_after <= 60
    assert "at most 3 in 60 seconds" in past.message
    with pytest.raises(TooManyRequests):
        await limiter.ensure_allowed("address-a")


async def test_keys_counted_apart(store: CounterStore) -> None:
    limiter = RateLimiter("share_link", 1, 60.0, store, "share-link look-ups")
    await limiter.fail("address-a")

    await limiter.ensure_allowed("address-b")
    with pytest.raises(TooManyRequests):
        await limiter.ensure_allowed("address-a")


async def test_ensure_allowed_does_not_count(store: CounterStore) -> None:
    limiter = RateLimiter("sign_in_name", 2, 60.0, store, "failed sign-ins")
    for _ in range(5):
        await limiter.ensure_allowed("alice")
    await limiter.fail("alice")
    await limiter.ensure_allowed("alice")
    await limiter.fail("alice")

    with pytest.raises(TooManyRequests):
        await limiter.ensure_allowed("alice")


async def test_failures_sent_together_stay_within_limit(store: CounterStore) -> None:
    limiter = RateLimiter("share_link", 10, 60.0, store, "share-link look-ups")

    async def guess() -> bool:
        await limiter.ensure_allowed("address")
        await asyncio.sleep(0.05)  # the look-up, which fails
        return await limiter.fail("address") is None

    within_limit = await asyncio.gather(*(guess() for _ in range(30)))

    # All 30 passed the first check together; only 10 are within the limit.
    assert within_limit.count(True) == 10


async def test_window_expiry_resets_count(store: CounterStore) -> None:
    limiter = RateLimiter("share_link", 1, 0.3, store, "share-link look-ups")
    await limiter.fail("address-a")
    with pytest.raises(TooManyRequests):
        await limiter.ensure_allowed("address-a")

    deadline = time.monotonic() + 5
    while True:
        try:
            await limiter.ensure_allowed("address-a")
            break
        except TooManyRequests:
            assert time.monotonic() < deadline, "the window never ended"
            await asyncio.sleep(0.05)
    assert await limiter.fail("address-a") is None


async def test_redis_stores_hashed_keys(redis_url: str, redis_prefix: str) -> None:
    store = RedisCounters(redis_url, redis_prefix)
    limiter = RateLimiter("share_link", 5, 60.0, store, "share-link look-ups")
    await limiter.fail("secret-share-token")
    keys = [key.decode() async for key in store.client.scan_iter(match=redis_prefix + "*")]
    await store.close()

    assert len(keys) == 1
    assert keys[0].startswith(redis_prefix + "ratelimit:share_link:")
    assert "secret-share-token" not in keys[0]


async def test_unreachable_redis_lets_requests_through() -> None:
    # Port 9 (discard) on loopback: nothing listens there, so connecting fails at once.
    store = RedisCounters("redis://127.0.0.1:9/0", "assay-test:")
    limiter = RateLimiter("share_link", 0, 60.0, store, "share-link look-ups")

    await limiter.ensure_allowed("address-a")
    past = await limiter.fail("address-a")
    await store.close()

    assert past is None
