"""The auditor recomputes the catalogue's interval sums from the logs and checks /v1/search.

Unit cases on `audit.livestate` (exact and bounded groups, newer entries replacing older,
withdrawals, donors across groups) and on `check_search` (a narrower, wider or shifted
interval is named with both intervals); then the simulated federation served on loopback
and audited through the CLI, where a catalogue that keeps counting a withdrawn or an older
group entry fails.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

from audit.livestate import GROUP, Chapters, NodeLive, Tally
from audit.report import CheckResult
from audit.search_check import check_search, search_queries
from federation.servers import live_server
from tests.audit.conftest import DE, FR, World
from tests.audit.helpers import audit, check, failed
from tests.audit.sim import K, group

BB, COL = "bbmri-eric:ID:DE_X", "bbmri-eric:ID:DE_X:collection:main"
ORIGIN = "x.example/biobank-node"


def _group(n: int, samples: Any, donors: Any, **changes: Any) -> dict[str, Any]:
    return group(n, BB, COL, samples=samples, donors=donors, **changes)


def _live(*groups: dict[str, Any]) -> NodeLive:
    live = NodeLive(ORIGIN, "DE", Chapters())
    live.publish("biobank", BB, 0, {"id": BB, "country": "NL"}, has_content=True)
    live.publish("collection", COL, 1, {"id": COL, "biobank": BB}, has_content=True)
    for i, g in enumerate(groups, start=2):
        live.publish(GROUP, g["id"], i, g, has_content=True)
    return live


def _tally(*lives: NodeLive) -> Tally:
    tally = Tally()
    for live in lives:
        tally.add(live)
    return tally


def test_exact_and_bounded_groups_sum_as_intervals() -> None:
    tally = _tally(
        _live(
            _group(0, 14, 11, sex="female"),
            _group(1, {"lt": K}, {"lt": K}, sex="female"),  # 1 to 9 samples
            _group(2, {"lt": 2 * K}, {"lt": K}, sex="male"),  # 3 donors may hold 15 samples
        )
    )
    assert tally.groups == 3
    assert tally.samples == (14 + 1 + 1, 14 + 9 + 19)
    assert tally.donors == (11, 11 + 9 + 9)  # donors: the largest lower bound, summed uppers
    assert tally.facets["sex"].get("female") == (15, 23)
    assert tally.facets["sex"].get("male") == (1, 19)
    assert tally.counts["country"].get("NL") == (16, 42)  # the biobank record's country
    assert tally.collections[(ORIGIN, COL)] == tally.biobanks[(ORIGIN, BB)] == (16, 42)
    assert tally.facets["diagnosis_chapter"].get("II") == (16, 42)


def test_a_newer_entry_replaces_the_older_and_a_withdrawal_removes_it() -> None:
    first = _group(0, 14, 11, sex="female")
    live = _live(first)
    live.publish(
        GROUP,
        first["id"],
        9,
        {**first, "samples": {"lt": K}, "donors": {"lt": K}},
        has_content=True,
    )
    tally = _tally(live)
    assert tally.samples == (1, 9) and tally.donors == (1, 9)
    live.publish(GROUP, first["id"], 10, {**first, "sex": "male"}, has_content=True)
    tally = _tally(live)
    assert tally.samples == (14, 14) and tally.facets["sex"].codes() == {"male"}
    assert live.withdraw(GROUP, first["id"]) == (2, 9, 10)  # every leaf that served content
    tally = _tally(live)
    assert tally.samples == (0, 0) and tally.donors == (0, 0)
    assert tally.facets["sex"].codes() == set()


def test_donors_never_add_up_to_a_lower_bound_across_nodes() -> None:
    other = NodeLive("y.example/biobank-node", "FR", Chapters())
    g = group(5, "bbmri-eric:ID:FR_Y", "bbmri-eric:ID:FR_Y:collection:c", samples=30, donors=20)
    other.publish(GROUP, g["id"], 0, g, has_content=True)
    tally = _tally(_live(_group(0, 14, 11)), other)
    assert tally.samples == (44, 44)
    assert tally.donors == (20, 31)  # a donor may be in both: no more than the largest is sure
    assert tally.counts["country"].get("FR") == (30, 30)  # no biobank record: the node's


def test_a_filtered_search_counts_matching_groups_and_its_own_facet_ignores_it() -> None:
    other = NodeLive("y.example/biobank-node", "FR", Chapters())
    g = group(4, "bbmri-eric:ID:FR_Y", "bbmri-eric:ID:FR_Y:collection:c", samples=30, donors=20)
    other.publish(GROUP, g["id"], 0, g, has_content=True)  # female, in FR
    tally = _tally(_live(*MIXED), other)
    female = tally.filtered({"sex": "female"})
    assert female.samples == (15 + 30, 23 + 30) and female.donors == (20, 11 + 9 + 20)
    assert female.facets["sex"].get("male") == tally.facets["sex"].get("male") == (1, 19)
    assert female.counts["country"].get("NL") == (15, 23)  # counts follow every filter
    both = tally.filtered({"country": "FR", "sex": "male"})
    assert both.samples == (0, 0) and both.groups == 0
    assert both.facets["sex"].get("female") == (30, 30)  # fails only the sex filter
    assert both.facets["country"].get("NL") == (1, 19)  # fails only the country filter
    assert both.facets["sample_type"].codes() == set()  # female in NL fails both: nowhere


def _sums_of(tally: Tally) -> dict[str, Any]:
    """Every figure of a tally, with each listing's codes (zero sums included)."""
    sums = {
        **{f"counts.{n}": s for n, s in tally.counts.items()},
        **{f"facets.{n}": s for n, s in tally.facets.items()},
    }
    return {
        "groups": tally.groups,
        "samples": tally.samples,
        "donors": tally.donors,
        "biobanks": tally.biobanks,
        "collections": tally.collections,
        **{name: {c: s.get(c) for c in s.codes()} for name, s in sums.items()},
    }


def test_filtered_sums_merged_by_cell_equal_the_row_by_row_sums() -> None:
    """`Tally` sums each (country, sex) cell once and merges cells for the unfiltered and
    every filtered search; every figure must equal the row-by-row reference."""
    fr = NodeLive("y.example/biobank-node", "FR", Chapters())
    for n, (sex, samples) in enumerate([("female", 30), ("male", {"lt": K}), ("other", 12)]):
        g = group(
            10 + n,
            "bbmri-eric:ID:FR_Y",
            "bbmri-eric:ID:FR_Y:collection:c",
            samples=samples,
            donors=samples,
        )
        g["sex"] = sex
        fr.publish(GROUP, g["id"], n, g, has_content=True)
    tally = _tally(_live(*MIXED), fr)
    queries = [{"sex": s} for s in ("female", "male", "other", "none")]
    queries += [{"country": c} for c in ("NL", "FR", "DE")]
    queries += [{"country": c, "sex": s} for c in ("NL", "FR") for s in ("female", "male")]
    # the unfiltered sums too are merged from the cells: equal to counting every row
    assert _sums_of(tally) == _sums_of(tally.filtered_by_rows({}))
    for query in queries:
        merged, reference = tally.filtered(query), tally.filtered_by_rows(query)
        assert _sums_of(merged) == _sums_of(reference), query
    assert tally.filtered({"country": "FR"}).samples == (30 + 1 + 12, 30 + K - 1 + 12)


def _response(tally: Tally) -> dict[str, Any]:
    """The answer an honest catalogue gives for `tally` (built by hand, not by the auditor)."""

    def count(lo: int, hi: int) -> dict[str, int]:
        return {"min": lo, "max": hi}

    def listing(sums: Any) -> list[dict[str, Any]]:
        codes = sorted(sums.codes(), key=lambda c: (-sums.get(c)[1], -sums.get(c)[0], c))
        return [  # biobanks and collections: per (id, node origin)
            {"code": c[0], "origin": c[1], "count": count(*sums.get(c))}
            if isinstance(c, tuple)
            else {"code": c, "count": count(*sums.get(c))}
            for c in codes
        ]

    return {
        "total": count(*tally.samples),
        "donors": count(*tally.donors),
        "counts": {name: listing(s) for name, s in tally.counts.items()},
        "facets": {name: listing(s) for name, s in tally.facets.items()},
        "biobanks": {
            "items": [
                {
                    "id": bb,
                    "published": (o, bb) in tally.biobank_records,
                    "samples": count(*n),
                    "provenance": {"node": o},
                }
                for (o, bb), n in tally.biobanks.items()
            ]
        },
        "collections": {
            "items": [
                {"id": c, "samples": count(*n), "count_source": "groups"} | _card(tally, o, c)
                for (o, c), n in tally.collections.items()
            ]
        },
    }


def _card(tally: Tally, origin: str, collection: str) -> dict[str, Any]:
    """What an honest collection card says about its record and its biobank's."""
    record = tally.collection_contents.get((origin, collection))
    biobank = (record or {}).get("biobank", BB)
    return {
        "biobank": biobank,
        "published": record is not None,
        "biobank_published": (origin, biobank) in tally.biobank_records,
        "declared_size": (record or {}).get("size"),
        "subjects": (record or {}).get("number_of_subjects"),
        "provenance": {"node": origin},
    }


def _findings(tally: Tally, response: dict[str, Any]) -> list[str]:
    result = CheckResult("search-totals")
    check_search(result, tally, {"": response})
    return [str(f) for f in result.findings]


MIXED = (
    _group(0, 14, 11, sex="female"),
    _group(1, {"lt": K}, {"lt": K}, sex="female"),
    _group(2, {"lt": 2 * K}, {"lt": K}, sex="male"),
)


def test_the_honest_answer_passes_and_counts_every_item() -> None:
    tally = _tally(_live(*MIXED))
    result = CheckResult("search-totals")
    check_search(result, tally, {"": _response(tally)})
    assert result.findings == [] and result.items > 20


def test_a_narrower_wider_or_shifted_interval_is_named_with_both() -> None:
    tally = _tally(_live(*MIXED))
    for shown, female in (
        ({"min": 16, "max": 23}, "[16, 23]"),  # narrower: a bound taken for a count
        ({"min": 15, "max": 24}, "[15, 24]"),  # wider
        ({"min": 13, "max": 21}, "[13, 21]"),  # shifted
        ({"min": 20, "max": 20}, "[20, 20]"),  # shown as exact
    ):
        response = _response(tally)
        next(i for i in response["facets"]["sex"] if i["code"] == "female")["count"] = shown
        assert _findings(tally, response) == [
            f"search facets.sex 'female': search reports {female}, the logs give [15, 23]"
        ]
    response = _response(tally)
    response["total"] = {"min": 17, "max": 42}
    response["donors"] = {"min": 29, "max": 29}  # donors summed as if nobody were in two groups
    assert _findings(tally, response) == [
        "search total: search reports [17, 42], the logs give [16, 42]",
        "search donors: search reports [29, 29], the logs give [11, 29]",
    ]


def test_listed_and_missing_codes_and_order() -> None:
    tally = _tally(_live(*MIXED))
    response = _response(tally)
    response["facets"]["sex"].append({"code": "other", "count": {"min": 1, "max": 9}})
    response["facets"]["sample_type"].pop()
    missing = sorted(tally.facets["sample_type"].codes())
    shown = {i["code"] for i in response["facets"]["sample_type"]}
    [gone] = [c for c in missing if c not in shown]
    lo, hi = tally.facets["sample_type"].get(gone)
    response["counts"]["country"] = [{"code": "NL", "count": "<10"}]
    assert _findings(tally, response) == [
        "search counts.country 'NL': shows '<10', not an interval {'min': int, 'max': int}",
        "search facets.sample_type " + repr(gone) + f": missing; the logs give [{lo}, {hi}]",
        "search facets.sex 'other': search reports [1, 9], the logs give [0, 0]",
    ]
    response = _response(tally)
    response["facets"]["sex"].reverse()
    assert _findings(tally, response) == [
        "search facets.sex: not sorted by count max desc, then min desc, then code"
    ]


def test_cards_of_biobanks_and_collections() -> None:
    live = _live(*MIXED)
    declared = "bbmri-eric:ID:DE_X:collection:cohort"
    live.publish("collection", declared, 20, {"id": declared, "biobank": BB}, has_content=True)
    tally = _tally(live)
    response = _response(tally)
    response["collections"]["items"].append(
        {"id": declared, "samples": None, "count_source": "declared"}
        | _card(tally, ORIGIN, declared)
    )
    assert _findings(tally, response) == []
    where = f"search collections '{COL}' of node {ORIGIN}"
    bad = copy.deepcopy(response)
    bad["collections"]["items"][0]["count_source"] = "declared"
    bad["collections"]["items"][1]["samples"] = {"min": 0, "max": 0}
    bad["biobanks"]["items"][0]["samples"] = {"min": 16, "max": 16}
    assert _findings(tally, bad) == [
        f"search biobanks '{BB}' of node {ORIGIN} samples: search reports [16, 16], "
        "the logs give [16, 42]",
        f"{where}: count_source 'declared', but the logs publish its groups",
        f"search collections '{declared}' of node {ORIGIN}: count_source 'declared' with "
        "samples {'min': 0, 'max': 0}, but the logs have no live group in it (declared, "
        "samples null)",
    ]
    live.withdraw("collection", declared)
    assert _findings(_tally(live), response) == [
        f"search collections '{declared}' of node {ORIGIN}: published True, but the record "
        "is not live in the logs",
        f"search collections '{declared}' of node {ORIGIN}: declared, but it is no live "
        "collection record of that node",
    ]


def test_card_published_flags_are_checked_against_the_logs() -> None:
    live = _live(*MIXED)
    live.publish(
        "collection",
        COL,
        7,
        {"id": COL, "biobank": BB, "size": 500, "number_of_subjects": 120},
        has_content=True,
    )
    tally = _tally(live)
    response = _response(tally)
    assert response["collections"]["items"][0]["declared_size"] == 500
    assert _findings(tally, response) == []
    where = f"search collections '{COL}' of node {ORIGIN}"
    bad = copy.deepcopy(response)
    bad["biobanks"]["items"][0]["published"] = False
    card = bad["collections"]["items"][0]
    card.update(published=False, biobank_published=False, declared_size=None, subjects=12)
    assert _findings(tally, bad) == [
        f"search biobanks '{BB}' of node {ORIGIN}: published False, but the record is live "
        "in the logs",
        f"{where}: published False, but the record is live in the logs",
        f"{where}: biobank_published False, but the record is live in the logs",
        f"{where}: declared_size None, but the record's size is 500",
        f"{where}: subjects 12, but the record's number_of_subjects is 120",
    ]
    # the biobank's record withdrawn: a card still saying it is published is caught (the
    # country counts move to the node's country too, a finding of their own)
    live.withdraw("biobank", BB)
    tally = _tally(live)
    assert [f for f in _findings(tally, response) if f.startswith("search biobanks ")] + [
        f for f in _findings(tally, response) if f.startswith("search collections ")
    ] == [
        f"search biobanks '{BB}' of node {ORIGIN}: published True, but the record is not "
        "live in the logs",
        f"{where}: biobank_published True, but the record is not live in the logs",
    ]


# -- the simulated federation on loopback, through the CLI ------------------------------------


def test_republished_and_withdrawn_groups_are_counted_by_their_newest_entry(
    world: World,
) -> None:
    cat, de = world.cat, world.de
    stale = cat.search()
    before = stale["total"]["min"], stale["total"]["max"]
    exact, other = de.contents[1], de.contents[2]  # groups 0 and 1, both exact
    assert isinstance(exact["samples"], int)
    de.republish(exact["id"], samples={"lt": 2 * K}, donors={"lt": K})  # now below k donors
    de.republish(other["id"], samples=other["samples"] + 7)
    de.withdraw(GROUP, de.contents[10]["id"])
    cat.harvest(de)
    fresh = cat.search()["total"]
    assert (fresh["min"], fresh["max"]) != before
    with live_server(cat.app()) as server:
        code, report = audit("--catalogue", server.url)
        assert code == 0, failed(report)
        assert check(report, "search-totals")["checked"] > 20
        cat.search_override[""] = stale  # a catalogue that kept counting the older entries
        code, report = audit("--catalogue", server.url)
    assert code == 1
    findings = failed(report)["search-totals"]
    assert findings[0] == (
        f"search total: search reports [{before[0]}, {before[1]}], "
        f"the logs give [{fresh['min']}, {fresh['max']}]"
    )
    assert any(f.startswith("search counts.country 'DE': search reports") for f in findings)
    assert not any("'FR'" in f for f in findings)  # FR did not change
    assert not any(f.startswith("search?") for f in findings)  # filtered answers were fresh


def test_filtered_answers_are_checked_too(world: World) -> None:
    """One search per sex and per country, and one with both; a lie in one is named."""
    cat = world.cat
    assert search_queries(cat.search()) == [
        "country=DE",
        "country=FR",
        "sex=female",
        "sex=male",
        "country=DE&sex=female",
    ]
    honest = cat.search("sex=male")
    lo, hi = honest["facets"]["sample_type"][-1]["count"].values()
    code = honest["facets"]["sample_type"][-1]["code"]
    lie = copy.deepcopy(honest)
    lie["facets"]["sample_type"][-1]["count"] = {"min": lo, "max": lo}  # still last
    cat.search_override["sex=male"] = lie
    with live_server(cat.app()) as server:
        status, report = audit("--catalogue", server.url)
    assert status == 1
    assert failed(report) == {
        "search-totals": [
            f"search?sex=male facets.sample_type {code!r}: search reports [{lo}, {lo}], "
            f"the logs give [{lo}, {hi}]"
        ]
    }
    assert lo < hi


def test_a_group_with_fewer_samples_than_donors_is_not_counted(world: World) -> None:
    """The catalogue keeps such a record out of its index; the auditor names it and agrees."""
    fr = world.fr
    bad = group(99, fr.biobank, fr.collection(), samples=12, donors=15)
    fr.publish(GROUP, bad)
    world.cat.harvest(fr)
    with live_server(world.cat.app()) as server:
        code, report = audit("--catalogue", server.url)
    assert code == 1
    assert failed(report) == {
        "content-schema": [
            f"node {FR} leaf {len(fr.leaves) - 1}: sample-group {bad['id']} cannot be counted: "
            "exact samples 12 below exact donors 15"
        ]
    }
    assert DE not in json.dumps(failed(report))


def test_inlined_row_count_equals_the_row_by_row_count_on_random_groups() -> None:
    """`Tally.add` counts each node's rows by an inlined loop; on random groups (code lists
    empty, repeated or absent, missing sex, exact and bounded counts, three nodes sharing
    codes) every figure equals counting row by row (`filtered_by_rows({})`)."""
    rng = random.Random(19)
    lives = []
    for n, country in enumerate(("DE", "FR", "NL")):
        live = NodeLive(f"n{n}.example/biobank-node", country, Chapters())
        record = {"id": BB, "country": rng.choice(["NL", None])}
        live.publish("biobank", BB, 0, record, has_content=True)
        for i in range(60):
            g = _group(
                100 * n + i,
                rng.choice([K + i, {"lt": K + i % 5}]),
                rng.choice([K, {"lt": K}]),
                sex=rng.choice(["female", "male", "unknown"]),
            )
            g["diagnoses"] = [
                {"system": "ICD-10", "code": rng.choice(["C50", "E11.9", "I10", "Z99"])}
                for _ in range(rng.randrange(3))
            ]
            g["use_conditions"] = rng.sample(["DUO:0000042", "DUO:0000007"], rng.randrange(3))
            if i % 7 == 0:
                del g["sex"]
            live.publish(GROUP, g["id"], i + 1, g, has_content=True)
        lives.append(live)
    tally = _tally(*lives)
    assert tally.groups == 180
    assert _sums_of(tally) == _sums_of(tally.filtered_by_rows({}))
