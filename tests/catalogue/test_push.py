"""Push, then pull (issue 19 item 1): real node and catalogue servers on loopback.

A node's notification is a hint: the catalogue harvests that node at once through the
verified path; forged, unsigned and unknown-node notifications are refused and harvest
nothing; a node is rate-limited; registration at enrolment is confirmed by the node.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from catalogue.app import create_app
from catalogue.models import nodes
from federation.servers import free_port, live_server
from node.cli import app as node_cli
from node.home import Home
from node.rotate import rotate_key
from node.withdraw import withdraw
from protocol.note import Checkpoint, Signer, generate_key, sign_checkpoint
from service.problems import PROBLEM
from tests.catalogue.conftest import ADMIN_TOKEN, make_settings
from tests.catalogue.push_support import Site, total, tree_size, wait_for
from tests.node.node_support import ORIGIN


@pytest.fixture
def site(tmp_path: Path, db_url: str) -> Iterator[Callable[..., Site]]:
    with ExitStack() as stack:
        yield lambda **overrides: Site(tmp_path, db_url, stack, **overrides)


def test_push_makes_an_import_searchable_in_seconds(site: Callable[..., Site]) -> None:
    s = site()
    app, cat = s.catalogue(schedule=True)  # harvests once at start, then every hour
    wait_for(lambda: total(cat.url) == 30, 30)
    s.add_target(cat.url)
    size = s.imported(10)  # 10 new donors: a change set of at least k = 2 donors
    took = wait_for(lambda: total(cat.url) == 40, 10)
    assert took < 5, f"searchable after {took:.1f} s"
    # the hourly schedule did not do it: a push harvest did (counted when it returns, which
    # may be a moment after its commit is searchable)
    wait_for(lambda: app.state.push.harvests >= 1, 5)
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
        "oversized": (note + "x" * 20_000, 413),
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
    wait_for(lambda: app.state.push.harvests == 1, 5)  # counted when the harvest returns
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
    wait_for(lambda: app.state.push.harvests == 1, 5)  # counted when the harvest returns
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
    wait_for(lambda: app.state.push.harvests >= 1, 5)  # counted when the harvest returns
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
    assert refused.status_code == 400 and refused.headers["content-type"] == PROBLEM
    assert refused.json()["invalid_params"][0]["name"] == "url"
    assert [t.url for t in s.targets()] == [cat.url]


def test_node_status_shows_the_notify_queue(site: Callable[..., Site]) -> None:
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


def test_withdrawal_and_key_rotation_are_pushed_too(site: Callable[..., Site]) -> None:
    s = site()
    app, cat = s.catalogue(schedule=True)  # one harvest at start, then hourly
    wait_for(lambda: total(cat.url) == 30, 30)
    s.add_target(cat.url)
    harvests = app.state.push.harvests

    new_key = rotate_key(Home.open(s.home.path)).new_key  # a checkpoint signed by both keys

    def key_in_force() -> str:
        return str(httpx.get(f"{cat.url}/v1/nodes/{ORIGIN}", timeout=10).json()["verifier_key"])

    wait_for(lambda: key_in_force() == new_key, 10)
    entries = httpx.get(f"{s.node.url}/v1/log/entries", timeout=10).json()["entries"]
    group = next(e["content"]["id"] for e in entries if (e["content"] or {}).get("samples"))
    withdraw(Home.open(s.home.path), [group])  # signed by the new key alone
    wait_for(lambda: total(cat.url) == 0, 10)
    # both came by push (the schedule is hourly); the count moves just after the commit
    wait_for(lambda: app.state.push.harvests >= harvests + 2, 10)


def test_a_catalogue_without_notifications_refuses_them_and_does_not_offer_them(
    tmp_path: Path,
) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "home", notify=False)
    with live_server(create_app(settings)) as cat:
        assert "notify" not in httpx.get(f"{cat.url}/.well-known/biobank-catalogue").json()
        refused = _post(cat.url, "x\n1\nAAAA\n\n— x AAAA\n")
        assert refused.status_code == 404 and refused.headers["content-type"] == PROBLEM


def test_a_push_harvest_runs_in_the_kept_workers_when_they_are_idle(
    site: Callable[..., Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the server's first harvest has started its workers (kept), a pushed step, even a
    small one, is verified there: off the API's event loop, with nothing to spawn."""
    import catalogue.notify
    from catalogue.harvest import Harvester

    made: list[tuple[int, object]] = []

    class Spy(Harvester):
        def __init__(self, **kwargs: object) -> None:
            made.append((kwargs["settings"].harvest_workers, kwargs.get("kept")))  # type: ignore[attr-defined]
            super().__init__(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(catalogue.notify, "Harvester", Spy)
    s = site(harvest_workers=2)
    app, cat = s.catalogue(schedule=True)  # its first harvest starts the kept workers
    wait_for(lambda: total(cat.url) == 30, 60)
    workers = app.state.ctx.workers
    wait_for(lambda: workers.idle, 10)
    pids = sorted(pid for pool in workers._idle for pid in pool._processes)
    s.add_target(cat.url)
    s.imported(10)  # a step far below CATALOGUE_NOTIFY_INLINE_MAX
    took = wait_for(lambda: total(cat.url) == 40, 20)
    assert took < 5, f"searchable after {took:.1f} s"
    wait_for(lambda: app.state.push.harvests >= 1 and workers.idle, 10)
    assert made == [(2, workers)]  # the push harvest's lanes were the kept workers
    assert sorted(pid for pool in workers._idle for pid in pool._processes) == pids
