"""Every point is stored once, whatever happens to sockets and server processes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import assay
from assay_server.settings import Settings
from conftest import RunningServer
from proxy import CuttingProxy

FAST_RETRY = assay.SenderOptions(flush_interval=0.05, batch_rows=500, backoff_max=0.5)


def wait_until(
    condition: Callable[[], bool], timeout: float, state: Callable[[], str] = lambda: ""
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s {state()}")
        time.sleep(0.01)


def describe(run: assay.Run) -> str:
    sender = run._sender
    return (
        f"attempts={sender.attempts} fatal={sender.fatal!r} "
        f"alive={sender.is_alive()} connected={sender.client is not None}"
    )


def stored_points(server_url: str, api_key: str, project: str, run_id: str) -> tuple[Any, Any]:
    with assay.Api(server=server_url, api_key=api_key) as api:
        run = api.run(project, run_id)
        return run.history(keys=["loss"]), run.metrics()["loss"]


def init_through(proxy: CuttingProxy, server: RunningServer, tmp_path: Path) -> assay.Run:
    """Start a run of project "faults" whose connections pass through ``proxy``."""
    return assay.init(
        "faults",
        server=proxy.url,
        api_key=server.api_key,
        spool_dir=tmp_path,
        settings=FAST_RETRY,
    )


def test_cut_connections_store_each_point_once(server: RunningServer, tmp_path: Path) -> None:
    proxy = CuttingProxy(server.port)
    run = init_through(proxy, server, tmp_path)
    cuts = 0
    for step in range(6000):
        run.log({"loss": step / 1000})
        if step % 50 == 49:
            time.sleep(0.005)  # paces the producer so that batches are in flight
        if step % 1000 == 999:
            wait_until(lambda: bool(proxy.open), timeout=60, state=lambda: describe(run))
            cuts += proxy.cut()
    run.finish(timeout=60)
    proxy.close()

    rows, stats = stored_points(server.url, server.api_key, "faults", run.id)

    assert cuts >= 3
    assert [row["step"] for row in rows] == list(range(6000))
    assert stats["count"] == 6000
    assert run.state == "finished"


def test_finish_resent_after_lost_reply(server: RunningServer, tmp_path: Path) -> None:
    proxy = CuttingProxy(server.port)
    run = init_through(proxy, server, tmp_path)
    sender = run._sender
    for step in range(100):
        run.log({"loss": step / 100})

    def all_acknowledged() -> bool:
        with assay.Api(server=server.url, api_key=server.api_key) as api:
            return api.run("faults", run.id).metrics().get("loss", {}).get("count") == 100

    wait_until(lambda: all_acknowledged() and not sender.unacked, 30, lambda: describe(run))
    proxy.hold_replies()
    finishing = threading.Thread(target=run.finish, kwargs={"timeout": 20})
    started = time.monotonic()
    finishing.start()
    wait_until(lambda: sender.finish_sent, 10, lambda: describe(run))

    def stored_state() -> str:
        with assay.Api(server=server.url, api_key=server.api_key) as api:
            return str(api.run("faults", run.id).state)

    # The server has applied the finish, and its reply waits in the proxy.
    wait_until(lambda: stored_state() == "finished", 10)
    with assay.Api(server=server.url, api_key=server.api_key) as api:
        first_end = api.run("faults", run.id).finished_at
    proxy.cut()
    proxy.release_replies()
    finishing.join(30)
    took = time.monotonic() - started
    proxy.close()
    with assay.Api(server=server.url, api_key=server.api_key) as api:
        stored = api.run("faults", run.id)

    assert not finishing.is_alive()
    assert run.state == "finished"
    assert took < 15, "finish waited for its timeout instead of sending the finish again"
    assert stored.state == "finished"
    assert stored.finished_at == first_end
    assert not list(tmp_path.rglob("finish.msgpack"))


def test_resent_batch_is_acknowledged_not_stored_twice(
    server: RunningServer, tmp_path: Path
) -> None:
    from assay import protocol
    from assay._connection import IngestClient

    hello = {
        "type": "hello",
        "protocol": protocol.PROTOCOL_VERSION,
        "project": "faults",
        "session": 42,
        "resume": "never",
        "run": {"id": "twice"},
    }
    body = protocol.encode_rows([(0, 1.0, {"loss": 0.5}), (1, 2.0, {"loss": 0.25})])
    frame = protocol.pack({"type": "batch", "seq": 7, **body})
    acks = []
    for _ in range(2):
        client = IngestClient(server.url, server.api_key)
        client.open(hello)
        client.send(frame)
        acks.append(client.receive(10))
        client.close()

    rows, stats = stored_points(server.url, server.api_key, "faults", "twice")

    assert acks == [{"type": "ack", "seq": 7}, {"type": "ack", "seq": 7}]
    assert stats["count"] == 2
    assert len(rows) == 2


@pytest.mark.parametrize("exit_code", [0, 3])
def test_late_hello_keeps_run_ended(server: RunningServer, exit_code: int) -> None:
    from assay import protocol
    from assay._connection import IngestClient

    hello = {
        "type": "hello",
        "protocol": protocol.PROTOCOL_VERSION,
        "project": "faults",
        "session": 77,
        "resume": "allow",
        "run": {"id": f"ended-{exit_code}"},
    }
    client = IngestClient(server.url, server.api_key)
    client.open(hello)
    client.send(protocol.pack({"type": "finish", "exit_code": exit_code}))
    finished = client.receive(10)
    client.close()
    with assay.Api(server=server.url, api_key=server.api_key) as api:
        ended = api.run("faults", f"ended-{exit_code}")

    # A connection the SDK gave up on before it finished can deliver its hello late.
    late = IngestClient(server.url, server.api_key)
    welcome = late.open(hello)
    late.close()
    with assay.Api(server=server.url, api_key=server.api_key) as api:
        after_late = api.run("faults", f"ended-{exit_code}")
    revived = IngestClient(server.url, server.api_key)
    revived.open({**hello, "session": 78})
    revived.close()
    with assay.Api(server=server.url, api_key=server.api_key) as api:
        after_new_session = api.run("faults", f"ended-{exit_code}")

    assert finished["state"] == ended.state == ("finished" if exit_code == 0 else "failed")
    assert welcome["type"] == "welcome"
    assert after_late.state == ended.state
    assert after_late.exit_code == exit_code
    assert after_late.finished_at == ended.finished_at
    assert after_new_session.state == "running"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigkill_of_server_loses_no_point(
    backend: str, request: pytest.FixtureRequest, server_process: Any, tmp_path: Path
) -> None:
    settings: Settings = request.getfixturevalue(f"{backend}_settings")
    process = server_process(settings)
    process.start()
    run = assay.init(
        "faults",
        server=process.url,
        api_key=settings.bootstrap_api_key,
        spool_dir=tmp_path / "spool",
        settings=FAST_RETRY,
    )
    in_flight_at_kill = 0
    for step in range(20_000):
        run.log({"loss": step * 1e-3, "acc": 1 - step * 1e-5})
        if step % 250 == 249:
            time.sleep(0.005)  # paces the producer so that batches are in flight
        if step >= 10_000 and not in_flight_at_kill:
            # The producer goes on until batches are in flight. They are
            # counted before the kill because an acknowledgement on the wire
            # can still empty the list.
            in_flight_at_kill = len(run._sender.unacked)
            if in_flight_at_kill:
                process.kill()
                process.start()
    run.finish(timeout=120)

    rows, stats = stored_points(process.url, str(settings.bootstrap_api_key), "faults", run.id)

    assert in_flight_at_kill > 0
    assert len(rows) == 20_000
    assert [row["step"] for row in rows] == list(range(20_000))
    assert stats["count"] == 20_000
    assert rows[-1]["loss"] == 19_999 * 1e-3
    assert run.state == "finished"
