"""``biobank-node recover``: bring a node.db restored from an old backup back to what it signed.

The catalogue mirrors every node log it harvested (``/v1/nodes/{origin}/log/...``). Recover
fetches that mirror from the restored size on and trusts nothing it did not check against
THIS node's own keys (the key in ``verifier.key``, the kept ``node.key.old-*`` files and the
key history in node.db): the checkpoint must be signed by one of them, every leaf must be
canonical, of this origin, in index order, with the content digests it names; ``rotate-key``
entries must name one of them; the leaves on top of the restored tree must rebuild the signed
root, and the tree at the size in ``signed-size.json`` must have the root this node signed
there. All of it is written in ONE transaction (leaves, contents, erasures, record state, key
history, the checkpoint), so a mirror that fails any check leaves node.db as it was.

The mirror has no samples (only group records; local ids and donor hashes never leave the
node). A recovery that appends anything empties the holding, which the restored backup
holds in an older state: the next import of the export re-creates it, and its publication
is a diff against the recovered group records (``node.groups.publish`` compares contents,
so unchanged groups append nothing).
"""

from __future__ import annotations

import base64
import json
import sqlite3
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from node import highwater, pages, store
from node.home import KEY, Home
from protocol.canonical import canonical, digest
from protocol.entries import parse_leaf, utc_now
from protocol.errors import (
    ConfigError,
    DigestMismatch,
    FetchError,
    MalformedEntry,
    RootMismatch,
    SignatureError,
)
from protocol.merkle import CompactRange, leaf_hash
from protocol.note import Checkpoint, Signer, Verifier, open_note, verify_checkpoint

PAGE = 1000
_UPSERT = (
    "INSERT INTO records (kind, id, biobank, local_id, donor_hash, digest, nonce, last_index, live)"
    " VALUES (?, ?, ?, NULL, NULL, ?, ?, ?, 1) ON CONFLICT(kind, id) DO UPDATE SET"
    " biobank = excluded.biobank, digest = excluded.digest, nonce = excluded.nonce,"
    " last_index = excluded.last_index, live = 1"
)


@dataclass(frozen=True)
class Recovery:
    """What ``recover`` did: the sizes before and after, and what it learnt."""

    size_before: int
    size_after: int
    mirror_size: int
    appended: int
    withdrawn: int
    rotations: int


def own_keys(home: Home, conn: sqlite3.Connection) -> list[str]:
    """Every verifier key this node holds or committed to: in force, kept old keys, history."""
    keys = [home.verifier_key, home.signer.vkey]
    for path in sorted(home.path.glob(f"{KEY}.old-*")):
        keys.append(Signer.from_key(path.read_text(encoding="utf-8").strip()).vkey)
    keys += json.loads(store.get_meta(conn, "key_history") or "[]")
    return list(dict.fromkeys(keys))


def _get(client: httpx.Client, url: str, **params: Any) -> httpx.Response:
    try:
        resp = client.get(url, params=params or None)
    except httpx.HTTPError as exc:
        raise FetchError(f"GET {url}: {exc}") from exc
    if resp.status_code != 200:
        raise FetchError(f"GET {resp.request.url}: HTTP {resp.status_code} {resp.text[:200]}")
    return resp


def recover(home: Home, catalogue: str, client: httpx.Client) -> Recovery:
    """Verify the catalogue's mirror of this node and append what node.db is missing."""
    origin = home.config.origin
    base = f"{catalogue.rstrip('/')}/v1/nodes/{quote(origin, safe='/')}/log"
    mark = highwater.read(home.path)
    conn = store.connect(home.db_path)
    try:
        store.create_schema(conn)
        keys = own_keys(home, conn)
        note = _get(client, f"{base}/checkpoint").text
        try:
            cp = verify_checkpoint(note, [Verifier.from_key(k) for k in keys], origin)
        except SignatureError as exc:
            raise SignatureError(
                f"the catalogue's checkpoint of {origin} is not signed by any key of this "
                f"node ({exc.message}); nothing recovered"
            ) from exc
        marked = mark.size if mark else 0
        if cp.size < marked:
            raise ConfigError(
                f"the catalogue's mirror holds {origin} up to size {cp.size}, but this node "
                f"signed size {marked}: recover from a catalogue that harvested size {marked} "
                "or later; nothing recovered"
            )
        size = store.log_size(conn)
        if cp.size <= size:
            _check_prefix(conn, cp)
            highwater.recovered(home.path, size, _compact(conn).root())
            return Recovery(size, size, cp.size, 0, 0, 0)
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = _append(conn, client, base, cp, note, keys, mark)
            conn.execute("DELETE FROM holding")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    highwater.recovered(home.path, cp.size, cp.root)
    return done


def _compact(conn: sqlite3.Connection) -> CompactRange:
    saved = store.get_meta(conn, "compact_range")
    return CompactRange.from_json(json.loads(saved)) if saved else CompactRange()


def _check_prefix(conn: sqlite3.Connection, cp: Checkpoint) -> None:
    """The mirror is not ahead: its checkpoint must be this node's tree at that size."""
    compact = CompactRange()
    for h in store.leaf_hashes(conn, cp.size):
        compact.append(h)
    if compact.root() != cp.root:
        raise RootMismatch(
            f"the catalogue's checkpoint of size {cp.size} has another root than this node's "
            "tree at that size; nothing recovered"
        )


def _append(
    conn: sqlite3.Connection,
    client: httpx.Client,
    base: str,
    cp: Checkpoint,
    note: str,
    keys: list[str],
    mark: highwater.Mark | None,
) -> Recovery:
    origin = cp.origin
    compact = _compact(conn)
    start = size = store.log_size(conn)
    if compact.size != size:
        raise ConfigError(f"node.db is inconsistent: compact range {compact.size}, log {size}")
    history = json.loads(store.get_meta(conn, "key_history") or "[]")
    first_key = history[0] if history else _key_of_latest(conn, keys)
    withdrawn = rotations = 0
    while size < cp.size:
        page = orjson.loads(
            _get(client, f"{base}/entries", start=size, limit=min(PAGE, cp.size - size)).content
        )
        items = page.get("entries") or []
        if not items:
            raise FetchError(f"the catalogue's mirror serves no entries from {size} on")
        for item in items[: cp.size - size]:
            leaf = base64.b64decode(item["leaf"])
            content = item.get("content")
            entry = parse_leaf(leaf, expected_log=origin, expected_index=size)
            lh = leaf_hash(leaf)
            compact.append(lh)
            op = entry["op"]
            kind, id = (entry.get("kind"), entry.get("id"))
            text: str | None = None
            if content is not None:
                if op != "publish" or not isinstance(content, dict):
                    raise MalformedEntry(f"leaf {size}: a {op} entry carries this content")
                if digest(content) != entry["digest"] or content.get("id") != id:
                    raise DigestMismatch(
                        f"leaf {size} ({id}): the mirrored content is not the one this node "
                        "signed; nothing recovered"
                    )
                text = canonical(content).decode("utf-8")
            if op == "rotate-key":
                if entry["key"] not in keys:
                    raise SignatureError(
                        f"leaf {size}: rotate-key names a key this node does not hold "
                        f"({entry['key'][:40]}...); nothing recovered"
                    )
                history = (history or [first_key]) + [entry["key"]]
                store.set_meta(conn, "verifier_key", entry["key"])
                store.set_meta(conn, "key_history", json.dumps(history))
                kind, id = "key", entry["key"]
                rotations += 1
            conn.execute(
                "INSERT INTO leaves VALUES (?, ?, ?, ?, ?, ?, ?)",
                (size, leaf, lh, kind, id, op, entry["time"]),
            )
            conn.execute("INSERT INTO contents VALUES (?, ?)", (size, text))
            if op == "publish":
                biobank = id if kind == "biobank" else (content or {}).get("biobank")
                nonce = (content or {}).get("nonce") if kind == "sample-group" else None
                conn.execute(_UPSERT, (kind, id, biobank, entry["digest"], nonce, size))
            elif op == "withdraw":
                conn.execute(
                    "UPDATE contents SET content = NULL WHERE idx IN "
                    "(SELECT idx FROM leaves WHERE kind = ? AND id = ?)",
                    (kind, id),
                )
                conn.execute(
                    "UPDATE records SET live = 0, digest = NULL, nonce = NULL, last_index = ? "
                    "WHERE kind = ? AND id = ?",
                    (size, kind, id),
                )
                withdrawn += 1
            size += 1
            if mark is not None and size == mark.size and compact.root() != mark.root:
                raise RootMismatch(
                    f"the mirror's tree at size {size} is not the one this node signed "
                    f"({highwater.MARK}); nothing recovered"
                )
    if compact.root() != cp.root:
        raise RootMismatch(
            f"the mirror's leaves {start}..{cp.size - 1} on top of this node's tree do not "
            f"rebuild the root its checkpoint of size {cp.size} signs; nothing recovered"
        )
    store.set_meta(conn, "compact_range", json.dumps(compact.to_json()))
    pages.write_pages(conn, cp.size)  # the pages the recovered leaves complete or erased
    conn.execute(
        "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
        (cp.size, cp.root, note, utc_now()),
    )
    return Recovery(start, cp.size, cp.size, cp.size - start, withdrawn, rotations)


def _key_of_latest(conn: sqlite3.Connection, keys: list[str]) -> str:
    """The own key that signed node.db's latest checkpoint (the key in force there)."""
    latest = store.latest_checkpoint(conn)
    if latest is None:
        return keys[0]
    _, good = open_note(latest[2], [Verifier.from_key(k) for k in keys])
    return good[0].vkey
