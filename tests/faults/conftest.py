"""Fixtures for the fault tests: the private PostgreSQL and Redis of the deployment tests."""

import importlib
import sys
from pathlib import Path

from deploy.conftest import (  # noqa: F401
    private_postgres,
    private_postgres_settings,
    private_redis,
)

# The report fault tests reuse the report tests' helpers (``reports.support``).
# pytest puts tests/server on sys.path only once it collects a file there, which
# comes after tests/faults. The package is imported here, under the name the
# report tests use, before test_load.py puts bench/ (with its reports.py) first.
SERVER_TESTS = str(Path(__file__).resolve().parent.parent / "server")
if SERVER_TESTS not in sys.path:
    sys.path.insert(0, SERVER_TESTS)
importlib.import_module("reports.support")
