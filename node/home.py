"""The node home directory: node.toml, signer key, pseudonym secret, policy, database."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from node import store
from node.policy import write_default
from node.publish import LogWriter, ensure_checkpoint
from protocol.errors import ConfigError
from protocol.note import Signer, Verifier, generate_key

CONFIG = "node.toml"
KEY = "node.key"
SECRET = "pseudonym.secret"  # noqa: S105 - a file name, not a secret
POLICY = "policy.toml"
DB = "node.db"
VERIFIER = "verifier.key"
NEXT_KEY = "node.key.next"  # a rotation's new signer key until the rotation commits


@dataclass(frozen=True)
class NodeConfig:
    """What node.toml holds: who this node is."""

    origin: str
    name: str
    country: str
    organisation: str
    contact: str
    url: str = ""


def _toml_line(key: str, value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes.
    return f"{key} = {json.dumps(value, ensure_ascii=False)}\n"


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` (must not exist) readable by the owner only, and write ``data``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def init_home(home: Path, config: NodeConfig) -> str:
    """Create a new node home; return the verifier key. Refuses an existing non-empty home."""
    if home.exists() and any(home.iterdir()):
        raise ConfigError(
            f"{home} already exists and is not empty; refusing to overwrite a node home"
        )
    if not config.origin or any(c.isspace() for c in config.origin) or "+" in config.origin:
        raise ConfigError(f"origin {config.origin!r} must be a short name without spaces or '+'")
    if len(config.country) != 2 or not config.country.isalpha() or not config.country.isupper():
        raise ConfigError(
            f"country {config.country!r} must be an ISO 3166-1 alpha-2 code such as DE"
        )
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)  # an existing empty directory too: node.db and the keys live here
    skey, vkey = generate_key(config.origin)
    write_private(home / KEY, skey.encode())
    write_private(home / SECRET, secrets.token_bytes(32))
    (home / CONFIG).write_text(
        "".join(_toml_line(k, v) for k, v in asdict(config).items()), encoding="utf-8"
    )
    (home / VERIFIER).write_text(vkey + "\n", encoding="utf-8")
    write_default_policy(home / POLICY)
    conn = store.connect(home / DB)
    try:
        store.create_schema(conn)
        ensure_checkpoint(conn, config.origin, Signer.from_key(skey))
    finally:
        conn.close()
    return vkey


def finish_pending_rotation(path: Path) -> Path | None:
    """Finish a key rotation whose log entry committed; return the old key file, if any.

    ``node.key.next`` holds the new key from just before the rotation's transaction. If
    the log's last ``rotate-key`` entry names that key, ``node.key`` is kept as
    ``node.key.old-<date>`` and the new key takes its place; otherwise the transaction
    never committed and the stray file is removed.
    """
    next_path = path / NEXT_KEY
    if not next_path.exists():
        return None
    skey = next_path.read_text(encoding="utf-8").strip()
    vkey = Signer.from_key(skey).vkey
    conn = store.connect(path / DB)
    try:
        store.create_schema(conn)
        committed = store.get_meta(conn, "verifier_key")
    finally:
        conn.close()
    if committed != vkey:
        next_path.unlink()
        return None
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    old = path / f"{KEY}.old-{stamp}"
    n = 1
    while old.exists():
        n += 1
        old = path / f"{KEY}.old-{stamp}.{n}"
    os.rename(path / KEY, old)
    os.replace(next_path, path / KEY)
    tmp = path / f"{VERIFIER}.tmp"
    tmp.write_text(vkey + "\n", encoding="utf-8")
    os.replace(tmp, path / VERIFIER)
    return old


#: Files of a node home that only its owner may read: the signer keys, the pseudonym
#: secret, and node.db with its WAL and shared-memory files (node.db links local LIMS ids
#: and donor HMACs to the published group ids).
PRIVATE = (KEY, SECRET, NEXT_KEY, DB, f"{DB}-wal", f"{DB}-shm", f"{DB}-journal")


def check_private(path: Path) -> None:
    """Refuse a home that other users can read: the directory must be 0700 and every file of
    :data:`PRIVATE` (and ``node.key.old-*``) that exists 0600, no group or other bits."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from exc
    if mode & 0o077:
        raise ConfigError(
            f"{path}: the node home has mode {mode:04o}, so other users can reach node.db "
            f"and the keys; it must be 0700: run chmod 700 {path}"
        )
    names = [*PRIVATE, *(p.name for p in path.glob(f"{KEY}.old-*"))]
    for name in names:
        file = path / name
        try:
            mode = file.stat().st_mode & 0o777
        except FileNotFoundError:
            continue
        if mode & 0o077:
            raise ConfigError(
                f"{file}: mode {mode:04o} lets other users read it ({_WHY.get(name, _WHY[KEY])}); "
                f"it must be 0600: run chmod 600 {file}"
            )


_WHY = {
    SECRET: "the secret behind every published group id",
    DB: "it links local sample ids and donor hashes to the published group ids",
    f"{DB}-wal": "node.db's write-ahead log: recent pages of node.db",
    f"{DB}-shm": "node.db's shared memory index",
    f"{DB}-journal": "node.db's rollback journal",
    KEY: "a signer key: whoever reads it can sign as this node",
}


def current_verifier_key(path: Path) -> str:
    """The verifier key in ``verifier.key`` now (it changes when the key is rotated)."""
    return (path / VERIFIER).read_text(encoding="utf-8").strip()


def write_default_policy(path: Path) -> None:
    """Write the default policy file (node.policy)."""
    write_default(path)


@dataclass(frozen=True)
class Home:
    """An opened node home."""

    path: Path
    config: NodeConfig
    signer: Signer
    verifier_key: str
    secret: bytes

    @property
    def db_path(self) -> Path:
        return self.path / DB

    @property
    def policy_path(self) -> Path:
        return self.path / POLICY

    @contextlib.contextmanager
    def signing(
        self,
        signers: Sequence[Signer] | None = None,
        on_rollback: Callable[[], None] | None = None,
    ) -> Iterator[tuple[sqlite3.Connection, LogWriter]]:
        """One write transaction on the log: ``(connection, writer)`` inside ``BEGIN
        IMMEDIATE``; on leaving, the writer signs the next checkpoint and it commits, and the
        signed-size mark is raised. Any error before the commit rolls everything back (and
        calls ``on_rollback``)."""
        from node import highwater

        conn = store.connect(self.db_path)
        try:
            store.create_schema(conn)
            ensure_checkpoint(conn, self.config.origin, self.signer)
            conn.execute("BEGIN IMMEDIATE")
            try:
                writer = LogWriter(conn, self.config.origin, list(signers or [self.signer]))
                yield conn, writer
                writer.finish()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                if on_rollback is not None:
                    on_rollback()
                raise
        finally:
            conn.close()
        highwater.record_latest(self.path)

    @classmethod
    def open(cls, path: Path, *, restored_ok: bool = False) -> Home:
        """Open the home; refuse (RecoveryRequired) when node.db is behind what this node
        signed (node.highwater), unless ``restored_ok`` (status, backup, restore, recover)."""
        cfg_path = path / CONFIG
        if not cfg_path.is_file():
            raise ConfigError(
                f"{path} is not a node home (no {CONFIG}): check --home / NODE_HOME, or run "
                "'biobank-node init'"
            )
        check_private(path)
        try:
            raw = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{cfg_path}: {exc}") from exc
        try:
            config = NodeConfig(**{k: str(v) for k, v in raw.items()})
        except TypeError as exc:
            raise ConfigError(f"{cfg_path}: {exc}") from exc
        finish_pending_rotation(path)
        try:
            signer = Signer.from_key(_read(path / KEY).decode("utf-8", "replace").strip())
        except ConfigError as exc:
            if exc.message.startswith(str(path)):
                raise
            raise ConfigError(f"{path / KEY}: {exc.message}; {_RESTORE}") from exc
        vkey = _read(path / VERIFIER).decode("utf-8", "replace").strip()
        try:
            Verifier.from_key(vkey)
        except ConfigError as exc:
            raise ConfigError(f"{path / VERIFIER}: {exc.message}; {_RESTORE}") from exc
        secret = _read(path / SECRET)
        if len(secret) < 32:
            raise ConfigError(f"{path / SECRET} must hold at least 32 random bytes; {_RESTORE}")
        if not restored_ok:
            from node import highwater

            conn = store.connect(path / DB)
            try:
                store.create_schema(conn)
                latest = store.latest_checkpoint(conn)
            finally:
                conn.close()
            highwater.check(path, latest)
        return cls(path=path, config=config, signer=signer, verifier_key=vkey, secret=secret)


_RESTORE = "restore the node home from its backup (--home / NODE_HOME)"


def _read(path: Path) -> bytes:
    """A file of the node home; a missing or unreadable one is a ConfigError naming it."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror}); {_RESTORE}") from exc
