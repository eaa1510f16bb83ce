"""Runs that log known values, and the checks that every point was stored once."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from deploy.deploy_support import wait_until

import assay

#: Retries fast, so that a run whose server came back reconnects within a second.
FAST_RETRY = assay.SenderOptions(flush_interval=0.05, batch_rows=200, backoff_max=0.5)

#: Every tenth value is one of these, in turn, so each crosses every fault.
SPECIAL_VALUES: tuple[float | None, ...] = (math.nan, math.inf, -math.inf, None)

METRIC = "loss"


def expected_value(run_index: int, step: int) -> float | None:
    if step % 10 == 3:
        return SPECIAL_VALUES[(step // 10) % len(SPECIAL_VALUES)]
    return run_index + step / 1000


def same_value(stored: Any, expected: float | None) -> bool:
    """Compare with NaN equal to NaN, and None, NaN and the infinities all distinct."""
    if expected is None or stored is None:
        return stored is None and expected is None
    if isinstance(stored, bool) or not isinstance(stored, int | float):
        return False
    if math.isnan(expected):
        return math.isnan(stored)
    return stored == expected


class Fleet:
    """``count`` SDK runs in this process, logged step by step in lockstep."""

    def __init__(
        self,
        server_url: str,
        api_key: str,
        spool_dir: Path,
        project: str = "faults",
        count: int = 8,
    ) -> None:
        self.project = project
        self.runs = [
            assay.init(
                project,
                server=server_url,
                api_key=api_key,
                spool_dir=spool_dir / f"run-{index}",
                id=f"run-{index}",
                settings=FAST_RETRY,
            )
            for index in range(count)
        ]
        self.logged = 0

    def log_until(self, end: int, seconds: float = 0.0) -> None:
        """Log steps up to ``end`` (exclusive) on every run, spread over about ``seconds``."""
        steps = range(self.logged, end)
        pause = seconds / max(1, len(steps) // 25)
        for step in steps:
            for index, run in enumerate(self.runs):
                run.log({METRIC: expected_value(index, step)}, step=step)
            if step % 25 == 24:
                # Paces the producer so that batches are in flight when a fault hits.
                time.sleep(max(pause, 0.002))
        self.logged = end

    def in_flight(self) -> int:
        """Return the number of batches sent or queued and not yet acknowledged."""
        return sum(len(run._sender.unacked) for run in self.runs)

    def finish(self, timeout: float = 90) -> None:
        for run in self.runs:
            run.finish(timeout=timeout)


def stored_mismatches(server_url: str, api_key: str, fleet: Fleet) -> list[str]:
    """Compare each run's stored history with what it logged; return the differences."""
    problems: list[str] = []
    with assay.Api(server=server_url, api_key=api_key) as api:
        for index, run in enumerate(fleet.runs):
            stored = api.run(fleet.project, run.id)
            rows = stored.history(keys=[METRIC])
            steps = [row["step"] for row in rows]
            count = stored.metrics()[METRIC]["count"]
            if count != fleet.logged:
                problems.append(f"{run.id}: count {count}, logged {fleet.logged}")
            if steps != list(range(fleet.logged)):
                problems.append(f"{run.id}: {len(steps)} rows, {len(set(steps))} distinct steps")
                continue
            wrong = [
                row["step"]
                for row in rows
                if not same_value(row[METRIC], expected_value(index, row["step"]))
            ]
            if wrong:
                problems.append(f"{run.id}: wrong values at steps {wrong[:10]}")
            if stored.state != "finished":
                problems.append(f"{run.id}: state {stored.state}")
    return problems


def print_outcome(
    fault: str, server_url: str, api_key: str, fleet: Fleet, problems: list[str]
) -> None:
    """Print one line of what a fault test logged and stored; ``pytest -s`` shows it.

    docs/reliability.md is built from these lines.
    """
    lost = 0
    extra = 0
    with assay.Api(server=server_url, api_key=api_key) as api:
        for run in fleet.runs:
            count = int(api.run(fleet.project, run.id).metrics()[METRIC]["count"])
            lost += max(0, fleet.logged - count)
            extra += max(0, count - fleet.logged)
    logged = fleet.logged * len(fleet.runs)
    print(
        f"\nfault {fault}: {len(fleet.runs)} runs, {logged} points logged, {lost} lost, "
        f"{extra} stored twice, {len(problems)} runs with mismatches"
    )


KILLED_SDK = """
import sys, time
import assay

run = assay.init("faults", server=sys.argv[1], api_key=sys.argv[2], id="killed",
                 spool_dir=sys.argv[3], settings=assay.SenderOptions(flush_interval=0.05))
for step in range(100):
    run.log({"loss": step / 100}, step=step)
print("logged", flush=True)
time.sleep(600)
"""


class KilledSdk:
    """An SDK process that logs 100 points, then is killed before it can finish."""

    def __init__(self, server_url: str, api_key: str, spool_dir: Path) -> None:
        self.server_url = server_url
        self.api_key = api_key
        self.process = subprocess.Popen(
            [sys.executable, "-c", KILLED_SDK, server_url, api_key, str(spool_dir)],
            stdout=subprocess.PIPE,
        )

    def kill_after_points(self) -> None:
        """Wait until its 100 points are stored, then SIGKILL it."""
        assert self.process.stdout is not None
        assert self.process.stdout.readline() == b"logged\n"
        wait_until(lambda: self._count() == 100, timeout=30, describe=lambda: str(self._count()))
        self.close()

    def state(self) -> str:
        with assay.Api(server=self.server_url, api_key=self.api_key) as api:
            return api.run("faults", "killed").state

    def _count(self) -> int:
        with assay.Api(server=self.server_url, api_key=self.api_key) as api:
            metrics = api.run("faults", "killed").metrics()
        return int(metrics["loss"]["count"]) if "loss" in metrics else 0

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
