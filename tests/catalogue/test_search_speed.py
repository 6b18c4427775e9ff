"""Issue 19 item 5: what the search's speed work must keep. The cards of a page are read by
one statement over the page's nodes and ids (a superset when two nodes publish the same id),
and each card still shows the record of its own node."""

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
