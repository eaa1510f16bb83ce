"""Run-set benchmarks: live membership latency, and a filter's first evaluation.

``membership``: a project of ``--runs`` runs (default 10,000) is stored in the
database. ``--sockets`` live-socket watchers watch ``--runsets`` distinct
filters between them (default 100). Each watcher is a ``MembershipWatch``,
the class behind each browser's ``watch`` message. ``--events``
``run.summary`` events are then published on the bus at ``--rate`` per second.
Each event flips one run's loss between a finite value and NaN, so that it
enters or leaves many sets. The
latency of a change is the time the watcher's send function is called with it
minus the time just before the event was published, both from this process's
clock. The send function stands in for the websocket, so socket I/O is not
included.

``first-query``: ``--runs`` runs (default 100,000) with a config and a loss
metric, then the time of ``runs.list_runs`` with a filter, the query behind
``GET …/runs?filter=`` (first page of 1,000 runs), and of selecting every
matching run id, each run ``--repeat`` times.

    python bench/runsets.py membership --redis-url redis://127.0.0.1:6379/0
    python bench/runsets.py first-query \\
        --database-url postgresql://postgres@127.0.0.1:5432/assay_bench_runsets

Each command creates its database from scratch; a PostgreSQL database named in
``--database-url`` is dropped and created again. Without ``--database-url`` a
SQLite file in a temporary directory is used. The result is printed as JSON
and written to ``bench/results/runsets-*.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from assay_server import filters, runs, schema
from assay_server.bus import Bus, LocalBus, RedisBus, event_fields
from assay_server.database import Database
from assay_server.membership import MembershipEngine
from assay_server.membership_socket import MembershipWatch
from assay_server.settings import async_database_url

BENCH = Path(__file__).resolve().parent
PROJECT = "runsets-bench"
LEARNING_RATES = (0.001, 0.01, 0.1, 0.5, 1.0)
BATCH_SIZES = (8, 16, 32, 64, 128)
INSERT_CHUNK = 5_000
FILTER = "config.lr >= 0.5 and config.batch_size < 32 and summary.loss < 1.5"


async def create_database(url: str | None, directory: Path) -> Database:
    if url is None:
        return await migrated(f"sqlite+aiosqlite:///{directory / 'bench.db'}")
    resolved = make_url(async_database_url(url))
    admin = create_async_engine(resolved.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{resolved.database}"'))
        await connection.execute(text(f'CREATE DATABASE "{resolved.database}"'))
    await admin.dispose()
    return await migrated(resolved.render_as_string(hide_password=False))


async def migrated(url: str) -> Database:
    database = Database(url)
    await database.upgrade()
    return database


def run_row(project_id: int, index: int, rng: random.Random, now: float) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "run_id": f"r{index:06d}",
        "name": f"sweep-{index}",
        "state": rng.choice(("finished", "finished", "running", "failed")),
        "config": {
            "lr": rng.choice(LEARNING_RATES),
            "batch_size": rng.choice(BATCH_SIZES),
            "seed": index % 7,
            "optimizer": {"name": rng.choice(("adam", "sgd"))},
        },
        "summary": {},
        "tags": ["sweep"] if index % 3 else ["sweep", "baseline"],
        "group_name": f"g{index % 20}",
        "created_at": now - index,
        "heartbeat_at": now - index,
        "next_step": 100,
    }


def loss_row(run_pk: int, rng: random.Random) -> dict[str, Any]:
    """Return the loss metric of one run: 1% end in NaN, 0.5% in +Inf, the rest finite."""
    draw = rng.random()
    value, kind = rng.uniform(0.01, 3.0), schema.SQL_KIND_FLOAT
    if draw < 0.01:
        value, kind = 0.0, schema.SQL_KIND_NAN
    elif draw < 0.015:
        value = math.inf
    return {
        "run_pk": run_pk,
        "key": "loss",
        "count": 100,
        "last_step": 99,
        "last_value": value,
        "last_kind": kind,
        "min_value": 0.01,
        "max_value": 3.0 if value != math.inf else math.inf,
        "has_nan": kind == schema.SQL_KIND_NAN,
        "has_inf": value == math.inf,
        "has_null": False,
        "chunk_count": 1,
    }


async def seed(database: Database, count: int) -> int:
    """Store ``count`` runs with a loss metric each; return the project id."""
    rng = random.Random(1)
    now = time.time()
    async with database.transaction() as connection:
        user = await connection.execute(
            insert(schema.users).values(name="bench", is_admin=True, created_at=now)
        )
        user_key = user.inserted_primary_key
        assert user_key is not None
        project = await connection.execute(
            insert(schema.projects).values(name=PROJECT, owner_id=user_key[0], created_at=now)
        )
        project_key = project.inserted_primary_key
        assert project_key is not None
        project_id = int(project_key[0])
    for start in range(0, count, INSERT_CHUNK):
        indexes = range(start, min(count, start + INSERT_CHUNK))
        async with database.transaction() as connection:
            await connection.execute(
                insert(schema.runs), [run_row(project_id, i, rng, now) for i in indexes]
            )
            pks = await connection.scalars(
                select(schema.runs.c.pk).where(
                    schema.runs.c.project_id == project_id,
                    schema.runs.c.run_id.in_([f"r{i:06d}" for i in indexes]),
                )
            )
            await connection.execute(insert(schema.metrics), [loss_row(pk, rng) for pk in pks])
    return project_id


def watched_filters(count: int) -> list[str]:
    """Return ``count`` distinct filters; one in ten reads a metric statistic."""
    found: list[str] = []
    index = 0
    while len(found) < count:
        lr = LEARNING_RATES[index % len(LEARNING_RATES)]
        threshold = round(0.1 + 0.05 * index, 2)
        if index % 10 == 9:
            found.append(f"summary.loss.has_nan = true and config.lr >= {lr}")
        elif index % 3 == 0:
            found.append(f"summary.loss is nan or summary.loss > {threshold}")
        elif index % 3 == 1:
            found.append(f"config.lr >= {lr} and summary.loss < {threshold}")
        else:
            found.append(
                f'summary.loss is finite and tags contains "baseline" and '
                f"config.seed != {index % 7} and summary.loss >= {threshold}"
            )
        index += 1
    return found


def percentiles(values: list[float]) -> dict[str, float]:
    array = np.array(values) * 1000
    return {
        "count": len(values),
        "p50_ms": round(float(np.percentile(array, 50)), 3),
        "p90_ms": round(float(np.percentile(array, 90)), 3),
        "p99_ms": round(float(np.percentile(array, 99)), 3),
        "max_ms": round(float(array.max()), 3),
    }


async def membership(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    database = await create_database(args.database_url, directory)
    started = time.perf_counter()
    project_id = await seed(database, args.runs)
    seeded = time.perf_counter() - started
    bus: Bus
    prefix = f"bench-runsets-{secrets.token_hex(4)}:"
    if args.redis_url:
        bus = RedisBus(args.redis_url, prefix, 1000, 100_000)
    else:
        bus = LocalBus(prefix, 1000, 100_000)
    engine = MembershipEngine(bus, database)
    published: dict[str, float] = {}
    latencies: list[float] = []
    messages = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal messages
        now = time.time()
        if message["type"] != "membership":
            return
        messages += 1
        for change in message["changes"].values():
            for run_id in change["entered"] + change["left"]:
                latencies.append(now - published[run_id])

    texts = watched_filters(args.runsets)
    watches = []
    loaded = time.perf_counter()
    for socket_index in range(args.sockets):
        watch = MembershipWatch(engine, project_id, send, f"bench{socket_index}", 100_000)
        mine = texts[socket_index :: args.sockets]
        await watch.handle(
            {"type": "watch", "runsets": {f"s{socket_index}-{i}": t for i, t in enumerate(mine)}}
        )
        watches.append(watch)
    first_watch = time.perf_counter() - loaded

    rng = random.Random(2)
    interval = 1 / args.rate
    order = rng.sample(range(args.runs), min(args.events, args.runs))
    next_time = time.perf_counter()
    cpu_started = time.process_time()
    for number, index in enumerate(order):
        run_id = f"r{index:06d}"
        loss = math.nan if number % 2 else rng.uniform(0.01, 3.0)
        fields = event_fields("run.summary", run_id, {"summary": {"loss": loss}})
        published[run_id] = time.time()
        await bus.publish_event(project_id, fields)
        next_time += interval
        await asyncio.sleep(max(0.0, next_time - time.perf_counter()))
    await asyncio.sleep(2)
    # CPU time of this process (publisher, engine and watchers) per event: what
    # the events cost, apart from the time spent waiting for other processes.
    cpu_per_event = (time.process_time() - cpu_started) / len(order)
    for watch in watches:
        await watch.close()
    await engine.close()
    await bus.close()
    await database.close()
    return {
        "runs": args.runs,
        "runsets": len(texts),
        "sockets": args.sockets,
        "events": len(order),
        "rate_per_s": args.rate,
        "bus": "redis" if args.redis_url else "in-process",
        "seed_s": round(seeded, 2),
        "first_watch_s": round(first_watch, 3),
        "membership_messages": messages,
        "cpu_per_event_ms": round(cpu_per_event * 1000, 3),
        "load_average": os.getloadavg(),
        "latency": percentiles(latencies),
    }


async def first_query(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    database = await create_database(args.database_url, directory)
    started = time.perf_counter()
    project_id = await seed(database, args.runs)
    seeded = time.perf_counter() - started

    async with database.transaction() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text("ANALYZE"))
    node = filters.parse_filter(args.filter)
    page_times: list[float] = []
    all_times: list[float] = []
    selected = 0
    page = 0

    for _ in range(args.repeat):
        async with database.reading() as connection:
            begin = time.perf_counter()
            found = await runs.list_runs(connection, PROJECT, 1000, 0, node)
            page_times.append(time.perf_counter() - begin)
            page = len(found)
            begin = time.perf_counter()
            await filters.prepare_connection(connection, node)
            rows = await connection.execute(
                select(schema.runs.c.run_id).where(
                    schema.runs.c.project_id == project_id,
                    filters.to_sql(node, connection.dialect.name),
                )
            )
            selected = len(rows.all())
            all_times.append(time.perf_counter() - begin)
    await database.close()
    return {
        "runs": args.runs,
        "filter": args.filter,
        "database": "postgresql" if args.database_url else "sqlite",
        "load_average": os.getloadavg(),
        "seed_s": round(seeded, 2),
        "first_page": {
            "rows": page,
            **percentiles(page_times),
            "first_ms": round(page_times[0] * 1000, 3),
        },
        "all_matching": {
            "rows": selected,
            **percentiles(all_times),
            "first_ms": round(all_times[0] * 1000, 3),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    live = commands.add_parser("membership", help="run event to membership message latency")
    live.add_argument("--runs", type=int, default=10_000, help="runs in the project")
    live.add_argument("--runsets", type=int, default=100, help="distinct watched filters")
    live.add_argument("--sockets", type=int, default=10, help="watchers sharing the filters")
    live.add_argument("--events", type=int, default=2_000, help="run.summary events to publish")
    live.add_argument("--rate", type=float, default=200, help="events per second")
    live.add_argument("--redis-url", help="Redis URL for the bus (default: in-process bus)")
    query = commands.add_parser("first-query", help="a filter's first evaluation in SQL")
    query.add_argument("--runs", type=int, default=100_000, help="runs in the project")
    query.add_argument("--filter", default=FILTER, help="filter text (default: %(default)s)")
    query.add_argument("--repeat", type=int, default=5, help="times to run each query")
    for command in (live, query):
        command.add_argument(
            "--database-url", help="PostgreSQL URL, dropped and created (default: SQLite file)"
        )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        runner = membership if args.command == "membership" else first_query
        result = asyncio.run(runner(args, Path(directory)))
    result["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    print(json.dumps(result, indent=2))
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    name = f"runsets-{args.command}-{int(time.time())}.json"
    (results / name).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
