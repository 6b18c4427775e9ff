"""Browser fixtures for the web page tests: headless Chromium (Playwright) and a catalogue.

`web_site` is a real catalogue (catalogue.app.create_app) with real nodes harvested on
loopback when that stack works; otherwise (and only outside CI) a small stand-in app that
serves the same API shapes from fixed records, so the page can still be exercised.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from catalogue.web import mount_web
from tests.support import live_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Site:
    """The catalogue under test: its base URL and what it is (real or stand-in)."""

    url: str
    real: bool

    def api(self, path: str, params: Any = None) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=30)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    """One headless Chromium for the session (skips when absent, fails when CI=true)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but Chromium is missing at {CHROMIUM}")
        pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def browser_context(chromium_browser: Any) -> Iterator[Any]:
    """A fresh context (empty localStorage) at desktop size, English."""
    context = chromium_browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    try:
        yield context
    finally:
        context.close()


@pytest.fixture()
def page(browser_context: Any) -> Iterator[Any]:
    """A page that fails the test on any uncaught script error."""
    pg = browser_context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    assert errors == [], f"uncaught errors in the page: {errors}"


@pytest.fixture(scope="module")
def web_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A served catalogue with data: real and harvested when possible, else the stand-in."""
    with contextlib.ExitStack() as stack:
        # Built in a worker thread: Playwright's sync API may already own this thread's event loop,
        # and enrolment runs its own (asyncio.run).
        workdir = tmp_path_factory.mktemp("web-federation")
        with ThreadPoolExecutor(max_workers=1) as pool:
            url = pool.submit(real_catalogue, stack, workdir).result()
        if url is not None:
            yield Site(url=url, real=True)
            return
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but the real catalogue could not be built and harvested")
        server = stack.enter_context(live_server(stand_in_app()))
        yield Site(url=server.url, real=False)


# --- the real catalogue: nodes generated, imported, served, enrolled and harvested -------------

REAL_COUNTRIES = ("DE", "IT", "CN")


def real_catalogue(stack: contextlib.ExitStack, workdir: Path) -> str | None:
    """Serve a harvested catalogue built as `biobank-catalogue demo` builds one; None on failure."""
    try:
        from catalogue import demo
        from catalogue.harvest import Harvester
        from tests.support import free_port

        nodes = [demo.DemoNode(c, workdir / "nodes" / c, free_port()) for c in REAL_COUNTRIES]
        for node in nodes:
            demo._prepare_node(
                node, 600, 11, workdir, lambda _stage, _n: None, REAL_WARNINGS.append
            )
        for node in nodes:
            stack.enter_context(live_server(demo.node_app(node.home, node.url), node.port))
        settings, engine, key, app = demo._catalogue(workdir)
        demo._enrol_all(engine, key, nodes)
        outcomes = Harvester(engine=engine, settings=settings, key=key).run()
        if not all(o.ok for o in outcomes):
            raise RuntimeError(f"harvest failed: {[o.error for o in outcomes if not o.ok]}")
    except Exception as exc:  # the stack is built by other engineers concurrently
        REAL_FAILURE.append(f"{type(exc).__name__}: {exc}")
        return None
    return stack.enter_context(live_server(app)).url


REAL_FAILURE: list[str] = []
REAL_WARNINGS: list[str] = []


# --- the stand-in: the catalogue's API shapes over a few fixed records, real filtering ---------

NODES = {
    "charite.example/biobank-node": {
        "country": "DE",
        "name": "Charité node",
        "stale": False,
        "alerts": 0,
    },
    "ruijin.example/biobank-node": {
        "country": "CN",
        "name": "瑞金医院节点",
        "stale": True,
        "alerts": 0,
    },
    "bbmri.it.example/biobank-node": {
        "country": "IT",
        "name": "BBMRI.it",
        "stale": False,
        "alerts": 1,
    },
}
BIOBANKS = [
    {
        "id": "bbmri-eric:ID:DE_CHARITE",
        "name": "Charité Central Biobank",
        "acronym": "ZeBanC",
        "country": "DE",
        "description": "Central biobank of Charité, Berlin, holding blood, tissue and DNA samples.",
        "contact": {"email": "biobank@charite.example", "name": "Biobank office"},
        "url": "https://charite.example/biobank",
        "quality_standards": ["ISO9001"],
        "node": "charite.example/biobank-node",
    },
    {
        "id": "cn:ruijin",
        "name": "瑞金医院生物样本库",
        "acronym": "RJ",
        "country": "CN",
        "description": "Biobank of Ruijin Hospital, Shanghai: cancer and metabolic disease.",
        "contact": {"email": "biobank@ruijin.example"},
        "url": "https://ruijin.example",
        "quality_standards": [],
        "node": "ruijin.example/biobank-node",
    },
    {
        "id": "bbmri-eric:ID:IT_TORINO",
        "name": 'Torino "Rare, Diseases" Biobank',
        "acronym": None,
        "country": "IT",
        "description": "Rare disease samples, Torino.",
        "contact": {"email": "rare@torino.example"},
        "url": "javascript:alert(1)",
        "quality_standards": [],
        "node": "bbmri.it.example/biobank-node",
    },
]
COLLECTIONS = [
    {
        "id": "bbmri-eric:ID:DE_CHARITE:collection:BREAST",
        "biobank": "bbmri-eric:ID:DE_CHARITE",
        "name": "Breast cancer cohort",
        "description": "Tumour tissue and plasma, 2012-2020.",
        "contact": {"email": "breast@charite.example"},
        "use_conditions": ["DUO:0000007"],
        "dataset_types": ["Genomic"],
        "design": ["CaseControl"],
    },
    {
        "id": "bbmri-eric:ID:DE_CHARITE:collection:POP",
        "biobank": "bbmri-eric:ID:DE_CHARITE",
        "name": 'Berlin population, "healthy" donors',
        "description": "Population cohort, blood.",
        "contact": {"email": "pop@charite.example"},
        "use_conditions": ["DUO:0000042"],
        "dataset_types": ["Other"],
        "design": ["PopulationBased"],
    },
    {
        "id": "cn:ruijin:liver",
        "biobank": "cn:ruijin",
        "name": "肝癌样本集",
        "description": "Liver cancer tissue.",
        "contact": {"email": "liver@ruijin.example"},
        "use_conditions": ["DUO:0000007"],
        "dataset_types": ["Genomic"],
        "design": [],
    },
    {
        "id": "bbmri-eric:ID:IT_TORINO:collection:RARE",
        "biobank": "bbmri-eric:ID:IT_TORINO",
        "name": "Rare diseases, Torino",
        "description": '=HYPERLINK("x") rare disease DNA',
        "contact": {"email": "rare@torino.example"},
        "use_conditions": ["DUO:0000042"],
        "dataset_types": ["Genomic"],
        "design": [],
        "declared": 5000,
    },
]
# (collection index, sample_type, storage, sex, age band, period, ICD-10, n)
CUBE = [
    (0, "Plasma", "-60to-85", "female", (40, 49), (2015, 2019), "C50.9", 1200),
    (0, "TissueFrozen", "LN", "female", (50, 59), (2015, 2019), "C50.4", 640),
    (0, "Plasma", "-60to-85", "female", (60, 69), (2010, 2014), "C50.9", 7),
    (1, "WholeBlood", "-18to-35", "male", (20, 29), (2010, 2014), "Z00.0", 3000),
    (1, "WholeBlood", "-18to-35", "female", (30, 39), (2010, 2014), "Z00.0", 2800),
    (1, "Serum", "-60to-85", "male", (40, 49), (2015, 2019), "E11.9", 410),
    (2, "TissueFrozen", "LN", "male", (50, 59), (2020, 2024), "C22.0", 300),
    (2, "Plasma", "-60to-85", "female", (60, 69), (2020, 2024), "C22.0", 5),
]
K = 10
CHAPTERS = {"C": "II", "D": "II", "E": "IV", "Z": "XXI"}


def _count(n: int) -> int | str:
    return f"<{K}" if 0 < n < K else n


def _match(row: tuple[Any, ...], q: dict[str, list[str]], skip: str | None = None) -> bool:
    ci, stype, storage, sex, age, period, icd, _n = row
    col = COLLECTIONS[ci]
    bb = next(b for b in BIOBANKS if b["id"] == col["biobank"])
    fields = {
        "sample_type": [stype],
        "storage_temperature": [storage],
        "sex": [sex],
        "duo": col["use_conditions"],
        "dataset_type": col["dataset_types"],
        "country": [bb["country"]],
        "biobank": [bb["id"]],
        "collection": [col["id"]],
        "orpha": [],
    }
    for name, have in fields.items():
        if name != skip and q.get(name) and not set(have) & set(q[name]):
            return False
    if (
        skip != "icd10"
        and q.get("icd10")
        and not any(icd.startswith(v) or v == CHAPTERS.get(icd[0]) for v in q["icd10"])
    ):
        return False
    num = {k: int(q[k][0]) for k in ("age_min", "age_max", "period_from", "period_to") if q.get(k)}
    return (
        age[1] >= num.get("age_min", -1)
        and age[0] <= num.get("age_max", 999)
        and period[1] >= num.get("period_from", -1)
        and period[0] <= num.get("period_to", 9999)
    )


def _tally(rows: list[tuple[Any, ...]], key: Any) -> list[dict[str, Any]]:
    sums: dict[str, int] = {}
    for row in rows:
        for code in key(row):
            sums[code] = sums.get(code, 0) + row[-1]
    return [{"code": c, "count": _count(n)} for c, n in sorted(sums.items(), key=lambda kv: -kv[1])]


def _prov(node: str) -> dict[str, Any]:
    return {"node": node, "checkpoint_size": 20013, "verified_at": "2026-11-22T23:07:36Z"}


def stand_in_search(q: dict[str, list[str]]) -> dict[str, Any]:
    rows = [r for r in CUBE if _match(r, q)]
    page_size = int(q.get("page_size", ["20"])[0])
    page, cpage = int(q.get("page", ["1"])[0]), int(q.get("collections_page", ["1"])[0])
    col_n: dict[int, int] = {}
    for row in rows:
        col_n[row[0]] = col_n.get(row[0], 0) + row[-1]
    bb_of = {i: c["biobank"] for i, c in enumerate(COLLECTIONS)}
    node_of = {b["id"]: b["node"] for b in BIOBANKS}
    cols = [
        {
            **{k: v for k, v in COLLECTIONS[i].items() if k != "declared"},
            "samples": _count(n),
            "declared_size": None,
            "count_source": "samples",
            "provenance": _prov(node_of[bb_of[i]]),
        }
        for i, n in sorted(col_n.items(), key=lambda kv: -kv[1])
    ]
    declared = COLLECTIONS[3]
    if not any(
        q.get(k)
        for k in (
            "sample_type",
            "storage_temperature",
            "sex",
            "icd10",
            "age_min",
            "age_max",
            "period_from",
            "period_to",
        )
    ) and all(
        not q.get(n) or set(v) & set(q[n])
        for n, v in (
            ("duo", declared["use_conditions"]),
            ("country", ["IT"]),
            ("biobank", [declared["biobank"]]),
            ("collection", [declared["id"]]),
        )
    ):
        cols.append(
            {
                **{k: v for k, v in declared.items() if k != "declared"},
                "samples": None,
                "declared_size": declared["declared"],
                "count_source": "declared",
                "provenance": _prov(node_of[declared["biobank"]]),
            }
        )
    bb_ids = list(dict.fromkeys(c["biobank"] for c in cols))
    bbs = [
        {
            **{k: v for k, v in b.items() if k != "node"},
            "provenance": _prov(b["node"]),
            "samples": _count(sum(n for i, n in col_n.items() if bb_of[i] == b["id"])),
        }
        for bid in bb_ids
        for b in BIOBANKS
        if b["id"] == bid
    ]
    country = {b["id"]: b["country"] for b in BIOBANKS}

    def facet(name: str, key: Any) -> list[dict[str, Any]]:
        return _tally([r for r in CUBE if _match(r, q, skip=name)], key)

    return {
        "query": q,
        "total": _count(sum(r[-1] for r in rows)),
        "counts": {
            "country": _tally(rows, lambda r: [country[bb_of[r[0]]]]),
            "biobank": _tally(rows, lambda r: [bb_of[r[0]]]),
            "collection": _tally(rows, lambda r: [COLLECTIONS[r[0]]["id"]]),
        },
        "facets": {
            "sample_type": facet("sample_type", lambda r: [r[1]]),
            "storage_temperature": facet("storage_temperature", lambda r: [r[2]]),
            "sex": facet("sex", lambda r: [r[3]]),
            "dataset_type": facet("dataset_type", lambda r: COLLECTIONS[r[0]]["dataset_types"]),
            "use_conditions": facet("duo", lambda r: COLLECTIONS[r[0]]["use_conditions"]),
            "country": facet("country", lambda r: [country[bb_of[r[0]]]]),
            "diagnosis_chapter": facet("icd10", lambda r: [CHAPTERS[r[6][0]]]),
        },
        "biobanks": {
            "items": bbs[(page - 1) * page_size : page * page_size],
            "page": page,
            "page_size": page_size,
            "total": len(bbs),
        },
        "collections": {
            "items": cols[(cpage - 1) * page_size : cpage * page_size],
            "page": cpage,
            "page_size": page_size,
            "total": len(cols),
        },
        "nodes": [
            {"origin": o, "country": n["country"], "stale": n["stale"], "alerts": n["alerts"]}
            for o, n in NODES.items()
        ],
    }


def _node_status(origin: str) -> dict[str, Any]:
    n = NODES[origin]
    return {
        "origin": origin,
        "url": f"https://{origin.split('/')[0]}",
        "name": n["name"],
        "country": n["country"],
        "tree_size": 20013,
        "verified_at": "2026-11-22T23:07:36Z",
        "last_success_at": "2026-11-22T23:07:36Z",
        "stale": n["stale"],
        "alerts": n["alerts"],
        "rejections": 1,
        "policy": {
            "k": K,
            "age_band": 10,
            "period_width": 5,
            "diagnosis_precision": "category",
            "published_fields": ["age", "period", "diagnoses"],
        },
        "alert_list": [
            {
                "id": 1,
                "kind": "equivocation",
                "message": "two roots for size 20013",
                "created_at": "2026-11-22T23:07:36Z",
                "cleared_at": None,
                "trusted_checkpoint": "a\n1\nx\n",
                "new_checkpoint": "a\n1\ny\n",
            }
        ]
        if n["alerts"]
        else [],
        "rejection_report": [
            {
                "index": 17,
                "kind": "sample",
                "id": "smp_x",
                "problems": ["leaf 17: /sex='Blut': unknown code"],
            }
        ],
    }


def stand_in_app() -> Any:
    """A FastAPI app with the page mounted and the catalogue's read API over the records above."""
    app = FastAPI()
    lists = Path(__file__).resolve().parents[2] / "schemas" / "codelists"

    @app.get("/v1/search")
    def search(request: Request) -> Any:
        q = {k: request.query_params.getlist(k) for k in request.query_params}
        bad = [
            {"name": k, "reason": f"{q[k][0]!r} is not a whole number"}
            for k in ("age_min", "age_max", "period_from", "period_to", "page", "page_size")
            if q.get(k) and not q[k][0].isdigit()
        ]
        if bad:
            body = {"title": "invalid search parameters", "status": 400, "invalid_params": bad}
            return JSONResponse(body, status_code=400, media_type="application/problem+json")
        return stand_in_search(q)

    @app.get("/v1/nodes")
    def nodes() -> dict[str, Any]:
        return {"nodes": [_node_status(o) for o in NODES]}

    @app.get("/v1/nodes/{origin:path}")
    def node(origin: str) -> dict[str, Any]:
        if origin not in NODES:
            raise HTTPException(404, f"no enrolled node with origin {origin!r}")
        return _node_status(origin)

    @app.get("/v1/codelists/{name}")
    def codelist(name: str) -> Any:
        path = lists / f"{name}.json"
        if not path.is_file():
            raise HTTPException(404, f"no code list named {name!r}")
        return json.loads(path.read_text(encoding="utf-8"))

    mount_web(app)
    return app
