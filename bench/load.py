"""Load one server with many browser live sockets and many ingesting runs.

``--sockets`` live sockets (default 1,000) watch one project while ``--runs``
SDK runs (default 200) log two metrics ``--rate`` times a second each, for
``--minutes`` (default 5), against one ``assay serve`` process started here.
The sockets are read by Node processes with the web app's msgpack decoder
(``load_sockets.mjs``), or with ``--socket-client python`` by Python ones.
The sockets whose latency is measured get a process of their own. The
other sockets are spread over ``--socket-processes`` more, which run at
``--socket-nice``. Its default is 10, so that on a small machine reading them
takes the CPU the server leaves, and 0 with ``--server-cpus``, where they
share no CPU with the server. ``--latency-nice`` sets the niceness of the
measured sockets' process: below 0, it acts as a browser on a host of
its own, which no run or other socket delays. Every socket must still
receive every point: a socket that falls behind gets a resync message from
the server, which counts as an error.
A socket that closes or fails opens again with its cursors, as the web app's
does; the summary counts these reconnections apart from the errors.
The runs are spread over ``--run-processes`` more, and each logs at its own
offset within the period (``--lockstep`` logs them all in one instant).
The script counts errors: sockets that failed to reconnect, error and resync
messages, batches the server rejected and runs that did not finish. It checks
that every socket received every point exactly once and samples the server's
RSS every ``--sample-seconds`` into ``bench/results/load-*.csv``. It reports
the latency from ``run.log()`` to a socket receiving the point, measured on
the first ``--latency-sockets`` sockets, and splits it at the server's append
to the bus: ingest (the SDK and the server storing the batch) and fan-out.
``--warmup-seconds`` leaves the points of the runs' first seconds out of
these figures. ``--server-cpus`` gives the server CPUs of its own, with the
runs and sockets on the others, as if they ran on other hosts.
The latency and ingest figures count one value per point and measured
socket, and the fan-out figures one per points message and measured socket
(see ``COUNTED_PER``).

SIGTERM or SIGINT stops the server, the runs' and the sockets' processes
that this script started, removes its temporary directory and exits with
128 plus the signal number, with no summary.

    python bench/load.py                                   # embedded SQLite, in-process bus
    python bench/load.py --server-cpus 0 --warmup-seconds 10
    python bench/load.py --database-url postgresql://postgres@127.0.0.1:5432/assay_load \\
        --redis-url redis://127.0.0.1:6379/0

The summary is printed as JSON and written next to the CSV, with the server's log.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import csv
import json
import math
import multiprocessing
import os
import platform
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
from serving import start_server, stop_server
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

import assay
from assay import protocol

BENCH = Path(__file__).resolve().parent
#: The Node socket client, and the web app's packages it loads.
NODE_SOCKETS = BENCH / "load_sockets.mjs"
WEB_PACKAGES = BENCH.parent / "client" / "web" / "node_modules"
PROJECT = "load"
METRICS = ("loss", "acc")
#: Sockets keep reading this long after the runs finished, for points on their way.
DRAIN_SECONDS = 30
#: A live socket that closes opens again after a pause that doubles from
#: FIRST_DELAY seconds up to MAX_DELAY, as the web app's live.ts waits. After
#: RECONNECT_ATTEMPTS failures in a row without a subscription, it stays closed.
FIRST_DELAY = 0.5
MAX_DELAY = 15.0
RECONNECT_ATTEMPTS = 10
#: The unit of count of each percentile figure in the summary.
COUNTED_PER = {
    "latency_ms": "point and measured socket: each socket that measures latency "
    "adds one value per point it received",
    "ingest_ms": "point and measured socket, as latency_ms: each point's value "
    "repeats once per measured socket",
    "fanout_ms": "points message and measured socket: each socket that measures "
    "latency adds one value per points message, however many points it carries",
}


@dataclass
class LoadConfig:
    sockets: int = 1000
    runs: int = 200
    run_processes: int = 4
    socket_processes: int = 4
    #: Niceness of the processes of the sockets whose latency is not measured.
    socket_nice: int = 10
    #: Niceness of the process of the sockets that measure latency; below 0 needs root.
    latency_nice: int = 0
    #: "node" reads the sockets with the web app's decoder, "python" with this script's.
    socket_client: str = "node"
    rate: float = 1.0
    #: Every run logs in the same instant, instead of at its own offset in the period.
    lockstep: bool = False
    seconds: float = 300.0
    sample_seconds: float = 5.0
    latency_sockets: int = 50
    #: Seconds after the first point that latencies start to count, past the runs' start-up.
    warmup_seconds: float = 0.0
    #: CPUs the server runs on, while this script and its children run on the
    #: others, as if on another host; None shares every CPU.
    server_cpus: set[int] | None = None
    port: int = 8793
    database_url: str | None = None
    redis_url: str | None = None
    #: Prefix of the Redis keys the server writes; default a fresh random one.
    redis_prefix: str | None = None
    results: Path = BENCH / "results"


@dataclass
class SocketTally:
    """The points per run one live socket received, and every failure it saw."""

    points: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    #: Seconds from ``run.log()`` to the server appending the batch to the bus
    #: (the millisecond in its entry id): the SDK's and ingest's part.
    ingest: list[float] = field(default_factory=list)
    #: Seconds from the server appending each batch to the bus (the millisecond
    #: in its entry id) to the socket receiving it: the fan-out's part.
    fanout: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: The cause of each time the socket closed or failed and opened again.
    reconnects: list[str] = field(default_factory=list)
    #: The ``run.log()`` time of the first point received, which the warm-up counts from.
    first_logged: float | None = None


@dataclass
class Link:
    """One live socket's state across its reconnections."""

    #: The last entry id received per stream, sent in the next ``subscribe``.
    cursors: dict[str, str] = field(default_factory=dict)
    #: Reconnections since the socket last subscribed.
    attempts: int = 0
    subscribed: bool = False


async def watch(
    url: str,
    key: str,
    tally: SocketTally,
    warmup: float | None,
    stop: asyncio.Event,
    ready: Any,
) -> None:
    """Gather one socket's points until ``stop``, reconnecting as the web app does.

    A socket that closes or fails opens again after a pause and subscribes
    with its cursors, so that it receives each point once. The cause of each
    reconnection goes in ``tally.reconnects``. After ``RECONNECT_ATTEMPTS``
    failures in a row without subscribing, the cause goes in ``tally.errors``
    and the socket stays closed.
    """
    link = Link()
    while (cause := await watch_once(url, key, tally, warmup, stop, ready, link)) is not None:
        if link.attempts >= RECONNECT_ATTEMPTS:
            tally.errors.append(f"{cause}, after {link.attempts} reconnections")
            return
        tally.reconnects.append(cause)
        ceiling = min(MAX_DELAY, FIRST_DELAY * 2**link.attempts)
        link.attempts += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), ceiling / 2 + random.random() * ceiling / 2)
            return


async def watch_once(
    url: str,
    key: str,
    tally: SocketTally,
    warmup: float | None,
    stop: asyncio.Event,
    ready: Any,
    link: Link,
) -> str | None:
    """Read one connection until ``stop`` (return None) or until it ends (return why)."""
    headers = {"Authorization": f"Bearer {key}"}

    async def read(socket: Any) -> str:
        # One plain receive per frame: a timeout per receive made a task per
        # frame, and the sockets' process could not keep up with the server.
        async for frame in socket:
            received = time.time()
            message = protocol.unpack(frame)
            tally_message(message, tally, warmup, received, ready, link)
        return f"socket closed by the server: {socket.close_code} {socket.close_reason}".rstrip()

    try:
        # Like a browser, the socket takes messages of any size.
        async with connect(
            url, additional_headers=headers, open_timeout=60, max_size=None
        ) as socket:
            await socket.send(protocol.pack({"type": "subscribe", "cursors": link.cursors}))
            reader = asyncio.create_task(read(socket))
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({reader, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not reader.done():
                reader.cancel()
                return None
            return reader.result()
    except (OSError, WebSocketException, TimeoutError) as exc:
        return f"socket failed: {exc!r}"


def tally_message(
    message: dict[str, Any],
    tally: SocketTally,
    warmup: float | None,
    received: float,
    ready: Any,
    link: Link,
) -> None:
    """Count the points of ``message`` in ``tally``, and record its failures.

    With ``warmup`` seconds, not None, it also records the latencies of the
    points logged that long after the first point this socket received.
    Every message naming a stream and an entry moves that stream's cursor in
    ``link``, as the web app's live.ts does. ``ready`` is called on the
    socket's first subscription only.
    """
    if "stream" in message and "id" in message:
        link.cursors[message["stream"]] = message["id"]
    kind = message["type"]
    if kind == "batch":
        for inner in message["messages"]:
            tally_message(inner, tally, warmup, received, ready, link)
    elif kind == "subscribed":
        # The streams the server started from now have a cursor from here on.
        for stream, entry_id in (message.get("cursors") or {}).items():
            link.cursors.setdefault(stream, entry_id)
        link.attempts = 0
        if not link.subscribed:
            link.subscribed = True
            ready()
    elif kind in ("resync", "error"):
        tally.errors.append(f"{kind}: {message}")
    elif kind == "points":
        run_id = message["run_id"]
        appended = int(message["id"].split("-")[0]) / 1000
        measured = False
        for column in message["metrics"].values():
            tally.points[run_id] = tally.points.get(run_id, 0) + len(column["steps"])
            if warmup is None:
                continue
            for logged in column["times"]:
                if tally.first_logged is None:
                    tally.first_logged = logged
                if logged >= tally.first_logged + warmup:
                    measured = True
                    tally.latencies.append(received - logged)
                    tally.ingest.append(appended - logged)
        if measured:
            tally.fanout.append(received - appended)


def watch_all(
    url: str,
    key: str,
    indexes: range,
    latency_sockets: int,
    warmup: float,
    niceness: int,
    ready: Any,
    stop: Any,
    expected: Any,
    output: Path,
) -> None:
    """Run the live sockets numbered ``indexes`` in this child process.

    Writes their tallies to ``output``. Sockets numbered below
    ``latency_sockets`` measure the latency of points logged ``warmup``
    seconds or more after their first. The process first adds ``niceness``
    to its own. The sockets stop when ``stop`` is set, or once each has
    received ``expected`` points after the parent set it (it starts at -1).
    """
    ignore_interrupt()
    os.nice(niceness)

    async def run() -> list[SocketTally]:
        tallies = [SocketTally() for _ in indexes]
        stopped = asyncio.Event()
        subscribed = [0]

        def one_more() -> None:
            subscribed[0] += 1
            if subscribed[0] == len(tallies):
                ready.set()

        tasks = []
        for index, tally in zip(indexes, tallies, strict=True):
            measure = warmup if index < latency_sockets else None
            tasks.append(asyncio.create_task(watch(url, key, tally, measure, stopped, one_more)))
            if index % 50 == 49:
                await asyncio.sleep(0.05)  # spreads the handshakes a little
        while not stop.is_set():
            await asyncio.sleep(0.2)
            total = expected.value
            if total >= 0 and all(sum(t.points.values()) >= total for t in tallies):
                break
        stopped.set()
        await asyncio.gather(*tasks)
        return tallies

    tallies = asyncio.run(run())
    Path(output).write_text(json.dumps([asdict(tally) for tally in tallies]))


@dataclass(frozen=True)
class SocketGroup:
    """The live sockets one process opens, numbered ``part``, and where its tallies go."""

    url: str
    key: str
    part: range
    #: Sockets numbered below this measure latency.
    measured: int
    warmup: float
    niceness: int
    output: Path


class PythonSockets:
    """One child process of live sockets read by ``watch_all``.

    ``stop`` and ``expected`` are shared by every such process of a run.
    """

    def __init__(self, group: SocketGroup, stop: Any, expected: Any) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.ready = spawn.Event()
        self.output = group.output
        self.stop_event = stop
        self.expected = expected
        self.process = spawn.Process(
            target=watch_all,
            args=(
                group.url,
                group.key,
                group.part,
                group.measured,
                group.warmup,
                group.niceness,
                self.ready,
                stop,
                expected,
                group.output,
            ),
        )
        with interrupt_blocked():
            self.process.start()

    def wait_ready(self, timeout: float) -> bool:
        return bool(self.ready.wait(timeout))

    def expect(self, total: int) -> None:
        self.expected.value = total

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float) -> None:
        self.process.join(timeout)

    def close(self, timeout: float) -> None:
        """Wait ``timeout`` seconds for the process to end, then end it."""
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()

    def tallies(self) -> list[dict[str, Any]]:
        return json.loads(self.output.read_text())  # type: ignore[no-any-return]


class NodeSockets:
    """One Node process of live sockets (``load_sockets.mjs``), driven over its stdin."""

    def __init__(self, group: SocketGroup) -> None:
        self.output = group.output
        self.ready = threading.Event()
        part = group.part
        command = ["node", str(NODE_SOCKETS), group.url, str(part.start), str(len(part))]
        self.process = subprocess.Popen(
            [*command, str(group.measured), str(group.warmup), str(group.output)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            # The key goes in the environment, where other users cannot read it.
            env={**os.environ, "ASSAY_API_KEY": group.key},
            preexec_fn=lambda: os.nice(group.niceness),
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip() == "ready":
                self.ready.set()

    def wait_ready(self, timeout: float) -> bool:
        return self.ready.wait(timeout)

    def expect(self, total: int) -> None:
        self._say(f"expect {total}")

    def stop(self) -> None:
        self._say("stop")

    def _say(self, line: str) -> None:
        assert self.process.stdin is not None
        # A process that already ended has closed its stdin.
        with contextlib.suppress(OSError, ValueError):
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()

    def join(self, timeout: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)

    def close(self, timeout: float) -> None:
        """Wait ``timeout`` seconds for the process to end, end it, and close its pipes."""
        self.join(timeout)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.reader.join()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def tallies(self) -> list[dict[str, Any]]:
        if not self.output.exists():
            code = self.process.poll()
            raise RuntimeError(f"the Node socket process ended with {code} and no tallies")
        return json.loads(self.output.read_text())  # type: ignore[no-any-return]


def check_node() -> None:
    """Raise SystemExit naming the fix when the Node socket client cannot run."""
    if shutil.which("node") is None:
        raise SystemExit("--socket-client node needs Node.js 18 or newer on PATH")
    if not (WEB_PACKAGES / "ws").is_dir() or not (WEB_PACKAGES / "@msgpack" / "msgpack").is_dir():
        raise SystemExit(
            f"--socket-client node needs the web app's packages in {WEB_PACKAGES}: "
            "run `make install`, or `npm ci` in client/web"
        )


class RssSampler(threading.Thread):
    """Samples a process's resident set size every ``interval`` seconds.

    With ``metrics_url``, each sample also reads the size of the entries in
    the server's in-process bus from ``/metrics``. The bus grows until it reaches
    ASSAY_LOCAL_BUS_BYTES, so the RSS less the bus shows whether anything
    else grows.
    """

    def __init__(self, pid: int, interval: float, metrics_url: str | None = None) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.metrics_url = metrics_url
        self.started_at = time.monotonic()
        self.samples: list[tuple[float, float, float | None]] = []
        self.finished = threading.Event()

    def run(self) -> None:
        while not self.finished.is_set():
            self.sample()
            self.finished.wait(self.interval)

    def stop(self) -> None:
        self.finished.set()
        self.join()
        self.sample()

    def sample(self) -> None:
        elapsed = time.monotonic() - self.started_at
        bus = None if self.metrics_url is None else bus_mib(self.metrics_url)
        self.samples.append((elapsed, rss_mib(self.pid), bus))


def bus_mib(metrics_url: str) -> float | None:
    """Read the in-process bus's bytes from the server's ``/metrics``, or None when it fails."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("assay_local_bus_bytes "):
            return float(line.split()[1]) / 2**20
    return None


def growth_per_minute(samples: Sequence[tuple[float, float]]) -> float | None:
    """Fit a line to the second half of ``samples`` (seconds, MiB); return MiB per minute."""
    half = samples[len(samples) // 2 :]
    if len(half) < 2 or half[-1][0] <= half[0][0]:
        return None
    slope = np.polyfit([t for t, _ in half], [value for _, value in half], 1)[0]
    return round(float(slope) * 60, 2)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def drive_runs(config: LoadConfig, runs: list[assay.Run], first: int) -> int:
    """Log one step of every metric to every run ``config.rate`` times a second.

    The runs are numbered from ``first`` among all the runs. Each logs at its
    own offset within the period, as the runs of a sweep on separate machines
    do. With ``config.lockstep`` they all log in one instant.
    Returns the number of steps logged to each run, once every run finished.
    """
    period = 1 / config.rate
    offsets = [
        0.0 if config.lockstep else period * (first + index) / config.runs
        for index in range(len(runs))
    ]
    tick = time.monotonic()
    stop_at = tick + config.seconds
    step = 0
    while time.monotonic() < stop_at:
        for run, offset in zip(runs, offsets, strict=True):
            time.sleep(max(0.0, tick + offset - time.monotonic()))
            run.log({"loss": 1 / (step + 1), "acc": step / 1e6}, step=step)
        step += 1
        tick += period
        time.sleep(max(0.0, tick - time.monotonic()))
    # Every run finishes at once, so the whole finish takes about 120 s at most.
    with concurrent.futures.ThreadPoolExecutor(len(runs)) as pool:
        list(pool.map(lambda run: run.finish(timeout=120), runs))
    return step


def drive_share(
    config: LoadConfig, server_url: str, key: str, spool: Path, part: range, results: Any
) -> None:
    """Start the runs numbered ``part`` in this worker process and drive them.

    Puts the points logged per run and the runs' errors on ``results``.
    """
    ignore_interrupt()
    options = assay.SenderOptions(flush_interval=0.2)
    runs = [
        assay.init(PROJECT, server=server_url, api_key=key, spool_dir=spool, settings=options)
        for _ in part
    ]
    steps = drive_runs(config, runs, part.start)
    results.put(({run.id: steps * len(METRICS) for run in runs}, run_errors(runs)))


def drive_all(config: LoadConfig, server_url: str, key: str, spool: Path) -> tuple[Any, Any]:
    """Drive ``config.runs`` runs spread over ``config.run_processes`` worker processes.

    Returns the points logged per run id and the runs' errors. Training jobs run
    in processes of their own, and 200 sender threads in one interpreter would
    compete for its lock, so one process would measure the load generator.
    """
    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    workers = [
        spawn.Process(
            target=drive_share, args=(config, server_url, key, spool / str(index), part, results)
        )
        for index, part in enumerate(split(config.runs, config.run_processes))
        if part
    ]
    expected: dict[str, int] = {}
    errors: list[str] = []
    try:
        with interrupt_blocked():
            for worker in workers:
                worker.start()
        for _ in workers:
            logged, failed = results.get(timeout=config.seconds + 600)
            expected.update(logged)
            errors += failed
        for worker in workers:
            worker.join(60)
    finally:
        # Workers still running here were interrupted, or never sent their results.
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
        for worker in workers:
            if worker.is_alive():
                worker.join(10)
            if worker.is_alive():
                worker.kill()
                worker.join()
    return expected, errors


@contextlib.contextmanager
def interrupt_blocked() -> Iterator[None]:
    """Block SIGINT in this thread, so that the child processes it starts inherit the block.

    Ctrl-C in a terminal sends SIGINT to the whole process group. A spawned
    child that got it while still importing would die with a KeyboardInterrupt
    traceback before ``ignore_interrupt`` runs. No SIGINT to this process is
    lost meanwhile: another thread takes it, or it stays pending until the
    block ends. CPython 3.11 starts its resource tracker the same way
    (``ResourceTracker.ensure_running`` in multiprocessing/resource_tracker.py).
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_interrupt() -> None:
    """Leave stopping this child process to the parent when Ctrl-C reaches the whole group.

    The child started with SIGINT blocked (``interrupt_blocked``). Ignoring it
    before the unblock drops any SIGINT pending since the start.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def split(count: int, parts: int) -> list[range]:
    """Number ``count`` things from 0 and cut them into at most ``parts`` runs of numbers."""
    bounds = np.linspace(0, count, max(1, min(parts, count)) + 1).astype(int)
    return [range(start, stop) for start, stop in zip(bounds, bounds[1:], strict=False)]


def run_errors(runs: list[assay.Run]) -> list[str]:
    errors = []
    for run in runs:
        sender = run._sender
        if run.state != "finished":
            errors.append(f"run {run.id} ended {run.state}, fatal {sender.fatal!r}")
        if sender.dropped_batches:
            errors.append(f"run {run.id}: {sender.dropped_batches} batches rejected")
    return errors


def delivery_errors(tallies: list[dict[str, Any]], expected: dict[str, int]) -> list[str]:
    """Compare each socket's points per run with the points logged."""
    errors = []
    for index, tally in enumerate(tallies):
        for run_id, count in expected.items():
            got = tally["points"].get(run_id, 0)
            if got != count:
                errors.append(f"socket {index}: run {run_id} {got} of {count} points")
    return errors


def cpu_list(text: str) -> set[int]:
    """Parse a list of CPU numbers such as ``0`` or ``0,2``."""
    try:
        cpus = {int(part) for part in text.split(",")}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of CPU numbers; write them as 0 or 0,1"
        ) from None
    return cpus


def client_cpus(server_cpus: set[int]) -> set[int]:
    """Return the CPUs this script may use besides ``server_cpus``, or raise SystemExit."""
    available = os.sched_getaffinity(0)
    if not server_cpus <= available:
        raise SystemExit(
            f"--server-cpus {sorted(server_cpus)} names CPUs outside the ones this "
            f"process may use, {sorted(available)}"
        )
    rest = available - server_cpus
    if not rest:
        raise SystemExit(
            f"--server-cpus {sorted(server_cpus)} leaves no CPU for the runs and "
            "sockets; name fewer CPUs"
        )
    return rest


def run_load(config: LoadConfig) -> dict[str, Any]:
    """Run the load described by ``config``; return the summary, with every error found."""
    if config.socket_client == "node":
        check_node()
    if config.server_cpus is None:
        return _run_load(config)
    # The children started from here inherit this process's CPUs.
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, client_cpus(config.server_cpus))
    try:
        return _run_load(config)
    finally:
        os.sched_setaffinity(0, own)


def _run_load(config: LoadConfig) -> dict[str, Any]:
    key = "load-" + secrets.token_urlsafe(24)
    config.results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory(prefix="assay-load-") as scratch_name:
        scratch = Path(scratch_name)
        saved_log = config.results / f"load-{stamp}-server.log"
        try:
            server = start_server(
                config.port,
                key,
                scratch,
                config.database_url,
                config.redis_url,
                config.redis_prefix,
                # Every socket and run uses one API key, so they all count against one user.
                {"ASSAY_MAX_SOCKETS_PER_USER": str(config.sockets + config.runs + 100)},
                cpus=config.server_cpus,
            )
        except RuntimeError:
            # The scratch directory goes with this block, so keep the log.
            saved_log.write_bytes((scratch / "server.log").read_bytes())
            raise RuntimeError(f"assay serve did not start; see {saved_log}") from None
        try:
            summary = measure(config, key, scratch, server.pid)
        finally:
            stop_server(server)
        server_log = (scratch / "server.log").read_text(errors="replace")
        saved_log.write_text(server_log)
        log_errors = [
            line
            for line in server_log.splitlines()
            if " ERROR " in line or line.startswith("ERROR")
        ]
    summary["server_log_errors"] = len(log_errors)
    summary["errors"] += log_errors[:20]
    csv_path = config.results / f"load-{stamp}.csv"
    with open(csv_path, "w", newline="") as output:
        writer = csv.writer(output)
        writer.writerow(["elapsed_s", "rss_mib", "bus_mib", "rss_less_bus_mib"])
        for elapsed, rss, bus in summary.pop("rss_samples"):
            rounded = [round(elapsed, 1), round(rss, 1)]
            if bus is None:
                writer.writerow([*rounded, "", ""])
            else:
                writer.writerow([*rounded, round(bus, 1), round(rss - bus, 1)])
    summary["rss_csv"] = str(csv_path)
    (config.results / f"load-{stamp}.json").write_text(json.dumps(summary, indent=2))
    return summary


def measure(config: LoadConfig, key: str, scratch: Path, server_pid: int) -> dict[str, Any]:
    server_url = f"http://127.0.0.1:{config.port}"
    # The project must exist before a live socket can watch it.
    assay.init(PROJECT, server=server_url, api_key=key, spool_dir=scratch / "spool").finish()
    # Redis keeps the streams outside the server, so only the in-process bus is read.
    metrics_url = None if config.redis_url else f"{server_url}/metrics"
    sampler = RssSampler(server_pid, config.sample_seconds, metrics_url)
    sampler.start()
    readers: list[PythonSockets | NodeSockets] = []
    try:
        expected, errors, logged_seconds, subscribed_rss = open_sockets_and_drive_runs(
            config, key, scratch, server_pid, readers
        )
        for reader in readers:
            reader.expect(sum(expected.values()))
        drained_by = time.monotonic() + DRAIN_SECONDS
        for reader in readers:
            reader.join(max(0.0, drained_by - time.monotonic()))
        for reader in readers:
            reader.stop()
            reader.close(60)
        sampler.stop()
    finally:
        # After an error or a signal, end at once what the normal path above did not end.
        for reader in readers:
            reader.close(0)
        sampler.finished.set()
        sampler.join()
    tallies = [tally for reader in readers for tally in reader.tallies()]
    errors += [error for tally in tallies for error in tally["errors"]]
    errors += delivery_errors(tallies, expected)
    summary = summarize(config, expected, tallies, errors, sampler.samples, subscribed_rss)
    summary["seconds_logging"] = round(logged_seconds, 1)
    return summary


def open_sockets_and_drive_runs(
    config: LoadConfig,
    key: str,
    scratch: Path,
    server_pid: int,
    readers: list[PythonSockets | NodeSockets],
) -> tuple[dict[str, int], list[str], float, float]:
    """Subscribe the live sockets, appending their processes to ``readers``, and drive the runs.

    Returns the points logged per run id, the runs' errors, the seconds the
    runs took and the server's RSS once every socket subscribed.
    """
    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    expected_points = spawn.Value("q", -1)
    url = f"ws://127.0.0.1:{config.port}/api/v1/projects/{PROJECT}/live"
    # The sockets get processes of their own, so that decoding frames competes
    # neither with the runs' sender threads nor, past one core, with itself.
    measured = min(config.latency_sockets, config.sockets)
    rest = [
        range(part.start + measured, part.stop + measured)
        for part in split(config.sockets - measured, config.socket_processes)
    ]
    for index, part in enumerate([range(measured), *rest]):
        if not part:
            continue
        output = scratch / f"tallies-{index}.json"
        niceness = config.latency_nice if index == 0 else config.socket_nice
        group = SocketGroup(url, key, part, measured, config.warmup_seconds, niceness, output)
        if config.socket_client == "node":
            readers.append(NodeSockets(group))
        else:
            readers.append(PythonSockets(group, stop, expected_points))
    deadline = time.monotonic() + 300
    if not all(reader.wait_ready(max(0.0, deadline - time.monotonic())) for reader in readers):
        for reader in readers:
            reader.stop()
            reader.close(60)
        raise RuntimeError(f"the {config.sockets} live sockets did not subscribe within 300 s")
    subscribed_rss = rss_mib(server_pid)
    started = time.monotonic()
    expected, errors = drive_all(config, f"http://127.0.0.1:{config.port}", key, scratch / "spool")
    return expected, errors, time.monotonic() - started, subscribed_rss


def error_kind(error: str) -> str:
    """Name the kind of one error of the summary, for counting."""
    for prefix, kind in (
        ("run ", "run not finished or batches rejected"),
        ("socket failed", "socket failed"),
        ("socket ", "socket missing points or with points twice"),
        ("resync", "resync message"),
        ("error", "error message"),
    ):
        if error.startswith(prefix):
            return kind
    return "other"


def percentiles(values: Any) -> dict[str, int | float | None]:
    """Return the count, p50, p99 and maximum of ``values`` rounded to 0.1, or Nones when empty."""
    if not len(values):
        return {"count": 0, "p50": None, "p99": None, "max": None}
    return {
        "count": len(values),
        "p50": round(float(np.percentile(values, 50)), 1),
        "p99": round(float(np.percentile(values, 99)), 1),
        "max": round(float(values.max()), 1),
    }


def summarize(
    config: LoadConfig,
    expected: dict[str, int],
    tallies: list[dict[str, Any]],
    errors: list[str],
    rss_samples: list[tuple[float, float, float | None]],
    subscribed_rss: float,
) -> dict[str, Any]:
    """Build the summary of one load run from what the sockets and the sampler gathered."""
    latencies = np.array([value for tally in tallies for value in tally["latencies"]]) * 1000
    fanout = np.array([value for tally in tallies for value in tally["fanout"]]) * 1000
    ingest = np.array([value for tally in tallies for value in tally["ingest"]]) * 1000
    rss = [value for _, value, _ in rss_samples]
    less_bus = [(t, value - bus) for t, value, bus in rss_samples if bus is not None]
    reconnects = [cause for tally in tallies for cause in tally["reconnects"]]
    return {
        "sockets": config.sockets,
        "runs": config.runs,
        "steps_per_second_per_run": config.rate,
        "lockstep": config.lockstep,
        "backend": "postgresql+redis" if config.redis_url else "sqlite+in-process bus",
        "run_processes": config.run_processes,
        "socket_processes": config.socket_processes,
        "socket_nice": config.socket_nice,
        "latency_nice": config.latency_nice,
        "socket_client": config.socket_client,
        "server_cpus": None if config.server_cpus is None else sorted(config.server_cpus),
        "points_logged": sum(expected.values()),
        "points_delivered": sum(sum(tally["points"].values()) for tally in tallies),
        "points_expected": sum(expected.values()) * config.sockets,
        "error_count": len(errors),
        "error_kinds": dict(collections.Counter(error_kind(error) for error in errors)),
        "errors": errors[:20],
        "reconnects": len(reconnects),
        "reconnect_causes": dict(collections.Counter(reconnects).most_common(10)),
        "latency_ms": {
            "counted_per": COUNTED_PER["latency_ms"],
            "sockets_measured": min(config.latency_sockets, config.sockets),
            "warmup_seconds": config.warmup_seconds,
            **percentiles(latencies),
        },
        "ingest_ms": {"counted_per": COUNTED_PER["ingest_ms"], **percentiles(ingest)},
        "fanout_ms": {"counted_per": COUNTED_PER["fanout_ms"], **percentiles(fanout)},
        "rss_mib": {
            "first": round(rss[0], 1),
            "after_subscribe": round(subscribed_rss, 1),
            "max": round(max(rss), 1),
            "last": round(rss[-1], 1),
            "growth_per_minute_last_half": growth_per_minute([(t, v) for t, v, _ in rss_samples]),
        },
        # None with Redis, or when no sample could read the bus's size.
        "rss_less_bus_mib": {
            "first": round(less_bus[0][1], 1),
            "max": round(max(value for _, value in less_bus), 1),
            "last": round(less_bus[-1][1], 1),
            "growth_per_minute_last_half": growth_per_minute(less_bus),
        }
        if less_bus
        else None,
        "rss_samples": rss_samples,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
    }


def number_type(
    kind: type[int] | type[float],
    minimum: float,
    maximum: float | None = None,
    minimum_allowed: bool = True,
) -> Callable[[str], Any]:
    """Build an argparse type that accepts a finite number of ``kind`` in the range given.

    The range is ``minimum`` (itself excluded unless ``minimum_allowed``) to
    ``maximum``, or unbounded above when ``maximum`` is None. The error names
    the value and the range.
    """
    noun = "an integer" if kind is int else "a number"
    if maximum is not None:
        expected = f"{noun} from {minimum} to {maximum}"
    elif minimum_allowed:
        expected = f"{noun} of {minimum} or more"
    else:
        expected = f"{noun} greater than {minimum}"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid value {text!r}: expected {expected}"
            ) from None
        above_minimum = value >= minimum if minimum_allowed else value > minimum
        below_maximum = maximum is None or value <= maximum
        if not (math.isfinite(value) and above_minimum and below_maximum):
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected {expected}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=(
            "The summary's latency_ms and ingest_ms count one value per point and "
            "measured socket, and fanout_ms one per points message and measured "
            "socket. Each has a counted_per field that says so. SIGTERM or SIGINT "
            "stops every process this script started, removes its temporary "
            "directory and exits with 128 plus the signal number."
        ),
    )
    at_least_one = number_type(int, 1)
    parser.add_argument(
        "--sockets", type=at_least_one, default=1000, help="live sockets (default 1000)"
    )
    parser.add_argument(
        "--runs", type=at_least_one, default=200, help="ingesting runs (default 200)"
    )
    parser.add_argument(
        "--run-processes",
        type=at_least_one,
        default=4,
        help="worker processes the runs are spread over (default 4)",
    )
    parser.add_argument(
        "--socket-processes",
        type=at_least_one,
        default=4,
        help="child processes the sockets not measured are spread over (default 4)",
    )
    parser.add_argument(
        "--socket-nice",
        type=number_type(int, 0, 19),
        default=None,
        help="niceness of the processes of the sockets not measured, 0 to 19 "
        "(default 10, or 0 with --server-cpus)",
    )
    parser.add_argument(
        "--latency-nice",
        type=number_type(int, -20, 19),
        default=0,
        help="niceness of the process of the sockets that measure latency, -20 to 19 "
        "(default 0); below 0, as root only, it acts as a browser on a host of its "
        "own, whose reading no other process delays",
    )
    parser.add_argument(
        "--socket-client",
        choices=("node", "python"),
        default="node",
        help="read the sockets with Node and the web app's decoder (default) or with Python",
    )
    positive = number_type(float, 0, minimum_allowed=False)
    parser.add_argument(
        "--rate", type=positive, default=1.0, help="steps per second per run (default 1)"
    )
    parser.add_argument(
        "--lockstep", action="store_true", help="log every run in the same instant"
    )
    parser.add_argument(
        "--minutes", type=positive, default=5.0, help="minutes of logging (default 5)"
    )
    parser.add_argument(
        "--sample-seconds",
        type=positive,
        default=5.0,
        help="seconds between RSS samples (default 5)",
    )
    parser.add_argument(
        "--latency-sockets",
        type=at_least_one,
        default=50,
        help="sockets whose latency is measured (default 50, at most --sockets)",
    )
    parser.add_argument(
        "--warmup-seconds",
        type=number_type(float, 0),
        default=0.0,
        help="seconds after the first point before latencies count, less than the run (default 0)",
    )
    parser.add_argument(
        "--server-cpus",
        type=cpu_list,
        help="CPUs for the server, such as 0 or 0,1; the script and its clients get the others",
    )
    parser.add_argument(
        "--port",
        type=number_type(int, 1, 65535),
        default=8793,
        help="port of the server started (default 8793)",
    )
    parser.add_argument("--database-url", help="PostgreSQL URL; default embedded SQLite")
    parser.add_argument("--redis-url", help="Redis URL; default in-process bus")
    parser.add_argument(
        "--results",
        type=Path,
        default=BENCH / "results",
        metavar="DIRECTORY",
        help="directory for the summary, the RSS CSV and the server log (default bench/results)",
    )
    return parser


def parse_config(argv: Sequence[str] | None = None) -> LoadConfig:
    """Parse the command line ``argv`` into a LoadConfig, or exit with status 2 when invalid."""
    parser = build_parser()
    args = parser.parse_args(argv)
    seconds = args.minutes * 60
    if args.warmup_seconds >= seconds:
        # Every point would fall in the warm-up, so every percentile would be null.
        parser.error(
            f"--warmup-seconds {args.warmup_seconds:g} is not shorter than the run, "
            f"--minutes {args.minutes:g} ({seconds:g} s), so no latency would be "
            f"measured; pass a warm-up under {seconds:g} seconds or a longer --minutes"
        )
    if args.latency_nice < 0 and os.geteuid() != 0:
        parser.error(
            f"--latency-nice {args.latency_nice} needs root to lower a niceness; "
            "run as root or pass 0 or more"
        )
    socket_nice = args.socket_nice
    if socket_nice is None:
        # Beside the runs on CPUs of their own, niced readers got so little CPU
        # that some sockets were closed, most likely for missed keepalive pings.
        socket_nice = 10 if args.server_cpus is None else 0
    return LoadConfig(
        sockets=args.sockets,
        runs=args.runs,
        run_processes=args.run_processes,
        socket_processes=args.socket_processes,
        socket_nice=socket_nice,
        latency_nice=args.latency_nice,
        socket_client=args.socket_client,
        rate=args.rate,
        lockstep=args.lockstep,
        seconds=seconds,
        sample_seconds=args.sample_seconds,
        latency_sockets=args.latency_sockets,
        warmup_seconds=args.warmup_seconds,
        server_cpus=args.server_cpus,
        port=args.port,
        database_url=args.database_url,
        redis_url=args.redis_url,
        results=args.results,
    )


class Stopped(BaseException):
    """The exception ``raise_stopped`` raises in the main thread on SIGTERM or SIGINT.

    Each ``finally`` on its way up ends the processes it started. It derives
    from BaseException, as KeyboardInterrupt does, so that no ``except
    Exception`` handler swallows it.
    """

    def __init__(self, signum: int) -> None:
        self.signal = signal.Signals(signum)
        super().__init__(f"stopped by {self.signal.name}")


def raise_stopped(signum: int, frame: FrameType | None) -> None:
    # A second signal would interrupt the cleanup that this one starts.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Stopped(signum)


def main() -> None:
    config = parse_config()
    # NOTE: a signal that arrives in the few bytecodes between a child's start
    # and the statement that records it leaves that child running.
    signal.signal(signal.SIGTERM, raise_stopped)
    signal.signal(signal.SIGINT, raise_stopped)
    try:
        summary = run_load(config)
    except Stopped as stopped:
        print(
            f"load.py: {stopped}; stopped the server, runs and sockets it started "
            "and removed its temporary directory",
            file=sys.stderr,
        )
        sys.exit(128 + stopped.signal.value)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
