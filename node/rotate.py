"""Key rotation: a ``rotate-key`` entry, one checkpoint signed by old AND new key, then new only.

Order of steps, so that a crash at any point leaves a node that still works:

1. the new signer key is written to ``node.key.next`` (0600);
2. ONE transaction appends the ``rotate-key`` entry and signs the checkpoint that first
   covers it with the old and the new key (``protocol/keys.py``: the first checkpoint
   of size > i must carry both);
3. ``node.key`` becomes ``node.key.old-<date>`` (kept, 0600), ``node.key.next`` becomes
   ``node.key`` and ``verifier.key`` is rewritten.

If the process dies after 2 but before 3, :func:`node.home.finish_pending_rotation` (run by
``Home.open``) completes step 3; if it died before 2 commits, the stray ``node.key.next``
is removed there.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from node import store
from node.home import KEY, NEXT_KEY, Home, finish_pending_rotation, write_private
from protocol.errors import ConfigError
from protocol.note import Checkpoint, Signer, generate_key, sign_checkpoint


@dataclass(frozen=True)
class Rotation:
    """What ``rotate-key`` did."""

    old_key: str
    new_key: str
    index: int  # log index of the rotate-key entry
    size: int  # size of the checkpoint signed by both keys
    old_key_file: Path


def rotate_key(home: Home) -> Rotation:
    """Rotate the node's signing key; return the new verifier key and where things are."""
    next_path = home.path / NEXT_KEY
    if next_path.exists():
        raise ConfigError(
            f"{next_path} exists: an earlier rotation did not finish; "
            "open the node once (e.g. 'biobank-node status') to finish it"
        )
    skey, vkey = generate_key(home.config.origin)
    new_signer = Signer.from_key(skey)
    write_private(next_path, skey.encode())
    with home.signing([home.signer, new_signer], lambda: os.unlink(next_path)) as (_, writer):
        index = writer.rotate_key(vkey)
    old_file = finish_pending_rotation(home.path)
    if old_file is None:  # pragma: no cover - finish_pending_rotation saw the commit
        raise ConfigError(f"rotation committed but {home.path / KEY} was not switched")
    return Rotation(
        old_key=home.verifier_key,
        new_key=vkey,
        index=index,
        size=writer.size,
        old_key_file=old_file,
    )


def cosign_latest(home: Home, old_key_file: Path | None = None) -> int:
    """Re-sign the latest checkpoint with the current AND the previous key; return its size.

    For a catalogue that missed the rotation checkpoint (an import came first): it needs a
    checkpoint past the rotate-key entry that the old key signs too. The body (size, root)
    is unchanged, so this is the same checkpoint with one more signature.
    """
    files = (
        [old_key_file]
        if old_key_file
        else sorted(home.path.glob(f"{KEY}.old-*"), key=lambda p: p.stat().st_mtime)
    )
    if not files or not files[-1].is_file():
        raise ConfigError(f"no old signer key (node.key.old-*) in {home.path} to co-sign with")
    old = Signer.from_key(files[-1].read_text(encoding="utf-8").strip())
    conn = store.connect(home.db_path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            keys = json.loads(store.get_meta(conn, "key_history") or "[]")
            if len(keys) < 2 or keys[-2] != old.vkey or keys[-1] != home.signer.vkey:
                raise ConfigError(
                    f"{files[-1]} is not the key in force before the last "
                    "rotation; nothing co-signed"
                )
            latest = store.latest_checkpoint(conn)
            assert latest is not None  # a rotation signed one
            size, root = latest[0], latest[1]
            note = sign_checkpoint(Checkpoint(home.config.origin, size, root), [old, home.signer])
            conn.execute("UPDATE checkpoints SET note = ? WHERE size = ?", (note, size))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    return size
