"""The vectorised search (`search.tally_arrays`) against the reference Python pass
(`search.tally_reference`).

Both are run on seeded random cubes with every filter kind (combos of exact and bounded
groups, and combos whose groups were all withdrawn); the interval tallies (every key and its
interval) and the donor intervals must be identical.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from catalogue.search.codes import Vocabulary
from catalogue.search.cube import Combo
from catalogue.search.filters import parse_filters
from catalogue.search.tally_arrays import build, tally
from catalogue.search.tally_reference import predicates
from catalogue.search.tally_reference import tally as reference_tally

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
