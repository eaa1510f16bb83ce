"""Prometheus metrics of the server process, served at ``/metrics``."""

from __future__ import annotations

import logging

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

POINTS = Counter("assay_ingested_points", "Metric points committed to the database.")
BATCHES = Counter(
    "assay_ingested_batches",
    "Ingest batches by outcome: stored, duplicate (stored before) or rejected.",
    ["outcome"],
)
ACK_SECONDS = Histogram(
    "assay_ack_seconds",
    "Time from receiving a batch to acknowledging it, in seconds.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SOCKETS = Gauge("assay_open_sockets", "Open websockets by kind.", ["kind"])
ERRORS = Counter(
    "assay_errors",
    "Errors sent to clients (HTTP responses, handshake denials, error messages on the "
    "ingest, live and report sockets), by error code.",
    ["kind"],
)
OPEN_REPORTS = Gauge("assay_open_reports", "Report rooms loaded on this instance.")
RUNSET_EVALUATIONS = Counter(
    "assay_runset_evaluations",
    "Filter evaluations of live run-set watches, by mode: initial (a newly watched filter "
    "against every run of its project) or incremental (a watched filter against the run "
    "that an event changed).",
    ["mode"],
)
LOCAL_BUS_HELD_BYTES = Gauge(
    "assay_local_bus_bytes",
    "Estimated bytes of the entries the in-process bus holds (no Redis configured).",
)
LOCAL_BUS_DROPPED = Counter(
    "assay_local_bus_dropped_entries",
    "Entries the in-process bus dropped, oldest first, to stay within "
    "ASSAY_LOCAL_BUS_BYTES. A live socket whose cursor was in them resyncs.",
)
CRASHED_RUNS = Counter("assay_crashed_runs", "Runs marked crashed after heartbeats stopped.")
LOG_MESSAGES = Counter(
    "assay_log_messages",
    "Log records of level WARNING and above, by level and logger.",
    ["level", "logger"],
)


class LogCounter(logging.Filter):
    """A handler filter that counts warnings and errors in ``LOG_MESSAGES`` and drops none.

    Failures that the server only logs (a failed publish to Redis, a failed
    report write) then show in ``/metrics`` as well as in the log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            LOG_MESSAGES.labels(record.levelname, record.name).inc()
        return True


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics)]
