"""Shared access rechecks: one check per credential at a time, its outcome shared."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from assay_server.rechecks import SharedChecks, recheck_pauses


class Counted:
    """A check that counts its calls and waits for ``release`` before it returns."""

    def __init__(self, outcome: object = True) -> None:
        self.calls = 0
        self.outcome = outcome
        self.release = asyncio.Event()

    async def __call__(self) -> object:
        self.calls += 1
        await self.release.wait()
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


async def test_concurrent_checks_run_once() -> None:
    checks = SharedChecks(ttl=60)
    check = Counted("granted")
    waiting = [asyncio.create_task(checks.run(b"key", check)) for _ in range(5)]
    await asyncio.sleep(0)
    check.release.set()

    outcomes = await asyncio.gather(*waiting)

    assert check.calls == 1
    assert outcomes == ["granted"] * 5


async def test_other_key_runs_its_own_check() -> None:
    checks = SharedChecks(ttl=60)
    check = Counted()
    check.release.set()

    await checks.run(b"one", check)
    await checks.run(b"two", check)
    await checks.run(b"one", check)

    assert check.calls == 2


async def test_outcome_expires_after_ttl() -> None:
    checks = SharedChecks(ttl=0.05)
    check = Counted()
    check.release.set()

    await checks.run(b"key", check)
    await asyncio.sleep(0.1)
    await checks.run(b"key", check)

    assert check.calls == 2


async def test_error_shared_then_retried() -> None:
    checks = SharedChecks(ttl=60)
    check = Counted(OSError("database unreachable"))
    waiting = [asyncio.create_task(checks.run(b"key", check)) for _ in range(3)]
    await asyncio.sleep(0)
    check.release.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    check.outcome = True

    retried = await checks.run(b"key", check)

    assert all(isinstance(outcome, OSError) for outcome in outcomes)
    assert check.calls == 2
    assert retried is True


async def test_cancelled_caller_leaves_check_running() -> None:
    checks = SharedChecks(ttl=60)
    check = Counted("granted")
    first = asyncio.create_task(checks.run(b"key", check))
    second = asyncio.create_task(checks.run(b"key", check))
    await asyncio.sleep(0)
    first.cancel()
    check.release.set()

    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == "granted"
    assert check.calls == 1


def test_recheck_pauses_spread_first_check() -> None:
    rng = random.Random(7)
    sockets = [list(itertools.islice(recheck_pauses(5.0, rng), 4)) for _ in range(1000)]
    first = sorted(pauses[0] for pauses in sockets)

    # The first rechecks of sockets opened together fall all over the interval.
    assert 0 <= first[0] < 0.1
    assert 4.9 < first[-1] <= 5.0
    assert 2.0 < first[500] < 3.0
    assert all(pauses[1:] == [5.0, 5.0, 5.0] for pauses in sockets)
