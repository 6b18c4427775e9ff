"""The vectorised search (`search.tally_arrays`) against the reference Python pass
(`search.tally_reference`).

Both are run on seeded random cubes with every filter kind (combos of exact and bounded
groups, and combos whose groups were all withdrawn); the interval tallies (every key and its
interval) and the donor intervals must be identical.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalogue.models import nodes
from catalogue.search.cache import CubeCache
from catalogue.search.codes import Vocabulary
from catalogue.search.cube import Combo
from catalogue.search.filters import parse_filters
from catalogue.search.tally_arrays import build, tally
from catalogue.search.tally_reference import predicates
from catalogue.search.tally_reference import tally as reference_tally
from catalogue.search.tally_update import apply
from federation import build_federation

VOCAB = Vocabulary.default()
SAMPLE_TYPES = [
    "Plasma",
    "Serum",
    "Blood",
    "WholeBlood",
    "DNA",
    "RNA",
    "TissueFreshFrozen",
    "TissueFixed",
    "Saliva",
    "Urine",
    "Other",
    None,
]
TEMPS = ["LN", "-60to-85", "-18to-35", "RT", "2to10", None]
SEXES = ["female", "male", "unknown", None]
COUNTRIES = ["DE", "IT", "DK", "IE", "CZ", None]
ICD = [
    "C50",
    "C50.9",
    "C34.1",
    "C18",
    "E11",
    "E11.9",
    "I21",
    "J45",
    "G30.1",
    "F32",
    "A09",
    "Z00.0",
    "Q90",
]
ORPHA = ["ORPHA:586", "ORPHA:558", "ORPHA:98", "ORPHA:1"]
DUO = ["DUO:0000042", "DUO:0000006", "DUO:0000007", "DUO:0000011"]
DATASETS = ["Genomic", "Proteomic", "Clinical", "Metabolomic"]


def random_rows(rng: random.Random, size: int) -> list[Combo]:
    """Combos with every attribute varied, including missing values, duplicate codes in a
    row, a biobank spanning two countries and a collection spanning two biobanks."""
    rows = []
    for _ in range(size):
        node = rng.randint(1, 4)
        bb = f"bb{rng.randint(0, 6)}"
        col = f"{bb}:c{rng.randint(0, 3)}" if rng.random() > 0.05 else "shared"
        country = COUNTRIES[node % 5] if rng.random() > 0.1 else rng.choice(COUNTRIES)
        age = sorted(rng.sample(range(0, 100), 2)) if rng.random() > 0.15 else [None, None]
        year = sorted(rng.sample(range(1990, 2025), 2)) if rng.random() > 0.15 else [None, None]
        icd = tuple(rng.sample(ICD, rng.choice([0, 0, 1, 1, 2, 3])))
        chapters: list[str] = []
        for code in icd:
            ch = VOCAB.chapter_of(code)
            if ch and ch not in chapters:
                chapters.append(ch)
        uses = tuple(rng.choices(DUO, k=rng.choice([0, 1, 2])))  # may repeat a code
        rows.append(
            Combo(
                node,
                bb,
                col,
                country,
                rng.choice(SAMPLE_TYPES),
                rng.choice(TEMPS),
                rng.choice(SEXES),
                age[0],
                age[1],
                year[0],
                year[1],
                *_counts(rng),
                icd,
                tuple(rng.sample(ORPHA, rng.choice([0, 0, 1]))),
                tuple(chapters),
                uses,
                tuple(rng.sample(DATASETS, rng.choice([0, 1, 2]))),
            )
        )
    return rows


def _counts(rng: random.Random) -> tuple[int, int, int, int]:
    """(n_min, n_max, d_min, d_max) of a combo: exact groups, bounded ones, a mix, or none
    left (every group withdrawn)."""
    kind = rng.random()
    if kind < 0.05:
        return 0, 0, 0, 0
    exact = rng.choice([10, 13, 40, 200])
    bound = rng.choice([9, 19, 4])
    if kind < 0.4:
        return exact, exact, 10, exact
    if kind < 0.7:
        return 1, bound, 1, 9
    return exact + 1, exact + bound, 10, exact + 9


QUERIES: list[dict[str, Any]] = [
    {},
    {"sample_type": "Blood"},
    {"sample_type": ["Plasma", "TissueFixed"]},
    {"country": "DE"},
    {"country": ["DK", "IE"], "sex": "male", "icd10": "E11"},
    {"icd10": "C50"},
    {"icd10": "C50.9"},
    {"icd10": "C00-C97"},
    {"icd10": ["IX", "E11"]},
    {"icd10": "II", "sex": "female"},
    {"sex": "female", "age_min": 40, "age_max": 60},
    {"age_min": 70},
    {"age_max": 10, "period_to": 2000},
    {"sample_type": "TissueFreshFrozen", "storage_temperature": "LN"},
    {"duo": "DUO:0000042"},
    {"duo": ["DUO:0000006", "DUO:0000007"], "dataset_type": "Genomic"},
    {"dataset_type": "Genomic", "country": "IT"},
    {"orpha": "ORPHA:586"},
    {"orpha": ["ORPHA:558", "ORPHA:98"], "icd10": "C00-C97"},
    {"sample_type": "Serum", "period_from": 2010, "period_to": 2015},
    {"period_from": 2020},
    {"biobank": ["bb1", "bb2"]},
    {"collection": ["shared", "bb3:c1"], "sex": "male"},
    {
        "biobank": "bb0",
        "collection": "bb0:c0",
        "country": "DE",
        "sample_type": "Blood",
        "storage_temperature": "LN",
        "sex": "female",
        "duo": "DUO:0000042",
        "age_min": 20,
        "period_to": 2015,
        "icd10": "C50",
        "orpha": "ORPHA:1",
        "dataset_type": "Clinical",
    },
]


def _params(q: dict[str, Any]) -> dict[str, list[str]]:
    return {k: [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in q.items()}


def _as_items(t: Any) -> list[Any]:
    """A tally as comparable values: the donor interval and each sum as a dict (the order of
    its keys is no part of the result: every consumer sorts)."""
    return [t.donors, t.total, t.biobank, t.collection, t.country, t.facets]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_vectorised_search_equals_reference(seed: int) -> None:
    rng = random.Random(seed)
    rows = random_rows(rng, 3000)
    cube = build(rows)
    active = {1, 2, 3}  # node 4 is not active
    nonempty = 0
    inexact = False
    for q in QUERIES:
        f = parse_filters(_params(q), VOCAB)
        preds = predicates(f, VOCAB)
        want = reference_tally(rows, preds, active)
        got = tally(cube, f, VOCAB, active)
        assert _as_items(got) == _as_items(want), q
        nonempty += bool(want.total)
        inexact = inexact or any(lo < hi for lo, hi in want.total.values())
    assert nonempty > len(QUERIES) // 2  # the queries do select groups
    assert inexact  # and some of them bounded ones


def test_random_filter_mixes_equal_reference() -> None:
    rng = random.Random(7)
    rows = random_rows(rng, 1500)
    cube = build(rows)
    active = {1, 2, 3, 4}
    for _ in range(60):
        q: dict[str, Any] = {}
        for key, pool in (
            ("sample_type", [s for s in SAMPLE_TYPES if s]),
            ("sex", SEXES[:3]),
            ("storage_temperature", [t for t in TEMPS if t]),
            ("country", [c for c in COUNTRIES if c]),
            ("duo", DUO),
            ("dataset_type", DATASETS),
            ("orpha", ORPHA),
            ("icd10", ["C50", "E11.9", "C00-D48", "IX", "A00-B99"]),
            ("biobank", [f"bb{i}" for i in range(7)]),
        ):
            if rng.random() < 0.3:
                q[key] = rng.sample(pool, rng.randint(1, 2))
        if rng.random() < 0.3:
            q["age_min"] = rng.randint(0, 80)
        if rng.random() < 0.3:
            q["period_to"] = rng.randint(1995, 2024)
        f = parse_filters(_params(q), VOCAB)
        want = reference_tally(rows, predicates(f, VOCAB), active)
        assert _as_items(tally(cube, f, VOCAB, active)) == _as_items(want), q


def test_empty_cube() -> None:
    cube = build([])
    f = parse_filters({"sex": ["male"], "icd10": ["C50"]}, VOCAB)
    got = tally(cube, f, VOCAB, {1})
    assert not got.total and not got.facets["sex"] and got.donors == (0, 0)


def test_a_withdrawn_combo_counts_nowhere() -> None:
    """Rows whose groups were all withdrawn (n_max 0) appear in no listing, as if absent."""
    rows = random_rows(random.Random(3), 200)
    gone = [r for r in rows if r.n_max == 0]
    assert gone
    f = parse_filters({}, VOCAB)
    got = tally(build(rows), f, VOCAB, {1, 2, 3, 4})
    live = {(r.node_id, r.collection) for r in rows if r.n_max > 0}
    assert set(got.collection) == live


def _correlated_rows(rng: random.Random, size: int) -> list[Combo]:
    """Combos as a real federation makes them: few places, types and tuples, varied by age
    band, period and diagnoses, so that many combos share a joint code."""
    rows = random_rows(rng, size)
    out = []
    for r in rows:
        template = rows[rng.randint(0, 9)]  # ten shapes
        out.append(
            replace(
                r,
                node_id=template.node_id,
                biobank=template.biobank,
                collection=template.collection,
                country=template.country,
                sample_type=rng.choice(["Plasma", "Serum", None]),
                storage_temperature=template.storage_temperature,
                sex=template.sex,
                use_conditions=template.use_conditions,
                dataset_type=template.dataset_type,
            )
        )
    return out


def test_vectorised_search_equals_reference_when_combos_share_joint_codes() -> None:
    rows = _correlated_rows(random.Random(11), 2000)
    cube = build(rows)
    assert len(cube.parts) < len(rows) // 2  # many combos per joint code
    active = {1, 2, 3, 4}
    for q in QUERIES:
        f = parse_filters(_params(q), VOCAB)
        want = reference_tally(rows, predicates(f, VOCAB), active)
        assert _as_items(tally(cube, f, VOCAB, active)) == _as_items(want), q


def _huge(rows: list[Combo]) -> list[Combo]:
    """The same combos with counts about 2**20 times larger (sums near 2**37): the sums no
    longer fit one float64 with both ends of the interval, each end alone still does."""
    big = 2**20
    return [
        replace(r, n_min=r.n_min * big + r.n_min, n_max=r.n_max * big + 7 * r.n_max)
        if r.n_max
        else r
        for r in rows
    ]


def test_counts_too_large_to_pack_are_summed_apart_and_exact() -> None:
    rows = random_rows(random.Random(5), 800)
    assert build(rows).derived.scale > 0  # everyday counts: both ends in one float64
    huge = _huge(rows)
    cube = build(huge)
    assert cube.derived.scale == 0  # each end apart
    active = {1, 2, 3, 4}
    for q in QUERIES:
        f = parse_filters(_params(q), VOCAB)
        want = reference_tally(huge, predicates(f, VOCAB), active)
        got = tally(cube, f, VOCAB, active)
        assert _as_items(got) == _as_items(want), q
    everything = tally(cube, parse_filters({}, VOCAB), VOCAB, active)
    assert sum(hi for _lo, hi in everything.total.values()) > 2**32


def _refreshed(rng: random.Random, rows: list[Combo]) -> tuple[list[Combo], Any, Any]:
    """A snapshot of the first half of `rows` refreshed as a harvest would (counts and
    country changed, groups withdrawn, the second half added) and the rows it ends with."""
    first, second = rows[: len(rows) // 2], rows[len(rows) // 2 :]
    cube = build(first)
    changed = []
    final = list(first)
    for at in rng.sample(range(len(first)), len(first) // 5):
        r = first[at]
        kind = rng.random()
        if kind < 0.3:
            r = replace(r, n_min=0, n_max=0, d_min=0, d_max=0)  # every group withdrawn
        elif kind < 0.6:
            r = replace(r, country=rng.choice(COUNTRIES))  # the biobank moved
        else:
            r = replace(r, n_min=r.n_min + 3, n_max=r.n_max + 5, d_max=r.d_max + 5)
        changed.append((at, r))
        final[at] = r
    new = [replace(r, sample_type="BuffyCoat") if rng.random() < 0.1 else r for r in second]
    return final + new, cube, (changed, new)


def test_a_refreshed_snapshot_equals_a_fresh_build() -> None:
    rng = random.Random(21)
    final, cube, (changed, new) = _refreshed(rng, _correlated_rows(rng, 1200))
    refreshed = apply(cube, changed, new)
    fresh = build(final)
    active = {1, 2, 3}
    for q in [*QUERIES, {"sample_type": "BuffyCoat"}]:
        f = parse_filters(_params(q), VOCAB)
        want = reference_tally(final, predicates(f, VOCAB), active)
        assert _as_items(tally(refreshed, f, VOCAB, active)) == _as_items(want), q
        assert _as_items(tally(fresh, f, VOCAB, active)) == _as_items(want), q
    assert refreshed.with_groups == fresh.with_groups


def test_a_joint_code_left_by_a_failed_refresh_is_never_reused() -> None:
    """The joint codes' index is shared by later snapshots: a code a failed refresh left in
    it (past the snapshot's codes, or naming other parts) is checked and not taken."""
    rows = _correlated_rows(random.Random(4), 600)
    cube = build(rows)
    one, two = replace(rows[0], biobank="bb-new"), replace(rows[1], collection="col-new")
    places = len(cube.places)
    # the parts they will have: their model row's, with the new places they will be given;
    # a failed refresh left codes for them: an existing code, and one past the snapshot's
    for model, place, wrong in ((0, places, 0), (1, places + 1, len(cube.parts) + 3)):
        key = cube.parts[cube.joint[model]].tolist()
        key[0] = place
        cube.index[tuple(key)] = wrong
    refreshed = apply(cube, [], [one, two])
    final = [*rows, one, two]
    for q in [{}, {"biobank": "bb-new"}, {"collection": "col-new"}, {"sex": "male"}]:
        f = parse_filters(_params(q), VOCAB)
        want = reference_tally(final, predicates(f, VOCAB), {1, 2, 3, 4})
        assert _as_items(tally(refreshed, f, VOCAB, {1, 2, 3, 4})) == _as_items(want), q


def test_search_tally_equals_reference_on_a_demo_federation(tmp_path: Path) -> None:
    """The benchmark's query mix on a real, harvested demo federation (combos as the
    generator correlates them): the array tally equals the reference on the cached rows."""
    from bench.federation import QUERIES as BENCH_QUERIES

    with build_federation(
        tmp_path, ("DE", "DK"), samples=600, seed=19, serve_catalogue=False
    ) as fed:
        cache = CubeCache()
        with fed.catalogue.engine.connect() as conn:
            cube = cache.arrays(conn)
            rows = cache.rows(conn)
            active = {int(i) for i in conn.execute(select(nodes.c.id)).scalars()}
    assert len(cube.parts) < len(rows)  # combos share joint codes
    counted = 0
    for q in [*BENCH_QUERIES, *QUERIES]:
        f = parse_filters(_params(q), VOCAB)
        want = reference_tally(rows, predicates(f, VOCAB), active)
        assert _as_items(tally(cube, f, VOCAB, active)) == _as_items(want), q
        counted += bool(want.total)
    assert counted > len(BENCH_QUERIES)
