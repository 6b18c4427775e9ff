"""The catalogue's /healthz, /readyz and /metrics, checked against the status API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from catalogue.app import create_app
from catalogue.context import build_context
from catalogue.metrics import index_ready
from catalogue.status import parse_time
from federation.servers import live_server
from service.problems import PROBLEM
from tests.catalogue.conftest import ADMIN_TOKEN, Catalogue, database, make_settings
from tests.catalogue.simulator import NodeSimulator, exact_group
from tests.metrics_support import parse, value, wait_ready

GOOD, LIAR, GONE = (f"{n}.example/biobank-node" for n in ("good", "liar", "gone"))


def _federation(catalogue: Catalogue, serve: Any) -> dict[str, NodeSimulator]:
    """Three nodes harvested twice: one fine (one record rejected), one rolled back (halted,
    an alert), one gone (unreachable at the second harvest)."""
    good, liar, gone = NodeSimulator(GOOD), NodeSimulator(LIAR), NodeSimulator(GONE)
    good.populate(4)
    bad = exact_group(
        99,
        biobank="bbmri-eric:ID:DE_SIM",
        collection="bbmri-eric:ID:DE_SIM:collection:main",
        samples=10,
        donors=10,
    )
    good.publish("sample-group", {**bad, "sample_type": "Blut"})
    liar.populate(3)
    gone.populate(2)
    for sim in (good, liar):
        serve(sim)
        catalogue.enrol(sim, sim.url)
    with live_server(gone.app()) as server:
        gone.url = server.url
        catalogue.enrol(gone, gone.url)
        assert all(o.ok for o in catalogue.harvest().values())
    good.populate(2, start=10)
    liar.note = liar.sign(size=2)
    second = catalogue.harvest()
    assert second[GOOD].ok and second[LIAR].halted
    assert not second[GONE].ok and second[GONE].error.startswith("FetchError")
    return {GOOD: good, LIAR: liar, GONE: gone}


def test_metrics_agree_with_the_status_api(catalogue: Catalogue, serve: Any) -> None:
    sims = _federation(catalogue, serve)
    with (
        live_server(create_app(catalogue.ctx.settings)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        assert client.get("/healthz").json() == {"status": "ok"}
        assert wait_ready(client)["status"] == "ready"
        for _ in range(3):
            assert client.get("/v1/search", params={"sex": "female"}).status_code == 200
        assert client.get("/v1/search", params={"sex": "nope"}).status_code == 400
        response = client.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain; version=")
        text = response.text
        m = parse(text)
        listed = {n["origin"]: n for n in client.get("/v1/nodes").json()["nodes"]}
        details = {o: client.get(f"/v1/nodes/{o}").json() for o in listed}

    assert set(listed) == {GOOD, LIAR, GONE}
    for origin, status in listed.items():
        node = {"node": origin}
        assert value(m, "biobank_catalogue_node_entries_applied_total", node) == status["tree_size"]
        assert value(m, "biobank_catalogue_node_harvest_lag_entries", node) == status["lag"]
        assert value(m, "biobank_catalogue_node_remote_size_entries", node) == status["remote_size"]
        assert value(m, "biobank_catalogue_node_rejections_total", node) == status["rejections"]
        assert value(m, "biobank_catalogue_node_stale", node) == int(status["stale"])
        for state in ("active", "halted", "retired"):
            shown = value(m, "biobank_catalogue_node_state", {**node, "state": state})
            assert shown == (1 if status["state"] == state else 0)
        last = parse_time(status["last_success_at"])
        assert last is not None
        assert value(m, "biobank_catalogue_node_last_success_timestamp_seconds", node) == (
            last.timestamp()
        )
        assert value(m, "biobank_catalogue_node_harvest_lag_seconds", node) >= 0
        open_alerts = [a for a in details[origin]["alert_list"] if a["cleared_at"] is None]
        shown_open = sum(
            v
            for (name, labels), v in m.items()
            if name == "biobank_catalogue_node_open_alerts" and ("node", origin) in labels
        )
        assert shown_open == status["alerts"] == len(open_alerts)
        for alert in details[origin]["alert_list"]:
            labels = {**node, "kind": alert["kind"]}
            assert value(m, "biobank_catalogue_node_alerts_total", labels) == 1

    # what each node served, as the catalogue saw it
    assert listed[GOOD]["tree_size"] == len(sims[GOOD].leaves) == 9
    assert listed[GOOD]["rejections"] == 1 and listed[GOOD]["lag"] == 0
    assert listed[LIAR]["state"] == "halted" and listed[LIAR]["tree_size"] == 5
    assert details[LIAR]["alert_list"][0]["kind"] == "rollback"
    assert listed[GONE]["tree_size"] == 4
    refusals = {
        (dict(labels)["node"], dict(labels)["kind"]): v
        for (name, labels), v in m.items()
        if name == "biobank_catalogue_node_harvest_refusals_total"
    }
    assert refusals == {(LIAR, "RollbackError"): 1, (GONE, "FetchError"): 1}
    # every search request is timed, the refused one too
    assert value(m, "biobank_catalogue_search_duration_seconds_count") == 4
    assert value(m, "biobank_catalogue_search_duration_seconds_bucket", {"le": "+Inf"}) == 4
    assert value(m, "biobank_catalogue_log_size_entries") > 0
    # no secret in the metrics: neither the admin token nor any key
    assert ADMIN_TOKEN not in text
    for sim in sims.values():
        assert sim.verifier_key.split("+", 2)[2] not in text  # base64 may hold "+"


def test_search_index_not_loaded_is_not_ready(tmp_path: Path) -> None:
    ctx = build_context(make_settings(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "home"))
    try:
        assert index_ready(ctx) == "the search index is not loaded yet"
        with ctx.engine.connect() as conn:
            ctx.cube.arrays(conn)
        assert index_ready(ctx) is None
    finally:
        ctx.engine.dispose()


@pytest.mark.postgres
def test_database_gone_is_not_ready(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    with database("postgres", tmp_path, request) as url:
        app = create_app(make_settings(url, tmp_path / "home"))
        with (
            live_server(app) as server,
            httpx.Client(base_url=server.url, timeout=30) as client,
        ):
            wait_ready(client)
            admin = create_engine(request.getfixturevalue("pg_url"), isolation_level="AUTOCOMMIT")
            name = make_url(url).database
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            admin.dispose()
            response = client.get("/readyz")
            assert client.get("/healthz").status_code == 200  # the process is still up
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert [f["name"] for f in body["not_ready"]] == ["database"]
    assert body["not_ready"][0]["reason"].startswith("database unreachable: ")
    assert body["title"] == "Not ready" and body["detail"].startswith("not ready: database: ")
