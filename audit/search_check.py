"""Compare the interval sums recomputed from the logs with the catalogue's /v1/search answers.

Every count must be the interval ``{"min", "max"}`` the live groups give, exactly: `total`,
`donors`, `counts.*` and `facets.*` of the unfiltered search and of one search per sex and
per country it lists (and one with both), and in the unfiltered one the `samples` of the
biobanks and collections on the first page (a collection with no live group is
`"declared"`, its samples null). Listings hold exactly the codes some matching group has,
sorted by max desc, then min desc, then code. A mismatch names the query, the count and both
intervals. The cards' `published` / `biobank_published` flags (and a published
collection's `declared_size` and `subjects`) must say what the mirrored logs say.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

from audit.livestate import FILTERS, Interval, Sums, Tally
from audit.report import CheckResult


def _shown(value: Any) -> Interval | None:
    """The interval a count shows, or None when it is not ``{"min": int, "max": int}``."""
    if not isinstance(value, dict) or set(value) != {"min", "max"}:
        return None
    lo, hi = value["min"], value["max"]
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (lo, hi)) or not 0 <= lo <= hi:
        return None
    return lo, hi


def _fmt(interval: Interval) -> str:
    return f"[{interval[0]}, {interval[1]}]"


def _compare(check: CheckResult, where: str, expected: Interval, shown: Any) -> None:
    check.items += 1
    got = _shown(shown)
    if got is None:
        check.fail(where, f"shows {shown!r:.80}, not an interval {{'min': int, 'max': int}}")
    elif got != expected:
        check.fail(where, f"search reports {_fmt(got)}, the logs give {_fmt(expected)}")


def _listing(
    check: CheckResult, where: str, expected: Sums, shown: Any, *, owned: bool = False
) -> None:
    """One counts or facets list; `owned` (biobanks, collections): one item per (code, node
    origin), as an id belongs to the node that publishes it."""
    shape = "{code, origin, count}" if owned else "{code, count}"
    if not isinstance(shown, list):
        check.fail(where, f"is {type(shown).__name__}, not a list of {shape}")
        return
    seen: dict[Any, Any] = {}
    order: list[tuple[Any, ...]] = []
    for item in shown:
        if (
            not isinstance(item, dict)
            or "code" not in item
            or "count" not in item
            or (owned and not isinstance(item.get("origin"), str))
        ):
            check.fail(where, f"item {item!r:.80} is not {shape}")
            continue
        key: Any = (str(item["code"]), item["origin"]) if owned else str(item["code"])
        seen[key] = item["count"]
        got = _shown(item["count"])
        if got is not None:
            order.append((-got[1], -got[0], *(key if owned else (key,))))
    for key in sorted(set(seen) | expected.codes()):
        label = f"{key[0]!r} of node {key[1]}" if owned else repr(key)
        if key not in seen:
            check.items += 1
            check.fail(f"{where} {label}", f"missing; the logs give {_fmt(expected.get(key))}")
        else:
            _compare(check, f"{where} {label}", expected.get(key), seen[key])
    check.items += 1
    if order != sorted(order):
        then = "code, then node origin" if owned else "code"
        check.fail(where, f"not sorted by count max desc, then min desc, then {then}")


def _origin(item: dict[str, Any]) -> str | None:
    prov = item.get("provenance")
    node = prov.get("node") if isinstance(prov, dict) else None
    return node if isinstance(node, str) else None


def _items(response: dict[str, Any], name: str) -> list[dict[str, Any]]:
    block = response.get(name)
    items = block.get("items") if isinstance(block, dict) else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _flag(check: CheckResult, where: str, name: str, shown: Any, expected: bool) -> None:
    """A card's `published`-like flag must say what the mirrored logs say."""
    check.items += 1
    if shown is not expected:
        says = "is" if expected else "is not"
        check.fail(where, f"{name} {shown!r}, but the record {says} live in the logs")


def _declared(check: CheckResult, where: str, item: dict[str, Any], record: dict[str, Any]) -> None:
    """A published collection's own declarations show on its card as the record has them."""
    for name, field_ in (("declared_size", "size"), ("subjects", "number_of_subjects")):
        check.items += 1
        if item.get(name) != record.get(field_):
            check.fail(
                where,
                f"{name} {item.get(name)!r}, but the record's {field_} is {record.get(field_)!r}",
            )


def _biobanks(check: CheckResult, tally: Tally, response: dict[str, Any]) -> None:
    """A biobank's samples are its groups' sum; one with no live group shows null or zero.
    `published` says whether its record is live in the logs."""
    for item in _items(response, "biobanks"):
        where = f"search biobanks {item.get('id')!r} of node {_origin(item)}"
        key = (str(_origin(item)), str(item.get("id")))
        _flag(check, where, "published", item.get("published"), key in tally.biobank_records)
        expected = tally.biobanks.get((str(_origin(item)), str(item.get("id"))))
        if expected is None and item.get("samples") in (None, {"min": 0, "max": 0}):
            check.items += 1
            continue
        _compare(check, f"{where} samples", expected or (0, 0), item.get("samples"))


def _collections(check: CheckResult, tally: Tally, response: dict[str, Any]) -> None:
    """A collection with live groups counts them (`"groups"`); one without is `"declared"`.
    `published` and `biobank_published` say whether its record and its biobank's record
    are live in the logs; a published one shows its record's size and subjects."""
    for item in _items(response, "collections"):
        key = (str(_origin(item)), str(item.get("id")))
        where = f"search collections {key[1]!r} of node {key[0]}"
        record = tally.collection_contents.get(key)
        _flag(check, where, "published", item.get("published"), record is not None)
        biobank = (key[0], str(item.get("biobank")))
        _flag(
            check,
            where,
            "biobank_published",
            item.get("biobank_published"),
            biobank in tally.biobank_records,
        )
        if record is not None:
            _declared(check, where, item, record)
        expected = tally.collections.get(key)
        source = item.get("count_source")
        check.items += 1
        if expected is not None:
            if source != "groups":
                check.fail(where, f"count_source {source!r}, but the logs publish its groups")
            _compare(check, f"{where} samples", expected, item.get("samples"))
        elif source != "declared" or item.get("samples") is not None:
            check.fail(
                where,
                f"count_source {source!r} with samples {item.get('samples')!r}, but the logs "
                "have no live group in it (declared, samples null)",
            )
        elif key not in tally.collection_records:
            check.fail(where, "declared, but it is no live collection record of that node")


def search_queries(answer: dict[str, Any]) -> list[str]:
    """The filtered searches to check, from the unfiltered answer: one per sex and per country
    it lists, and one with the first of each (query strings, parameters sorted)."""
    facets = answer.get("facets")
    values: dict[str, list[str]] = {}
    for name in FILTERS:
        items = facets.get(name) if isinstance(facets, dict) else None
        codes = [i.get("code") for i in items or () if isinstance(i, dict)]
        values[name] = sorted({c for c in codes if isinstance(c, str)})
    out = [urlencode({name: code}) for name, codes in values.items() for code in codes]
    if values["country"] and values["sex"]:
        out.append(urlencode({"country": values["country"][0], "sex": values["sex"][0]}))
    return out


def _counts(check: CheckResult, where: str, tally: Tally, answer: dict[str, Any]) -> bool:
    """total, donors, counts and facets of one answer; False when it lacks counts or facets."""
    _compare(check, f"{where} total", tally.samples, answer.get("total"))
    _compare(check, f"{where} donors", tally.donors, answer.get("donors"))
    counts = answer.get("counts")
    facets = answer.get("facets")
    if not isinstance(counts, dict) or not isinstance(facets, dict):
        check.fail(f"{where} response", "lacks the 'counts' or 'facets' object")
        return False
    for name, expected in tally.counts.items():
        owned = name != "country"
        _listing(check, f"{where} counts.{name}", expected, counts.get(name), owned=owned)
    for name, expected in tally.facets.items():
        _listing(check, f"{where} facets.{name}", expected, facets.get(name))
    return True


def check_search(check: CheckResult, tally: Tally, answers: dict[str, dict[str, Any]]) -> None:
    """Every count of each answer (by query string; "" the unfiltered search) equals the
    interval sums of the live groups it matches."""
    check.ran = True
    for query, answer in answers.items():
        if not query:
            if _counts(check, "search", tally, answer):
                _biobanks(check, tally, answer)
                _collections(check, tally, answer)
            continue
        _counts(check, f"search?{query}", tally.filtered(dict(parse_qsl(query))), answer)
