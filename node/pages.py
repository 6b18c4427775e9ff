"""Full log pages kept as the bytes they are served as (``/v1/log/entries``).

A page is the entries ``start .. start + PAGE - 1`` with ``start`` a multiple of
:data:`PAGE`. Once the log holds more leaves than its end, a page never changes, except
when a withdrawal erases one of its contents. So each full page is encoded once, in the
write transaction that completes it (:meth:`node.publish.LogWriter.finish`), and stored in
the ``pages`` table of node.db beside the leaves it is built from; the server answers a
request for it with the stored bytes instead of building them again (node/README.md
"Serving log pages").

Never stale: erasing a content (``UPDATE contents``) or changing or deleting a leaf or a
content row fires a trigger that clears the page's bytes in the same transaction, so no
reader ever sees the bytes of a page whose rows have changed; :func:`write_pages` encodes it
again from the rows before that transaction commits (a page left cleared is built per
request, as a partial last page always is). The stored bytes are byte for byte what
:func:`page_body` builds from the rows (tests/node/test_stored_pages.py).
"""

from __future__ import annotations

import binascii
import hashlib
import sqlite3
from collections.abc import Iterable

__all__ = ["PAGE", "PAGE_SQL", "SCHEMA", "page_body", "stored_page", "write_pages"]

PAGE = 1000

# the leaves and their contents as stored: the content's UTF-8 bytes (CAST ... AS BLOB),
# so that a page is built of bytes without decoding and encoding each content again
PAGE_SQL = (
    "SELECT l.leaf, CAST(c.content AS BLOB) FROM leaves l LEFT JOIN contents c "
    "ON c.idx = l.idx WHERE l.idx >= ? AND l.idx < ? ORDER BY l.idx"
)

_CLEAR = f"UPDATE pages SET body = NULL, etag = NULL WHERE start = ROW.idx - ROW.idx % {PAGE};"

#: ``pages``: start -> the page's bytes (``next`` = start + PAGE) and their ETag, or NULL
#: once a trigger cleared them; ``pages_cleared`` finds the cleared ones without reading
#: the bodies. The triggers clear a page whose leaf or content rows change.
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS pages (start INTEGER PRIMARY KEY, etag TEXT, body BLOB);
CREATE INDEX IF NOT EXISTS pages_cleared ON pages(start) WHERE body IS NULL;
CREATE TRIGGER IF NOT EXISTS pages_content_update AFTER UPDATE ON contents
    BEGIN {_CLEAR.replace("ROW", "OLD")} {_CLEAR.replace("ROW", "NEW")} END;
CREATE TRIGGER IF NOT EXISTS pages_content_delete AFTER DELETE ON contents
    BEGIN {_CLEAR.replace("ROW", "OLD")} END;
CREATE TRIGGER IF NOT EXISTS pages_leaf_update AFTER UPDATE ON leaves
    BEGIN {_CLEAR.replace("ROW", "OLD")} {_CLEAR.replace("ROW", "NEW")} END;
CREATE TRIGGER IF NOT EXISTS pages_leaf_delete AFTER DELETE ON leaves
    BEGIN {_CLEAR.replace("ROW", "OLD")} END;
"""


def page_body(rows: Iterable[tuple[bytes, bytes | None]], nxt: int | None) -> bytes:
    """The JSON of an entries page, byte for byte what ``orjson.dumps({"entries": [{"leaf":
    base64, "content": stored JSON text or null}, ...], "next": nxt})`` writes, built in one
    pass over the rows (leaf bytes, the stored content's UTF-8 bytes or None) without a dict
    per entry or a string per page: the stored content is already canonical JSON, as
    orjson.Fragment would insert it; base64 needs no escaping. Built as bytes from the
    database's bytes, a page costs the server about 1.6 µs an entry, where reading the rows
    into a list and formatting one string cost 2.5 (node/README.md "Serving log pages")."""
    b2a = binascii.b2a_base64
    parts = [b'{"entries":[']
    add = parts.append
    for leaf, content in rows:
        add(
            b'{"leaf":"'
            + b2a(leaf, newline=False)
            + b'","content":'
            + (b"null" if content is None else content)
            + b"},"
        )
    if len(parts) > 1:
        parts[-1] = parts[-1][:-1]  # no comma after the last entry
    add(b'],"next":' + (b"null" if nxt is None else str(nxt).encode()) + b"}")
    return b"".join(parts)


def etag_of(body: bytes) -> str:
    """A strong ETag for a page's bytes (a quoted hex digest)."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def write_pages(conn: sqlite3.Connection, size: int) -> int:
    """Encode and store every full page of the first ``size`` leaves that is missing or was
    cleared, inside the caller's transaction; the number written.

    A full page ends before ``size`` or at it (its ``next`` is stored as its end: it is
    served from here only once more leaves follow). Pages are kept from index 0 on, so a log
    stored before pages were kept has them all written by its next write transaction.
    """
    full = size // PAGE * PAGE
    (last,) = conn.execute("SELECT max(start) FROM pages").fetchone()
    todo = [int(s) for (s,) in conn.execute("SELECT start FROM pages WHERE body IS NULL")]
    todo += range(0 if last is None else int(last) + PAGE, full, PAGE)
    for start in todo:
        if start + PAGE > full:
            continue
        body = page_body(conn.execute(PAGE_SQL, (start, start + PAGE)), start + PAGE)
        conn.execute(
            "INSERT OR REPLACE INTO pages(start, etag, body) VALUES (?, ?, ?)",
            (start, etag_of(body), body),
        )
    return len(todo)


def stored_page(conn: sqlite3.Connection, start: int) -> tuple[bytes, str] | None:
    """The stored bytes and ETag of the full page at ``start``, or None (not stored, cleared
    by an erasure, or a database from before pages were kept)."""
    try:
        row = conn.execute("SELECT body, etag FROM pages WHERE start = ?", (start,)).fetchone()
    except sqlite3.OperationalError as exc:  # a database restored from an old backup
        if "no such table" in str(exc):
            return None
        raise
    if row is None or row[0] is None:
        return None
    return bytes(row[0]), str(row[1])
