"""Measure PostgreSQL and Redis bytes per logged point, to size a deployment.

Logs one run of ``--metrics`` metrics over ``--steps`` steps through the SDK
into a running server, then reports:

- PostgreSQL: bytes of the run's metric chunk rows as stored (after TOAST
  compression), and the growth of the chunk table with its indexes and TOAST;
- Redis: memory of the run's live stream (``MEMORY USAGE``), per entry and per
  point.

The values are random walks, which compress about as badly as real losses.
Point it at a scratch database: it adds a project named ``sizing``.

    .venv/bin/python deploy/local/measure-storage.py --server http://127.0.0.1:8080 \\
        --api-key KEY --database-url postgresql://postgres@127.0.0.1/assay \\
        --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import random
import time

import psycopg
import redis

import assay

TABLE_SIZE = "SELECT pg_total_relation_size('chunks')"
RUN_CHUNKS = """
SELECT count(*), coalesce(sum(pg_column_size(c.*)), 0), coalesce(sum(c.count), 0)
FROM chunks c
JOIN metrics m ON m.id = c.metric_id
JOIN runs r ON r.pk = m.run_pk
JOIN projects p ON p.id = r.project_id
WHERE p.name = %s AND r.run_id = %s
"""
PROJECT_ID = "SELECT id FROM projects WHERE name = %s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="server URL")
    parser.add_argument("--api-key", required=True, help="API key of the server")
    parser.add_argument("--database-url", required=True, help="the server's PostgreSQL URL")
    parser.add_argument("--redis-url", help="the server's Redis URL; omit to skip Redis")
    parser.add_argument("--redis-prefix", default="assay:", help="ASSAY_REDIS_PREFIX")
    parser.add_argument("--metrics", type=int, default=20, help="metrics logged per step")
    parser.add_argument("--steps", type=int, default=20_000, help="steps to log")
    parser.add_argument(
        "--steps-per-second",
        type=float,
        default=0.0,
        help="pace of logging, as in a training loop; 0 logs as fast as possible, "
        "which makes batches (and Redis entries) as large as the SDK allows",
    )
    args = parser.parse_args()

    with psycopg.connect(args.database_url, autocommit=True) as connection:
        table_before = connection.execute(TABLE_SIZE).fetchone()[0]  # type: ignore[index]

    values = [1.0] * args.metrics
    started = time.monotonic()
    with assay.init("sizing", server=args.server, api_key=args.api_key) as run:
        for step in range(args.steps):
            values = [value * (1 + random.gauss(0, 0.01)) for value in values]
            run.log({f"metric_{index}": value for index, value in enumerate(values)})
            if args.steps_per_second > 0:
                pause = started + (step + 1) / args.steps_per_second - time.monotonic()
                if pause > 0:
                    time.sleep(pause)

    with psycopg.connect(args.database_url, autocommit=True) as connection:
        chunks, row_bytes, points = connection.execute(RUN_CHUNKS, ("sizing", run.id)).fetchone()  # type: ignore[misc]
        table_after = connection.execute(TABLE_SIZE).fetchone()[0]  # type: ignore[index]
        project_id = connection.execute(PROJECT_ID, ("sizing",)).fetchone()[0]  # type: ignore[index]

    print(f"run {run.id}: {points} points in {chunks} chunks")
    print(f"PostgreSQL chunk rows: {row_bytes / points:.1f} bytes per point")
    growth = (table_after - table_before) / points
    print(f"PostgreSQL chunk table growth: {growth:.1f} bytes per point")
    if args.redis_url:
        client = redis.Redis.from_url(args.redis_url)
        stream = f"{args.redis_prefix}live:{project_id}:{run.id}"
        entries = client.xlen(stream)
        memory = client.memory_usage(stream) or 0
        per_entry = memory / max(entries, 1)
        print(
            f"Redis live stream: {entries} entries, {per_entry:.0f} bytes per entry, "
            f"{memory / points:.1f} bytes per point"
        )


if __name__ == "__main__":
    main()
