"""Issue 16, protocol and harvest: what a hostile node (a real server serving a tampered,
validly signed log) can no longer do to the catalogue, and how the auditor agrees with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from catalogue.app import create_app
from catalogue.models import nodes
from catalogue.status import node_detail
from federation.servers import live_server
from protocol.verify import MISSING_CONTENT
from tests.audit.helpers import audit, check, failed
from tests.catalogue.conftest import Catalogue
from tests.catalogue.simulator import NodeSimulator


def _status(cat: Catalogue, origin: str) -> dict[str, Any]:
    with cat.engine.connect() as conn:
        return node_detail(conn, origin, 3600.0)


def test_live_record_served_without_content_is_a_rejection_and_the_audit_still_passes(
    catalogue: Catalogue, serve: Any, tmp_path: Path
) -> None:
    sim = NodeSimulator()
    sim.populate(4)  # leaves: biobank, collection, groups 2..5 (k samples each)
    hidden = sim.contents[4]
    assert hidden is not None
    sim.contents[4] = None  # a live group's content, never withdrawn, served as null
    serve(sim)
    catalogue.enrol(sim, sim.url)
    out = catalogue.harvest()[sim.origin]
    assert out.ok and out.size == 6  # the harvest goes on: one bad record never stalls it
    status = _status(catalogue, sim.origin)
    assert status["rejections"] == 1
    [rejected] = status["rejection_report"]
    assert (rejected["index"], rejected["kind"], rejected["id"]) == (
        4,
        "sample-group",
        hidden["id"],
    )
    assert rejected["problems"] == [f"{sim.origin} leaf 4: /content=None: {MISSING_CONTENT}"]

    state = tmp_path / "audit-state.json"
    with live_server(create_app(catalogue.ctx.settings)) as server:
        body = httpx.get(f"{server.url}/v1/search").json()
        assert body["total"] == {"min": 30, "max": 30}  # the three groups with content
        assert httpx.get(f"{server.url}/v1/nodes/{sim.origin}").json()["rejections"] == 1
        code, report = audit("--catalogue", server.url, "--state", state)
        assert code == 0, failed(report)
        faults = check(report, "withdrawn-content")
        assert faults["status"] == "ok" and faults["node_faults"] == 1
        assert faults["node_fault_findings"][0]["location"] == f"node {sim.origin} leaf 4"
        size = json.loads(state.read_text())["size"]
        # the node goes on publishing: the next audit passes too (its state advances)
        sim.populate(1, start=10)
        assert catalogue.harvest()[sim.origin].ok
        code, report = audit("--catalogue", server.url, "--state", state)
        assert code == 0, failed(report)
        assert check(report, "withdrawn-content")["node_faults"] == 1
        assert json.loads(state.read_text())["size"] > size
    with catalogue.engine.connect() as conn:
        assert conn.execute(select(nodes.c.tree_size)).scalar_one() == 7


def test_missing_content_that_a_later_withdraw_explains_is_no_rejection(
    catalogue: Catalogue, serve: Any
) -> None:
    sim = NodeSimulator()
    sim.populate(3)
    sim.withdraw("sample-group", str((sim.contents[3] or {})["id"]))  # erases leaf 3's content
    serve(sim)
    catalogue.enrol(sim, sim.url)
    assert catalogue.harvest()[sim.origin].ok
    assert _status(catalogue, sim.origin)["rejections"] == 0


def test_second_node_publishing_under_another_nodes_biobank_id_does_not_inflate_its_count(
    catalogue: Catalogue, serve: Any, tmp_path: Path
) -> None:
    owner = NodeSimulator("owner.example/biobank-node")
    owner.populate(4)  # biobank bbmri-eric:ID:DE_SIM, 4 groups of 10 samples
    squatter = NodeSimulator("squatter.example/biobank-node", country="IT")
    squatter.populate(3, start=50)  # the same biobank and collection ids, 3 groups
    for sim in (owner, squatter):
        serve(sim)
        catalogue.enrol(sim, sim.url)
    assert all(o.ok for o in catalogue.harvest().values())
    bb, col = "bbmri-eric:ID:DE_SIM", "bbmri-eric:ID:DE_SIM:collection:main"
    with live_server(create_app(catalogue.ctx.settings)) as server:
        body = httpx.get(f"{server.url}/v1/search").json()
        assert body["total"] == {"min": 70, "max": 70}
        assert body["counts"]["biobank"] == [
            {"code": bb, "origin": owner.origin, "count": {"min": 40, "max": 40}},
            {"code": bb, "origin": squatter.origin, "count": {"min": 30, "max": 30}},
        ]
        assert [
            (i["code"], i["origin"], i["count"]["max"]) for i in body["counts"]["collection"]
        ] == [
            (col, owner.origin, 40),
            (col, squatter.origin, 30),
        ]
        cards = {(i["origin"], i["id"]): i for i in body["biobanks"]["items"]}
        assert cards[(owner.origin, bb)]["samples"] == {"min": 40, "max": 40}
        assert cards[(owner.origin, bb)]["country"] == "DE"
        assert cards[(squatter.origin, bb)]["samples"] == {"min": 30, "max": 30}
        assert {i["origin"] for i in body["collections"]["items"]} == {
            owner.origin,
            squatter.origin,
        }
        # the filter by biobank id, qualified by the node that publishes it
        mine = httpx.get(
            f"{server.url}/v1/search", params={"biobank": bb, "node": owner.origin}
        ).json()
        assert mine["total"] == {"min": 40, "max": 40}
        assert [i["origin"] for i in mine["counts"]["biobank"]] == [owner.origin]
        assert [i["origin"] for i in mine["biobanks"]["items"]] == [owner.origin]
        assert mine["facets"]["country"] == [{"code": "DE", "count": {"min": 40, "max": 40}}]
        only = httpx.get(
            f"{server.url}/v1/search", params={"collection": col, "node": squatter.origin}
        )
        assert only.json()["total"] == {"min": 30, "max": 30}
        # the auditor recomputes the counts per (node, id) and agrees
        code, report = audit("--catalogue", server.url)
        assert code == 0, failed(report)
