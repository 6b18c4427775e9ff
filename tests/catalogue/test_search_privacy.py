"""Attacks on /v1/search through a real catalogue harvesting real node simulators (issue 20,
attacks (b) and (c)): every count is an interval sum over the published sample groups, so no
arithmetic over several answers says more than the logs do.

The test keeps each group's true counts (what the node holds) beside what its log publishes
(exact at k donors, else the bound ``{"lt": B}``, read as [1, B - 1]). It asserts that every
answer equals the interval sum recomputed here from the published groups, and that the
attackers below (union subtraction, age-range arithmetic, ICD-10 padding, and a linear-system
attacker over many overlapping queries, by least squares and by exact elimination) never pin
a group's sample count tighter than its published interval, while the truth always lies
inside what they derive.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from catalogue.app import create_app
from catalogue.context import build_context
from catalogue.enrol import enrol
from catalogue.harvest import Harvester
from catalogue.search.codes import Vocabulary
from catalogue.search.cube import FACETS
from federation.servers import live_server
from tests.catalogue.conftest import DB_PARAMS, database, make_settings
from tests.catalogue.simulator import NodeSimulator, group, group_id, upper_bound

VOCAB = Vocabulary.default()
Span = tuple[int, int]
Cell = tuple[str, ...]
DE, CZ, FR = "de.example/biobank-node", "cz.example/biobank-node", "fr.example/biobank-node"
NODES = {DE: ("DE", 10), CZ: ("CZ", 5), FR: ("FR", 20)}
A_BB, B_BB, C_BB = "bbmri-eric:ID:DE_A", "bbmri-eric:ID:CZ_B", "bbmri-eric:ID:FR_C"
A1, A2, A3 = (f"{A_BB}:collection:{c}" for c in ("one", "two", "three"))
B1, C1 = f"{B_BB}:collection:one", f"{C_BB}:collection:one"
BIOBANK_OF = {A1: A_BB, A2: A_BB, A3: A_BB, B1: B_BB, C1: C_BB}
NODE_OF = {A_BB: DE, B_BB: CZ, C_BB: FR}


# -- what the nodes hold and what their logs say --------------------------------------------
@dataclass
class Group:
    """One live group: what its log publishes (`record`) and its true counts."""

    origin: str
    record: dict[str, Any]
    samples: int
    donors: int

    @property
    def span(self) -> Span:
        return interval(self.record["samples"])

    @property
    def donor_span(self) -> Span:
        return interval(self.record["donors"])


def interval(count: Any) -> Span:
    """What a published count says: exact n -> [n, n]; {"lt": B} -> [1, B - 1]."""
    return (1, count["lt"] - 1) if isinstance(count, dict) else (count, count)


def publish(
    sims: dict[str, NodeSimulator],
    world: dict[str, Group],
    n: int,
    collection: str,
    samples: int,
    donors: int,
    **fields: Any,
) -> None:
    """Publish group `n` as its node would: exact counts at k donors, else both bounded."""
    origin = NODE_OF[BIOBANK_OF[collection]]
    k = NODES[origin][1]
    exact = donors >= k
    record = group(
        n,
        biobank=BIOBANK_OF[collection],
        collection=collection,
        samples=samples if exact else {"lt": upper_bound(samples, k)},
        donors=donors if exact else {"lt": k},
        **fields,
    )
    sims[origin].publish("sample-group", record)
    world[record["id"]] = Group(origin, record, samples, donors)


def setup_nodes() -> dict[str, NodeSimulator]:
    sims = {o: NodeSimulator(o, country=c, k=k) for o, (c, k) in NODES.items()}
    for col, bb in BIOBANK_OF.items():
        sim = sims[NODE_OF[bb]]
        if not any(c and c.get("id") == bb for c in sim.contents):
            bb_record = {"id": bb, "name": bb, "country": sim.country}
            sim.publish("biobank", bb_record | {"contact": {"email": "bb@example.org"}})
        sim.publish("collection", {"id": col, "biobank": bb, "name": col})
    return sims


# (group number, collection, true samples, true donors, attributes)
SPEC: list[tuple[int, str, int, int, dict[str, Any]]] = [
    (1, A1, 40, 25, {}),
    (2, A1, 3, 2, {"sex": "male"}),  # bounded: [1, 9]
    (3, A2, 25, 12, {"sample_type": "Serum", "age": {"min": 30, "max": 39}, "dx": "I21"}),
    (4, A2, 4, 3, {"sample_type": "WholeBlood", "dx": "G30.9"}),  # [1, 9]
    (5, A3, 6, 4, {"age": {"min": 20, "max": 39}, "dx": "I10"}),  # [1, 9]
    (6, A3, 14, 4, {"dx": "G30.9"}),  # 14 samples of 4 donors: [1, 19]
    (7, B1, 18, 9, {}),
    (8, B1, 12, 6, {"sex": None, "age": {"min": 50, "max": 59}, "dx": "I21"}),
    (9, B1, 3, 2, {"sample_type": "Serum", "sex": "male", "dx": "G30.9"}),  # [1, 4]
    (10, C1, 45, 30, {"sample_type": "Serum", "age": {"min": 60, "max": 69}, "dx": "I25.1"}),
    (11, C1, 7, 5, {"sample_type": "Serum", "sex": "male", "dx": "G30.9"}),  # [1, 19]
]


def fields_of(spec: dict[str, Any]) -> dict[str, Any]:
    out = dict(spec)
    if "dx" in out:
        out["diagnoses"] = [{"system": "ICD-10", "code": out.pop("dx")}]
    return out


# -- the answers recomputed from the published groups ----------------------------------------
def passes(g: Group, query: dict[str, list[str]], skip: str | None = None) -> bool:
    """Whether a group matches every filter (but `skip`), as the search documents them."""
    r = g.record
    country = NODES[g.origin][0]
    for name, wanted in query.items():
        if name == skip or name in ("age_min", "age_max"):
            continue
        if name == "country":
            ok = country in wanted
        elif name == "duo":
            ok = bool(set(r.get("use_conditions", [])) & set(wanted))
        elif name == "icd10":
            ok = any(icd_match(d["code"], wanted) for d in r.get("diagnoses", []))
        else:
            ok = r.get(name) in wanted
        if not ok:
            return False
    if "age_min" in query or "age_max" in query:
        age = r.get("age")
        lo, hi = int(query.get("age_min", ["-1"])[0]), int(query.get("age_max", ["999999"])[0])
        if age is None or age["max"] < lo or age["min"] > hi:
            return False
    return True


def icd_match(code: str, wanted: list[str]) -> bool:
    """A code prefix (C50), a block of categories (I00-I99) or a chapter (IX)."""
    for w in wanted:
        block = w.split("-") if "-" in w else VOCAB.chapter_range(w)
        if block is not None:
            if block[0] <= code[:3] <= block[1]:
                return True
        elif code.startswith(w):
            return True
    return False


def facet_values(g: Group, facet: str) -> list[str]:
    r = g.record
    if facet == "country":
        return [NODES[g.origin][0]]
    if facet == "use_conditions":
        return list(r.get("use_conditions", []))
    if facet == "dataset_type":
        return list(r.get("dataset_types", []))
    if facet == "diagnosis_chapter":
        chapters = (VOCAB.chapter_of(d["code"]) for d in r.get("diagnoses", []))
        return list(dict.fromkeys(c for c in chapters if c))
    return [r[facet]] if r.get(facet) else []


def cells_of(world: dict[str, Group], query: dict[str, list[str]]) -> dict[Cell, list[str]]:
    """Every count a response shows, by cell, with the groups it sums."""
    out: dict[Cell, list[str]] = {}
    matching = [gid for gid, g in world.items() if passes(g, query)]
    out[("total",)] = matching
    for gid in matching:
        r = world[gid].record
        for name, code in (
            ("country", NODES[world[gid].origin][0]),
            ("biobank", (r["biobank"], world[gid].origin)),  # an id belongs to its node
            ("collection", (r["collection"], world[gid].origin)),
        ):
            out.setdefault(("counts", name, code), []).append(gid)
    for facet, param in FACETS.items():
        for gid, g in world.items():
            if passes(g, query, skip=param):
                for v in facet_values(g, facet):
                    out.setdefault(("facets", facet, v), []).append(gid)
    return out


def span_sum(world: dict[str, Group], gids: list[str]) -> Span:
    return sum(world[g].span[0] for g in gids), sum(world[g].span[1] for g in gids)


def listing(cells: dict[Cell, Span], section: str, name: str) -> list[dict[str, Any]]:
    """A counts or facet list as the API must give it: by count max, then min desc, code."""
    items = [(c[2], s) for c, s in cells.items() if c[:2] == (section, name)]
    items.sort(key=lambda cs: (-cs[1][1], -cs[1][0], cs[0]))
    return [
        {"code": code[0], "origin": code[1], "count": {"min": lo, "max": hi}}
        if isinstance(code, tuple)
        else {"code": code, "count": {"min": lo, "max": hi}}
        for code, (lo, hi) in items
    ]


def expected(world: dict[str, Group], query: dict[str, list[str]]) -> dict[str, Any]:
    """The counts of a response, recomputed from the published groups alone."""
    cells = {c: span_sum(world, gids) for c, gids in cells_of(world, query).items()}
    matching = cells_of(world, query)[("total",)]
    donors = [world[g].donor_span for g in matching]
    return {
        "total": {"min": cells[("total",)][0], "max": cells[("total",)][1]},
        "donors": {
            "min": max((d[0] for d in donors), default=0),
            "max": sum(d[1] for d in donors),
        },
        "counts": {n: listing(cells, "counts", n) for n in ("country", "biobank", "collection")},
        "facets": {n: listing(cells, "facets", n) for n in FACETS},
    }


def ask(
    api: httpx.Client, world: dict[str, Group], query: dict[str, list[str]]
) -> dict[Cell, Span]:
    """One search: its counts must equal the interval sums of the published groups (the
    cards too); returns every count by cell."""
    resp = api.get("/v1/search", params=[(k, v) for k, vs in query.items() for v in vs])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    want = expected(world, query)
    assert {k: body[k] for k in want} == want, query
    shown: dict[Cell, Span] = {("total",): (body["total"]["min"], body["total"]["max"])}
    for section in ("counts", "facets"):
        for name, items in body[section].items():
            for item in items:
                code = (item["code"], item["origin"]) if "origin" in item else item["code"]
                shown[(section, name, code)] = (item["count"]["min"], item["count"]["max"])
    for kind in ("biobank", "collection"):
        for item in body[f"{kind}s"]["items"]:
            count = shown[("counts", kind, (item["id"], item["origin"]))]
            assert (item["samples"]["min"], item["samples"]["max"]) == count, item["id"]
            assert kind == "biobank" or item["count_source"] == "groups"
    return shown


# -- the attackers ------------------------------------------------------------------------------
def difference(a: Span, b: Span) -> Span:
    """What subtracting answer b from answer a (b's groups all in a) says of the rest."""
    return a[0] - b[1], a[1] - b[0]


def assert_no_tighter(derived: Span, world: dict[str, Group], gids: list[str]) -> None:
    """A derived interval for the sum of `gids`: it holds the truth and is never tighter than
    what the log publishes for them."""
    published = span_sum(world, gids)
    truth = sum(world[g].samples for g in gids)
    assert derived[0] <= truth <= derived[1], (derived, truth)
    assert derived[0] <= published[0] and derived[1] >= published[1], (derived, published)


@dataclass
class Answers:
    """What a linear-system attacker collected: one row per shown count (which groups it
    sums, known from the public log) and the interval shown."""

    world: dict[str, Group]
    rows: list[list[str]]
    spans: list[Span]

    def add(self, cells: dict[Cell, list[str]], shown: dict[Cell, Span]) -> None:
        for cell, gids in cells.items():
            self.rows.append(gids)
            self.spans.append(shown.get(cell, (0, 0)))

    def matrix(self) -> tuple[list[str], np.ndarray]:
        ids = sorted(self.world)
        col = {g: i for i, g in enumerate(ids)}
        a = np.zeros((len(self.rows), len(ids)))
        for i, gids in enumerate(self.rows):
            for g in gids:
                a[i, col[g]] += 1
        return ids, a

    def least_squares(self) -> set[str]:
        """For each group whose unit vector the answers span, the combination c (minimal
        norm, by least squares) gives x_g = sum c_i * answer_i, an interval by interval
        arithmetic: it must hold the truth and never be tighter than the published bound.
        Returns the groups so isolated."""
        ids, a = self.matrix()
        lo = np.array([s[0] for s in self.spans], dtype=float)
        hi = np.array([s[1] for s in self.spans], dtype=float)
        isolated = set()
        for j, gid in enumerate(ids):
            target = np.zeros(len(ids))
            target[j] = 1.0
            c, *_ = np.linalg.lstsq(a.T, target, rcond=None)
            if np.abs(a.T @ c - target).max() > 1e-6:
                continue  # the answers do not isolate this group
            isolated.add(gid)
            low = float(np.minimum(c * lo, c * hi).sum())
            high = float(np.maximum(c * lo, c * hi).sum())
            derived = (round(low, 6), round(high, 6))
            published, truth = self.world[gid].span, self.world[gid].samples
            assert derived[0] <= truth <= derived[1], (gid, derived, truth)
            assert derived[0] <= published[0] + 1e-6 and derived[1] >= published[1] - 1e-6
        return isolated

    def elimination(self) -> dict[str, Fraction]:
        """Exact integer elimination over the answers that are exact (min == max): the
        groups they determine must be exact groups, at their published counts."""
        ids, a = self.matrix()
        exact = {(*(int(x) for x in a[i]), s[0]) for i, s in enumerate(self.spans) if s[0] == s[1]}
        rows = [[Fraction(x) for x in row] for row in sorted(exact)]
        rank, pivots = 0, []
        for j in range(len(ids)):
            found = next((i for i in range(rank, len(rows)) if rows[i][j] != 0), None)
            if found is None:
                continue
            rows[rank], rows[found] = rows[found], rows[rank]
            rows[rank] = [x / rows[rank][j] for x in rows[rank]]
            for i, row in enumerate(rows):
                if i != rank and row[j] != 0:
                    rows[i] = [p - row[j] * q for p, q in zip(row, rows[rank], strict=True)]
            pivots.append(j)
            rank += 1
        determined = {}
        for row, j in zip(rows[:rank], pivots, strict=True):
            if all(x == 0 for k, x in enumerate(row[:-1]) if k != j):
                determined[ids[j]] = row[-1]
        for gid, value in determined.items():
            g = self.world[gid]
            assert g.span[0] == g.span[1] == value == g.samples, (gid, value, g.span)
        return determined


# -- a federation on loopback -------------------------------------------------------------------
@dataclass(repr=False)  # hypothesis prints its arguments: keep it short
class Federation:
    """The catalogue's API, the nodes, their live groups (with the truth) and a harvester."""

    api: httpx.Client
    sims: dict[str, NodeSimulator]
    world: dict[str, Group]
    harvester: Harvester

    def harvest(self) -> None:
        assert all(o.ok for o in self.harvester.run())

    def __repr__(self) -> str:
        return f"Federation({len(self.world)} groups)"


@contextmanager
def running(request: pytest.FixtureRequest, tmp: Path) -> Iterator[Federation]:
    """Three simulated nodes (k = 10, 5, 20) publishing SPEC, harvested by a catalogue served
    on loopback."""
    sims = setup_nodes()
    world: dict[str, Group] = {}
    for n, col, samples, donors, spec in SPEC:
        publish(sims, world, n, col, samples, donors, **fields_of(spec))
    with ExitStack() as stack:
        url = stack.enter_context(database(request.param, tmp, request))
        for sim in sims.values():
            sim.url = stack.enter_context(live_server(sim.app())).url
        config = make_settings(url, tmp / "home")
        ctx = build_context(config)
        stack.callback(ctx.engine.dispose)
        for sim in sims.values():
            enrol(ctx.engine, ctx.key, sim.url, sim.verifier_key, sim.descriptor())
        harvester = Harvester(engine=ctx.engine, settings=config, key=ctx.key)
        cat = stack.enter_context(live_server(create_app(config)))
        api = stack.enter_context(httpx.Client(base_url=cat.url))
        federation = Federation(api, sims, world, harvester)
        federation.harvest()
        yield federation


@pytest.fixture(scope="module", params=DB_PARAMS)
def fed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Federation]:
    """The federation of SPEC, left as it is."""
    with running(request, tmp_path_factory.mktemp("attacks")) as federation:
        yield federation


@pytest.fixture(scope="module", params=DB_PARAMS)
def growing(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Federation]:
    """The federation of SPEC, to which the random test adds (and withdraws) groups."""
    with running(request, tmp_path_factory.mktemp("random")) as federation:
        yield federation


def q(**params: str | list[str]) -> dict[str, list[str]]:
    return {k: v if isinstance(v, list) else [v] for k, v in params.items()}


def test_every_answer_is_the_interval_sum_of_the_published_groups(fed: Federation) -> None:
    world = fed.world
    shown = ask(fed.api, world, {})
    # 140 exact, and six bounded groups of [1, 9], [1, 9], [1, 9], [1, 19], [1, 4], [1, 19]
    assert shown[("total",)] == (146, 209)
    assert shown[("facets", "sex", "male")] == (3, 32)  # groups 2, 9 and 11, all bounded
    assert shown[("counts", "collection", (A3, DE))] == (2, 28)  # two bounded groups
    for query in (q(sex="male"), q(collection=A3), q(country="FR"), q(icd10="G30.9")):
        ask(fed.api, world, query)


def test_union_subtraction_recovers_nothing(fed: Federation) -> None:
    """(A1 or A3) minus A1 leaves A3: two bounded groups, no tighter than their bounds."""
    world = fed.world
    both = ask(fed.api, world, q(collection=[A1, A3]))[("total",)]
    one = ask(fed.api, world, q(collection=A1))[("total",)]
    assert_no_tighter(difference(both, one), world, [group_id(5), group_id(6)])
    males = ask(fed.api, world, q(sex="male"))[("total",)]
    male_not_a1 = ask(fed.api, world, q(sex="male", collection=[A2, A3, B1, C1]))[("total",)]
    assert_no_tighter(difference(males, male_not_a1), world, [group_id(2)])


def test_age_range_arithmetic_recovers_nothing(fed: Federation) -> None:
    """Ages 0-49 minus 0-39 leaves the 40-49 band, whose bounded groups stay bounds."""
    world = fed.world
    wide = ask(fed.api, world, q(age_min="0", age_max="49", sex="male"))[("total",)]
    narrow = ask(fed.api, world, q(age_min="0", age_max="39", sex="male"))[("total",)]
    assert narrow == (0, 0)
    assert_no_tighter(difference(wide, narrow), world, [group_id(n) for n in (2, 9, 11)])
    wide = ask(fed.api, world, q(age_min="0", age_max="49", collection=A3))[("total",)]
    narrow = ask(fed.api, world, q(age_min="0", age_max="39", collection=A3))[("total",)]
    assert_no_tighter(difference(wide, narrow), world, [group_id(6)])


def test_icd_padding_recovers_nothing(fed: Federation) -> None:
    """G30.9 + I00-I99 minus I00-I99 leaves the G30.9 groups: only their bounds."""
    world = fed.world
    padded = ask(fed.api, world, q(icd10=["G30.9", "I00-I99"]))[("total",)]
    pad = ask(fed.api, world, q(icd10="I00-I99"))[("total",)]
    g30 = [group_id(n) for n in (4, 6, 9, 11)]
    assert_no_tighter(difference(padded, pad), world, g30)
    for col, n in ((A2, 4), (B1, 9)):
        padded = ask(fed.api, world, q(icd10=["G30.9", "I00-I99"], collection=col))[("total",)]
        pad = ask(fed.api, world, q(icd10="I00-I99", collection=col))[("total",)]
        assert_no_tighter(difference(padded, pad), world, [group_id(n)])


OVERLAPPING = [
    {
        k: v
        for k, v in (
            ("sex", sex),
            ("age_min", age and age[0]),
            ("age_max", age and age[1]),
            ("icd10", icd),
            ("collection", col),
        )
        if v
    }
    for sex, age, icd, col in itertools.product(
        [None, "female", "male"],
        [None, ("0", "39"), ("0", "49"), ("40", "49"), ("50", "99")],
        [None, "G30.9", "I00-I99", ["G30.9", "I00-I99"], "C50"],
        [None, A1, A3, [A1, A3], [A2, B1]],
    )
]


def test_a_linear_system_attacker_recovers_nothing(fed: Federation) -> None:
    """Hundreds of overlapping queries, every count of each answer one equation over the
    published groups: least squares isolates many groups, bounded ones among them, but only
    to their published intervals; exact elimination determines only exact groups."""
    world = fed.world
    answers = Answers(world, [], [])
    for params in OVERLAPPING:
        query = q(**params)
        answers.add(cells_of(world, query), ask(fed.api, world, query))
    isolated = answers.least_squares()
    bounded = {gid for gid, g in world.items() if g.span[0] < g.span[1]}
    assert bounded & isolated == bounded, "the attacker isolates every bounded group"
    determined = answers.elimination()
    assert determined and not set(determined) & bounded


# -- random federations (hypothesis) ------------------------------------------------------------
NUMBERS = itertools.count(1000)
SPEC_IDS = {group_id(n) for n, *_ in SPEC}
RANDOM_COLLECTIONS = [A2, B1, C1]


@st.composite
def changes(draw: st.DrawFn) -> dict[str, Any]:
    """New groups (true counts drawn; the node decides exact or bounded), and queries."""
    new = [
        (
            draw(st.sampled_from(RANDOM_COLLECTIONS)),
            samples := draw(st.integers(1, 60)),
            draw(st.integers(1, samples)),
            {
                "sample_type": draw(st.sampled_from(["Plasma", "Serum", "Saliva"])),
                "sex": draw(st.sampled_from(["female", "male", None])),
                "age": draw(st.sampled_from([{"min": 40, "max": 49}, {"min": 0, "max": 9}])),
                "diagnoses": [
                    {"system": "ICD-10", "code": draw(st.sampled_from(["G30.9", "I21", "E11"]))}
                ],
                "use_conditions": draw(st.sampled_from([["DUO:0000042"], ["DUO:0000006"]])),
            },
        )
        for _ in range(draw(st.integers(1, 4)))
    ]
    queries = draw(
        st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "sex": st.sampled_from(["female", "male"]),
                    "sample_type": st.sampled_from(["Plasma", "Serum", "Saliva"]),
                    "country": st.sampled_from(["DE", "CZ", "FR"]),
                    "icd10": st.sampled_from(["G30.9", "I00-I99", "E11", "IX"]),
                    "age_max": st.sampled_from(["9", "39", "49"]),
                    "duo": st.sampled_from(["DUO:0000042", "DUO:0000006"]),
                },
            ),
            min_size=1,
            max_size=4,
        )
    )
    return {"new": new, "withdraw": draw(st.integers(0, 2)), "queries": queries}


# Each example adds to the same live federation, so an example cannot be replayed alone:
# generate only (no shrinking, no replay of stored examples).
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.generate],
)
@given(changes())
def test_the_attacker_never_recovers_a_hidden_count(
    growing: Federation, step: dict[str, Any]
) -> None:
    """Random groups are published (and some withdrawn) on the real nodes and harvested; every
    answer equals the interval sums of the published groups, and the linear-system attacker
    over all the answers pins no group tighter than its published interval."""
    for col, samples, donors, fields in step["new"]:
        publish(growing.sims, growing.world, next(NUMBERS), col, samples, donors, **fields)
    randoms = sorted(gid for gid in growing.world if gid not in SPEC_IDS)
    for gid in randoms[: step["withdraw"]]:
        g = growing.world.pop(gid)
        growing.sims[g.origin].withdraw("sample-group", gid)
    growing.harvest()
    answers = Answers(growing.world, [], [])
    for params in [*step["queries"], {}, {"icd10": "I00-I99"}, {"icd10": ["G30.9", "I00-I99"]}]:
        query = q(**params)
        answers.add(cells_of(growing.world, query), ask(growing.api, growing.world, query))
    answers.least_squares()
    answers.elimination()
