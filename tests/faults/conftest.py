"""Fixtures for the fault tests: the private PostgreSQL and Redis of the deployment tests."""

from deploy.conftest import (  # noqa: F401
    private_postgres,
    private_postgres_settings,
    private_redis,
)
