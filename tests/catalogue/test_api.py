"""The catalogue's HTTP API on loopback: admin token, enrolment, own log, mirror, node status."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from catalogue.app import create_app
from catalogue.models import nodes, own_leaves
from catalogue.settings import Settings
from federation.servers import live_server
from protocol.entries import CATALOGUE_OPS, parse_leaf
from protocol.merkle import leaf_hash, verify_consistency, verify_inclusion
from protocol.note import Verifier, verify_checkpoint
from tests.catalogue.conftest import ADMIN_TOKEN, make_settings
from tests.catalogue.simulator import NodeSimulator
from tests.protocol.reference import root_from_leaf_hashes

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path / "home")


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    app = create_app(settings)
    with live_server(app) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        c.app = app  # type: ignore[attr-defined]
        yield c


def harvest(client: httpx.Client) -> dict[str, Any]:
    resp = client.post("/v1/admin/harvest", headers=AUTH)
    assert resp.status_code == 200, resp.text
    return {n["origin"]: n for n in resp.json()["nodes"]}


def own_log(client: httpx.Client) -> tuple[Any, list[dict[str, Any]]]:
    wk = client.get("/.well-known/biobank-catalogue").json()
    note = client.get("/v1/log/checkpoint").text
    cp = verify_checkpoint(note, [Verifier.from_key(wk["verifier_key"])], wk["origin"])
    page = client.get("/v1/log/entries").json()
    leaves = [base64.b64decode(e["leaf"]) for e in page["entries"]]
    assert root_from_leaf_hashes([leaf_hash(x) for x in leaves]) == cp.root
    entries = [
        parse_leaf(x, expected_log=wk["origin"], expected_index=i, allowed_ops=CATALOGUE_OPS)
        for i, x in enumerate(leaves)
    ]
    return cp, entries


def test_admin_routes_refuse_without_configured_token(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path / "home", admin_token=None)  # noqa: S106
    with live_server(create_app(settings)) as server:
        resp = httpx.post(server.url + "/v1/admin/harvest", headers=AUTH)
    assert resp.status_code == 503 and "CATALOGUE_ADMIN_TOKEN" in resp.json()["detail"]
    assert resp.headers["content-type"] == "application/problem+json"


def test_settings_refuse_a_placeholder_token() -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        Settings(admin_token="changeme")  # noqa: S106 - the placeholder under test


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-wrong-token", ADMIN_TOKEN])
def test_admin_routes_refuse_a_wrong_token(client: httpx.Client, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    if header == ADMIN_TOKEN:  # a bare token without the Bearer scheme is still refused
        headers = {"Authorization": "Basic " + ADMIN_TOKEN}
    resp = client.post("/v1/admin/harvest", headers=headers)
    assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
    assert resp.json()["title"] == "Unauthorized"


def test_enrol_with_mismatching_key_records_nothing(client: httpx.Client, serve: Any) -> None:
    sim = NodeSimulator()
    serve(sim)
    wrong = NodeSimulator(sim.origin).verifier_key
    resp = client.post("/v1/admin/nodes", json={"url": sim.url, "key": wrong}, headers=AUTH)
    assert resp.status_code == 409
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["detail"].startswith(f"key mismatch for {sim.url}: the node's descriptor")
    assert client.get("/v1/nodes").json() == {"nodes": []}
    _cp, entries = own_log(client)
    assert entries == []


def test_enrol_unreachable_node_is_a_clear_error(client: httpx.Client) -> None:
    resp = client.post(
        "/v1/admin/nodes", json={"url": "http://127.0.0.1:9", "key": "x+1+AA"}, headers=AUTH
    )
    assert resp.status_code == 502 and "127.0.0.1:9" in resp.json()["detail"]


def test_enrol_harvest_retire_recorded_in_own_log(client: httpx.Client, serve: Any) -> None:
    sim = NodeSimulator()
    sim.populate(15)
    serve(sim)
    resp = client.post(
        "/v1/admin/nodes", json={"url": sim.url, "key": sim.verifier_key}, headers=AUTH
    )
    assert resp.status_code == 201 and resp.json()["origin"] == sim.origin
    again = client.post(
        "/v1/admin/nodes", json={"url": sim.url, "key": sim.verifier_key}, headers=AUTH
    )
    assert again.status_code == 409 and "already enrolled" in again.json()["detail"]
    assert harvest(client)[sim.origin]["ok"] is True
    cp1, entries = own_log(client)
    assert [e["op"] for e in entries] == ["enrol", "checkpoint"]
    assert entries[0]["key"] == sim.verifier_key and entries[0]["country"] == "DE"
    assert entries[1]["checkpoint"] == sim.checkpoint()

    status = client.get(f"/v1/nodes/{sim.origin}").json()
    assert status["tree_size"] == 17 and status["lag"] == 0 and status["stale"] is False
    assert status["policy"]["k"] == 10 and status["alerts"] == 0

    assert client.delete(f"/v1/admin/nodes/{sim.origin}", headers=AUTH).status_code == 200
    cp2, entries = own_log(client)
    assert entries[-1] == {**entries[-1], "op": "retire", "node": sim.origin}
    proof = client.get(
        "/v1/log/proof/consistency", params={"from": cp1.size, "to": cp2.size}
    ).json()["proof"]
    verify_consistency(cp1.size, cp2.size, [base64.b64decode(p) for p in proof], cp1.root, cp2.root)
    assert client.get("/v1/search").json()["total"] == {"min": 0, "max": 0}
    assert client.get(f"/v1/nodes/{sim.origin}").json()["state"] == "retired"


def test_mirror_serves_the_node_log_with_proofs(client: httpx.Client, serve: Any) -> None:
    sim = NodeSimulator()
    sim.populate(40)
    serve(sim)
    client.post("/v1/admin/nodes", json={"url": sim.url, "key": sim.verifier_key}, headers=AUTH)
    harvest(client)
    base = f"/v1/nodes/{sim.origin}/log"
    note = client.get(base + "/checkpoint").text
    assert note == sim.checkpoint()
    cp = verify_checkpoint(note, [Verifier.from_key(sim.verifier_key)], sim.origin)
    page = client.get(base + "/entries", params={"start": 10, "limit": 5}).json()
    assert page["next"] == 15
    assert [base64.b64decode(e["leaf"]) for e in page["entries"]] == sim.leaves[10:15]
    assert page["entries"][0]["content"] == sim.contents[10]
    proof = client.get(base + "/proof/inclusion", params={"index": 12, "size": cp.size}).json()
    verify_inclusion(
        leaf_hash(sim.leaves[12]),
        12,
        cp.size,
        [base64.b64decode(p) for p in proof["proof"]],
        cp.root,
    )
    sim.populate(3, start=40)
    harvest(client)
    cp2 = verify_checkpoint(
        client.get(base + "/checkpoint").text, [Verifier.from_key(sim.verifier_key)], sim.origin
    )
    proof = client.get(base + "/proof/consistency", params={"from": cp.size, "to": cp2.size})
    verify_consistency(
        cp.size, cp2.size, [base64.b64decode(p) for p in proof.json()["proof"]], cp.root, cp2.root
    )
    bad = client.get(base + "/proof/inclusion", params={"index": 1, "size": 10_000})
    assert bad.status_code == 400 and "larger than the verified tree" in bad.json()["detail"]
    assert client.get("/v1/nodes/unknown.example/x/log/checkpoint").status_code == 404


def test_node_list_shows_rejections_alerts_and_lag(client: httpx.Client, serve: Any) -> None:
    sim = NodeSimulator()
    sim.populate(3)
    sim.publish("sample-group", {**sim.contents[-1], "sample_type": "Blut"})
    serve(sim)
    client.post("/v1/admin/nodes", json={"url": sim.url, "key": sim.verifier_key}, headers=AUTH)
    harvest(client)
    sim.note = sim.sign(size=2)
    result = harvest(client)[sim.origin]
    assert result["halted"] is True
    listed = client.get("/v1/nodes").json()["nodes"]
    assert listed[0]["rejections"] == 1 and listed[0]["alerts"] == 1
    assert listed[0]["state"] == "halted" and listed[0]["lag"] == 0
    report = client.get(f"/v1/nodes/{sim.origin}/rejections").json()["rejections"]
    assert report[0]["index"] == 5 and "Blut" in report[0]["problems"][0]
    search = client.get("/v1/search").json()
    assert search["nodes"][0]["alerts"] == 1
    clear = client.post(f"/v1/admin/nodes/{sim.origin}/clear", headers=AUTH)
    assert clear.json() == {"origin": sim.origin, "state": "active", "alerts_cleared": 1}


def test_codelists_are_served(client: httpx.Client) -> None:
    response = client.get("/v1/codelists/sample-type")
    body = response.json()
    assert {"code": "Plasma", "parent": "Blood"}.items() <= next(
        c for c in body["codes"] if c["code"] == "Plasma"
    ).items()
    assert all(c["en"] and c["zh"] for c in body["codes"])
    assert "max-age" in response.headers["cache-control"]
    missing = client.get("/v1/codelists/nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert "nope" in missing.json()["detail"]


def test_catalogue_key_is_created_once_and_private(
    client: httpx.Client, settings: Settings
) -> None:
    key_file = settings.home / "catalogue.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    wk = client.get("/.well-known/biobank-catalogue").json()
    assert wk["origin"] == settings.origin
    app2 = create_app(settings)
    assert app2.state.ctx.key.verifier_key == wk["verifier_key"]
    with app2.state.ctx.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(own_leaves)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(nodes)).scalar_one() == 0
    app2.state.ctx.engine.dispose()
    assert orjson.dumps(wk)


def test_serve_harvests_on_a_schedule(db_url: str, tmp_path: Path, serve: Any) -> None:
    import time

    sim = NodeSimulator(k=2)
    sim.populate(8)
    serve(sim)
    settings = make_settings(db_url, tmp_path / "home", harvest_interval=0.2)
    app = create_app(settings, schedule_harvest=True)
    ctx = app.state.ctx
    from catalogue.enrol import enrol

    enrol(ctx.engine, ctx.key, sim.url, sim.verifier_key, sim.descriptor())
    with live_server(app) as server, httpx.Client(base_url=server.url) as c:
        deadline = time.monotonic() + 20
        while c.get("/v1/search").json()["total"]["max"] != 16 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get("/v1/search").json()["total"] == {"min": 16, "max": 16}  # 8 groups of 2
        sim.populate(3, start=8)
        while c.get("/v1/search").json()["total"]["max"] != 22 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get("/v1/search").json()["total"] == {"min": 22, "max": 22}
        assert c.get("/").status_code == 200  # the web page is mounted beside the API


def test_stale_flag_after_stale_after_seconds() -> None:
    from datetime import UTC, datetime

    from catalogue.status import is_stale

    now = datetime(2026, 11, 22, 12, 0, 10, tzinfo=UTC)
    assert is_stale(None, 60, now) is True
    assert is_stale("2026-11-22T12:00:00Z", 60, now) is False
    assert is_stale("2026-11-22T12:00:00Z", 5, now) is True
