"""Several catalogue servers on one PostgreSQL database: one harvests, every one's search is fresh.

`HarvestLeader`: the server holding a session-level advisory lock on a dedicated connection
harvests; the others try again every CATALOGUE_HARVEST_INTERVAL and take over once its
session ends (process killed, host gone: PostgreSQL releases the lock). `ChangeListener`: a
thread LISTENing on the own log's channel (catalogue.ownlog.CHANGES_CHANNEL) refreshes this
server's search index as soon as any server commits a harvest step. On SQLite there is one
server: it always harvests and has nothing to listen to.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from catalogue.ownlog import CHANGES_CHANNEL

__all__ = ["LOCK_KEY", "ChangeListener", "HarvestLeader", "harvest_leader", "is_postgres"]

log = logging.getLogger(__name__)

# the advisory lock of the harvest leader (per database: catalogues in other databases of
# the same server do not compete)
LOCK_KEY = int.from_bytes(b"biobankH", "big")
_RETRY_MAX = 30.0  # seconds between reconnection attempts of the listener, at most


def is_postgres(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "postgresql"


def _conninfo(database_url: str) -> str:
    """The SQLAlchemy URL as a libpq URI (psycopg's own connections)."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _name(role: str) -> str:
    """What pg_stat_activity shows for this server's dedicated connections (63 bytes at most)."""
    return f"biobank-catalogue {role} {socket.gethostname()} pid {os.getpid()}"[:63]


class HarvestLeader:
    """Whether this server harvests now (`ensure`): always on SQLite; on PostgreSQL while it
    holds the advisory lock LOCK_KEY on its own connection."""

    def __init__(self, database_url: str) -> None:
        self.postgres = is_postgres(database_url)
        self._info = _conninfo(database_url) if self.postgres else ""
        self._conn: psycopg.Connection[Any] | None = None
        self.role = "leader" if not self.postgres else ""

    def ensure(self) -> bool:
        """Keep the lock (the connection still answers) or try to take it (blocking, short)."""
        if not self.postgres:
            return True
        if self._conn is not None:
            try:
                self._conn.execute("SELECT 1")
                return True
            except psycopg.Error as exc:
                self.release()
                log.warning("harvest lock lost with its database connection (%s)", exc)
        try:
            conn = psycopg.connect(
                self._info, autocommit=True, application_name=_name("harvest"), connect_timeout=10
            )
        except psycopg.Error as exc:
            log.warning("cannot reach the database to take the harvest lock: %s", exc)
            self.role = ""
            return False
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
            if row is not None and row[0]:
                self._conn = conn
                if self.role != "leader":
                    log.info("harvest leader: this server (pid %d) harvests now", os.getpid())
                self.role = "leader"
                return True
            if self.role != "follower":
                holder = conn.execute(_HOLDER, _holder_params()).fetchone()
                log.info(
                    "harvest follower: %s holds the harvest lock; this server (pid %d) "
                    "serves search and takes over if it goes",
                    holder[0] if holder else "another server",
                    os.getpid(),
                )
            self.role = "follower"
        except psycopg.Error as exc:
            log.warning("taking the harvest lock failed: %s", exc)
        conn.close()
        return False

    def release(self) -> None:
        """Close the connection: its session ends and the lock is free for another server."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):  # broken: the session is gone anyway
                conn.close()
        if self.postgres:
            self.role = ""


_HOLDER = """
SELECT a.application_name, a.pid, a.client_addr::text, a.backend_start
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %(hi)s AND l.objid = %(lo)s
  AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def _holder_params() -> dict[str, int]:
    return {"hi": LOCK_KEY >> 32, "lo": LOCK_KEY & 0xFFFFFFFF}


def harvest_leader(conn: Connection) -> dict[str, Any] | None:
    """Who holds the harvest lock now: `name` (host and pid of the server), its database
    session's `pid`, `client_addr` and `since`; None when no server does (or on SQLite)."""
    if conn.dialect.name != "postgresql":
        return None
    sql = _HOLDER.replace("%(hi)s", ":hi").replace("%(lo)s", ":lo")
    row = conn.execute(text(sql), _holder_params()).first()
    if row is None:
        return None
    return {
        "name": row[0],
        "pid": int(row[1]),
        "client_addr": row[2],
        "since": row[3].isoformat() if row[3] is not None else None,
    }


class ChangeListener:
    """A daemon thread that calls `on_change` whenever a server commits a change to the own
    log (NOTIFY), and once after each (re)connection, since what was sent meanwhile is lost."""

    def __init__(self, database_url: str, on_change: Callable[[], None]) -> None:
        self._info = _conninfo(database_url)
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="catalogue-listen")
        self.connected = threading.Event()

    def start(self) -> ChangeListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._info,
                    autocommit=True,
                    application_name=_name("listen"),
                    connect_timeout=10,
                ) as conn:
                    conn.execute(f"LISTEN {CHANGES_CHANNEL}")
                    self.connected.set()
                    delay = 1.0
                    self._changed()
                    while not self._stop.is_set():
                        if any(True for _ in conn.notifies(timeout=0.5, stop_after=1)):
                            self._changed()
            except psycopg.Error as exc:
                self.connected.clear()
                log.warning("change listener: %s; connecting again in %g s", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, _RETRY_MAX)

    def _changed(self) -> None:
        try:
            self._on_change()
        except Exception:  # the next change (or search) tries again
            log.exception("refreshing the search index failed")
