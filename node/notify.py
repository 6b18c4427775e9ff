"""Push, then pull: tell catalogues about each new signed checkpoint, as a hint to harvest now.

Targets are catalogue base URLs kept in ``node.db`` (table ``notify_targets``): added by the
operator (``biobank-node notify add URL``) or by a catalogue at enrolment
(``POST /v1/notify/targets``, confirmed against the catalogue's own descriptor; see
docs/freshness.md). A target is *due* while the node's latest checkpoint is larger than the
last one it acknowledged. ``biobank-node serve`` runs :class:`Sender`: it polls the database
(an import, withdrawal, publication or key rotation is another process), POSTs the latest
signed checkpoint, verbatim, to ``URL/v1/notify`` and records the outcome; a failure is
retried with exponential backoff (1 s doubling to 5 min, or the catalogue's
``Retry-After``). Importing never waits for a catalogue: the CLI only commits its
checkpoint. The node learns nothing from an answer: it trusts no catalogue for anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import sqlite3
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from node import store
from protocol.entries import utc_now
from protocol.errors import ConfigError

__all__ = [
    "BACKOFF_MAX",
    "MAX_ANSWER",
    "MAX_REGISTERED",
    "Sender",
    "Target",
    "add_target",
    "check_url",
    "notify_url",
    "remove_target",
    "targets",
]

log = logging.getLogger(__name__)


BACKOFF_MAX = 300.0  # seconds between two attempts, at most
MAX_REGISTERED = 16  # targets a catalogue may add at enrolment (the operator's: no limit)
PATH = "/v1/notify"
MAX_ANSWER = 16 * 1024  # bytes of a catalogue's answer to a notification read, at most


@dataclass(frozen=True)
class Target:
    """One catalogue to notify and how its notifications went."""

    url: str
    source: str  # "operator" | "enrolment"
    added: str
    delivered_size: int  # the largest checkpoint size it acknowledged (-1: none yet)
    attempts: int  # failed attempts since the last success
    next_attempt: float  # epoch seconds
    last_attempt: str | None
    last_delivered: str | None
    last_error: str | None

    def describe(self, size: int, now: float | None = None) -> str:
        """One line for ``biobank-node status``."""
        now = time.time() if now is None else now
        head = f"notify {self.url} ({self.source}): "
        if self.delivered_size >= size:
            return head + f"up to date (size {self.delivered_size}, {self.last_delivered})"
        wait = max(0.0, self.next_attempt - now)
        text = f"queued: checkpoint size {size} not yet delivered"
        if self.attempts:
            text += f"; {self.attempts} failed attempt(s), last: {self.last_error}"
            text += f"; next attempt in {wait:.0f} s"
        return head + text

    def to_dict(self, size: int) -> dict[str, object]:
        return {
            "url": self.url,
            "source": self.source,
            "delivered_size": self.delivered_size,
            "queued": self.delivered_size < size,
            "attempts": self.attempts,
            "next_attempt": self.next_attempt,
            "last_attempt": self.last_attempt,
            "last_delivered": self.last_delivered,
            "last_error": self.last_error,
        }


def create_schema(conn: sqlite3.Connection) -> None:
    store.create_schema(conn)  # the table is part of node.db's schema (node/store.py)


def check_url(url: str) -> str:
    """The catalogue base URL, normalised (no trailing slash); ConfigError naming the problem."""
    shown = url if len(url) <= 200 else url[:200] + "..."
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises for a port out of range or not a number
        httpx.URL(url.strip())  # what the sender will post to must parse
    except (ValueError, httpx.InvalidURL) as exc:
        raise ConfigError(f"notify target {shown!r}: not a URL ({exc})") from exc
    if len(parts.hostname or "") > 253 or len(url) > 2000:  # no DNS name is longer
        raise ConfigError(f"notify target {shown!r}: host name or URL too long")
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise ConfigError(f"notify target {shown!r}: give the catalogue's http(s) base URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"notify target {shown!r}: no query, fragment or user name, please")
    if any(c.isspace() or not c.isprintable() for c in url.strip()):
        raise ConfigError(f"notify target {shown!r}: no spaces or control characters, please")
    return url.strip().rstrip("/")


def notify_url(base: str) -> str:
    """Where a notification for the catalogue at ``base`` goes."""
    return base + PATH


def targets(conn: sqlite3.Connection) -> list[Target]:
    create_schema(conn)
    return [
        Target(*row)
        for row in conn.execute(
            "SELECT url, source, added, delivered_size, attempts, next_attempt, last_attempt, "
            "last_delivered, last_error FROM notify_targets ORDER BY url"
        )
    ]


def add_target(conn: sqlite3.Connection, url: str, source: str = "operator") -> bool:
    """Add a target (it is sent the latest checkpoint at once); False when already there.

    A catalogue's registration (``source="enrolment"``) never replaces the operator's own
    entry and is refused past :data:`MAX_REGISTERED` registrations.
    """
    url = check_url(url)
    create_schema(conn)
    if conn.execute("SELECT 1 FROM notify_targets WHERE url = ?", (url,)).fetchone():
        if source == "operator":  # the operator's word: keep it as theirs
            conn.execute("UPDATE notify_targets SET source = 'operator' WHERE url = ?", (url,))
        return False
    if source != "operator":
        (n,) = conn.execute(
            "SELECT count(*) FROM notify_targets WHERE source = ?", (source,)
        ).fetchone()
        if n >= MAX_REGISTERED:
            raise ConfigError(
                f"{n} catalogues registered already (at most {MAX_REGISTERED}); the node "
                "operator adds more with 'biobank-node notify add URL'"
            )
    conn.execute(
        "INSERT INTO notify_targets(url, source, added) VALUES (?, ?, ?)",
        (url, source, utc_now()),
    )
    return True


def remove_target(conn: sqlite3.Connection, url: str) -> bool:
    create_schema(conn)
    cur = conn.execute("DELETE FROM notify_targets WHERE url = ?", (check_url(url),))
    return cur.rowcount > 0


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failures in a row."""
    return float(min(BACKOFF_MAX, 2 ** max(0, attempts - 1)))


class Sender:
    """Delivers the latest checkpoint to every due target; run by ``biobank-node serve``.

    Outcomes are written to ``node.db`` (for ``status``); while the database is locked by a
    long import they are kept in memory and written later, so the backoff holds either way.
    """

    def __init__(
        self,
        db_path: Path,
        *,
        poll: float = 0.2,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.db_path = db_path
        self.poll = poll
        self.timeout = timeout
        self.transport = transport
        self.verify = verify
        self._pending: dict[str, tuple[int, int, float, str | None, str | None]] = {}
        self._held: dict[str, float] = {}  # url -> next attempt (in memory, survives a lock)
        self._inflight: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        async with httpx.AsyncClient(
            timeout=self.timeout, transport=self.transport, verify=self.verify
        ) as client:
            try:
                while True:
                    try:
                        await self.once(client)
                    except Exception:  # never let the sender die: the schedule is the backstop
                        log.exception("sending checkpoint notifications failed")
                    await asyncio.sleep(self.poll)
            finally:
                for task in list(self._inflight.values()):
                    task.cancel()

    async def once(self, client: httpx.AsyncClient) -> int:
        """One round: start a send to every due target not still being sent to (a slow
        catalogue never delays the others); the number of sends started."""
        due, note, size = await asyncio.to_thread(self._due)
        if not due or note is None:
            return 0
        for target in due:
            task = asyncio.create_task(self._send(client, target, note, size))
            self._inflight[target.url] = task
            task.add_done_callback(functools.partial(self._sent, target.url))
        return len(due)

    def _sent(self, url: str, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(url, None)

    def _due(self) -> tuple[list[Target], str | None, int]:
        self._write()  # what a locked database kept in memory, first
        conn = store.connect(self.db_path)
        try:
            conn.execute("PRAGMA busy_timeout=1000")
            latest = store.latest_checkpoint(conn)
            all_targets = targets(conn)
        finally:
            conn.close()
        if latest is None:
            return [], None, 0
        size, _root, note, _time = latest
        now = time.time()
        due = [
            t
            for t in all_targets
            if t.delivered_size < size
            and max(t.next_attempt, self._held.get(t.url, 0.0)) <= now
            and t.url not in self._pending
            and t.url not in self._inflight
        ]
        return due, note, size

    async def _send(self, client: httpx.AsyncClient, t: Target, note: str, size: int) -> None:
        now = time.time()
        retry_after: float | None = None
        try:
            # the whole send within the timeout, and at most MAX_ANSWER bytes of the answer
            # read: a registered catalogue cannot hold the sender or fill its memory
            async with (
                asyncio.timeout(self.timeout),
                client.stream(
                    "POST",
                    notify_url(t.url),
                    content=note.encode(),
                    headers={"Content-Type": "text/plain"},
                ) as resp,
            ):
                answer = b""
                async for chunk in resp.aiter_bytes():
                    answer += chunk
                    if len(answer) >= MAX_ANSWER:
                        break
        except (httpx.HTTPError, TimeoutError) as exc:
            error: str | None = f"{type(exc).__name__}: {exc}".rstrip(": ")
        else:
            if resp.is_success:
                error = None
            else:
                error = f"HTTP {resp.status_code}: {_detail(answer[:MAX_ANSWER])}"
                with contextlib.suppress(ValueError):
                    retry_after = float(resp.headers.get("Retry-After", ""))
        if error is None:
            self._pending[t.url] = (size, 0, 0.0, None, utc_now())
            self._held.pop(t.url, None)
            return
        attempts = t.attempts + 1
        wait = backoff(attempts) if retry_after is None else max(retry_after, 0.1)
        self._held[t.url] = now + wait
        self._pending[t.url] = (t.delivered_size, attempts, now + wait, error, None)
        log.info(
            "notifying %s of size %d failed (%s); next attempt in %.1f s", t.url, size, error, wait
        )

    def _write(self) -> None:
        if not self._pending:
            return
        try:
            conn = store.connect(self.db_path)
        except sqlite3.Error:
            return
        try:
            conn.execute("PRAGMA busy_timeout=1000")
            create_schema(conn)
            stamp = utc_now()
            for url, outcome in self._pending.copy().items():  # copy(): atomic, sends go on
                delivered, attempts, nxt, error, when = outcome
                conn.execute(
                    "UPDATE notify_targets SET delivered_size = max(delivered_size, ?), "
                    "attempts = ?, next_attempt = ?, last_attempt = ?, last_error = ?, "
                    "last_delivered = coalesce(?, last_delivered) WHERE url = ?",
                    (delivered, attempts, nxt, stamp, error, when, url),
                )
                if self._pending.get(url) is outcome:
                    del self._pending[url]
        except sqlite3.OperationalError as exc:  # locked by an import: keep it for later
            log.debug("notify state not written yet: %s", exc)
        finally:
            conn.close()


def _detail(answer: bytes) -> str:
    try:
        body = json.loads(answer)
    except ValueError:
        return answer.decode("utf-8", "replace")[:200]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)[:200]
    return str(body)[:200]
