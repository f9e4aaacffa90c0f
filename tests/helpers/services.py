"""The outside services tests talk to, and what happens when one is missing.

PostgreSQL (127.0.0.1:5432, user postgres) and Redis (127.0.0.1:6379) are optional on a laptop: tests that need
them are skipped when they are down. With ``REJOINDER_REQUIRE_SERVICES=1`` (CI) a missing service fails instead.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_USER = "postgres"
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
REDIS_TEST_DB = 15  # kept apart from db 0, which a developer's own server may use

# The suite starts many conversations from 127.0.0.1, far more than one visitor may: quotas are off unless a test
# sets them (tests/api/test_quotas.py). Processes a test starts get them too (their environments add NO_QUOTAS).
NO_QUOTAS = {
    f"REJOINDER_QUOTA_{name}": "0"
    for name in ("STARTS_PER_IP", "STARTS_PER_BOT", "MESSAGES_PER_IP", "MESSAGES_PER_BOT")
}


def unavailable(reason: str) -> NoReturn:
    """Skip a test that cannot run here for ``reason``; fail it instead when the run requires every service."""
    if os.environ.get("REJOINDER_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (REJOINDER_REQUIRE_SERVICES=1, so this is an error)", pytrace=False)
    pytest.skip(reason)


def unreachable(what: str, error: BaseException) -> NoReturn:
    """Skip (or fail, see :func:`unavailable`) a test for want of ``what``, which failed with ``error``."""
    unavailable(f"{what}: {type(error).__name__}: {error}")
