"""`biobank-node monitor`: is the catalogue's mirror of this node's log exactly what it signed?

Compares, entry by entry, the mirror's leaves and contents with the node's own store, and the
mirror's checkpoint with the node's tree at that size; names the first differing index,
missing entries, altered or kept contents, and a checkpoint the node never signed.
Register in node/cli.py with: ``app.command("monitor")(monitor_command)``.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import orjson
import typer
from rich.console import Console

from node import store
from node.home import Home
from protocol.errors import BiobankError
from protocol.merkle import CompactRange, leaf_hash
from protocol.note import Checkpoint, Verifier, verify_checkpoint
from protocol.tls import client_tls

PAGE = 1000


@dataclass
class MonitorResult:
    """What the comparison found; `ok` when the mirror is exactly the node's log."""

    origin: str
    mirror_size: int = 0
    own_size: int = 0
    compared: int = 0
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


def _get(client: httpx.Client, url: str, **params: Any) -> httpx.Response:
    resp = client.get(url, params=params or None)
    if resp.status_code != 200:
        raise httpx.HTTPStatusError(
            f"GET {resp.request.url}: HTTP {resp.status_code}", request=resp.request, response=resp
        )
    return resp


def _mirror_entries(client: httpx.Client, base: str, end: int) -> Iterator[tuple[bytes, Any]]:
    start = 0
    while start < end:
        page = orjson.loads(
            _get(client, f"{base}/entries", start=start, limit=min(PAGE, end - start)).content
        )
        items = page.get("entries") or []
        if not items:
            return
        for item in items[: end - start]:
            yield base64.b64decode(item["leaf"]), item.get("content")
        start += len(items[: end - start])


def check_mirror(home: Home, catalogue: str, client: httpx.Client) -> MonitorResult:
    """Compare the catalogue's mirror of this node with the node's own log."""
    origin = home.config.origin
    result = MonitorResult(origin)
    base = f"{catalogue.rstrip('/')}/v1/nodes/{quote(origin, safe='/')}/log"
    note = _get(client, f"{base}/checkpoint").text
    conn = store.connect(home.db_path, readonly=True)
    try:
        result.own_size = store.log_size(conn)
        # every key this node ever signed with (a mirror may lag behind a key rotation)
        keys = json.loads(store.get_meta(conn, "key_history") or "[]") or [home.verifier_key]
        try:
            mirror = verify_checkpoint(note, [Verifier.from_key(k) for k in keys], origin)
        except BiobankError as exc:
            mirror = Checkpoint.from_text(note.partition("\n\n")[0] + "\n")
            result.differences.append(
                f"mirror checkpoint size {mirror.size} is not signed by this node's key: {exc}"
            )
        result.mirror_size = mirror.size
        if mirror.size > result.own_size:
            result.differences.append(
                f"mirror checkpoint claims size {mirror.size}, but this node's log has only "
                f"{result.own_size} entries: a checkpoint this node never signed"
            )
        _compare_entries(conn, client, base, mirror, result)
    finally:
        conn.close()
    return result


def _own_entries(conn: sqlite3.Connection, end: int) -> Iterator[tuple[bytes, str | None]]:
    for start in range(0, end, PAGE):
        yield from store.entries_page(conn, start, min(end, start + PAGE))


def _compare_entries(
    conn: sqlite3.Connection,
    client: httpx.Client,
    base: str,
    mirror: Checkpoint,
    result: MonitorResult,
) -> None:
    end = min(mirror.size, result.own_size)
    compact = CompactRange()
    theirs = _mirror_entries(client, base, end)
    first_diff: int | None = None
    for index, (leaf, content) in enumerate(_own_entries(conn, end)):
        compact.append(leaf_hash(leaf))
        served = next(theirs, None)
        if served is None:
            result.differences.append(
                f"mirror serves {index} entries, its checkpoint says "
                f"{mirror.size}: entries {index}..{end - 1} missing"
            )
            break
        result.compared += 1
        m_leaf, m_content = served
        if m_leaf != leaf and first_diff is None:
            first_diff = index
            result.differences.append(
                f"first differing entry at index {index}: the mirror's "
                "leaf is not the one this node signed"
            )
        own_content = None if content is None else orjson.loads(content)
        if m_content != own_content:
            what = (
                "content of an erased (withdrawn) record still served"
                if own_content is None
                else "content missing"
                if m_content is None
                else "content altered"
            )
            result.differences.append(f"index {index}: {what}")
    if compact.size == mirror.size and compact.root() != mirror.root:
        result.differences.append(
            f"mirror checkpoint root at size {mirror.size} differs from "
            "this node's tree at that size"
        )


def monitor_command(
    catalogue: Annotated[str, typer.Option("--catalogue", help="catalogue base URL")],
    home: Annotated[
        Path, typer.Option("--home", envvar="NODE_HOME", help="node home directory")
    ] = Path("node-home"),
    ca_bundle: Annotated[
        Path | None,
        typer.Option(
            "--ca-bundle",
            envvar="NODE_CA_BUNDLE",
            help="CA certificates (PEM) the catalogue's certificate must chain to "
            "(default: the system store)",
        ),
    ] = None,
) -> None:
    """Check that the catalogue mirrors exactly what this node signed; exit 1 on a difference."""
    out, err = Console(), Console(stderr=True)
    try:
        opened = Home.open(home, restored_ok=True)  # read-only: fine on a restored node
        verify = client_tls(ca_bundle, setting="--ca-bundle (NODE_CA_BUNDLE)")
        with httpx.Client(timeout=30.0, verify=verify) as client:
            result = check_mirror(opened, catalogue, client)
    except (BiobankError, httpx.HTTPError, ValueError, KeyError) as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from exc
    if result.ok:
        out.print(
            f"ok: the catalogue mirrors {result.origin} exactly ({result.compared} of "
            f"{result.own_size} entries, checkpoint size {result.mirror_size} signed by "
            "this node)",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(0)
    for line in result.differences:
        out.print(f"DIFFERENCE: {line}", markup=False, highlight=False)
    raise typer.Exit(1)
