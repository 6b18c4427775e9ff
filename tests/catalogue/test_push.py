"""Push, then pull (issue 19 item 1): real node and catalogue servers on loopback.

A node's notification is a hint: the catalogue harvests that node at once through the
verified path; forged, unsigned and unknown-node notifications are refused and harvest
nothing; a node is rate-limited; registration at enrolment is confirmed by the node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from catalogue.app import create_app
from catalogue.enrol import enrol, fetch_descriptor
from catalogue.models import nodes
from federation.servers import LiveServer, free_port, live_server
from node import notify, store
from node.app import create_app as create_node_app
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from node.settings import NodeSettings
from protocol.note import Checkpoint, Signer, generate_key, sign_checkpoint
from service.problems import PROBLEM
from tests.catalogue.conftest import ADMIN_TOKEN, make_settings
from tests.node.node_support import ORIGIN, make_home, sample_rows, write_csv, write_mapping


def wait_for(check: Callable[[], bool], timeout: float, step: float = 0.05) -> float:
    """Seconds until ``check()`` held; fails the test after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout} s")
        time.sleep(step)
    return time.monotonic() - start


class Site:
    """A node (its home, served) and a catalogue app (served or not), both real."""

    def __init__(self, tmp: Path, db_url: str, stack: ExitStack, **overrides: Any) -> None:
        self.tmp = tmp
        self.home, self.vkey = make_home(tmp, k=2)
        self.mapping = Mapping.load(write_mapping(tmp / "map.toml"))
        self.rows = 0
        self.imported(30)
        self.node = stack.enter_context(
            live_server(create_node_app(NodeSettings(home=self.home.path, notify_poll=0.05)))
        )
        self.settings = make_settings(
            db_url, tmp / "cat-home", harvest_interval=3600.0, **overrides
        )
        self.stack = stack

    def imported(self, n: int) -> int:
        """Import ``n`` samples of new donors; the log size after."""
        rows = sample_rows(n, start=self.rows)
        self.rows += n
        path = write_csv(self.tmp / f"s{self.rows}.csv", rows)
        report = run_import(self.home, [path], mapping=self.mapping)
        assert report.applied and not report.problems
        return report.size_after

    def catalogue(self, *, schedule: bool, port: int | None = None) -> tuple[Any, LiveServer]:
        app = create_app(self.settings, schedule_harvest=schedule)
        ctx = app.state.ctx
        with ctx.engine.connect() as conn:
            known = conn.execute(select(nodes.c.origin)).first()
        if known is None:
            descriptor = asyncio.run(fetch_descriptor(self.node.url))
            enrol(ctx.engine, ctx.key, self.node.url, self.vkey, descriptor)
        return app, self.stack.enter_context(live_server(app, port))

    def note(self) -> str:
        conn = store.connect(self.home.db_path)
        try:
            latest = store.latest_checkpoint(conn)
        finally:
            conn.close()
        assert latest is not None
        return latest[2]

    def add_target(self, url: str) -> None:
        conn = store.connect(self.home.db_path)
        try:
            notify.add_target(conn, url)
        finally:
            conn.close()

    def targets(self) -> list[notify.Target]:
        conn = store.connect(self.home.db_path)
        try:
            return notify.targets(conn)
        finally:
            conn.close()


@pytest.fixture
def site(tmp_path: Path, db_url: str) -> Iterator[Callable[..., Site]]:
    with ExitStack() as stack:
        yield lambda **overrides: Site(tmp_path, db_url, stack, **overrides)


def total(url: str) -> int:
    return int(httpx.get(f"{url}/v1/search", timeout=10).json()["total"]["max"])


def tree_size(app: Any) -> int:
    with app.state.ctx.engine.connect() as conn:
        return int(conn.execute(select(nodes.c.tree_size)).scalar() or 0)


def test_push_makes_an_import_searchable_in_seconds(site: Callable[..., Site]) -> None:
    s = site()
    app, cat = s.catalogue(schedule=True)  # harvests once at start, then every hour
    wait_for(lambda: total(cat.url) == 30, 30)
    s.add_target(cat.url)
    size = s.imported(10)  # 10 new donors: a change set of at least k = 2 donors
    took = wait_for(lambda: total(cat.url) == 40, 10)
    assert took < 5, f"searchable after {took:.1f} s"
    assert app.state.push.harvests >= 1  # the hourly schedule did not do it
    wait_for(lambda: s.targets()[0].delivered_size == size, 5)
    provenance = httpx.get(f"{cat.url}/v1/search", timeout=10).json()["biobanks"]["items"][0]
    assert provenance["provenance"]["checkpoint_size"] == size


def _post(url: str, note: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/notify", content=note.encode(), headers={"Content-Type": "text/plain"}
    )


def _forge(note: str, signer: Signer) -> str:
    body = note.partition("\n\n")[0] + "\n"
    return sign_checkpoint(Checkpoint.from_text(body), [signer])


def test_forged_unsigned_or_unknown_notifications_are_refused_and_harvest_nothing(
    site: Callable[..., Site],
) -> None:
    s = site()
    app, cat = s.catalogue(schedule=False)  # nothing harvested: size 0 verified
    note = s.note()
    other, _ = generate_key(ORIGIN)  # the node's origin, not its key
    stranger, _ = generate_key("stranger.example/biobank-node")
    body = note.partition("\n\n")[0] + "\n"
    cases = {
        "unsigned": (note.partition("\n\n")[0] + "\n\n", 403),
        "no signature block": (body, 400),
        "not a checkpoint": ("hello\n\n— x y\n", 400),
        "forged": (_forge(note, Signer.from_key(other)), 403),
        "unknown node": (
            sign_checkpoint(
                Checkpoint("stranger.example/biobank-node", 5, b"\0" * 32),
                [Signer.from_key(stranger)],
            ),
            404,
        ),
    }
    for name, (text, status) in cases.items():
        resp = _post(cat.url, text)
        assert resp.status_code == status, (name, resp.text)
        assert resp.headers["content-type"] == PROBLEM, name
        assert resp.json()["status"] == status and resp.json()["detail"], name
    time.sleep(0.5)  # a harvest, had one been queued, would have run by now
    assert app.state.push.harvests == 0
    with app.state.ctx.engine.connect() as conn:
        row = conn.execute(select(nodes)).one()
    assert row.last_attempt_at is None and row.tree_size == 0

    accepted = _post(cat.url, note)  # the genuine one: harvested at once
    assert accepted.status_code == 202 and accepted.json()["status"] == "queued"
    wait_for(lambda: tree_size(app) == accepted.json()["size"], 10)
    known = _post(cat.url, note)  # already verified: ignored
    assert known.status_code == 200 and known.json()["status"] == "known"
    time.sleep(0.3)
    assert app.state.push.harvests == 1


def test_notifications_are_rate_limited_per_node(site: Callable[..., Site]) -> None:
    s = site(notify_min_interval=30.0)
    app, cat = s.catalogue(schedule=False)
    first = _post(cat.url, s.note())
    assert first.status_code == 202
    wait_for(lambda: tree_size(app) == first.json()["size"], 10)
    bigger = s.imported(10)
    throttled = _post(cat.url, s.note())
    assert throttled.status_code == 429
    assert throttled.headers["content-type"] == PROBLEM
    assert 1 <= int(throttled.headers["Retry-After"]) <= 30
    time.sleep(0.5)
    assert tree_size(app) < bigger and app.state.push.harvests == 1


def test_unreachable_catalogue_is_retried_with_backoff_then_harvests(
    site: Callable[..., Site], tmp_path: Path
) -> None:
    s = site()
    port = free_port()  # where no catalogue listens yet
    s.add_target(f"http://127.0.0.1:{port}")
    start = time.monotonic()
    size = s.imported(10)  # the import neither fails nor waits for the catalogue
    assert time.monotonic() - start < 30
    wait_for(lambda: s.targets()[0].attempts >= 1, 10)
    failed = s.targets()[0]
    assert failed.delivered_size < size and failed.last_error and "Connect" in failed.last_error
    assert failed.next_attempt > time.time() - 1  # a retry is scheduled, not dropped
    line = failed.describe(size)
    assert "queued" in line and "failed attempt" in line

    app, cat = s.catalogue(schedule=False, port=port)  # the catalogue comes up on that port
    wait_for(lambda: s.targets()[0].delivered_size == size, 20)
    wait_for(lambda: total(cat.url) == 40, 10)
    assert app.state.push.harvests >= 1
    assert s.targets()[0].attempts == 0 and s.targets()[0].last_error is None


def test_enrolment_registers_the_catalogue_at_the_node(
    site: Callable[..., Site], tmp_path: Path
) -> None:
    s = site()
    port = free_port()
    s.settings = s.settings.model_copy(update={"public_url": f"http://127.0.0.1:{port}"})
    app = create_app(s.settings)
    cat = s.stack.enter_context(live_server(app, port))
    resp = httpx.post(
        f"{cat.url}/v1/admin/nodes",
        json={"url": s.node.url, "key": s.vkey},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["notifications"].startswith("registered")
    (target,) = s.targets()
    assert (target.url, target.source) == (cat.url, "enrolment")
    wait_for(lambda: total(cat.url) == 30, 10)  # the first notification harvested it

    # a URL that is not a catalogue accepting notifications is never added
    refused = httpx.post(f"{s.node.url}/v1/notify/targets", json={"url": s.node.url}, timeout=30)
    assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM
    assert [t.url for t in s.targets()] == [cat.url]


def test_node_status_shows_the_notify_queue(site: Callable[..., Site]) -> None:
    from typer.testing import CliRunner

    from node.cli import app as node_cli

    s = site()
    runner = CliRunner()
    added = runner.invoke(
        node_cli, ["notify", "add", "http://127.0.0.1:9/", "--home", str(s.home.path)]
    )
    assert added.exit_code == 0 and "added: http://127.0.0.1:9/v1/notify" in added.output
    wait_for(lambda: s.targets()[0].attempts >= 1, 10)
    status = runner.invoke(node_cli, ["status", "--home", str(s.home.path)])
    assert status.exit_code == 0
    assert "notify http://127.0.0.1:9 (operator): queued" in status.output
    bad = runner.invoke(node_cli, ["notify", "add", "ftp://x", "--home", str(s.home.path)])
    assert bad.exit_code == 2 and "http(s) base URL" in bad.output
    home = str(s.home.path)
    gone = runner.invoke(node_cli, ["notify", "remove", "http://127.0.0.1:9", "--home", home])
    assert gone.exit_code == 0 and s.targets() == []
