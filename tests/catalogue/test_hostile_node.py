"""Issue 16, protocol and harvest: what a hostile node (a real server serving a tampered,
validly signed log) can no longer do to the catalogue, and how the auditor agrees with it."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import inspect, select, text
from typer.testing import CliRunner

from audit.cli import app as audit_app
from catalogue.app import create_app
from catalogue.db import make_engine
from catalogue.harvest import Harvester
from catalogue.models import alerts, nodes, rejections
from catalogue.status import node_detail
from federation.servers import live_server
from protocol.merkle import leaf_hash
from protocol.verify import MISSING_CONTENT
from tests.audit.helpers import audit, check, failed
from tests.catalogue.conftest import Catalogue, make_settings
from tests.catalogue.simulator import NodeSimulator
from tests.protocol.reference import root_from_leaf_hashes


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
        # a bundle keeps the rejection report: offline, the verdict is the same
        bundle = tmp_path / "bundle"
        fetched = CliRunner().invoke(audit_app, ["fetch", "--catalogue", server.url, str(bundle)])
        assert fetched.exit_code == 0, fetched.output
    code, report = audit("--bundle", bundle)
    assert code == 0, failed(report)
    assert check(report, "withdrawn-content")["node_faults"] == 1
    with catalogue.engine.connect() as conn:
        assert conn.execute(select(nodes.c.tree_size)).scalar_one() == 7
    # a catalogue that hides the record without reporting it fails the audit
    with catalogue.engine.begin() as conn:
        conn.execute(rejections.delete())
    with live_server(create_app(catalogue.ctx.settings)) as server:
        code, report = audit("--catalogue", server.url)
    assert code == 1
    assert failed(report)["withdrawn-content"] == [
        f"node {sim.origin} leaf 4: live sample-group {hidden['id']} is served without "
        "content, and the catalogue's rejection report does not list it"
    ]


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
        # Beacon: the same filter as custom terms, and the node among the filtering terms
        beacon = httpx.post(
            f"{server.url}/beacon/v2/biosamples",
            json={
                "meta": {"apiVersion": "v2.0.0"},
                "query": {
                    "filters": [{"id": f"biobank:{bb}"}, {"id": f"node:{owner.origin}"}],
                    "requestedGranularity": "count",
                },
            },
        ).json()
        assert beacon["responseSummary"]["numTotalResults"] == 40
        terms = httpx.get(f"{server.url}/beacon/v2/filtering_terms").json()
        ids = {t["id"] for t in terms["response"]["filteringTerms"]}
        assert {f"node:{owner.origin}", f"node:{squatter.origin}"} <= ids
        # the auditor recomputes the counts per (node, id) and agrees
        code, report = audit("--catalogue", server.url)
        assert code == 0, failed(report)


def _harvest(cat: Catalogue, **settings: Any) -> Any:
    """One harvest with settings of its own (e.g. CATALOGUE_WITHHOLD_AFTER)."""
    own = make_settings(cat.ctx.settings.database_url, cat.ctx.settings.home, **settings)
    [outcome] = Harvester(engine=cat.engine, settings=own, key=cat.ctx.key).run()
    return outcome


def _withholding(catalogue: Catalogue, serve: Any) -> NodeSimulator:
    """A node harvested at size 7 that then signs size 10 but serves no leaf past 7."""
    sim = NodeSimulator()
    sim.populate(5)
    serve(sim)
    catalogue.enrol(sim, sim.url)
    assert catalogue.harvest()[sim.origin].size == 7
    sim.populate(3, start=5)
    sim.entries_hook = lambda es: [e for e in es if _index(e) < 7]
    return sim


def _leaf(e: dict[str, Any]) -> bytes:
    return base64.b64decode(e["leaf"])


def _index(e: dict[str, Any]) -> int:
    return int(json.loads(_leaf(e))["index"])


def _alerts(cat: Catalogue) -> list[Any]:
    with cat.engine.connect() as conn:
        return list(conn.execute(select(alerts).order_by(alerts.c.id)))


def test_signed_checkpoint_without_leaves_is_withholding_and_alerts_after_the_set_time(
    catalogue: Catalogue, serve: Any
) -> None:
    sim = _withholding(catalogue, serve)
    out = _harvest(catalogue, withhold_after=3600)
    assert not out.ok and not out.halted
    assert out.error.startswith(
        "WithholdingError: sim.example/biobank-node: signs a checkpoint of size 10 but serves "
        "its leaves only up to 6"
    )
    assert "consistency proof from the verified size 7 holds" in out.error
    status = _status(catalogue, sim.origin)
    assert status["state"] == "active" and status["withholding_since"] is not None
    assert status["alerts"] == 0  # not yet: it has not lasted CATALOGUE_WITHHOLD_AFTER
    out = _harvest(catalogue, withhold_after=0)  # ... now it has
    assert not out.ok and not out.halted
    [alert] = _alerts(catalogue)
    assert alert.kind == "withholding" and alert.cleared_at is None
    assert alert.old_checkpoint.startswith(f"{sim.origin}\n7\n")  # both signed checkpoints
    assert alert.new_checkpoint.startswith(f"{sim.origin}\n10\n")
    assert _status(catalogue, sim.origin)["alerts"] == 1
    _harvest(catalogue, withhold_after=0)
    assert len(_alerts(catalogue)) == 1  # one alert while it lasts, not one per attempt
    with live_server(create_app(catalogue.ctx.settings)) as server:
        metrics = httpx.get(f"{server.url}/metrics").text
    assert 'kind="withholding"' in metrics
    sim.entries_hook = None  # the node serves its leaves again
    assert catalogue.harvest()[sim.origin].size == 10
    [alert] = _alerts(catalogue)
    assert alert.cleared_at is not None
    status = _status(catalogue, sim.origin)
    assert status["withholding_since"] is None and status["alerts"] == 0


def test_signed_checkpoint_without_leaves_whose_consistency_proof_fails_is_equivocation(
    catalogue: Catalogue, serve: Any
) -> None:
    sim = _withholding(catalogue, serve)
    trusted_root = sim.root(7)
    fork = list(sim.leaves)
    fork[3] = fork[3].replace(b'"time":"', b'"time":"1', 1)  # another tree below size 7
    sim.proof_leaves = fork
    sim.note = sim.sign(10, root=_root(fork))
    out = catalogue.harvest()[sim.origin]
    assert out.halted and not out.ok
    assert out.error.startswith("EquivocationError: sim.example/biobank-node: signs a checkpoint")
    assert "consistency proof from the verified size 7 fails" in out.error
    [alert] = _alerts(catalogue)
    assert alert.kind == "equivocation"
    assert alert.old_checkpoint.startswith(f"{sim.origin}\n7\n")
    assert alert.new_checkpoint == sim.note
    assert base64.b64encode(trusted_root).decode() in alert.old_checkpoint
    assert _status(catalogue, sim.origin)["state"] == "halted"


def _root(leaves: list[bytes]) -> bytes:
    return root_from_leaf_hashes([leaf_hash(x) for x in leaves])


def test_an_old_database_gains_the_withholding_since_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    with engine.begin() as conn:  # as an earlier version made it
        conn.execute(text("ALTER TABLE nodes DROP COLUMN withholding_since"))
    engine.dispose()
    engine = make_engine(url)
    with engine.connect() as conn:
        assert "withholding_since" in {c["name"] for c in inspect(conn).get_columns("nodes")}
    engine.dispose()
