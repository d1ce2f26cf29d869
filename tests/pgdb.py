"""A fresh PostgreSQL database for a test, dropped after: on the machine's server
(`$CABINET_TEST_PG`, default postgresql://postgres@127.0.0.1:5432/postgres).

    with fresh_database() as dsn: ...

Without a reachable server the test is skipped, except under CI (`$CI` set), where that
is a failure: .ci/run starts a server where none runs.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def fresh_database(prefix: str = "cabinet_test") -> Iterator[str]:
    base = os.environ.get("CABINET_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        import psycopg

        admin = psycopg.connect(base, autocommit=True, connect_timeout=3)
    except Exception as e:  # noqa: BLE001 - ImportError or any connection failure
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required under CI: {base}: {e}")
        pytest.skip(f"no PostgreSQL at {base}: {e}")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield base.rsplit("/", 1)[0] + f"/{name}"
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
