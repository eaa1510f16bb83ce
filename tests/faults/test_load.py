"""The load benchmark in miniature: every live socket receives every point once.

``bench/load.py`` runs 1,000 sockets and 200 runs for 5 minutes. This test
runs 20 sockets and 5 runs for 3 seconds against a server process of its own.
It asserts no errors and no loss, never a speed. Further tests stop the
script with SIGTERM and SIGINT and check that none of its processes and no
temporary directory outlive it, and that invalid options are rejected.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import assay
from conftest import free_port
from proxy import CuttingProxy

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import load as load_bench  # noqa: E402
from serving import start_server, stop_server  # noqa: E402

SOCKETS = 20
RUNS = 5


@pytest.mark.parametrize(
    ("backend", "socket_client"),
    [("sqlite", "node"), ("sqlite", "python"), ("postgres", "node")],
)
def test_short_load_loses_nothing(
    backend: str, socket_client: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    config = load_bench.LoadConfig(
        socket_client=socket_client,
        sockets=SOCKETS,
        runs=RUNS,
        run_processes=2,
        rate=5,
        seconds=3,
        sample_seconds=0.5,
        latency_sockets=5,
        port=free_port(),
        results=tmp_path,
    )
    if backend == "postgres":
        config.database_url = request.getfixturevalue("postgres_url")
        config.redis_url = request.getfixturevalue("redis_url")
        config.redis_prefix = request.getfixturevalue("redis_prefix")

    summary: dict[str, Any] = load_bench.run_load(config)

    assert summary["socket_client"] == socket_client
    assert summary["server_cpus"] is None
    assert summary["errors"] == []
    assert summary["error_count"] == 0
    assert summary["reconnects"] == 0
    assert summary["reconnect_causes"] == {}
    assert summary["server_log_errors"] == 0
    assert summary["points_logged"] > 0
    assert summary["points_delivered"] == summary["points_logged"] * SOCKETS
    assert summary["points_expected"] == summary["points_delivered"]
    # The fan-out runs from the bus append, which comes after the log call.
    assert summary["fanout_ms"]["p50"] >= 0
    assert summary["fanout_ms"]["max"] <= summary["latency_ms"]["max"] + 1
    # Every point measured has both parts: log call to bus append, and on to the socket.
    assert summary["ingest_ms"]["count"] == summary["latency_ms"]["count"]
    assert summary["ingest_ms"]["max"] <= summary["latency_ms"]["max"] + 1
    measured = summary["points_logged"] * summary["latency_ms"]["sockets_measured"]
    assert summary["latency_ms"]["count"] == measured
    # A points message carries both metrics of a step or more, so fan-out counts fewer values.
    assert 0 < summary["fanout_ms"]["count"] < summary["latency_ms"]["count"]
    assert summary["latency_ms"]["counted_per"].startswith("point and measured socket")
    assert summary["ingest_ms"]["counted_per"].startswith("point and measured socket")
    assert summary["fanout_ms"]["counted_per"].startswith("points message and measured socket")
    rows = Path(summary["rss_csv"]).read_text().splitlines()
    assert rows[0] == "elapsed_s,rss_mib,bus_mib,rss_less_bus_mib"
    assert len(rows) > 3
    if backend == "postgres":
        # The streams are in Redis, so the server has no bus of its own to read.
        assert summary["rss_less_bus_mib"] is None
        assert all(row.endswith(",,") for row in rows[1:])
    else:
        elapsed, rss, bus, less_bus = (float(value) for value in rows[-1].split(","))
        assert 0 < bus < rss
        assert less_bus == pytest.approx(rss - bus, abs=0.11)
        assert summary["rss_less_bus_mib"]["last"] == pytest.approx(less_bus, abs=0.11)
    assert isinstance(summary["rss_mib"]["growth_per_minute_last_half"], float)


@pytest.mark.parametrize("socket_client", ["node", "python"])
def test_warmup_leaves_early_points_unmeasured(socket_client: str, tmp_path: Path) -> None:
    config = load_bench.LoadConfig(
        socket_client=socket_client,
        sockets=4,
        runs=2,
        run_processes=1,
        socket_processes=1,
        rate=5,
        seconds=3,
        latency_sockets=2,
        warmup_seconds=1.5,
        port=free_port(),
        results=tmp_path,
    )

    summary: dict[str, Any] = load_bench.run_load(config)

    assert summary["errors"] == []
    assert summary["points_delivered"] == summary["points_logged"] * 4
    # 2 runs log 2 metrics 5 times a second for 3 s: the first 1.5 s are not counted.
    measured = summary["points_logged"] * 2
    assert 0.3 * measured < summary["latency_ms"]["count"] < 0.7 * measured
    assert summary["ingest_ms"]["count"] == summary["latency_ms"]["count"]
    assert summary["latency_ms"]["warmup_seconds"] == 1.5


def open_readers(
    socket_client: str, url: str, key: str, output: Path
) -> load_bench.NodeSockets | load_bench.PythonSockets:
    """Open 3 live sockets in one process of ``socket_client``, the first measuring latency."""
    group = load_bench.SocketGroup(url, key, range(3), 1, 0.0, 0, output)
    if socket_client == "node":
        return load_bench.NodeSockets(group)
    spawn = multiprocessing.get_context("spawn")
    return load_bench.PythonSockets(group, spawn.Event(), spawn.Value("q", -1))


@pytest.mark.parametrize("socket_client", ["node", "python"])
def test_cut_sockets_resume_from_their_cursors(socket_client: str, tmp_path: Path) -> None:
    port = free_port()
    key = "load-key-" + "x" * 24
    server = start_server(port, key, tmp_path)
    proxy = CuttingProxy(port)
    server_url = f"http://127.0.0.1:{port}"
    spool = tmp_path / "spool"
    try:
        assay.init(load_bench.PROJECT, server=server_url, api_key=key, spool_dir=spool).finish()
        live = f"ws://127.0.0.1:{proxy.port}/api/v1/projects/{load_bench.PROJECT}/live"
        readers = open_readers(socket_client, live, key, tmp_path / "tallies.json")
        try:
            assert readers.wait_ready(60)
            run = assay.init(load_bench.PROJECT, server=server_url, api_key=key, spool_dir=spool)
            for step in range(30):
                run.log({"loss": float(step)})
                if step in (9, 19):
                    # Points logged just after a cut reach the bus while the
                    # sockets are closed; only their cursors bring them back.
                    # The first pause before a reconnection is at most 0.5 s.
                    time.sleep(0.5 if step == 9 else 1.5)
                    assert proxy.cut() == 3
            run.finish()
            readers.expect(30)
            readers.join(30)
        finally:
            readers.stop()
            readers.close(30)
        tallies = readers.tallies()
    finally:
        proxy.close()
        stop_server(server)

    assert [tally["errors"] for tally in tallies] == [[], [], []]
    # Every point once: none lost while a socket was closed, none sent twice after.
    assert [tally["points"] for tally in tallies] == [{run.id: 30}] * 3
    assert [len(tally["reconnects"]) for tally in tallies] == [2, 2, 2]
    # The first socket measures every point, latency and ingest alike.
    assert len(tallies[0]["latencies"]) == len(tallies[0]["ingest"]) == 30


def test_node_socket_without_server_gives_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Pauses of 1, 2, 4 ... 512 ms: the ten reconnections take about a second.
    monkeypatch.setenv("LOAD_SOCKETS_FIRST_DELAY_MS", "1")
    url = f"ws://127.0.0.1:{free_port()}/api/v1/projects/load/live"
    readers = open_readers("node", url, "load-key", tmp_path / "tallies.json")
    try:
        assert not readers.wait_ready(4)
    finally:
        readers.stop()
        readers.close(30)
    tallies = readers.tallies()

    assert [len(tally["reconnects"]) for tally in tallies] == [10, 10, 10]
    for tally in tallies:
        [error] = tally["errors"]
        assert "ECONNREFUSED" in error
        assert error.endswith(", after 10 reconnections")


def test_python_socket_without_server_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load_bench, "FIRST_DELAY", 0.001)
    url = f"ws://127.0.0.1:{free_port()}/api/v1/projects/load/live"
    tally = load_bench.SocketTally()
    subscribed: list[None] = []

    async def watch() -> None:
        ready = lambda: subscribed.append(None)  # noqa: E731
        await load_bench.watch(url, "load-key", tally, None, asyncio.Event(), ready)

    asyncio.run(asyncio.wait_for(watch(), 30))

    assert subscribed == []
    assert len(tally.reconnects) == 10
    [error] = tally.errors
    assert error.startswith("socket failed: ConnectionRefusedError(")
    assert error.endswith(", after 10 reconnections")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to split")
def test_server_pinned_apart_from_clients(tmp_path: Path) -> None:
    first = min(os.sched_getaffinity(0))
    own = os.sched_getaffinity(0)
    server = start_server(free_port(), "load-key-" + "x" * 24, tmp_path, cpus={first})
    try:
        server_cpus = os.sched_getaffinity(server.pid)
    finally:
        server.terminate()
        server.wait(30)

    assert server_cpus == {first}
    assert load_bench.client_cpus({first}) == own - {first}
    assert os.sched_getaffinity(0) == own


def test_server_that_fails_to_start_keeps_its_log(tmp_path: Path) -> None:
    # A database URL of an unknown kind stops assay serve at once.
    config = load_bench.LoadConfig(
        socket_client="python",
        port=free_port(),
        database_url="mysql://127.0.0.1/none",
        results=tmp_path / "results",
    )

    with pytest.raises(RuntimeError) as raised:
        load_bench.run_load(config)

    [log] = (tmp_path / "results").glob("load-*-server.log")
    assert str(raised.value) == f"assay serve did not start; see {log}"
    assert "ASSAY_DATABASE_URL" in log.read_text()


def test_server_cpus_leaving_no_cpu_rejected() -> None:
    every = os.sched_getaffinity(0)

    with pytest.raises(SystemExit) as raised:
        load_bench.client_cpus(every)

    assert "leaves no CPU for the runs and sockets; name fewer CPUs" in str(raised.value)


def test_server_cpus_outside_machine_rejected() -> None:
    with pytest.raises(SystemExit) as raised:
        load_bench.client_cpus({4096})

    assert "--server-cpus [4096] names CPUs outside the ones this process may use" in str(
        raised.value
    )


def test_cpu_list_names_bad_value() -> None:
    assert load_bench.cpu_list("0,2") == {0, 2}
    with pytest.raises(argparse.ArgumentTypeError) as raised:
        load_bench.cpu_list("first")

    assert str(raised.value) == "'first' is not a list of CPU numbers; write them as 0 or 0,1"


def test_node_client_without_packages_names_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(load_bench, "WEB_PACKAGES", tmp_path / "node_modules")
    config = load_bench.LoadConfig(socket_client="node", results=tmp_path)

    with pytest.raises(SystemExit) as raised:
        load_bench.run_load(config)

    assert "run `make install`, or `npm ci` in client/web" in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_node_client_without_node_names_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    config = load_bench.LoadConfig(socket_client="node", results=tmp_path)

    with pytest.raises(SystemExit) as raised:
        load_bench.run_load(config)

    assert str(raised.value) == "--socket-client node needs Node.js 18 or newer on PATH"


@pytest.mark.parametrize(
    ("argument", "value", "expected"),
    [
        ("--minutes", "-1", "a number greater than 0"),
        ("--minutes", "0", "a number greater than 0"),
        ("--minutes", "nan", "a number greater than 0"),
        ("--minutes", "five", "a number greater than 0"),
        ("--rate", "0", "a number greater than 0"),
        ("--sample-seconds", "-5", "a number greater than 0"),
        ("--warmup-seconds", "-1", "a number of 0 or more"),
        ("--sockets", "0", "an integer of 1 or more"),
        ("--sockets", "2.5", "an integer of 1 or more"),
        ("--runs", "-3", "an integer of 1 or more"),
        ("--run-processes", "0", "an integer of 1 or more"),
        ("--socket-processes", "0", "an integer of 1 or more"),
        ("--latency-sockets", "0", "an integer of 1 or more"),
        ("--socket-nice", "-1", "an integer from 0 to 19"),
        ("--socket-nice", "20", "an integer from 0 to 19"),
        ("--latency-nice", "-21", "an integer from -20 to 19"),
        ("--latency-nice", "20", "an integer from -20 to 19"),
        ("--port", "0", "an integer from 1 to 65535"),
        ("--port", "65536", "an integer from 1 to 65535"),
    ],
)
def test_option_out_of_range_rejected(
    argument: str, value: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        load_bench.parse_config([f"{argument}={value}"])

    assert raised.value.code == 2
    message = capsys.readouterr().err.splitlines()[-1]
    assert message.endswith(
        f"error: argument {argument}: invalid value {value!r}: expected {expected}"
    )


@pytest.mark.parametrize(("minutes", "warmup"), [("0.5", "30"), ("0.5", "45"), ("1", "60.0")])
def test_warmup_not_shorter_than_run_rejected(
    minutes: str, warmup: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        load_bench.parse_config(["--minutes", minutes, "--warmup-seconds", warmup])

    assert raised.value.code == 2
    message = capsys.readouterr().err.splitlines()[-1]
    seconds = f"{float(minutes) * 60:g}"
    assert f"--warmup-seconds {float(warmup):g} is not shorter than the run" in message
    assert f"--minutes {float(minutes):g} ({seconds} s)" in message
    assert f"pass a warm-up under {seconds} seconds or a longer --minutes" in message


def test_options_parsed_into_config(tmp_path: Path) -> None:
    config = load_bench.parse_config(
        [
            "--minutes=0.5",
            "--warmup-seconds=29.5",
            "--sockets=3",
            "--runs=2",
            "--socket-nice=0",
            "--latency-nice=3",
            "--port=65535",
            f"--results={tmp_path}",
        ]
    )

    assert config.seconds == 30
    assert config.warmup_seconds == 29.5
    assert config.sockets == 3
    assert config.runs == 2
    assert config.socket_nice == 0
    assert config.latency_nice == 3
    assert config.port == 65535
    assert config.results == tmp_path


@pytest.mark.parametrize(
    ("arguments", "niceness"),
    [([], 10), (["--server-cpus=0"], 0), (["--server-cpus=0", "--socket-nice=5"], 5)],
)
def test_socket_nice_follows_server_cpus(arguments: list[str], niceness: int) -> None:
    config = load_bench.parse_config(["--minutes=1", *arguments])

    assert config.socket_nice == niceness


def test_negative_latency_nice_needs_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    with pytest.raises(SystemExit) as raised:
        load_bench.parse_config(["--latency-nice=-5"])

    assert raised.value.code == 2
    message = capsys.readouterr().err.splitlines()[-1]
    assert message.endswith(
        "--latency-nice -5 needs root to lower a niceness; run as root or pass 0 or more"
    )
    # Raising the niceness needs no privilege.
    assert load_bench.parse_config(["--latency-nice=5"]).latency_nice == 5


def test_growth_fitted_to_second_half() -> None:
    # Only the last two samples, a rise of 2 MiB in 60 s, make the second half.
    samples = [(0.0, 10.0), (30.0, 90.0), (60.0, 11.0), (120.0, 13.0)]

    assert load_bench.growth_per_minute(samples) == 2.0
    assert load_bench.growth_per_minute(samples[:1]) is None


def test_bus_size_unreadable_gives_none() -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"

    assert load_bench.bus_mib(url) is None


def test_help_names_percentile_counts() -> None:
    text = " ".join(load_bench.build_parser().format_help().split())

    assert "latency_ms and ingest_ms count one value per point and measured socket" in text
    assert "fanout_ms one per points message and measured socket" in text


@dataclass(frozen=True)
class ProcessEntry:
    """One process, which its start time distinguishes from a later one with the same pid."""

    pid: int
    #: Field 22 of /proc/PID/stat: clock ticks from boot to the process's start.
    start_ticks: int
    command: str


def read_stat(pid: int) -> tuple[str, int, int] | None:
    """Return the state, parent pid and start ticks of ``pid``, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name in brackets may contain spaces, so split after its closing bracket.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def read_command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def descendants(root: int) -> list[ProcessEntry]:
    """List every process below ``root`` in the process tree, from a scan of /proc."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    start_ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = read_stat(int(entry.name))
        if stat is not None:
            children[stat[1]].append(int(entry.name))
            start_ticks[int(entry.name)] = stat[2]
    found = []
    pending = [root]
    while pending:
        for child in children[pending.pop()]:
            found.append(ProcessEntry(child, start_ticks[child], read_command(child)))
            pending.append(child)
    return found


def is_running(process: ProcessEntry) -> bool:
    """Return whether ``process`` still runs. A zombie waiting to be reaped counts as ended."""
    stat = read_stat(process.pid)
    return stat is not None and stat[2] == process.start_ticks and stat[0] != "Z"


def server_healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until_running(
    load: subprocess.Popen[str], port: int, socket_client: str
) -> dict[int, ProcessEntry]:
    """Wait until the server is healthy and the run workers have started.

    Returns every process below load.py seen meanwhile: the server, 2 socket
    processes (the measured sockets and the rest), 2 run workers and
    multiprocessing's resource tracker. With Python sockets, the socket
    processes are multiprocessing workers too.
    """
    workers = 4 if socket_client == "python" else 2
    seen: dict[int, ProcessEntry] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert load.poll() is None, f"load.py ended early: {load.communicate()}"
        for process in descendants(load.pid):
            seen[process.pid] = process
        running = [process for process in seen.values() if is_running(process)]
        started = [p for p in running if "multiprocessing.spawn" in p.command]
        node = [p for p in running if p.command.startswith("node ")]
        sockets_started = socket_client == "python" or len(node) == 2
        if len(started) == workers and sockets_started and server_healthy(port):
            return seen
        time.sleep(0.2)
    raise AssertionError(f"load.py did not start its runs within 120 s: {seen}")


@pytest.mark.parametrize("socket_client", ["node", "python"])
@pytest.mark.parametrize(
    ("signum", "to_group"),
    [(signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["SIGTERM to the process", "SIGINT to the group, as Ctrl-C"],
)
def test_signal_stops_every_child(
    signum: signal.Signals, to_group: bool, socket_client: str, tmp_path: Path
) -> None:
    port = free_port()
    temp = tmp_path / "temp"
    temp.mkdir()
    command = [sys.executable, str(BENCH / "load.py"), "--minutes=2", "--sockets=4"]
    command += ["--latency-sockets=2", "--socket-processes=1", "--runs=2", "--run-processes=2"]
    command += [f"--socket-client={socket_client}", f"--port={port}"]
    command += [f"--results={tmp_path / 'results'}"]
    load = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(temp)},
        # A group of its own, so that the SIGINT sent to the group reaches only load.py's.
        start_new_session=True,
    )
    try:
        started = wait_until_running(load, port, socket_client)
        scratch = [path.name for path in temp.glob("assay-load-*")]
        if to_group:
            os.killpg(load.pid, signum)
        else:
            load.send_signal(signum)
        stdout, stderr = load.communicate(timeout=90)
    finally:
        if load.poll() is None:
            os.killpg(load.pid, signal.SIGKILL)
            load.wait()
    # The resource tracker exits once load.py has exited and closed its end of the pipe.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(is_running(p) for p in started.values()):
        time.sleep(0.2)

    assert len(scratch) == 1
    assert any("assay serve" in process.command for process in started.values())
    assert load.returncode == 128 + signum
    assert stdout == ""
    assert stderr.splitlines() == [
        f"load.py: stopped by {signum.name}; stopped the server, runs and sockets it "
        "started and removed its temporary directory"
    ]
    assert [p for p in started.values() if is_running(p)] == []
    assert list(temp.iterdir()) == []
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


class Interrupted(Exception):
    """Raised by the test's SIGUSR1 handler while ``start_server`` waits for the health check."""


def test_interrupted_server_start_stops_server(tmp_path: Path) -> None:
    before = {process.pid for process in descendants(os.getpid())}
    started: list[ProcessEntry] = []

    def interrupt(signum: int, frame: Any) -> None:
        started.extend(p for p in descendants(os.getpid()) if p.pid not in before)
        raise Interrupted

    previous = signal.signal(signal.SIGUSR1, interrupt)
    # assay serve takes well over 0.3 s to import its modules and pass its health check.
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        timer.start()
        with pytest.raises(Interrupted):
            start_server(free_port(), "load-key-" + "x" * 24, tmp_path)
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)

    assert [p for p in started if "assay serve" in p.command] != []
    assert [p for p in started if is_running(p)] == []
