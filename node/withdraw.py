"""Withdraw records by published id or local sample id (a donor withdrew consent, etc.)."""

from __future__ import annotations

from node import store
from node.diff import Differ
from node.home import Home
from node.pseudonym import Pseudonymiser
from node.publish import LogWriter, ensure_checkpoint
from protocol.errors import ConfigError
from protocol.schema import SchemaSet


def withdraw(home: Home, ids: list[str]) -> list[tuple[str, str]]:
    """Withdraw every named live record in ONE transaction; unknown ids fail it all."""
    conn = store.connect(home.db_path)
    try:
        store.create_schema(conn)
        ensure_checkpoint(conn, home.config.origin, home.signer)
        conn.execute("BEGIN IMMEDIATE")
        try:
            targets: list[tuple[str, str]] = []
            missing: list[str] = []
            for name in ids:
                rows = conn.execute(
                    "SELECT kind, id FROM records WHERE live = 1 AND "
                    "(id = ? OR (kind = 'sample' AND local_id = ?))",
                    (name, name),
                ).fetchall()
                if not rows:
                    missing.append(name)
                targets += [(k, i) for k, i in rows if (k, i) not in targets]
            if missing:
                raise ConfigError(
                    "no live record with id or local sample id "
                    + ", ".join(repr(m) for m in missing)
                )
            writer = LogWriter(conn, home.config.origin, home.signer)
            schemas = SchemaSet.default()
            differ = Differ(conn, writer, {}, schemas.problems, Pseudonymiser(home.secret))
            for kind, id in targets:
                differ.withdraw(kind, id)
            writer.finish()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return targets
    finally:
        conn.close()
