"""Latency from ``run.log()`` to a workspace's live socket receiving the point.

The load is ``--runs`` SDK runs spread over ``--run-processes`` processes,
each logging one step of two metrics ``--rate`` times a second, watched by
``--workspaces`` live sockets (what each open browser workspace holds, see
``docs/live.md``). A point's
latency is the time its socket received it minus the time ``run.log()`` stamped
on it; both clocks are this machine's. Points logged during the first
``--warmup`` seconds are not counted.

    python bench/live.py                     # embedded SQLite and in-process bus
    python bench/live.py --database-url postgresql://postgres@127.0.0.1:5432/assay_bench \\
        --redis-url redis://127.0.0.1:6379/0

Each run logs at its own offset within the period, as separate training jobs
do. ``--lockstep`` logs every run in the same instant instead, which sends a
burst of ``--runs`` batches per step. The SDK sends a point at once when its run was
quiet for ``--flush-interval`` seconds (default 0.05 s) and holds later points
until that interval has passed since the last batch, so at 10 steps a second
each point leaves as it is logged.
The result is printed as JSON and written to ``bench/results/live-*.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import json
import math
import multiprocessing
import os
import platform
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from serving import start_server
from websockets.asyncio.client import connect

import assay
from assay import protocol

BENCH = Path(__file__).resolve().parent
PROJECT = "live-bench"
METRICS = 2
#: Sockets keep reading this long after the last step, for points still on their way.
DRAIN_SECONDS = 10


def start_runs(args: argparse.Namespace, key: str, spool: Path, count: int) -> list[assay.Run]:
    options = assay.SenderOptions(flush_interval=args.flush_interval)
    server = f"http://127.0.0.1:{args.port}"
    return [
        assay.init(PROJECT, server=server, api_key=key, spool_dir=spool, settings=options)
        for _ in range(count)
    ]


def run_share(
    args: argparse.Namespace,
    key: str,
    spool: Path,
    first: int,
    count: int,
    started: Any,
    begin: Any,
    steps: Any,
) -> None:
    """Start runs ``first`` to ``first + count`` here, and drive them once ``begin`` is set.

    Training jobs run in processes of their own. A hundred runs in one
    interpreter put over 200 threads behind its lock, which the runs of a
    sweep do not share.
    """
    runs = start_runs(args, key, spool, count)
    gc.collect()
    gc.freeze()
    started.release()
    while begin.value == 0.0:
        time.sleep(0.01)
    steps.value = drive_runs(args, runs, begin.value + args.warmup + args.duration, first)


def drive_runs(
    args: argparse.Namespace, runs: list[assay.Run], stop_at: float, first: int = 0
) -> int:
    """Log one step to every run ``args.rate`` times a second until ``stop_at`` (epoch seconds).

    Each run logs at its own offset within the period, as the runs of a sweep
    on separate machines do. With ``args.lockstep`` they all log in one instant.
    Returns the number of steps logged to each run.
    """
    period = 1 / args.rate
    offsets = [
        0.0 if args.lockstep else period * (first + index) / args.runs
        for index in range(len(runs))
    ]
    tick = time.monotonic()
    step = 0
    while time.time() < stop_at:
        for run, offset in zip(runs, offsets, strict=True):
            time.sleep(max(0.0, tick + offset - time.monotonic()))
            run.log({"loss": math.exp(-step / 100), "lr": 0.01}, step=step)  # METRICS keys
        step += 1
        tick += period
        time.sleep(max(0.0, tick - time.monotonic()))
    # Finishing waits for every acknowledgement, so the runs finish side by side.
    with concurrent.futures.ThreadPoolExecutor(len(runs)) as pool:
        list(pool.map(lambda run: run.finish(timeout=30), runs))
    return step


class Window:
    """The measured time: from ``begin`` plus the warm-up to the end of logging."""

    def __init__(self, warmup: float, duration: float) -> None:
        self.begin = math.inf
        self.warmup = warmup
        self.duration = duration

    @property
    def stop_at(self) -> float:
        return self.begin + self.warmup + self.duration


async def watch(
    url: str, key: str, window: Window, subscribed: asyncio.Event
) -> tuple[list[float], int, int]:
    """Collect on one workspace's socket the latency of points logged in ``window``.

    Returns the latencies, the points received and the resyncs. A socket told
    to resync subscribes afresh, as the page does, and the count says how often.
    """
    latencies: list[float] = []
    received = 0
    resyncs = 0
    async with connect(url, additional_headers={"Authorization": f"Bearer {key}"}) as connection:
        await connection.send(protocol.pack({"type": "subscribe", "cursors": {}}))
        while time.time() < window.stop_at + DRAIN_SECONDS:
            try:
                frame = await asyncio.wait_for(connection.recv(), timeout=1)
            except TimeoutError:
                continue
            now = time.time()
            message = protocol.unpack(frame)  # type: ignore[arg-type]
            messages = message["messages"] if message["type"] == "batch" else [message]
            for message in messages:
                if message["type"] == "subscribed":
                    subscribed.set()
                elif message["type"] == "resync":
                    resyncs += 1
                    await connection.send(protocol.pack({"type": "subscribe", "cursors": {}}))
                elif message["type"] == "points":
                    for column in message["metrics"].values():
                        for logged in column["times"]:
                            received += 1
                            if logged >= window.begin + window.warmup:
                                latencies.append(now - logged)
    return latencies, received, resyncs


def watch_all(
    url: str,
    key: str,
    sockets: int,
    warmup: float,
    duration: float,
    begin: Any,
    ready: Any,
    output: str,
) -> None:
    """Run every workspace socket in this child process and write the results to ``output``.

    The parent sets ``begin`` to the epoch time of the first logged step once
    ``ready`` is set. Points logged in the first ``warmup`` seconds after it
    are not counted.
    """

    async def run() -> list[tuple[list[float], int, int]]:
        events = [asyncio.Event() for _ in range(sockets)]
        window = Window(warmup, duration)
        tasks = [asyncio.create_task(watch(url, key, window, event)) for event in events]
        await asyncio.gather(*(event.wait() for event in events))
        # The objects that exist now live until the end, so they are frozen:
        # the collector's full passes would walk them and pause every socket.
        gc.collect()
        gc.freeze()
        ready.set()
        while begin.value == 0.0:
            await asyncio.sleep(0.01)
        window.begin = begin.value
        return await asyncio.gather(*tasks)

    results = asyncio.run(run())
    latencies = [value for one in results for value in one[0]]
    np.save(output, np.array(latencies))
    Path(output + ".json").write_text(
        json.dumps({"received": sum(r[1] for r in results), "resyncs": sum(r[2] for r in results)})
    )


def measure(args: argparse.Namespace, key: str, scratch: Path) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{args.port}/api/v1/projects/{PROJECT}/live"
    output = str(scratch / "latencies.npy")
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Event()
    begin = spawn.Value("d", 0.0)
    # The runs exist before the sockets subscribe, and a subscription covers
    # every run of the project, so no point is logged before a socket watches.
    started = spawn.Semaphore(0)
    shares = np.array_split(np.arange(args.runs), args.run_processes)
    workers = []
    for index, share in enumerate(part for part in shares if len(part)):
        steps_logged = spawn.Value("i", 0)
        worker = spawn.Process(
            target=run_share,
            args=(args, key, scratch / f"spool-{index}", int(share[0]), len(share), started),
            kwargs={"begin": begin, "steps": steps_logged},
        )
        worker.start()
        workers.append((worker, steps_logged, len(share)))
    for _ in workers:
        if not started.acquire(timeout=120):
            raise RuntimeError("the runs did not start within 120 s")
    # The sockets get a process of their own, so that decoding frames does not
    # compete for one interpreter with the runs' sender threads.
    child = spawn.Process(
        target=watch_all,
        args=(url, key, args.workspaces, args.warmup, args.duration, begin, ready, output),
    )
    child.start()
    if not ready.wait(60):
        raise RuntimeError("the live sockets did not subscribe within 60 s")
    gc.collect()
    gc.freeze()
    begin.value = time.time()
    for worker, _, _ in workers:
        worker.join(args.warmup + args.duration + 120)
    # Steps logged by all runs together.
    run_steps = sum(logged.value * count for _, logged, count in workers)
    child.join(DRAIN_SECONDS + 60)
    values = np.load(output) * 1000
    counts = json.loads(Path(output + ".json").read_text())
    if not len(values):
        raise RuntimeError(f"no point was measured; the sockets received {counts}")
    return {
        "runs": args.runs,
        "steps_per_second_per_run": args.rate,
        "workspaces": args.workspaces,
        "flush_interval_s": args.flush_interval,
        "lockstep": args.lockstep,
        "run_processes": args.run_processes,
        "duration_s": args.duration,
        "backend": "postgresql+redis" if args.redis_url else "sqlite+in-process bus",
        "points_sent": run_steps * METRICS * args.workspaces,
        "points_received": counts["received"],
        "points_measured": len(values),
        "resyncs": counts["resyncs"],
        "latency_ms": {
            "p50": round(float(np.percentile(values, 50)), 1),
            "p90": round(float(np.percentile(values, 90)), 1),
            "p99": round(float(np.percentile(values, 99)), 1),
            "max": round(float(values.max()), 1),
        },
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="concurrent runs (default 100)")
    parser.add_argument("--rate", type=float, default=10, help="steps per second per run")
    parser.add_argument("--workspaces", type=int, default=20, help="live sockets watching")
    parser.add_argument("--duration", type=float, default=30, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5, help="seconds not measured")
    parser.add_argument("--flush-interval", type=float, default=0.05, help="SDK batching, seconds")
    parser.add_argument(
        "--lockstep", action="store_true", help="log every run in the same instant"
    )
    parser.add_argument(
        "--run-processes", type=int, default=4, help="processes the runs are spread over"
    )
    parser.add_argument("--port", type=int, default=8791, help="port of the server started")
    parser.add_argument("--database-url", help="PostgreSQL URL; default embedded SQLite")
    parser.add_argument("--redis-url", help="Redis URL; default in-process bus")
    args = parser.parse_args()
    key = "bench-" + secrets.token_urlsafe(24)
    # Spool files may still be written while the directory is removed.
    with tempfile.TemporaryDirectory(
        prefix="assay-live-bench-", ignore_cleanup_errors=True
    ) as scratch:
        server = start_server(args.port, key, Path(scratch), args.database_url, args.redis_url)
        try:
            result = measure(args, key, Path(scratch))
        finally:
            server.terminate()
            server.wait(30)
    print(json.dumps(result, indent=2))
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    (results / f"live-{int(time.time())}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
