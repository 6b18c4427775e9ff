"""The catalogue's own signed log: enrol, retire, checkpoint leaves in the caller's transaction."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, select, text

from catalogue import subtrees
from catalogue.models import own_leaves, own_state
from protocol.canonical import canonical
from protocol.entries import make_catalogue_entry, utc_now
from protocol.errors import ConfigError
from protocol.merkle import CompactRange, leaf_hash
from protocol.note import Checkpoint, Signer, generate_key, sign_checkpoint

__all__ = ["CHANGES_CHANNEL", "CatalogueKey", "append", "ensure_state", "reserve"]

KEY_FILE = "catalogue.key"
# PostgreSQL NOTIFY channel: the own log grew (payload: its new size)
CHANGES_CHANNEL = "biobank_catalogue_changes"


class CatalogueKey:
    """The catalogue's Ed25519 signer, kept in CATALOGUE_HOME/catalogue.key (0600)."""

    def __init__(self, *, signer: Signer, verifier_key: str, origin: str) -> None:
        self.signer = signer
        self.verifier_key = verifier_key
        self.origin = origin

    @classmethod
    def load_or_create(cls, home: Path, origin: str) -> CatalogueKey:
        """Load the signer key, creating it (and `home`) on first start."""
        path = home / KEY_FILE
        if home.exists() and not home.is_dir():
            raise ConfigError(
                f"CATALOGUE_HOME={str(home)!r} is not a directory; point it at the directory "
                "that holds (or will hold) catalogue.key"
            )
        try:
            home.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                skey, _vkey = generate_key(origin)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(skey + "\n")
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(
                f"CATALOGUE_HOME={str(home)!r}: cannot use {path}: {exc.strerror}; "
                "point CATALOGUE_HOME at a directory the catalogue can write"
            ) from exc
        try:
            signer = Signer.from_key(text.strip())
        except ConfigError as exc:
            raise ConfigError(
                f"{path}: {exc.message}; restore the catalogue's key file from backup "
                "(CATALOGUE_HOME)"
            ) from exc
        if signer.name != origin:
            raise ConfigError(
                f"{path}: key is for {signer.name!r}, not the catalogue origin {origin!r}: "
                f"set CATALOGUE_ORIGIN={signer.name!r}, or CATALOGUE_HOME to the home of "
                f"{origin!r}"
            )
        return cls(signer=signer, verifier_key=signer.vkey, origin=origin)


def ensure_state(conn: Connection, key: CatalogueKey) -> None:
    """Create the empty own log (size 0, signed) if the database has none yet."""
    if conn.execute(select(own_state.c.id)).first() is None:
        empty = CompactRange()
        note = sign_checkpoint(Checkpoint(key.origin, 0, empty.root()), [key.signer])
        conn.execute(
            own_state.insert().values(
                id=1, size=0, compact=orjson.dumps(empty.to_json()).decode(), checkpoint=note
            )
        )


def reserve(conn: Connection, key: CatalogueKey) -> int:
    """Lock the own log for the rest of this transaction; the size it will have once this
    transaction has appended one leaf (appends are serialised on this lock, so sizes are
    committed in order: what a reader sees at size S includes every change marked <= S)."""
    ensure_state(conn, key)
    size = conn.execute(
        select(own_state.c.size).where(own_state.c.id == 1).with_for_update()
    ).scalar_one()
    return int(size) + 1


def append(conn: Connection, key: CatalogueKey, op: str, /, **fields: Any) -> int:
    """Append one leaf {log, index, time, op, ...fields} and re-sign; returns its index.

    On PostgreSQL the transaction also sends NOTIFY on CHANGES_CHANNEL with the new size
    (delivered when it commits): every catalogue server listening refreshes its search index.
    """
    ensure_state(conn, key)
    row = conn.execute(select(own_state).where(own_state.c.id == 1).with_for_update()).one()
    compact = CompactRange.from_json(orjson.loads(row.compact))
    entry = make_catalogue_entry(log=key.origin, index=row.size, op=op, time=utc_now(), **fields)
    leaf = canonical(entry)
    h = leaf_hash(leaf)
    compact.append(h)
    note = sign_checkpoint(Checkpoint(key.origin, row.size + 1, compact.root()), [key.signer])
    conn.execute(own_leaves.insert().values(idx=row.size, leaf=leaf, hash=h))
    subtrees.extend(conn, subtrees.OWN_LOG, row.size + 1)  # proofs in O(log n) reads
    conn.execute(
        own_state.update()
        .where(own_state.c.id == 1)
        .values(
            size=row.size + 1, compact=orjson.dumps(compact.to_json()).decode(), checkpoint=note
        )
    )
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_notify(:channel, :size)"),
            {"channel": CHANGES_CHANNEL, "size": str(row.size + 1)},
        )
    return int(row.size)
