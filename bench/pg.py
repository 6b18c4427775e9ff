"""A throwaway PostgreSQL database per benchmark run (created and dropped)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:55432/postgres"


def server_url() -> str:
    return os.environ.get("CATALOGUE_TEST_PG_URL", DEFAULT_URL)


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def reachable(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(_plain(url), connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@contextmanager
def fresh_database(url: str, name: str) -> Iterator[str]:
    """Create database ``name`` on the server of ``url``; yield its URL; drop it after."""
    import psycopg

    with psycopg.connect(_plain(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    base = url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(_plain(url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
