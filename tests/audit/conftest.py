"""Fixtures for auditor tests: an honest simulated federation (two nodes publishing sample
groups) served on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from federation.servers import LiveServer, live_server
from tests.audit.liar import Liar
from tests.audit.sim import GROUP, Catalogue, NodeLog

DE = "charite.example/biobank-node"
FR = "lyon.example/biobank-node"


@dataclass
class World:
    """Two nodes, DE harvested twice (with a group withdrawn between), FR once (with a
    collection record for its groups and a declared one without any)."""

    cat: Catalogue
    de: NodeLog
    fr: NodeLog
    withdrawn_leaf: int
    withdrawn_content: dict[str, Any]


def make_world(de_url: str = "http://127.0.0.1:9/", fr_url: str = "http://127.0.0.1:9/") -> World:
    cat = Catalogue()
    de = NodeLog.create(DE, "DE")
    fr = NodeLog.create(FR, "FR")
    cat.enrol(de, url=de_url)
    cat.enrol(fr, url=fr_url)
    de.seed(30)
    cat.harvest(de)
    de.seed(12, start=30)
    withdrawn_leaf = 3
    withdrawn = dict(de.contents[withdrawn_leaf])
    de.withdraw(GROUP, withdrawn["id"])
    cat.harvest(de)
    fr.seed(5)
    fr.publish_collection("main")
    fr.publish_collection("cohort")
    cat.harvest(fr)
    return World(cat, de, fr, withdrawn_leaf, withdrawn)


@pytest.fixture
def world() -> World:
    return make_world()


@pytest.fixture
def liar(world: World) -> Liar:
    return Liar(world.cat.app())


@pytest.fixture
def served(liar: Liar) -> Iterator[LiveServer]:
    """The catalogue on loopback, behind a `Liar` that tells no lie until a test adds one."""
    with live_server(liar) as server:
        yield server
