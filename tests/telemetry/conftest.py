"""A real PostgreSQL for the decision-log tests (skipped, with the reason, where it cannot be installed)."""

from __future__ import annotations

import pytest

from tests.telemetry.postgres import PostgresServer, unavailable


@pytest.fixture(scope="session")
def postgres_server():
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres_server) -> str:
    """The URL of a fresh, empty database on the test server."""
    return postgres_server.database()
