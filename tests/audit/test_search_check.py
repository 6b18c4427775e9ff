"""The auditor's search-totals check and the catalogue's small-count protection agree.

The catalogue hides small counts as ``"<k"`` and, against differencing, also some larger
ones as ``"<N"``; the auditor accepts a bound exactly when it holds. Unit cases on
`check_search`, then the real catalogue (harvesting simulated nodes with classes below k,
behind a Liar) audited through the CLI.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from audit.livestate import Tally
from audit.report import CheckResult
from audit.search_check import check_search
from catalogue.app import create_app
from catalogue.context import build_context
from catalogue.enrol import enrol
from catalogue.harvest import Harvester
from federation.servers import LiveServer, live_server
from tests.audit.helpers import audit, check, failed
from tests.audit.liar import Liar
from tests.catalogue.conftest import make_settings
from tests.catalogue.simulator import NodeSimulator


def _tally() -> Tally:
    t = Tally(total=503)
    t.counts["country"] = Counter({"DE": 503})
    t.facets["sex"] = Counter({"female": 500, "male": 3})
    t.facets["country"] = Counter({"DE": 503})
    return t


def _response(
    sex: list[tuple[str, Any]], total: Any = 503, de: Any = 503, facet_de: Any = 503
) -> dict[str, Any]:
    return {
        "total": total,
        "counts": {"country": [{"code": "DE", "count": de}], "biobank": [], "collection": []},
        "facets": {
            "sex": [{"code": c, "count": n} for c, n in sex],
            "country": [{"code": "DE", "count": facet_de}],
        },
    }


def _findings(response: dict[str, Any]) -> list[str]:
    result = CheckResult("search-totals")
    t = _tally()
    t.counts["biobank"], t.counts["collection"] = Counter(), Counter()
    check_search(result, t, response)
    return [
        str(f)
        for f in result.findings
        if "facets.sex" in f.location or "total" in f.location or "country" in f.location
    ]


def test_a_complement_hidden_against_differencing_is_accepted() -> None:
    assert _findings(_response([("female", "<510"), ("male", "<10")])) == []


def test_a_bound_that_does_not_hold_is_refused() -> None:
    assert _findings(_response([("female", "<500"), ("male", "<10")])) == [
        "search facets.sex 'female': search reports '<500', but the logs give 500"
    ]
    assert _findings(_response([("female", 500), ("male", "<3")])) == [
        "search facets.sex 'male': search reports '<3', but the logs give 3"
    ]


def test_a_bound_on_zero_is_refused() -> None:
    found = _findings(_response([("female", "<510"), ("male", "<10"), ("other", "<10")]))
    assert found == [
        "search facets.sex 'other': search reports '<10', but the logs give 0 (never hidden)"
    ]


def test_a_hidden_total_must_hold_too() -> None:
    assert _findings(_response([("female", "<510"), ("male", "<10")], total="<510")) == []
    assert _findings(_response([("female", "<510"), ("male", "<10")], total="<500")) == [
        "search total: search reports '<500', but the logs give 503"
    ]


def test_the_country_facet_and_counts_must_agree() -> None:
    """Both true, but 503 next to "<510" would undo the bound."""
    found = _findings(_response([("female", "<510"), ("male", "<10")], facet_de="<510"))
    assert found == [
        "search facets.country 'DE': shows '<510', but counts.country shows 503 "
        "for the same samples"
    ]
    found = _findings(_response([("female", "<510"), ("male", "<10")], facet_de="<10"))
    assert found == ["search facets.country 'DE': search reports '<10', but the logs give 503"]


# -- the real catalogue ---------------------------------------------------------------------
BB, COL = "bbmri-eric:ID:DE_S", "bbmri-eric:ID:DE_S:collection:main"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Liar]]:
    """One simulated node (k 10): 40 female Plasma, 3 male (below k), 4 WholeBlood."""
    tmp = tmp_path_factory.mktemp("small-counts")
    sim = NodeSimulator("de.example/biobank-node", country="DE", k=10)
    sim.populate(40, biobank=BB, collection=COL)
    sim.populate(3, start=100, biobank=BB, collection=COL, sex="male")
    sim.populate(4, start=200, biobank=BB, collection=COL, sample_type="WholeBlood")
    with ExitStack() as stack:
        sim.url = stack.enter_context(live_server(sim.app())).url
        settings = make_settings(f"sqlite:///{tmp / 'catalogue.db'}", tmp / "home")
        ctx = build_context(settings)
        enrol(ctx.engine, ctx.key, sim.url, sim.verifier_key, sim.descriptor())
        assert all(o.ok for o in Harvester(engine=ctx.engine, settings=settings, key=ctx.key).run())
        ctx.engine.dispose()
        liar = Liar(create_app(settings))
        yield stack.enter_context(live_server(liar)), liar


def test_the_auditor_accepts_the_catalogues_protected_counts(
    served: tuple[LiveServer, Liar], tmp_path: Path
) -> None:
    server, liar = served
    liar.lies.clear()
    code, report = audit("--catalogue", server.url, "--state", tmp_path / "s.json")
    assert code == 0, failed(report)
    assert check(report, "search-totals")["checked"] >= 10
    body = httpx.get(f"{server.url}/v1/search").json()
    sex = {i["code"]: i["count"] for i in body["facets"]["sex"]}
    assert sex == {"female": "<50", "male": "<10"} and body["total"] == 47


def test_the_auditor_refuses_a_loosened_or_false_complement(
    served: tuple[LiveServer, Liar], tmp_path: Path
) -> None:
    server, liar = served

    def shift(_q: dict[str, str], raw: bytes) -> bytes:
        data = json.loads(raw)
        for item in data["facets"]["sex"]:
            if item["code"] == "female":
                assert item["count"] == "<50"  # 44 hidden as the complement of male 3
                item["count"] = "<40"
        return json.dumps(data).encode()

    liar.lies.clear()
    liar.lie(r"/v1/search", shift)
    code, report = audit("--catalogue", server.url, "--state", tmp_path / "s.json")
    liar.lies.clear()
    assert code == 1
    assert failed(report) == {
        "search-totals": ["search facets.sex 'female': search reports '<40', but the logs give 44"]
    }
