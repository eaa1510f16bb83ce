"""The SDK against a real server: logging, steps, documents and run states."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import assay
from assay import protocol
from conftest import RunningServer


def start_run(server: RunningServer, tmp_path: Path, **kwargs: Any) -> assay.Run:
    return assay.init(
        kwargs.pop("project", "tests"),
        server=server.url,
        api_key=server.api_key,
        spool_dir=tmp_path / "spool",
        **kwargs,
    )


@pytest.fixture
def reader(server: RunningServer) -> Iterator[assay.Api]:
    with assay.Api(server=server.url, api_key=server.api_key) as client:
        yield client


def test_four_special_values_read_back_exactly(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    run = start_run(server, tmp_path)
    for step, value in enumerate([1.0, math.nan, math.inf, -math.inf, None, 0.5]):
        run.log({"loss": value}, step=step)
    run.finish()

    rows = reader.run("tests", run.id).history(keys=["loss"])

    assert [row["step"] for row in rows] == [0, 1, 2, 3, 4, 5]
    values = [row["loss"] for row in rows]
    assert values[0] == 1.0
    assert isinstance(values[1], float) and math.isnan(values[1])
    assert values[2] == math.inf
    assert values[3] == -math.inf
    assert values[4] is None
    assert "loss" in rows[4]
    assert values[5] == 0.5


def test_int_and_bool_values_keep_their_type(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    run = start_run(server, tmp_path)
    run.log({"count": 2**53, "flag": True, "zero": 0})
    run.finish()

    row = reader.run("tests", run.id).history()[0]

    assert row["count"] == 2**53
    assert type(row["count"]) is int
    assert row["flag"] is True
    assert row["zero"] == 0
    assert type(row["zero"]) is int


def test_absent_key_is_missing_from_row(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    run = start_run(server, tmp_path)
    run.log({"a": 1.0, "b": 2.0})
    run.log({"a": 3.0})
    run.finish()

    rows = reader.run("tests", run.id).history()

    assert rows[0] == {"step": 0, "_timestamp": rows[0]["_timestamp"], "a": 1.0, "b": 2.0}
    assert "b" not in rows[1]


def test_step_counts_up_from_highest(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    run = start_run(server, tmp_path)
    run.log({"x": 0.0})
    run.log({"x": 10.0}, step=10)
    run.log({"x": 3.0}, step=3)
    run.log({"x": 11.0})
    run.finish()

    rows = reader.run("tests", run.id).history()

    assert [(row["step"], row["x"]) for row in rows] == [
        (0, 0.0),
        (3, 3.0),
        (10, 10.0),
        (11, 11.0),
    ]


@pytest.mark.parametrize(
    "empty", [{}, {"a": {}}, {"a": {"b": {}}}], ids=["dict", "nested", "deep"]
)
def test_empty_log_keeps_step(
    server: RunningServer, tmp_path: Path, reader: assay.Api, empty: dict[str, Any]
) -> None:
    run = start_run(server, tmp_path)
    run.log({"x": 0.0})
    run.log(empty)
    run.log({"x": 1.0})
    run.finish()

    fetched = reader.run("tests", run.id)
    rows = fetched.history()

    assert [(row["step"], row["x"]) for row in rows] == [(0, 0.0), (1, 1.0)]
    assert fetched.data["next_step"] == 2


def test_empty_log_with_step_logs_nothing(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    run = start_run(server, tmp_path)
    run.log({"x": 0.0})
    run.log({}, step=100)
    run.log({"a": {}}, step=50)
    run.log({"x": 1.0})
    run.finish()
    resumed = start_run(server, tmp_path, id=run.id, resume="must")
    resumed.log({"x": 2.0})
    resumed.finish()

    rows = reader.run("tests", run.id).history()

    assert [(row["step"], row["x"]) for row in rows] == [(0, 0.0), (1, 1.0), (2, 2.0)]


@pytest.mark.parametrize("step", [-1, 2**62 + 1, 1.5, True, "3"])
def test_empty_log_still_checks_step(server: RunningServer, tmp_path: Path, step: Any) -> None:
    run = start_run(server, tmp_path)

    with pytest.raises(assay.InvalidValueError, match="step must be an integer") as rejected:
        run.log({}, step=step)
    run.finish()

    assert repr(step) in str(rejected.value)


def test_empty_log_after_finish_raises(server: RunningServer, tmp_path: Path) -> None:
    run = start_run(server, tmp_path)
    run.finish()

    with pytest.raises(RuntimeError, match="is finished"):
        run.log({})


def test_same_step_keeps_later_value(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    run = start_run(server, tmp_path)
    run.log({"x": 1.0}, step=5)
    run.log({"x": 2.0, "y": 7.0}, step=5)
    run.finish()
    late = start_run(server, tmp_path, id=run.id, resume="must")
    late.log({"x": 3.0}, step=5)
    late.finish()

    rows = reader.run("tests", run.id).history()

    assert rows == [{"step": 5, "_timestamp": rows[0]["_timestamp"], "x": 3.0, "y": 7.0}]


def test_nested_dicts_become_slash_keys(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    run = start_run(server, tmp_path)
    run.log({"train": {"loss": 0.5, "inner": {"acc": 0.9}}, "lr": 0.1})
    run.finish()

    row = reader.run("tests", run.id).history()[0]

    assert row["train/loss"] == 0.5
    assert row["train/inner/acc"] == 0.9
    assert row["lr"] == 0.1


def test_config_and_summary_updates_reach_server(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    run = start_run(server, tmp_path, config={"lr": 0.1, "eps": math.inf}, tags=["a", "b"])
    run.config["batch_size"] = 32
    run.config.update({"lr": 0.2})
    run.log({"loss": 1.0})
    run.log({"loss": 0.25})
    run.summary["best"] = math.nan
    run.finish()

    fetched = reader.run("tests", run.id)

    assert fetched.config == {"lr": 0.2, "eps": math.inf, "batch_size": 32}
    assert fetched.summary["loss"] == 0.25
    assert math.isnan(fetched.summary["best"])
    assert fetched.tags == ["a", "b"]
    assert fetched.state == "finished"
    assert fetched.exit_code == 0


def test_summary_statistics_per_metric(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    run = start_run(server, tmp_path)
    for value in [3.0, math.nan, -1.0, math.inf, None, 2.0]:
        run.log({"loss": value})
    run.finish()

    stats = reader.run("tests", run.id).metrics()["loss"]

    assert stats["count"] == 6
    assert stats["last"] == 2.0
    assert stats["min"] == -1.0
    assert stats["max"] == math.inf
    assert stats["has_nan"] is True
    assert stats["has_inf"] is True
    assert stats["has_null"] is True


def test_exception_in_context_marks_failed(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    with pytest.raises(ZeroDivisionError), start_run(server, tmp_path) as run:
        run.log({"loss": 1.0})
        1 / 0  # noqa: B018

    fetched = reader.run("tests", run.id)

    assert fetched.state == "failed"
    assert fetched.exit_code == 1


def test_finish_with_nonzero_exit_code_marks_failed(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    run = start_run(server, tmp_path)
    run.finish(exit_code=3)

    assert reader.run("tests", run.id).state == "failed"


def test_step_past_largest_raises_keeps_rows(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    run = start_run(server, tmp_path)
    for value in range(3):
        run.log({"good": float(value)})
    run.log({"edge": 1.0}, step=protocol.MAX_STEP)

    with pytest.raises(assay.InvalidValueError, match="pass step= with a lower step") as past:
        run.log({"after": 2.0})
    run.log({"late": 3.0}, step=5)
    run.finish()
    rows = reader.run("tests", run.id).history()

    assert str(protocol.MAX_STEP + 1) in str(past.value)
    assert run._sender.dropped_batches == 0
    assert [row["step"] for row in rows] == [0, 1, 2, 5, protocol.MAX_STEP]
    assert all("after" not in row for row in rows)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"exit_code": None}, "exit_code must be an integer within 64 bits"),
        ({"exit_code": 1.5}, "exit_code must be an integer within 64 bits"),
        ({"exit_code": "bad"}, "exit_code must be an integer within 64 bits"),
        ({"exit_code": True}, "exit_code must be an integer within 64 bits"),
        ({"exit_code": 2**70}, "exit_code must be an integer within 64 bits"),
        ({"timeout": -1}, "timeout must be a finite number of seconds"),
        ({"timeout": float("nan")}, "timeout must be a finite number of seconds"),
        ({"timeout": "5"}, "timeout must be a finite number of seconds"),
    ],
)
def test_bad_finish_arguments_raise(
    arguments: dict[str, Any], message: str, server: RunningServer, tmp_path: Path
) -> None:
    run = start_run(server, tmp_path)
    run.log({"loss": 0.5})
    started = time.monotonic()

    with pytest.raises(assay.InvalidValueError, match=message) as rejected:
        run.finish(**arguments)
    took = time.monotonic() - started
    still_running = not run._sender.done.is_set()
    run.finish(exit_code=0, timeout=10)

    assert repr(next(iter(arguments.values())))[:20] in str(rejected.value)
    assert took < 1
    assert still_running
    assert run.state == "finished"


def test_resume_continues_history_and_step(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    first = start_run(server, tmp_path, id="resumable", name="first")
    for _ in range(5):
        first.log({"loss": 1.0})
    first.finish()

    second = start_run(server, tmp_path, id="resumable", resume="must")
    second.log({"loss": 0.5})
    second.finish()

    rows = reader.run("tests", "resumable").history()
    assert [row["step"] for row in rows] == [0, 1, 2, 3, 4, 5]
    assert rows[-1]["loss"] == 0.5
    assert reader.run("tests", "resumable").name == "first"


def test_existing_id_without_resume_is_rejected(server: RunningServer, tmp_path: Path) -> None:
    start_run(server, tmp_path, id="taken").finish()

    with pytest.raises(assay.ConflictError, match="resume='allow'"):
        start_run(server, tmp_path, id="taken")


def test_resume_must_of_unknown_run_is_rejected(server: RunningServer, tmp_path: Path) -> None:
    with pytest.raises(assay.NotFoundError, match="does not exist"):
        start_run(server, tmp_path, id="ghost", resume="must")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"project": None}, "project must be a non-empty string such as 'mnist', got None"),
        ({"project": 5}, "project must be a non-empty string such as 'mnist', got 5"),
        ({"project": ""}, "project must be a non-empty string"),
        ({"config": [1, 2]}, "config must be a mapping of names to values"),
        ({"tags": "abc"}, "tags must be a list of strings; for one tag pass ['abc']"),
        ({"tags": ["a", 1]}, "tags must be a list of strings, got ['a', 1]"),
        ({"name": 7}, "name must be a string or None, got 7"),
        ({"id": b"r1"}, "id must be a string or None"),
        ({"group": ["g"]}, "group must be a string or None"),
        ({"notes": 1.5}, "notes must be a string or None"),
    ],
)
def test_init_argument_of_wrong_type_raises(
    arguments: dict[str, Any], message: str, tmp_path: Path
) -> None:
    init_arguments = {"project": "tests", **arguments}

    with pytest.raises(assay.InvalidValueError) as rejected:
        assay.init(**init_arguments, mode="offline", spool_dir=tmp_path)

    assert message in str(rejected.value)
    assert list(tmp_path.iterdir()) == [], "a rejected init wrote a spool"


def test_config_over_document_limit_raises(tmp_path: Path) -> None:
    big = {"blob": "x" * (protocol.MAX_DOCUMENT_BYTES + 1)}

    with pytest.raises(assay.InvalidValueError, match="over the 4 MiB one config update"):
        assay.init("tests", config=big, mode="offline", spool_dir=tmp_path)

    assert list(tmp_path.iterdir()) == []


def test_summary_update_over_limit_raises(tmp_path: Path) -> None:
    run = assay.init("tests", mode="offline", spool_dir=tmp_path)
    run.summary["kept"] = 1

    with pytest.raises(assay.InvalidValueError, match="save large data as a file"):
        run.summary["blob"] = "y" * (protocol.MAX_DOCUMENT_BYTES + 1)
    run.finish()

    assert dict(run.summary) == {"kept": 1}


def test_large_summary_updates_split_into_batches(
    sqlite_server: RunningServer, tmp_path: Path
) -> None:
    # Each update fits its own bound, but together they overflow one frame.
    value_bytes = protocol.MAX_DOCUMENT_BYTES - 1024
    run = start_run(sqlite_server, tmp_path, settings=assay.SenderOptions(flush_interval=30))
    for index in range(5):
        run.summary[f"part{index}"] = str(index) * value_bytes
    run.log({"loss": 0.5})
    run.finish(timeout=60)
    with assay.Api(server=sqlite_server.url, api_key=sqlite_server.api_key) as api:
        stored = api.run("tests", run.id)

    assert run.state == "finished"
    assert run._sender.dropped_batches == 0
    assert {key: len(value) for key, value in stored.summary.items() if key != "loss"} == {
        f"part{index}": value_bytes for index in range(5)
    }
    assert stored.summary["loss"] == 0.5


def test_init_takes_tags_as_tuple_or_set(tmp_path: Path) -> None:
    run = assay.init("tests", tags=("a", "b"), mode="offline", spool_dir=tmp_path)
    run.finish()
    other = assay.init("tests", tags={"c"}, mode="offline", spool_dir=tmp_path)
    other.finish()

    assert run.spool.read_meta()["run"]["tags"] == ["a", "b"]
    assert other.spool.read_meta()["run"]["tags"] == ["c"]


def test_wrong_api_key_is_rejected_at_init(server: RunningServer, tmp_path: Path) -> None:
    with pytest.raises(assay.AuthenticationError, match="invalid or revoked API key"):
        assay.init("tests", server=server.url, api_key="wrong", spool_dir=tmp_path)


def test_runs_and_projects_are_listed(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    for name in ("one", "two"):
        start_run(server, tmp_path, project="listing", name=name, group="g").finish()

    client = reader
    assert [p["name"] for p in client.projects()] == ["listing"]
    assert client.projects()[0]["run_count"] == 2
    runs = client.runs("listing")
    assert sorted(run.name for run in runs) == ["one", "two"]
    assert all(run.group == "g" and run.created_at <= run.heartbeat_at for run in runs)


def test_wide_batches_are_split_to_fit(
    server: RunningServer, tmp_path: Path, reader: assay.Api
) -> None:
    options = assay.SenderOptions(max_frame_bytes=1500, flush_interval=60)
    run = start_run(server, tmp_path, settings=options)
    for step in range(40):
        run.log({f"metric_{index}": step + index / 100 for index in range(20)})
    run.finish()

    rows = reader.run("tests", run.id).history()

    assert run._sender.next_seq >= 10  # one batch without splitting
    assert len(rows) == 40
    assert rows[39]["metric_19"] == 39.19


def test_imported_run_keeps_its_times(server: RunningServer, reader: assay.Api) -> None:
    from assay import protocol
    from assay._connection import IngestClient

    client = IngestClient(server.url, server.api_key)
    client.open(
        {
            "type": "hello",
            "protocol": protocol.PROTOCOL_VERSION,
            "project": "tests",
            "session": 5,
            "resume": "allow",
            "run": {"id": "old", "created_at": 1_600_000_000.0},
        }
    )
    client.send(protocol.pack({"type": "finish", "exit_code": 1, "finished_at": 1_600_000_060.5}))
    finished = client.receive(10)
    client.close()
    run = reader.run("tests", "old")

    assert finished == {"type": "finished", "state": "failed"}
    assert run.created_at == 1_600_000_000.0
    assert run.finished_at == 1_600_000_060.5
