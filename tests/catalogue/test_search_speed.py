"""Issue 19 item 5: what the search's speed work must keep. The records a search shows are
read once per own-log size (two nodes may publish the same id: each card still shows its own
node's record, and a record changed by a harvest step shows at once), and the order of the
lists does not depend on which node the index met first."""

from __future__ import annotations

from typing import Any

import httpx

from catalogue.app import create_app
from federation.servers import live_server
from tests.catalogue.conftest import Catalogue
from tests.catalogue.simulator import NodeSimulator


def _named(sim: NodeSimulator, biobank: str, name: str, groups: int, start: int) -> None:
    collection = f"{biobank}:collection:main"
    sim.publish(
        "biobank",
        {
            "id": biobank,
            "name": name,
            "country": sim.country,
            "contact": {"email": "biobank@example.org"},
        },
    )
    sim.publish("collection", {"id": collection, "biobank": biobank, "name": f"{name} col"})
    sim.populate(groups, biobank=biobank, collection=collection, start=start)


def test_search_page_cards_show_their_own_nodes_records_when_ids_are_shared(
    catalogue: Catalogue, serve: Any
) -> None:
    shared, own = "bbmri-eric:ID:DE_SHARED", "bbmri-eric:ID:IT_OWN"
    first = NodeSimulator("first.example/biobank-node")
    _named(first, shared, "First's shared", 4, 0)
    second = NodeSimulator("second.example/biobank-node", country="IT")
    _named(second, shared, "Second's shared", 3, 100)
    _named(second, own, "Second's own", 2, 200)
    for sim in (first, second):
        serve(sim)
        catalogue.enrol(sim, sim.url)
    assert all(o.ok for o in catalogue.harvest().values())
    want = {
        (first.origin, shared): ("First's shared", 40),
        (second.origin, shared): ("Second's shared", 30),
        (second.origin, own): ("Second's own", 20),
    }
    with live_server(create_app(catalogue.ctx.settings)) as server:
        seen: dict[tuple[str, str], tuple[str, int]] = {}
        cols: dict[tuple[str, str], str] = {}
        for page in (1, 2):
            body = httpx.get(
                f"{server.url}/v1/search",
                params={"page_size": 2, "page": page, "collections_page": page},
            ).json()
            for card in body["biobanks"]["items"]:
                assert card["published"] is True, card
                seen[(card["origin"], card["id"])] = (card["name"], card["samples"]["max"])
            for card in body["collections"]["items"]:
                cols[(card["origin"], card["id"])] = card["name"]
        assert seen == want
        assert cols == {(o, f"{b}:collection:main"): f"{n} col" for (o, b), (n, _) in want.items()}


def test_search_counts_order_is_deterministic_for_equal_counts_across_nodes(
    catalogue: Catalogue, serve: Any
) -> None:
    """Two nodes publish the same biobank and collection ids with equal counts: the cards
    and counts list them by node origin, whichever node was harvested first (the tally's
    keys carry no order)."""
    shared = "bbmri-eric:ID:XX_SHARED"
    late, early = "aa.example/biobank-node", "zz.example/biobank-node"
    for origin in (early, late):  # zz's combos come first in the index
        sim = NodeSimulator(origin, country="DE")
        _named(sim, shared, f"Shared at {origin}", 3, 0)
        serve(sim)
        catalogue.enrol(sim, sim.url)
        assert all(o.ok for o in catalogue.harvest().values())
    with live_server(create_app(catalogue.ctx.settings)) as server:
        body = httpx.get(f"{server.url}/v1/search").json()
    order = [late, early]
    assert [c["origin"] for c in body["biobanks"]["items"]] == order
    assert [c["samples"]["max"] for c in body["biobanks"]["items"]] == [30, 30]
    assert [c["origin"] for c in body["collections"]["items"]] == order
    assert [c["origin"] for c in body["counts"]["biobank"]] == order
    assert [c["origin"] for c in body["counts"]["collection"]] == order


def test_search_cards_follow_a_record_republished_without_group_changes(
    catalogue: Catalogue, serve: Any
) -> None:
    """The records a search shows are read once per own-log size: a step that changes only a
    record (no group, so no combo) still shows on the next search of a running server."""
    bb = "bbmri-eric:ID:DE_CARDS"
    sim = NodeSimulator("cards.example/biobank-node", country="DE")
    _named(sim, bb, "Before", 2, 0)
    serve(sim)
    catalogue.enrol(sim, sim.url)
    assert catalogue.harvest()[sim.origin].ok
    with live_server(create_app(catalogue.ctx.settings)) as server:
        first = httpx.get(f"{server.url}/v1/search").json()
        assert [c["name"] for c in first["biobanks"]["items"]] == ["Before"]
        assert [c["name"] for c in first["collections"]["items"]] == ["Before col"]
        before = next(c for c in sim.contents if c and c.get("id") == bb)
        sim.publish("biobank", {**before, "name": "After"})
        sim.publish("collection", {"id": f"{bb}:collection:main", "biobank": bb, "name": "New"})
        assert catalogue.harvest()[sim.origin].ok
        second = httpx.get(f"{server.url}/v1/search").json()
    assert [c["name"] for c in second["biobanks"]["items"]] == ["After"]
    assert [c["name"] for c in second["collections"]["items"]] == ["New"]
    assert second["total"] == first["total"]
