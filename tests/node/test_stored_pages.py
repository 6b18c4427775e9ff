"""Full log pages are stored as the bytes they are served as (node/pages.py): written in
the transaction that completes them, served without being built again, byte for byte the
page built per request, and never served stale after an erasure."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson

from federation.servers import live_server
from node import pages, store
from node.app import create_app
from node.home import Home
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from node.pages import PAGE, PAGE_SQL, page_body
from node.settings import NodeSettings
from node.withdraw import erase
from service.http import IMMUTABLE
from tests.node.node_support import make_home, sample_rows, write_csv, write_mapping

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXY"


def _home_of_three_pages(tmp_path: Path) -> tuple[Home, int]:
    """A home whose log holds more than two full pages (2,410 groups of two samples)."""
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = sample_rows(4820)
    for i, row in enumerate(rows):
        row[7] = f"{LETTERS[i // 2 // 100]}{i // 2 % 100:02d}"
    run_import(home, [write_csv(tmp_path / "a.csv", rows)], mapping=mapping)
    conn = store.connect(home.db_path, readonly=True)
    try:
        size = store.latest_checkpoint(conn)[0]  # type: ignore[index]
    finally:
        conn.close()
    assert size > 2 * PAGE
    return home, size


def _built(conn: object, start: int, stop: int, size: int) -> bytes:
    assert hasattr(conn, "execute")
    rows = conn.execute(PAGE_SQL, (start, stop))
    return page_body(rows, stop if stop < size else None)


def _stored_starts(home: Home) -> dict[int, bytes | None]:
    conn = store.connect(home.db_path, readonly=True)
    try:
        return {int(s): b for s, b in conn.execute("SELECT start, body FROM pages")}
    finally:
        conn.close()


def test_stored_pages_are_byte_identical_to_pages_built_per_request(tmp_path: Path) -> None:
    home, size = _home_of_three_pages(tmp_path)
    full = size // PAGE * PAGE
    stored = _stored_starts(home)
    assert sorted(stored) == list(range(0, full, PAGE))  # written at import, every full page
    conn = store.connect(home.db_path, readonly=True)
    try:
        with (
            live_server(create_app(NodeSettings(home=home.path))) as server,
            httpx.Client(base_url=server.url, timeout=10) as client,
        ):
            for start in range(0, full, PAGE):
                want = _built(conn, start, start + PAGE, size)
                assert stored[start] == want
                got = client.get("/v1/log/entries", params={"start": start, "limit": PAGE})
                assert got.status_code == 200
                assert got.content == want
                assert got.headers["content-type"] == "application/json"
                assert got.headers["cache-control"] == IMMUTABLE
                assert got.headers["etag"] == pages.etag_of(want)
            # the partial last page and pages asked for in part are built as before
            for start, limit in ((full, PAGE), (0, 7), (PAGE + 5, PAGE)):
                got = client.get("/v1/log/entries", params={"start": start, "limit": limit})
                stop = min(size, start + limit, (start // PAGE + 1) * PAGE)
                assert got.content == _built(conn, start, stop, size)
                assert "etag" not in got.headers
    finally:
        conn.close()


def test_a_stored_page_answers_a_matching_if_none_match_with_304(tmp_path: Path) -> None:
    home, _size = _home_of_three_pages(tmp_path)
    with (
        live_server(create_app(NodeSettings(home=home.path))) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        first = client.get("/v1/log/entries", params={"start": PAGE})
        tag = first.headers["etag"]
        again = client.get(
            "/v1/log/entries", params={"start": PAGE}, headers={"If-None-Match": f'"x", {tag}'}
        )
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == tag
        other = client.get("/v1/log/entries", params={"start": 0}, headers={"If-None-Match": tag})
        assert other.status_code == 200  # another page's tag does not match
        assert orjson.loads(other.content)["next"] == PAGE


def test_an_erasure_never_leaves_a_stored_page_stale(tmp_path: Path) -> None:
    home, size = _home_of_three_pages(tmp_path)
    conn = store.connect(home.db_path)
    try:
        (group,) = conn.execute(
            "SELECT id FROM records WHERE kind = 'sample-group' AND live = 1 "
            "AND last_index >= ? AND last_index < ? LIMIT 1",
            (PAGE, 2 * PAGE),
        ).fetchone()
        # in the erasing transaction itself, a trigger clears the page as the row changes
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "UPDATE contents SET content = NULL WHERE idx IN (SELECT idx FROM leaves WHERE id = ?)",
            (group,),
        )
        assert pages.stored_page(conn, PAGE) is None
        assert pages.stored_page(conn, 0) is not None
        conn.execute("ROLLBACK")
        before = pages.stored_page(conn, PAGE)
        assert before is not None
        with (
            live_server(create_app(NodeSettings(home=home.path))) as server,
            httpx.Client(base_url=server.url, timeout=10) as client,
        ):
            served = client.get("/v1/log/entries", params={"start": PAGE}).json()["entries"]
            assert any(e["content"] and e["content"]["id"] == group for e in served)
            erase(home, ids=[group], now=True)  # the consent withdrawal of its samples
            (after_size,) = conn.execute("SELECT max(size) FROM checkpoints").fetchone()
            got = client.get("/v1/log/entries", params={"start": PAGE})
            assert got.content == _built(conn, PAGE, 2 * PAGE, after_size)
            served = got.json()["entries"]
            assert not any(e["content"] and e["content"]["id"] == group for e in served)
            erased = [
                i for i, e in enumerate(served, PAGE) if e["content"] is None
            ]  # the group's entry in this page is served with its content erased
            assert erased
            rewritten = pages.stored_page(conn, PAGE)  # encoded again before the commit
            assert rewritten is not None and rewritten[0] == got.content
            assert rewritten[1] != before[1] and got.headers["etag"] == rewritten[1]
            assert pages.stored_page(conn, 0) == client_page(client, 0)
    finally:
        conn.close()
    assert size < after_size


def client_page(client: httpx.Client, start: int) -> tuple[bytes, str]:
    got = client.get("/v1/log/entries", params={"start": start})
    return got.content, got.headers["etag"]


def test_a_stored_page_that_ends_the_log_is_served_with_next_null(tmp_path: Path) -> None:
    home, _size = _home_of_three_pages(tmp_path)
    with (
        live_server(create_app(NodeSettings(home=home.path))) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        conn = store.connect(home.db_path)
        try:  # the signed tree ends where the second page does (as a log of 2,000 leaves)
            note = conn.execute("SELECT note FROM checkpoints ORDER BY size DESC").fetchone()[0]
            conn.execute("DELETE FROM checkpoints WHERE size > ?", (2 * PAGE,))
            conn.execute("INSERT INTO checkpoints VALUES (?, x'00', ?, 'now')", (2 * PAGE, note))
            assert pages.stored_page(conn, PAGE) is not None  # stored with next = 2000
            got = client.get("/v1/log/entries", params={"start": PAGE})
            assert got.content == _built(conn, PAGE, 2 * PAGE, 2 * PAGE)
            assert orjson.loads(got.content)["next"] is None
            assert got.headers["cache-control"] == "no-cache"
        finally:
            conn.close()


def test_pages_of_a_log_stored_before_pages_were_kept_are_written_by_the_next_write(
    tmp_path: Path,
) -> None:
    home, size = _home_of_three_pages(tmp_path)
    want = _stored_starts(home)
    conn = store.connect(home.db_path)
    try:
        conn.execute("DELETE FROM pages")
    finally:
        conn.close()
    with (
        live_server(create_app(NodeSettings(home=home.path))) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):  # served built meanwhile, the same bytes
        got = client.get("/v1/log/entries", params={"start": PAGE})
        assert got.content == want[PAGE]
        assert "etag" not in got.headers
    with home.signing():  # the next write transaction (an import, a withdrawal, ...)
        pass
    assert _stored_starts(home) == want


def test_a_database_without_the_pages_table_is_served_pages_built_per_request(
    tmp_path: Path,
) -> None:
    home, size = _home_of_three_pages(tmp_path)
    want = _stored_starts(home)
    with (
        live_server(create_app(NodeSettings(home=home.path))) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        conn = store.connect(home.db_path)
        try:  # as a database restored from a backup taken before pages were kept
            conn.execute("DROP TABLE pages")
        finally:
            conn.close()
        for _ in range(3):  # every worker thread's kept connection
            got = client.get("/v1/log/entries", params={"start": PAGE})
            assert got.status_code == 200
            assert got.content == want[PAGE]


def test_any_change_to_a_stored_pages_rows_clears_its_bytes(tmp_path: Path) -> None:
    """Leaves never change and contents change only by erasure, but any update or delete
    of a page's rows clears the page in that transaction (the other page stays)."""
    home, _size = _home_of_three_pages(tmp_path)
    conn = store.connect(home.db_path)
    try:
        for statement in (
            "UPDATE contents SET content = NULL WHERE idx = 1500",
            "DELETE FROM contents WHERE idx = 1999",
            "UPDATE leaves SET leaf = x'00' WHERE idx = 1000",
            "DELETE FROM leaves WHERE idx = 1234",
        ):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(statement)
            assert pages.stored_page(conn, PAGE) is None, statement
            assert pages.stored_page(conn, 0) is not None, statement
            conn.execute("ROLLBACK")
    finally:
        conn.close()
