"""The entries page is built of bytes in one pass over the rows (node/api/log.py page_body):
byte for byte the JSON the earlier route wrote with orjson.dumps over a dict per entry."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import orjson

from federation.servers import live_server
from node import store
from node.api.log import PAGE, page_body
from node.app import create_app
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from node.settings import NodeSettings
from service.http import IMMUTABLE
from tests.node.node_support import make_home, sample_rows, write_csv, write_mapping


def _reference(rows: list[tuple[bytes, str | None]], nxt: int | None) -> bytes:
    """The earlier route's body: a dict per entry, the stored content as an orjson.Fragment."""
    items: list[dict[str, Any]] = [
        {
            "leaf": base64.b64encode(leaf).decode(),
            "content": None if content is None else orjson.Fragment(content),
        }
        for leaf, content in rows
    ]
    return orjson.dumps({"entries": items, "next": nxt})


def test_page_body_is_byte_identical_to_the_orjson_dict_body() -> None:
    rows: list[tuple[bytes, str | None]] = [
        (b"\x00\x01\xff" * 50, '{"a":1,"b":[true,null],"c":"x"}'),
        (b"", None),  # an erased entry: content null
        (bytes(range(256)), '{"name":"Tübingen \\u2028 ☃ \\"q\\"","n":-1.5e3}'),
        (b"\xfb\xff", "{}"),
    ]
    stored = [(leaf, None if c is None else c.encode()) for leaf, c in rows]  # as PAGE_SQL
    for nxt in (None, 0, 1000, 123456789):
        assert page_body(stored, nxt) == _reference(rows, nxt)
        assert page_body(stored[:1], nxt) == _reference(rows[:1], nxt)
        assert page_body(stored[1:2], nxt) == _reference(rows[1:2], nxt)
        assert page_body([], nxt) == _reference([], nxt)


def test_entries_route_serves_the_bytes_of_the_dict_route(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = sample_rows(2410)
    for i, row in enumerate(rows):  # 1205 groups: more than one page
        row[7] = f"{'ABCDEFGHIJKLMN'[i // 2 // 100]}{i // 2 % 100:02d}"
    run_import(home, [write_csv(tmp_path / "a.csv", rows)], mapping=mapping)
    conn = store.connect(home.db_path)
    try:  # an erased content is served as null; stored text goes out as its UTF-8 bytes
        conn.execute("UPDATE contents SET content = NULL WHERE idx = 5")
        conn.execute("""UPDATE contents SET content = '{"n":"Tübingen ☃ \u2028"}' WHERE idx = 6""")
        size = store.latest_checkpoint(conn)[0]  # type: ignore[index]
        assert size > PAGE
        with (
            live_server(create_app(NodeSettings(home=home.path))) as server,
            httpx.Client(base_url=server.url, timeout=10) as client,
        ):
            for start, limit in ((0, PAGE), (0, 7), (990, 50), (PAGE, PAGE), (size, 1)):
                got = client.get("/v1/log/entries", params={"start": start, "limit": limit})
                assert got.status_code == 200
                assert got.headers["content-type"] == "application/json"
                stop = min(size, start + limit, (start // PAGE + 1) * PAGE)
                want = _reference(
                    store.entries_page(conn, start, stop), stop if stop < size else None
                )
                assert got.content == want, (start, limit)
                cache = "no-cache" if stop >= size else IMMUTABLE
                assert got.headers["cache-control"] == cache
            page = client.get("/v1/log/entries", params={"start": 0, "limit": 10}).json()
            assert page["entries"][5]["content"] is None
            assert page["entries"][6]["content"] == {"n": "Tübingen ☃ \u2028"}
            missing = client.get("/v1/log/entries", params={"start": size + 1})
            assert missing.status_code == 404
            assert f"beyond the signed tree size {size}" in missing.json()["detail"]
    finally:
        conn.close()


def test_entries_reader_reopens_a_replaced_database(tmp_path: Path) -> None:
    """Entry pages read through a connection kept per worker thread; a database file put in
    place of the old one (a restore) is read, not the old file still held open."""
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    run_import(home, [write_csv(tmp_path / "a.csv", sample_rows(40))], mapping=mapping)
    with (
        live_server(create_app(NodeSettings(home=home.path))) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        for _ in range(3):  # every worker thread holds its connection
            before = client.get("/v1/log/entries", params={"start": 0, "limit": 10}).json()
            assert before["entries"][1]["content"] is not None
        replacement = tmp_path / "restored.db"
        live = store.connect(home.db_path)
        try:
            live.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            copy = store.connect(replacement)
            live.backup(copy)
            copy.execute("UPDATE contents SET content = NULL WHERE idx = 1")
            copy.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            copy.close()
        finally:
            live.close()
        replacement.replace(home.db_path)
        for _ in range(3):
            after = client.get("/v1/log/entries", params={"start": 0, "limit": 10}).json()
            assert after["entries"][1]["content"] is None
            assert after["entries"][0] == before["entries"][0]


def test_entries_reader_sees_entries_published_after_it_opened(tmp_path: Path) -> None:
    """A kept read connection holds no snapshot between pages: a later import is served."""
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    run_import(home, [write_csv(tmp_path / "a.csv", sample_rows(40))], mapping=mapping)
    with (
        live_server(create_app(NodeSettings(home=home.path))) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        for _ in range(3):  # every worker thread holds its connection
            first = client.get("/v1/log/entries").json()["entries"]
        more = sample_rows(40, start=40)
        for i, row in enumerate(more):  # new diagnoses: new groups
            row[7] = f"Z{i // 2:02d}"
        run_import(home, [write_csv(tmp_path / "b.csv", more)], mapping=mapping)
        for _ in range(3):
            again = client.get("/v1/log/entries").json()["entries"]
            assert len(again) > len(first)
            assert again[: len(first)] == first
