"""A harvest in the catalogue's own process (`harvest_workers` 0, or a small pushed step in
a thread of the server) runs with the collector's harvest thresholds, as a worker process
does, and gives the process its own thresholds back after, whether the harvest succeeded or
not (issue 19 item 4: at the default thresholds the collector ran about 1,000 times in one
node's 57,000 entries, a fifth of the harvest's CPU)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import catalogue.harvest.stream
from catalogue.context import build_context
from catalogue.harvest.harvester import CALM_THRESHOLDS
from tests.catalogue.conftest import Catalogue, make_settings
from tests.catalogue.simulator import NodeSimulator

PROCESS = (900, 11, 12)  # the process's own thresholds, unlike the default and the harvest's


@pytest.fixture
def thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(*PROCESS)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _served(tmp_path: Path, serve: Any, groups: int) -> tuple[NodeSimulator, Catalogue]:
    """A node of `groups` groups served on loopback, enrolled in a fresh catalogue."""
    sim = NodeSimulator()
    sim.populate(groups)
    serve(sim)
    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    cat = Catalogue(build_context(make_settings(url, tmp_path / "home", page_size=50)))
    cat.enrol(sim, sim.url)
    return sim, cat


def test_an_in_process_harvest_calms_the_collector_and_restores_it(
    tmp_path: Path, serve: Any, thresholds: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, cat = _served(tmp_path, serve, 120)
    seen: list[tuple[int, int, int]] = []  # the thresholds as each page is decoded
    decode = catalogue.harvest.stream.decode_page

    def watched(origin: str, start: int, entries: list[Any]) -> Any:
        seen.append(gc.get_threshold())
        return decode(origin, start, entries)

    monkeypatch.setattr(catalogue.harvest.stream, "decode_page", watched)
    try:
        outcomes = cat.harvest()
    finally:
        cat.engine.dispose()
    assert outcomes[sim.origin].ok, outcomes
    assert len(seen) >= 3 and set(seen) == {CALM_THRESHOLDS}
    assert gc.get_threshold() == PROCESS


def test_a_failing_in_process_harvest_restores_the_collector(
    tmp_path: Path, serve: Any, thresholds: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, cat = _served(tmp_path, serve, 20)

    def broken(origin: str, start: int, entries: list[Any]) -> Any:
        assert gc.get_threshold() == CALM_THRESHOLDS
        raise ValueError("a page no node serves")

    monkeypatch.setattr(catalogue.harvest.stream, "decode_page", broken)
    try:
        outcomes = cat.harvest()
    finally:
        cat.engine.dispose()
    assert not outcomes[sim.origin].ok and "a page no node serves" in str(outcomes[sim.origin])
    assert gc.get_threshold() == PROCESS
